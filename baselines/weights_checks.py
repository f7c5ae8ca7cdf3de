"""Content checks of the baselines' pretrained files (restoration models, the DFDNet dictionary), registered in
the kernel's table (:mod:`bfrcore.weights.content`) under the names the weights entries give.

A check opens the user's file as the model's own loader does and compares keys and shapes with the architecture;
``bench weights import`` / ``fetch`` run it before installing (the app imports this module first).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bfrcore.weights.content import (
    ContentError,
    Shapes,
    compare_shapes,
    load_torch,
    register_content_check,
    tensor_shapes,
    tsv_shapes,
)

_DATA = Path(__file__).resolve().parent / "data"


def _tsv(name: str) -> Shapes:
    """The official key list recorded from the authors' file (``baselines/data/*.tsv``)."""
    return tsv_shapes(_DATA / name)


def _check_dmdnet(path: Path) -> None:
    from baselines.registry import unwrap_state_dict

    state = unwrap_state_dict(load_torch(path))  # the loader's own unwrapping (baselines.dmdnet._checkpoint_filter)
    compare_shapes(tensor_shapes(state, "DMDNet"), _tsv("dmdnet_official_state_dict.tsv"), "DMDNet (paper)")


def _check_asffnet(path: Path) -> None:
    from baselines.registry import unwrap_state_dict

    state = unwrap_state_dict(load_torch(path), ("params_ema", "params", "state_dict"))
    compare_shapes(tensor_shapes(state, "ASFFNet512"), _tsv("asffnet512_official_state_dict.tsv"),
                   "ASFFNet512 (paper)")


def _check_dfdnet(path: Path) -> None:
    """The official generator's keys mapped by the loader (``baselines.dfdnet._checkpoint_filter``) must give
    exactly the paper model's persistent tensors. The model is built on ``meta`` with the learned extractor in
    place of VGG19 (whose weights are not in the checkpoint and not persistent here); only ``features.mean`` /
    ``features.std`` of the extractor are kept, as in the VGG19 model."""
    import torch

    from baselines.dfdnet import PAPER, DFDNet, _checkpoint_filter

    state = _unwrap_tensors(load_torch(path))
    tensor_shapes(state, "DFDNet")  # a dict of tensors before the key map is applied
    with torch.device("meta"):
        model = DFDNet(dataclasses.replace(PAPER, feature_extractor="learned", dictionary=None, n_atoms=1))

    def own(k: str) -> bool:  # the atoms: not in the official file, injected by the filter from the model
        return k.startswith("dict_") or k == "dictionary_ready"

    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()
                if not own(k) and (not k.startswith("features.") or k in ("features.mean", "features.std"))}
    try:
        mapped = _checkpoint_filter(state, model)
    except (KeyError, ValueError, IndexError) as e:
        raise ContentError(f"not the DFDNet generator checkpoint: {e.args[0] if e.args else e}") from None
    got = {k: v for k, v in tensor_shapes(mapped, "DFDNet").items() if not own(k)}
    compare_shapes(got, expected, "DFDNet generator (paper)")


def _unwrap_tensors(state: Any) -> Any:
    from baselines.registry import unwrap_state_dict

    return unwrap_state_dict(state, ("params_ema", "params", "state_dict"))


def _check_dfdnet_dictionary(path: Path) -> None:
    """A folder of ``{part}_{F}_center.npy``: each loads without pickle and reshapes to (K, C, s, s) of the 512
    model, with one K throughout (``baselines.dictionary.read_dictionary``, the loader itself)."""
    from baselines.dfdnet import PAPER, DFDNet
    from baselines.dictionary import read_dictionary

    shaper = DFDNet.__new__(DFDNet)  # only the config-derived shape helpers are used; no network is built
    shaper.config = dataclasses.replace(PAPER, dictionary=None, n_atoms=1)
    try:
        read_dictionary(path, PAPER.size, shaper._atom_shapes(), shaper._feature_sizes())
    except (ValueError, OSError, FileNotFoundError) as e:
        raise ContentError(f"not a DFDNet 512 dictionary: {e}") from None


register_content_check("dmdnet-paper", _check_dmdnet,
                       "keys+shapes of the official DMDNet state dict (1014 tensors, baselines/data TSV)")
register_content_check("asffnet512-paper", _check_asffnet,
                       "keys+shapes of the official ASFFNet512 state dict (599 tensors, baselines/data TSV)")
register_content_check("dfdnet-paper", _check_dfdnet,
                       "keys+shapes of the DFDNet generator after the official key map (paper config)")
register_content_check("dfdnet-dictionary-512", _check_dfdnet_dictionary,
                       "every {part}_{F}_center.npy loads without pickle as (K, C, s, s) of the 512 model")
