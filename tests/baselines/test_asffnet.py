"""ASFFNet: key/shape compatibility with the official ASFFNet512 checkpoint, forward, guidance selection."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines import create_model, get_model_info
from baselines.asffnet import PAPER, TINY, ASFFNet, ASFFNetConfig
from baselines.landmarks import mean_face_landmarks
from baselines.registry import CHECKPOINT_FORMAT
from baselines.warping import select_guidance
from tests.helpers import read_landmark_txt

TSV = Path(__file__).resolve().parents[2] / "baselines" / "data" / "asffnet512_official_state_dict.tsv"
S = TINY.size


def _official_keys() -> list[tuple[str, tuple[int, ...]]]:
    rows = [line.rstrip("\n").split("\t") for line in TSV.read_text().splitlines()[1:] if line.strip()]
    assert all(r[2] == "float32" for r in rows)
    return [(k, tuple(int(x) for x in shape.split("x"))) for k, shape, _ in rows]


@pytest.fixture(scope="module")
def paper_meta() -> ASFFNet:
    with torch.device("meta"):
        return ASFFNet(PAPER)


@pytest.fixture(scope="module")
def tiny() -> ASFFNet:
    torch.manual_seed(0)
    return create_model("asffnet", "tiny")


def _inputs(b: int, n_refs, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lm = torch.from_numpy(mean_face_landmarks(S))
    lq = torch.rand(b, 3, S, S, generator=g)
    lms = lm[None].repeat(b, 1, 1) + torch.randn(b, 68, 2, generator=g)
    refs = [torch.rand(n, 3, S, S, generator=g) for n in n_refs]
    ref_lms = [lm[None].repeat(n, 1, 1) + torch.randn(n, 68, 2, generator=g) * 2 for n in n_refs]
    return lq, lms, refs, ref_lms


def test_paper_state_dict_equals_the_official_599_keys_and_shapes(paper_meta):
    mine = [(k, tuple(v.shape)) for k, v in paper_meta.state_dict().items()]
    official = _official_keys()
    assert len(official) == 599
    assert mine == official  # names, shapes and order
    n = sum(p.numel() for p in paper_meta.parameters())
    assert round(n / 1e6, 2) == 23.63


def test_official_file_layout_loads_strictly(paper_meta):
    """ASFFNet512.pth stores the state dict under 'params' (main_test.py: weights['params'])."""
    info = get_model_info("asffnet")
    assert info.pretrained == {"asffnet512-official": "paper"}
    state = OrderedDict((k, torch.empty(shape, device="meta")) for k, shape in _official_keys())
    for wrapped in ({"params": state}, {"params": OrderedDict(("module." + k, v) for k, v in state.items())}, state):
        res = paper_meta.load_state_dict(info.checkpoint_filter_fn(wrapped, paper_meta), strict=True)
        assert not res.missing_keys and not res.unexpected_keys


def test_official_weights_missing_names_the_fix(isolated_weights):
    from bfrcore.weights import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="ASFFNet512.pth"):
        create_model("asffnet", weights="asffnet512-official")


def test_registry_flags_and_configs(tiny):
    assert ASFFNet.needs_references and ASFFNet.uses_references and ASFFNet.needs_landmarks
    assert tiny.input_size == 128 and tiny.config == TINY and not tiny.training
    assert PAPER.size == 512 and PAPER.ngf == 64 and PAPER.n_blocks == 4 and PAPER.selection_weights == (1.01, 1.49)
    with pytest.raises(ValueError):
        ASFFNetConfig(size=130)


def test_forward_shape_range_and_selection(tiny):
    lq, lms, refs, ref_lms = _inputs(2, (3, 1))
    with torch.no_grad():
        out = tiny.restore(lq, lms, refs, ref_lms)
    assert out.shape == lq.shape and torch.isfinite(out).all()
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert tiny.last_selection == [select_guidance(lms[0], ref_lms[0]), 0]
    # the output depends on the selected reference only: dropping the others changes nothing
    k = tiny.last_selection[0]
    with torch.no_grad():
        out1 = tiny.restore(lq[:1], lms[:1], [refs[0][k:k + 1]], [ref_lms[0][k:k + 1]])
    torch.testing.assert_close(out1, out[:1], atol=1e-5, rtol=0)


def test_input_validation(tiny):
    lq, lms, refs, ref_lms = _inputs(1, (2,))
    with pytest.raises(ValueError, match="needs reference"):
        tiny.restore(lq, lms)
    with pytest.raises(ValueError, match="128x128"):
        tiny.restore(torch.rand(1, 3, 64, 64), lms, refs, ref_lms)
    # references at another size are resized (and their landmarks scaled)
    big = [torch.nn.functional.interpolate(refs[0], size=(256, 256), mode="bilinear")]
    with torch.no_grad():
        out = tiny.restore(lq, lms, big, [ref_lms[0] * 2])
    assert out.shape == lq.shape


def test_training_gradients_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    m = ASFFNet(TINY).train()
    lq, lms, refs, ref_lms = _inputs(2, (2, 2), seed=1)
    out = m.training_outputs(lq, lms, refs, ref_lms)
    assert set(out) == {"restored"}
    out["restored"].mean().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.eval()
    ckpt = {"format": CHECKPOINT_FORMAT, "model": "asffnet", "config": m.config_dict(),
            "state_dict": m.state_dict(), "ema": None, "step": 3}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    loaded = create_model("asffnet", weights=tmp_path / "ckpt.pt")
    assert loaded.config == TINY and loaded.weights_record["checkpoint_step"] == 3
    with torch.no_grad():
        torch.testing.assert_close(loaded.restore(lq, lms, refs, ref_lms), m.restore(lq, lms, refs, ref_lms))


def test_restore_real_face_with_real_references(celebref_examples, tiny):
    """A real aligned face of 00121 restored with three other images of the same person (authors' landmarks)."""
    from bfrcore.imageio import read_image

    ident = celebref_examples / "RefsImg" / "00121"
    files = sorted(ident.glob("*.png"), key=lambda p: int(p.stem))[:4]

    def load(f):
        img = torch.from_numpy(np.array(read_image(f))).permute(2, 0, 1).float()[None] / 255
        img = torch.nn.functional.interpolate(img, size=(S, S), mode="bilinear", antialias=True)
        lm = read_landmark_txt(celebref_examples / "RefsLandmark" / "00121" / f"{f.name}.txt") * S / 512
        return img, torch.from_numpy(lm)[None]

    lq, lm = load(files[0])
    refs = [load(f) for f in files[1:]]
    with torch.no_grad():
        out = tiny.restore(lq, lm, [torch.cat([r[0] for r in refs])], [torch.cat([r[1] for r in refs])])
    assert out.shape == (1, 3, S, S) and torch.isfinite(out).all()
