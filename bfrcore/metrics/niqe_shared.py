"""The parts of NIQE that need only numpy, shared by :mod:`bfrcore.metrics.niqe` (torch, batched, the evaluation's)
and :mod:`bfrcore.metrics.niqe_numpy` (its numpy twin, the build's): the constants, MATLAB's bicubic resampling
matrix, the pristine model's loader, the separable factor of its window and the final distance. Imports no torch.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

BLOCK = 96
WEIGHTS_NAME = "niqe-basicsr"

# Local-mean differences smaller than this (in 0-255 luma units) are exact zeros whose float value is rounding
# noise (a constant or symmetric neighbourhood: |noise| < 1e-11 here). Their sign decides which side of the AGGD
# fit a coefficient counts on, so without the snap NIQE moved by 0.24 between two BLAS kernels (TID2013 I19).
# Genuine differences of integer luma under this Gaussian are >= 1e-4 unless they cancel exactly.
MSCN_ZERO_TOL = 1e-8


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


@lru_cache(maxsize=64)
def matlab_resize_matrix(in_length: int, out_length: int, scale: float, antialiasing: bool = True) -> np.ndarray:
    """(out_length, in_length) float64 matrix of MATLAB ``imresize`` bicubic weights along one axis, with MATLAB's
    symmetric boundary handling (``aux = [1:n, n:-1:1]``) folded in. Row k is output pixel k's weights. Cached:
    callers must not modify it."""
    kernel_width = 4.0
    if scale < 1 and antialiasing:
        kernel_width = kernel_width / scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = math.ceil(kernel_width) + 2
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


@lru_cache(maxsize=4)
def load_pristine_params(path: str) -> dict[str, np.ndarray]:
    """mu_pris_param (1, 36), cov_pris_param (36, 36), gaussian_window (7, 7) float64 from BasicSR's
    ``niqe_pris_params.npz`` (weights entry ``niqe-basicsr``: ``bfrcore.weights.require("niqe-basicsr")``)."""
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


def niqe_from_features(feats: np.ndarray, mu_pris: np.ndarray, cov_pris: np.ndarray) -> float:
    """The NIQE distance of one image's (n_blocks, 36) features (BasicSR's final step): NaN blocks are dropped from
    the covariance and ignored in the mean; NaN when a feature is NaN in every block or fewer than 2 blocks are
    complete (decided before the mean, so no empty-slice warning)."""
    rows = feats[~np.isnan(feats).any(axis=1)]
    if rows.shape[0] < 2 or np.isnan(feats).all(axis=0).any():
        return float("nan")
    mu_d = np.nanmean(feats, axis=0)
    cov_d = np.cov(rows, rowvar=False)
    inv = np.linalg.pinv((cov_pris + cov_d) / 2)
    d = mu_pris - mu_d
    q = np.matmul(np.matmul(d, inv), np.transpose(d))
    return float(np.sqrt(np.squeeze(q)))
