"""Our DMDNet against the authors' released implementation (github.com/csxmli2016/DMDNet), run side by side.

Set ``DMDNET_AUTHORS_CODE`` to a checkout of that repository (tested at f025001): its ``models/DMDNet.py`` is
imported, and ``get_component_location`` is taken from its ``main_test.py`` (parsed, not imported: that file loads
face_alignment at import time). Skipped otherwise; nothing of the authors' code is part of this repository.

Checked on the authors' own CelebRef-HQ test examples (``../shared/data``): the component boxes from every
landmark file are equal, and with the same weights (the paper model, official key layout, random values,
loaded by their model with strict=True; spectral-norm gain 1.3 so that every path reaches the output) both
outputs — generic and generic+specific with 3 references — are
equal up to float rounding.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines import create_model
from baselines.components import component_boxes
from baselines.landmarks import read_landmark_txt
from bfrcore.imageio import read_image
from peers.spectral_norm import set_spectral_gain

AUTHORS = Path(os.environ.get("DMDNET_AUTHORS_CODE", "")) if os.environ.get("DMDNET_AUTHORS_CODE") else None
pytestmark = pytest.mark.skipif(
    AUTHORS is None or not (AUTHORS / "models" / "DMDNet.py").is_file(),
    reason="set DMDNET_AUTHORS_CODE to a checkout of https://github.com/csxmli2016/DMDNet to compare with the "
           "authors' implementation")

IDENTITY = "00075"


def _authors_module():
    spec = importlib.util.spec_from_file_location("authors_dmdnet", AUTHORS / "models" / "DMDNet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _authors_box_function():
    """``get_component_location`` from main_test.py, compiled alone with the names it uses."""
    src = (AUTHORS / "main_test.py").read_text()
    fn = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == "get_component_location")
    namespace = {"np": np, "torch": torch}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "main_test.py", "exec"), namespace)  # noqa: S102
    return namespace["get_component_location"]


def _image(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(read_image(path))).permute(2, 0, 1).float()[None] / 255


def test_component_boxes_equal_the_authors_on_their_landmark_files(celebref_examples):
    if not (AUTHORS / "main_test.py").is_file():
        pytest.skip(f"{AUTHORS}/main_test.py missing")
    theirs = _authors_box_function()
    files = sorted((celebref_examples / "RefsLandmark").glob("*/*.txt"))
    assert len(files) >= 40
    for f in files:
        expected = theirs(str(f), re_read=True).numpy().astype(np.int64)
        ours = component_boxes(read_landmark_txt(f)[None], 512)[0]
        np.testing.assert_array_equal(ours, expected, err_msg=str(f))


def test_same_weights_give_the_authors_outputs(celebref_examples):
    torch.manual_seed(0)
    ours = create_model("dmdnet", config="paper")  # random values, official key layout
    set_spectral_gain(ours, 1.3)  # so that the output depends measurably on every path (see the helper)
    theirs = _authors_module().DMDNet()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    theirs.eval()

    ref_files = [celebref_examples / "RefsImg" / IDENTITY / f"{n}.png" for n in (1, 2, 4)]
    ref_lms = torch.from_numpy(np.stack([
        read_landmark_txt(celebref_examples / "RefsLandmark" / IDENTITY / f"{f.name}.txt") for f in ref_files]))
    refs = torch.cat([_image(f) for f in ref_files])
    lq = _image(celebref_examples / "SynLQ" / f"{IDENTITY}_14.png")
    lq_lm = torch.from_numpy(read_landmark_txt(celebref_examples / "RefsLandmark" / IDENTITY / "0.png.txt"))[None]

    with torch.no_grad():
        mine = ours.training_outputs(lq, lq_lm.float(), [refs], [ref_lms.float()])
        loc = torch.from_numpy(component_boxes(lq_lm.numpy(), 512)).float()
        sp = theirs.generate_specific_dictionary(sp_imgs=refs * 2 - 1,
                                                 sp_locs=torch.from_numpy(component_boxes(ref_lms.numpy(), 512)))
        generic, specific = theirs(lq=lq * 2 - 1, loc=loc, sp_256=sp[0], sp_128=sp[1], sp_64=sp[2])
    diff_generic = float((mine["restored_generic"] - (generic + 1) / 2).abs().max())
    diff_specific = float((mine["restored"] - (specific + 1) / 2).abs().max())
    print(f"max |ours - authors|: generic {diff_generic:.1e}, specific {diff_specific:.1e}")
    assert diff_generic < 1e-5 and diff_specific < 1e-5, (diff_generic, diff_specific)
    # the comparison has power: the references change the output 100x more than the implementations differ
    assert float((mine["restored"] - mine["restored_generic"]).abs().max()) > 1e-3
    assert float(mine["restored"].std()) > 0.01
