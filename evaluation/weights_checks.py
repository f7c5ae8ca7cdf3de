"""Content checks of the evaluation metrics' pretrained files (AWing landmarks, FID statistics, pyiqa's NIQE,
DISTS and MANIQA), registered in the kernel's table (:mod:`bfrcore.weights.content`) under the names the weights
entries give. ``bench weights import`` / ``fetch`` run them before installing (the app imports this module first).
"""

from __future__ import annotations

import functools
from pathlib import Path

from bfrcore.weights.content import (
    ContentError,
    Shapes,
    array_shapes,
    compare_shapes,
    load_torch,
    meta_shapes,
    register_content_check,
    tensor_shapes,
)


def _check_awing(path: Path) -> None:
    from facexlib.alignment import FAN

    state = load_torch(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # as evaluation.lmd.AWingLMD loads it
    compare_shapes(tensor_shapes(state, "AWing FAN"),
                   meta_shapes(lambda: FAN(num_modules=4, num_landmarks=98, device="meta")),
                   "facexlib AWing FAN (4 hourglasses, 98 WFLW points)")


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
    array_shapes(arrays, {"mu": (2048,), "sigma": (2048, 2048)}, "clean-fid Inception statistics")


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
    array_shapes(arrays, {"mu_prisparam": (36,), "cov_prisparam": (36, 36)}, "the NIQE pristine model")


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


register_content_check("awing-fan-4hg-98", _check_awing,
                       "keys+shapes of facexlib FAN(num_modules=4, num_landmarks=98)")
register_content_check("fid-stats-npz-2048", _check_fid_stats_npz,
                       "npz with mu (2048) and sigma (2048x2048), no pickle")
register_content_check("niqe-mat-36", _check_niqe_mat, "MAT file with mu_prisparam (36) and cov_prisparam (36x36)")
register_content_check("dists-alpha-beta", _check_dists,
                       "alpha and beta (1x1475x1x1) of pyiqa DISTS; no key outside pyiqa's DISTS")
register_content_check("maniqa-pyiqa", _check_maniqa,
                       "keys+shapes of pyiqa MANIQA (KonIQ options, ViT-B/8 included; 316 tensors)")
