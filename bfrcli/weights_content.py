"""What a pretrained file must contain, checked before it is installed when no upstream hash exists.

Nine registry entries have no published sha256 (Google-Drive releases, GitHub assets without checksums). For those
``bench weights import`` / ``fetch`` cannot compare a digest, so they check the *content* instead: a PyTorch
checkpoint is opened with ``torch.load(weights_only=True)`` on CPU (memory-mapped where the file allows, so a
600 MB checkpoint costs its metadata only), the usual containers are unwrapped exactly as the model's loader does,
and its keys and tensor shapes must equal the architecture it is for. Arrays (``.npz``, ``.mat``, ``.npy``
folders) must hold the named arrays with the expected shapes. A file that fails is never installed.

Each check is named in the entry (``WeightsEntry.content``) and described by :data:`DESCRIPTIONS` (shown by
``bench weights list``). Checks import their architecture lazily; building it happens on the ``meta`` device
(names and shapes only, no memory).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_BASELINE_DATA = Path(__file__).resolve().parents[1] / "baselines" / "data"


class ContentError(ValueError):
    """The file does not hold what its registry entry is for; the message names the first differences."""


Shapes = dict[str, tuple[int, ...]]


# ----------------------------------------------------------------------------------------------- loading
def load_torch(path: Path) -> Any:
    """``torch.load(weights_only=True)`` on CPU, memory-mapped when the file is in the zip format.
    Raises :class:`ContentError` for anything that is not a safely loadable PyTorch file."""
    import torch

    with open(path, "rb") as f:
        head = f.read(4)
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save zip archive / legacy pickle protocol 2+
        raise ContentError(f"not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle; first bytes "
                           f"{head.hex() or 'none: empty file'})")
    if head[:4] == b"PK\x03\x04":  # zip format: map it, so only the metadata is read
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # noqa: BLE001  retried without mmap below, which gives the reason
            log.debug("mmap load of %s failed (%s); reading it", path, e)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  any reason a file is not a safe PyTorch checkpoint
        why = _torch_load_reason(str(e)) or type(e).__name__
        raise ContentError(f"not a PyTorch checkpoint loadable with weights_only=True ({why[:200]})") from None


def _torch_load_reason(msg: str) -> str:
    """The informative line of a torch.load error (PyTorch wraps the unpickler's reason in boilerplate)."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    boiler = ("Weights only load failed", "Please file an issue", "Check the documentation", "In PyTorch 2.6")
    useful = [ln for ln in lines if not ln.startswith(boiler)]
    return (useful[0] if useful else (lines[0] if lines else ""))[:200]


def tensor_shapes(state: Any, what: str) -> Shapes:
    """{key: shape} of a flat state dict; ContentError when ``state`` is not a dict of tensors."""
    import torch

    if not isinstance(state, dict) or not state:
        raise ContentError(f"expected a {what} state dict (a mapping of tensors), got {type(state).__name__}"
                           + (" (empty)" if isinstance(state, dict) else ""))
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ContentError(f"expected a {what} state dict of tensors; non-tensor entries: {', '.join(bad[:5])}")
    return {str(k): tuple(v.shape) for k, v in state.items()}


def compare_shapes(got: Shapes, expected: Shapes, what: str, limit: int = 5) -> None:
    """Raise :class:`ContentError` naming the first missing, unexpected and mismatched keys."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    mismatched = [f"{k} {_fmt(got[k])} (expected {_fmt(expected[k])})"
                  for k in expected if k in got and got[k] != expected[k]]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", mismatched)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    raise ContentError(f"not the {what} checkpoint ({len(expected)} tensors expected): {'; '.join(parts)}")


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _tsv_shapes(name: str) -> Shapes:
    """The official key list recorded from the authors' file: ``key<TAB>AxBxC<TAB>dtype`` rows."""
    rows = (_BASELINE_DATA / name).read_text().splitlines()[1:]
    out: Shapes = {}
    for row in rows:
        if row.strip():
            key, shape, _ = row.split("\t")
            out[key] = tuple(int(x) for x in shape.split("x")) if shape else ()
    return out


def _meta_shapes(build: Callable[[], Any]) -> Shapes:
    import torch

    with torch.device("meta"):
        model = build()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------- checks
def _check_dmdnet(path: Path) -> None:
    from baselines.registry import unwrap_state_dict

    state = unwrap_state_dict(load_torch(path))  # the loader's own unwrapping (baselines.dmdnet._checkpoint_filter)
    compare_shapes(tensor_shapes(state, "DMDNet"), _tsv_shapes("dmdnet_official_state_dict.tsv"), "DMDNet (paper)")


def _check_asffnet(path: Path) -> None:
    from baselines.registry import unwrap_state_dict

    state = unwrap_state_dict(load_torch(path), ("params_ema", "params", "state_dict"))
    compare_shapes(tensor_shapes(state, "ASFFNet512"), _tsv_shapes("asffnet512_official_state_dict.tsv"),
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


def _check_arcface18(path: Path) -> None:
    from bfrcore.faces.arcface18 import ResNetArcFace18, strip_module_prefix

    state = load_torch(path)
    if not isinstance(state, dict):
        tensor_shapes(state, "ArcFace ResNet-18")
    compare_shapes(tensor_shapes(strip_module_prefix(state), "ArcFace ResNet-18"), _meta_shapes(ResNetArcFace18),
                   "ArcFace ResNet-18 (128x128 grey)")


def _check_awing(path: Path) -> None:
    from facexlib.alignment import FAN

    state = load_torch(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # as evaluation.lmd.AWingLMD loads it
    compare_shapes(tensor_shapes(state, "AWing FAN"),
                   _meta_shapes(lambda: FAN(num_modules=4, num_landmarks=98, device="meta")),
                   "facexlib AWing FAN (4 hourglasses, 98 WFLW points)")


def _array_shapes(arrays: dict[str, Any], expected: dict[str, tuple[int, ...]], what: str) -> None:
    got = {k: tuple(getattr(v, "shape", ())) for k, v in arrays.items() if k in expected}
    missing = [k for k in expected if k not in arrays]
    if missing:
        raise ContentError(f"not {what}: missing arrays {', '.join(missing)} (has: {', '.join(sorted(arrays)) or 'none'})")
    bad = [f"{k} {_fmt(got[k])} (expected {_fmt(s)})" for k, s in expected.items() if got[k] != s]
    if bad:
        raise ContentError(f"not {what}: wrong shapes: {', '.join(bad)}")


def _check_fid_stats_npz(path: Path) -> None:
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ContentError(f"not a NumPy .npz archive ({str(e)[:200]})") from None
    except AttributeError:  # np.load returned a bare array (.npy content)
        raise ContentError("a single .npy array, not an .npz archive with mu and sigma") from None
    _array_shapes(arrays, {"mu": (2048,), "sigma": (2048, 2048)}, "clean-fid Inception statistics")


def _check_niqe_mat(path: Path) -> None:
    import numpy as np
    import scipy.io

    try:
        params = scipy.io.loadmat(path)
    except Exception as e:  # noqa: BLE001  scipy raises several types for a non-MAT file
        raise ContentError(f"not a MATLAB .mat file ({str(e)[:200]})") from None
    arrays = {k: np.asarray(v) for k, v in params.items() if not k.startswith("__")}
    if "mu_prisparam" in arrays:
        arrays["mu_prisparam"] = np.ravel(arrays["mu_prisparam"])  # pyiqa ravels it
    _array_shapes(arrays, {"mu_prisparam": (36,), "cov_prisparam": (36, 36)}, "the NIQE pristine model")


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


def _pyiqa_checkpoint_shapes(path: Path, what: str) -> Shapes:
    """{key: shape} of a pyiqa checkpoint read as pyiqa does (``params`` unwrapped, ``module.`` removed)."""
    from pyiqa.archs.arch_util import clean_state_dict

    state = load_torch(path)
    if isinstance(state, dict) and isinstance(state.get("params"), dict):
        state = state["params"]
    shapes = tensor_shapes(state, what)
    return {k: shapes[src] for k, src in zip(clean_state_dict(dict.fromkeys(shapes)), shapes)}


@functools.cache
def _pyiqa_arch_shapes(pyiqa_name: str) -> Shapes:
    """Keys and shapes of pyiqa's network, built on CPU without weights (pyiqa's MANIQA calls ``.item()`` while
    building, so ``meta`` cannot be used; MANIQA costs about 0.5 GB for a few seconds)."""
    import torch

    from evaluation.pyiqa_metrics import build_arch

    with torch.no_grad():
        return {k: tuple(v.shape) for k, v in build_arch(pyiqa_name).state_dict().items()}  # callers only read it


def _check_dists(path: Path) -> None:
    """alpha and beta of pyiqa's DISTS (1 x 1475 x 1 x 1); any other key must be a DISTS key of the same shape."""
    got = _pyiqa_checkpoint_shapes(path, "DISTS")
    expected = _pyiqa_arch_shapes("dists")
    absent = [k for k in ("alpha", "beta") if k not in got]
    if absent:
        raise ContentError(f"not the DISTS weights file: no {', '.join(absent)} (has: {', '.join(sorted(got)[:5])})")
    compare_shapes({k: v for k, v in got.items() if k in expected}, {k: expected[k] for k in got if k in expected},
                   "DISTS (pyiqa)")
    unexpected = [k for k in got if k not in expected]
    if unexpected:
        raise ContentError(f"not the DISTS weights file: keys outside pyiqa's DISTS: {', '.join(unexpected[:5])}")


def _check_maniqa(path: Path) -> None:
    """Every tensor of pyiqa's MANIQA (KonIQ options), the ViT-B/8 included, as pyiqa loads it (strict)."""
    compare_shapes(_pyiqa_checkpoint_shapes(path, "MANIQA"), _pyiqa_arch_shapes("maniqa"), "MANIQA KonIQ-10k (pyiqa)")


CHECKS: dict[str, Callable[[Path], None]] = {
    "dmdnet-paper": _check_dmdnet,
    "asffnet512-paper": _check_asffnet,
    "dfdnet-paper": _check_dfdnet,
    "arcface-resnet18": _check_arcface18,
    "awing-fan-4hg-98": _check_awing,
    "fid-stats-npz-2048": _check_fid_stats_npz,
    "niqe-mat-36": _check_niqe_mat,
    "dfdnet-dictionary-512": _check_dfdnet_dictionary,
    "dists-alpha-beta": _check_dists,
    "maniqa-pyiqa": _check_maniqa,
}

#: what each check verifies (``bench weights list``: "verified by")
DESCRIPTIONS: dict[str, str] = {
    "dmdnet-paper": "keys+shapes of the official DMDNet state dict (1014 tensors, baselines/data TSV)",
    "asffnet512-paper": "keys+shapes of the official ASFFNet512 state dict (599 tensors, baselines/data TSV)",
    "dfdnet-paper": "keys+shapes of the DFDNet generator after the official key map (paper config)",
    "arcface-resnet18": "keys+shapes of ResNetArcFace18 (evaluation.identity)",
    "awing-fan-4hg-98": "keys+shapes of facexlib FAN(num_modules=4, num_landmarks=98)",
    "fid-stats-npz-2048": "npz with mu (2048) and sigma (2048x2048), no pickle",
    "niqe-mat-36": "MAT file with mu_prisparam (36) and cov_prisparam (36x36)",
    "dfdnet-dictionary-512": "every {part}_{F}_center.npy loads without pickle as (K, C, s, s) of the 512 model",
    "dists-alpha-beta": "alpha and beta (1x1475x1x1) of pyiqa DISTS; no key outside pyiqa's DISTS",
    "maniqa-pyiqa": "keys+shapes of pyiqa MANIQA (KonIQ options, ViT-B/8 included; 316 tensors)",
}


def check(name: str, path: str | Path) -> None:
    """Run content check ``name`` on ``path``; raises :class:`ContentError` with the reason."""
    if name not in CHECKS:
        raise KeyError(f"unknown content check {name!r}; known: {', '.join(sorted(CHECKS))}")
    CHECKS[name](Path(path))
