"""NIQE in NumPy only: the same numbers as :mod:`bfrcore.metrics.niqe` (torch) without importing torch.

For processes that need NIQE and nothing else from torch (the build's quality stage: importing torch costs 2-3 s
per worker). One image at a time, CPU, float64, same convention and same arithmetic as the torch module (BasicSR
``calculate_niqe``, see that module's docstring): MATLAB ``rgb2ycbcr`` luma with BasicSR's float32 steps (or
``convert_to='gray'``), ``crop_border``, rounded; 96x96 blocks; MSCN with the separable 7x7 window of the pristine
model, replicate ('nearest') borders and the :data:`MSCN_ZERO_TOL` snap; 18 AGGD features per block and scale on the
gamma grid 0.2:0.001:10; second scale by MATLAB bicubic ``imresize(·/255, 0.5)``; the distance to the pristine
model. Values agree with the torch module to <1e-12 (only summation order differs: numpy/OpenBLAS vs torch/MKL);
``tests/evaluation/test_niqe_numpy.py`` checks them to 1e-9 on real faces.

The numpy-only pieces both share (``matlab_resize_matrix``, ``load_pristine_params``, ``_separable_factor``,
``niqe_from_features``, the constants) live in :mod:`bfrcore.metrics.niqe_shared` (importing
:mod:`bfrcore.metrics.niqe` would import torch).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from bfrcore.metrics.niqe_shared import (  # noqa: F401  (re-exported, as bfrcore.metrics.niqe does)
    BLOCK,
    MSCN_ZERO_TOL,
    WEIGHTS_NAME,
    _separable_factor,
    load_pristine_params,
    matlab_resize_matrix,
    niqe_from_features,
)

#: BasicSR / MATLAB rgb2ycbcr luma weights for R, G, B in [0, 1] (bfrcore.metrics.functional.BT601_Y)
BT601_Y = (65.481, 128.553, 24.966)
#: cv2 BGR2GRAY weights for R, G, B (the ``convert_to='gray'`` path), applied in float32
GRAY = (0.299, 0.587, 0.114)
_BAND_BLOCK = 24  # outputs per banded matrix product in the filter (as bfrcore.metrics.functional)


def matlab_imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(img, scale)`` (bicubic, antialiased) of a (H, W) float64 array; output ``ceil(scale·H/W)``."""
    h, w = img.shape
    mh = matlab_resize_matrix(h, math.ceil(h * scale), float(scale))
    mw = matlab_resize_matrix(w, math.ceil(w * scale), float(scale))
    return (mh @ img) @ mw.T


# ----------------------------------------------------------------------------------------------- AGGD features
@lru_cache(maxsize=1)
def _gamma_tables():
    """The BasicSR search grid (0.2:0.001:10, 9801 points) and the gamma-function ratios on it (scipy, float64)."""
    from scipy.special import gamma

    gam = np.arange(0.2, 10.001, 0.001)
    rec = np.reciprocal(gam)
    r_gam = np.square(gamma(rec * 2)) / (gamma(rec) * gamma(rec * 3))
    beta_scale = np.sqrt(gamma(1 / gam) / gamma(3 / gam))
    mean_scale = gamma(2 / gam) / gamma(1 / gam)
    for a in (gam, r_gam, beta_scale, mean_scale):
        a.flags.writeable = False
    return gam, r_gam, beta_scale, mean_scale


def _nearest_index(r_gam: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``argmin((r_gam - target)²)`` per target (first index on ties, 0 for NaN), by bisection of the increasing
    grid (brute force if it ever were not)."""
    if not bool((r_gam[1:] > r_gam[:-1]).all()):  # pragma: no cover - a property of the grid
        d = (r_gam[None, :] - target.reshape(-1, 1)) ** 2
        return np.nan_to_num(d, nan=np.inf).argmin(axis=1).reshape(target.shape)
    hi = np.clip(np.searchsorted(r_gam, target), 1, r_gam.size - 1)
    lo = hi - 1
    idx = np.where((r_gam[hi] - target) ** 2 < (r_gam[lo] - target) ** 2, hi, lo)
    return np.where(np.isnan(target), 0, idx)


def aggd_params(x: np.ndarray):
    """Asymmetric generalised Gaussian fit per row of x (..., N) -> (alpha, beta_l, beta_r, grid index)."""
    gam, r_gam, beta_scale, _ = _gamma_tables()
    sq = x * x
    neg, pos = x < 0, x > 0
    left_std = np.sqrt((sq * neg).sum(-1) / neg.sum(-1))
    right_std = np.sqrt((sq * pos).sum(-1) / pos.sum(-1))
    gammahat = left_std / right_std
    rhat = np.abs(x).mean(-1) ** 2 / sq.mean(-1)
    rhatnorm = (rhat * (gammahat ** 3 + 1) * (gammahat + 1)) / ((gammahat ** 2 + 1) ** 2)
    idx = _nearest_index(r_gam, rhatnorm)
    return gam[idx], left_std * beta_scale[idx], right_std * beta_scale[idx], idx


def block_features(blocks: np.ndarray) -> np.ndarray:
    """BasicSR ``compute_feature`` for (n, h, w) blocks of MSCN coefficients -> (n, 18)."""
    mean_scale = _gamma_tables()[3]
    alpha, bl, br, _ = aggd_params(blocks.reshape(blocks.shape[0], -1))
    feats = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        shifted = np.roll(blocks, shift=shift, axis=(-2, -1))
        a, bl, br, idx = aggd_params((blocks * shifted).reshape(blocks.shape[0], -1))
        feats += [a, (br - bl) * mean_scale[idx], bl, br]
    return np.stack(feats, axis=-1)


# ----------------------------------------------------------------------------------------------- MSCN
@lru_cache(maxsize=4)
def _band(window: tuple[float, ...]) -> np.ndarray:
    """(block + k - 1, block) banded matrix: column j holds the window at rows j..j+k-1."""
    k = len(window)
    m = np.zeros((_BAND_BLOCK + k - 1, _BAND_BLOCK))
    for j in range(_BAND_BLOCK):
        m[j:j + k, j] = window
    m.flags.writeable = False
    return m


def _filter_valid(x: np.ndarray, window: tuple[float, ...]) -> np.ndarray:
    """'valid' correlation of (H, W) with outer(window, window), separable, as banded matrix products (the torch
    module's ``gaussian_filter_valid``: columns first, then rows)."""
    k = len(window)
    band = _band(window)
    h, w = x.shape
    ho, wo = h - k + 1, w - k + 1
    v = np.empty((ho, w))
    for s in range(0, ho, _BAND_BLOCK):
        e = min(s + _BAND_BLOCK, ho)
        v[s:e] = band[:e - s + k - 1, :e - s].T @ x[s:e + k - 1]
    out = np.empty((ho, wo))
    for s in range(0, wo, _BAND_BLOCK):
        e = min(s + _BAND_BLOCK, wo)
        out[:, s:e] = v[:, s:e + k - 1] @ band[:e - s + k - 1, :e - s]
    return out


def _mscn(img: np.ndarray, window_1d: tuple[float, ...]) -> np.ndarray:
    """(H, W) float64 -> (img - mu) / (sigma + 1), local statistics with replicate borders; differences below
    :data:`MSCN_ZERO_TOL` are exactly 0."""
    r = len(window_1d) // 2
    mu = _filter_valid(np.pad(img, r, mode="edge"), window_1d)
    m2 = _filter_valid(np.pad(img * img, r, mode="edge"), window_1d)
    sigma = np.sqrt(np.abs(m2 - mu * mu))
    diff = img - mu
    diff[np.abs(diff) < MSCN_ZERO_TOL] = 0.0
    return diff / (sigma + 1)


def niqe_features(y: np.ndarray, window: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """(H, W) rounded luma (0-255 float64) -> (n_blocks, 36) features, blocks ordered as BasicSR's loops
    (column of blocks outer, row inner); 0/0 in flat blocks gives NaN features silently, as in torch."""
    h, w = y.shape
    nbh, nbw = h // block, w // block
    if nbh == 0 or nbw == 0:
        raise ValueError(f"NIQE needs images of at least {block}x{block} pixels, got {h}x{w}")
    img = np.ascontiguousarray(y[:nbh * block, :nbw * block], dtype=np.float64)
    window_1d = _separable_factor(window)
    feats = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for scale in (1, 2):
            mscn = _mscn(img, window_1d)
            bs = block // scale
            blocks = mscn.reshape(nbh, bs, nbw, bs).transpose(2, 0, 1, 3).reshape(nbw * nbh, bs, bs)
            feats.append(block_features(blocks))
            if scale == 1:
                img = matlab_imresize(img / 255.0, 0.5) * 255.0
    return np.concatenate(feats, axis=-1)


# ----------------------------------------------------------------------------------------------- NIQE
@lru_cache(maxsize=2)
def _luma_tables(convert_to: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel, the 256 products ``weight · float32(v/255)`` (float64 for 'y', float32 for 'gray'): the luma
    sum then adds the same rounded products in the same order as the direct formula, only without multiplying."""
    x32 = np.arange(256, dtype=np.float32) / np.float32(255.0)
    if convert_to == "y":
        tabs = tuple(x32.astype(np.float64) * w for w in BT601_Y)
    else:
        tabs = tuple(x32 * w for w in np.asarray(GRAY, dtype=np.float32))
    for t in tabs:
        t.flags.writeable = False
    return tabs


def luma_for_niqe(img: np.ndarray, crop_border: int = 0, convert_to: str = "y") -> np.ndarray:
    """BasicSR ``calculate_niqe`` preprocessing of (H, W, 3) RGB (uint8, or float in [0, 1] put on the 8-bit grid
    with ``round(clip(x, 0, 1)·255)``) -> (H', W') rounded float64 luma in [0, 255].

    ``'y'`` (default): MATLAB rgb2ycbcr Y as BasicSR ``to_y_channel``: float32 ``u8/255``, float64 weighted sum
    + 16, float32 ``/255·255``; bit-equal to the torch module's on all 2^24 colours, whatever the summation order
    (the float32 step absorbs it). ``'gray'``: float32 ``(0.299 R + 0.587 G) + 0.114 B`` of ``u8/255``, ×255, the
    order torch's float32 einsum used on this machine (MKL); another order moves ~0.01% of colours, which sit on a
    .5, by one grey level."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) RGB, got {img.shape}")
    if img.dtype == np.uint8:
        u8 = img
    elif np.issubdtype(img.dtype, np.floating):
        u8 = np.round(np.clip(img.astype(np.float64), 0, 1) * 255.0)
    else:
        raise TypeError(f"expected uint8 or float RGB, got {img.dtype}")
    if convert_to not in ("y", "gray"):
        raise ValueError("convert_to must be 'y' or 'gray'")
    if crop_border < 0:
        raise ValueError("crop_border must be >= 0")
    r, g, b = (_luma_tables(convert_to)[c][u8[..., c].astype(np.intp)] for c in range(3))
    if convert_to == "y":
        y = ((((r + g) + b + 16.0) / 255.0).astype(np.float32) * np.float32(255.0)).astype(np.float64)
    else:
        y = (((r + g) + b) * np.float32(255.0)).astype(np.float64)
    if crop_border:
        y = y[crop_border:-crop_border, crop_border:-crop_border]
    return np.round(y)


def niqe(img: np.ndarray, params: dict[str, np.ndarray], *, crop_border: int = 0, convert_to: str = "y") -> float:
    """NIQE of one (H, W, 3) RGB image (lower is better; natural photos ~2-10), same defaults as the torch
    ``niqe``. ``params``: :func:`load_pristine_params`. NaN when the image has too few usable blocks (e.g. flat);
    ValueError when it is smaller than 96x96 after ``crop_border``."""
    y = luma_for_niqe(np.asarray(img), crop_border, convert_to)
    feats = niqe_features(y, params["gaussian_window"])
    return niqe_from_features(feats, params["mu_pris_param"], params["cov_pris_param"])
