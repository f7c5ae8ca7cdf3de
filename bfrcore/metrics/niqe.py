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
from bfrcore.metrics.niqe_shared import (  # noqa: F401  (re-exported: the module's public API)
    BLOCK,
    MSCN_ZERO_TOL,
    WEIGHTS_NAME,
    _separable_factor,
    load_pristine_params,
    matlab_resize_matrix,
    niqe_from_features,
)


# ----------------------------------------------------------------------------------------------- MATLAB imresize
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
