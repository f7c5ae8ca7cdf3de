"""NIQE (Mittal et al. 2013) exactly as BasicSR ``calculate_niqe`` computes it, batched in torch (float64).

Convention ``basicsr`` (the default, what face-restoration papers quote): MATLAB ``rgb2ycbcr`` luma of the 8-bit
image (BasicSR ``to_y_channel``), ``crop_border`` cut, **rounded** to integers, cropped to whole 96x96 blocks;
two scales, the second made with MATLAB's bicubic ``imresize(img/255, 0.5)`` (antialiasing on, reproduced here as a
resampling matrix, see :func:`matlab_imresize`); per block 18 AGGD features (7x7 Gaussian-normalised MSCN
coefficients and their 4 pairwise products, the ``gamma`` grid 0.2:0.001:10); the pristine model
``niqe_pris_params.npz`` (weights entry ``niqe-basicsr``); ``sqrt((μp−μd)ᵀ pinv((Σp+Σd)/2) (μp−μd))`` with NaN
blocks dropped from the covariance. BasicSR runs in float32 in places; this implementation stays in float64, so it
is also within 1e-5 of MATLAB R2021a on BasicSR's baboon oracle (see docs/evaluation.md for the measured numbers).
"""

from __future__ import annotations

import contextlib
import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from bfrcore.metrics.functional import gaussian_filter_valid, plane_parallel, rgb_to_y, to_uint8_grid

BLOCK = 96
WEIGHTS_NAME = "niqe-basicsr"


# ----------------------------------------------------------------------------------------------- MATLAB imresize
def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


@lru_cache(maxsize=64)
def matlab_resize_matrix(in_length: int, out_length: int, scale: float, antialiasing: bool = True) -> np.ndarray:
    """(out_length, in_length) float64 matrix of MATLAB ``imresize`` bicubic weights along one axis, with MATLAB's
    symmetric boundary handling (``aux = [1:n, n:-1:1]``) folded in. Row k is output pixel k's weights."""
    kernel_width = 4.0
    if scale < 1 and antialiasing:
        kernel_width = kernel_width / scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(p, dtype=np.float64)[None, :]  # 1-based
    dist = u[:, None] - indices
    if scale < 1 and antialiasing:
        weights = scale * _cubic(dist * scale)
    else:
        weights = _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    idx = aux[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    m = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.repeat(np.arange(out_length), p)
    np.add.at(m, (rows, idx.reshape(-1)), weights.reshape(-1))
    return m


def matlab_imresize(img: torch.Tensor, scale: float, antialiasing: bool = True) -> torch.Tensor:
    """MATLAB ``imresize(img, scale)`` (bicubic) of (..., H, W) float tensors; output size ``ceil(scale·H/W)``."""
    h, w = img.shape[-2:]
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    mh = torch.from_numpy(matlab_resize_matrix(h, oh, float(scale), antialiasing)).to(img)
    mw = torch.from_numpy(matlab_resize_matrix(w, ow, float(scale), antialiasing)).to(img)
    return mh @ img @ mw.t()


# ----------------------------------------------------------------------------------------------- AGGD features
@lru_cache(maxsize=1)
def _gamma_tables(device: str = "cpu"):
    """The BasicSR search grid and the gamma-function ratios at every grid point (scipy, float64)."""
    from scipy.special import gamma

    gam = np.arange(0.2, 10.001, 0.001)
    rec = np.reciprocal(gam)
    r_gam = np.square(gamma(rec * 2)) / (gamma(rec) * gamma(rec * 3))
    beta_scale = np.sqrt(gamma(1 / gam) / gamma(3 / gam))
    mean_scale = gamma(2 / gam) / gamma(1 / gam)
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    return to(gam), to(r_gam), to(beta_scale), to(mean_scale)


def _nearest_index(r_gam: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``argmin((r_gam - target)²)`` (first index on ties; 0 for NaN targets, like numpy), using that r_gam is
    strictly increasing on the grid (checked once)."""
    if not bool((r_gam[1:] > r_gam[:-1]).all()):  # pragma: no cover - a property of the grid
        d = (r_gam[None, :] - target.reshape(-1, 1)) ** 2
        return torch.nan_to_num(d, nan=math.inf).argmin(dim=1).view_as(target)
    n = r_gam.numel()
    t = target.contiguous()
    hi = torch.searchsorted(r_gam, t).clamp(1, n - 1)
    lo = hi - 1
    d_lo = (r_gam[lo] - t) ** 2
    d_hi = (r_gam[hi] - t) ** 2
    idx = torch.where(d_hi < d_lo, hi, lo)
    return torch.where(torch.isnan(t), torch.zeros_like(idx), idx)


def aggd_params(x: torch.Tensor):
    """Asymmetric generalised Gaussian fit per block: x (..., N) -> (alpha, beta_l, beta_r, grid index)."""
    gam, r_gam, beta_scale, _ = _gamma_tables(str(x.device))
    sq = x * x
    neg, pos = x < 0, x > 0
    left_std = torch.sqrt((sq * neg).sum(-1) / neg.sum(-1))
    right_std = torch.sqrt((sq * pos).sum(-1) / pos.sum(-1))
    gammahat = left_std / right_std
    rhat = x.abs().mean(-1) ** 2 / sq.mean(-1)
    rhatnorm = (rhat * (gammahat ** 3 + 1) * (gammahat + 1)) / ((gammahat ** 2 + 1) ** 2)
    idx = _nearest_index(r_gam, rhatnorm)
    return gam[idx], left_std * beta_scale[idx], right_std * beta_scale[idx], idx


def block_features(blocks: torch.Tensor) -> torch.Tensor:
    """BasicSR ``compute_feature`` for (..., h, w) blocks of MSCN coefficients -> (..., 18)."""
    _, _, _, mean_scale = _gamma_tables(str(blocks.device))
    flat = blocks.flatten(-2)
    alpha, bl, br, _ = aggd_params(flat)
    feats = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        shifted = torch.roll(blocks, shifts=shift, dims=(-2, -1))
        a, bl, br, idx = aggd_params((blocks * shifted).flatten(-2))
        feats += [a, (br - bl) * mean_scale[idx], bl, br]
    return torch.stack(feats, dim=-1)


# ----------------------------------------------------------------------------------------------- NIQE
@lru_cache(maxsize=4)
def load_pristine_params(path: str) -> dict[str, np.ndarray]:
    """mu_pris_param (1, 36), cov_pris_param (36, 36), gaussian_window (7, 7) from BasicSR's npz."""
    with np.load(path) as z:
        out = {k: np.asarray(z[k], dtype=np.float64) for k in ("mu_pris_param", "cov_pris_param", "gaussian_window")}
    return out


def _separable_factor(window: np.ndarray) -> tuple[float, ...]:
    """The 1-D factor k with outer(k, k) == window, from the centre row and column (no SVD: a LAPACK/BLAS kernel
    choice must not move it by a single bit; an SVD does, see docs/evaluation.md "Same numbers on any CPU")."""
    w = np.asarray(window, dtype=np.float64)
    c = w.shape[0] // 2
    k = w[:, c] / np.sqrt(w[c, c])
    if not np.allclose(np.outer(k, k), w, rtol=1e-12, atol=1e-15):
        raise ValueError("the NIQE window is not separable")
    return tuple(float(v) for v in k)


# Local-mean differences smaller than this (in 0-255 luma units) are exact zeros whose float value is rounding
# noise (a constant or symmetric neighbourhood: |noise| < 1e-11 here). Their sign decides which side of the AGGD
# fit a coefficient counts on, so without the snap NIQE moved by 0.24 between two BLAS kernels (TID2013 I19).
# Genuine differences of integer luma under this Gaussian are >= 1e-4 unless they cancel exactly.
MSCN_ZERO_TOL = 1e-8


def _mscn(img: torch.Tensor, window_1d: tuple[float, ...]) -> torch.Tensor:
    """(B, H, W) -> (img - mu) / (sigma + 1) with scipy ``convolve(mode='nearest')`` local statistics; differences
    below :data:`MSCN_ZERO_TOL` are set to exactly 0 (kernel-independent)."""
    r = len(window_1d) // 2
    x = img.unsqueeze(1)
    stack = torch.cat([x, x * x], dim=1)
    padded = F.pad(stack, (r, r, r, r), mode="replicate")
    f = gaussian_filter_valid(padded, window_1d)
    mu = f[:, 0]
    sigma = torch.sqrt(torch.abs(f[:, 1] - mu * mu))
    diff = img - mu
    diff = torch.where(diff.abs() < MSCN_ZERO_TOL, torch.zeros_like(diff), diff)
    return diff / (sigma + 1)


def niqe_features(y: torch.Tensor, window: np.ndarray, block: int = BLOCK) -> torch.Tensor:
    """(B, H, W) rounded luma (0-255 float64) -> (B, n_blocks, 36) features, blocks ordered as BasicSR's loops."""
    b, h, w = y.shape
    nbh, nbw = h // block, w // block
    if nbh == 0 or nbw == 0:
        raise ValueError(f"NIQE needs images of at least {block}x{block} pixels, got {h}x{w}")
    img = y[:, :nbh * block, :nbw * block]
    window_1d = _separable_factor(window)
    feats = []
    with plane_parallel() if img.device.type == "cpu" else contextlib.nullcontext():
        for scale in (1, 2):
            mscn = _mscn(img, window_1d)
            bs = block // scale
            blocks = mscn.view(b, nbh, bs, nbw, bs).permute(0, 3, 1, 2, 4).reshape(b, nbw * nbh, bs, bs)
            feats.append(block_features(blocks))
            if scale == 1:
                img = matlab_imresize(img / 255.0, 0.5) * 255.0
    return torch.cat(feats, dim=-1)


def niqe_from_features(feats: np.ndarray, mu_pris: np.ndarray, cov_pris: np.ndarray) -> float:
    """The NIQE distance of one image's (n_blocks, 36) features (numpy, exactly BasicSR's final step)."""
    mu_d = np.nanmean(feats, axis=0)
    rows = feats[~np.isnan(feats).any(axis=1)]
    if rows.shape[0] < 2 or np.isnan(mu_d).any():
        return float("nan")
    cov_d = np.cov(rows, rowvar=False)
    inv = np.linalg.pinv((cov_pris + cov_d) / 2)
    d = mu_pris - mu_d
    q = np.matmul(np.matmul(d, inv), np.transpose(d))
    return float(np.sqrt(np.squeeze(q)))


def luma_for_niqe(img: torch.Tensor, crop_border: int = 0, convert_to: str = "y") -> torch.Tensor:
    """BasicSR ``calculate_niqe`` preprocessing of (B, 3, H, W) RGB -> (B, H', W') rounded float64 luma."""
    if convert_to == "y":
        y = rgb_to_y(img, "basicsr")[:, 0]
    elif convert_to == "gray":  # cv2.cvtColor(BGR2GRAY) on float32 [0, 1], ×255
        u = to_uint8_grid(img).to(torch.float32) / 255.0
        w = torch.tensor((0.299, 0.587, 0.114), dtype=torch.float32, device=img.device)
        y = (torch.einsum("bchw,c->bhw", u, w) * 255.0).to(torch.float64)
    else:
        raise ValueError("convert_to must be 'y' or 'gray'")
    if crop_border:
        y = y[:, crop_border:-crop_border, crop_border:-crop_border]
    return torch.round(y)


def niqe(img: torch.Tensor, params: dict[str, np.ndarray], *, crop_border: int = 0,
         convert_to: str = "y") -> torch.Tensor:
    """NIQE per image (lower is better), (B,) float64. ``img``: (B, 3, H, W) RGB uint8 or float in [0, 1]."""
    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB, got {tuple(img.shape)}")
    y = luma_for_niqe(img, crop_border, convert_to)

    def one(i: int) -> float:
        f = niqe_features(y[i:i + 1], params["gaussian_window"])[0].cpu().numpy()
        return niqe_from_features(f, params["mu_pris_param"], params["cov_pris_param"])

    if y.device.type == "cpu":
        with plane_parallel() as pmap:
            vals = list(pmap(one, range(y.shape[0])))
    else:
        feats = niqe_features(y, params["gaussian_window"]).cpu().numpy()
        vals = [niqe_from_features(f, params["mu_pris_param"], params["cov_pris_param"]) for f in feats]
    return torch.tensor(vals, dtype=torch.float64)
