"""Blur kernels: pure, deterministic builders (no randomness here; sampling lives in :mod:`degradations.sampling`).

Every builder returns a ``float64`` array of shape (k, k), k odd, that sums to 1, and follows the formulas of
BasicSR ``basicsr/data/degradations.py`` (see docs/degradations.md, "Kernels"):

* grid: ``ax = arange(-k//2 + 1, k//2 + 1)``; x is the column offset, y the row offset (rows point down);
* bivariate Gaussian: ``exp(-1/2 q)`` with ``q = xᵀ Σ⁻¹ x``, ``Σ = R diag(σx², σy²) Rᵀ``, ``R = [[cos θ, -sin θ],
  [sin θ, cos θ]]``; isotropic: ``Σ = σx² I``;
* generalized Gaussian: ``exp(-1/2 q^β)``; plateau: ``1 / (q^β + 1)``;
* sinc (circular low-pass): ``ω_c J1(ω_c r) / (2π r)``, centre ``ω_c² / (4π)``, optionally zero-padded;
* motion: a straight segment of ``length`` pixels through the centre at ``angle`` degrees (counter-clockwise from
  the +x axis, y up), rasterised with bilinear weights from 16 samples per pixel of length (our addition).

``q`` is evaluated in rotated coordinates, ``q = u²/σx² + v²/σy²`` with ``u = x cos θ + y sin θ``,
``v = -x sin θ + y cos θ`` — algebraically the same as BasicSR's ``xᵀ inv(Σ) x``, but never negative and finite for
tiny σ. A σ below :data:`SIGMA_MIN` is raised to it (the limit of a Gaussian on the integer grid: a delta).
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache

import numpy as np

#: Smallest σ a Gaussian-family kernel is evaluated at (σ = 0 means "no blur", i.e. a delta on the grid).
SIGMA_MIN = 1e-3
#: Kernel types understood by :func:`build_kernel`.
GAUSSIAN_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
KERNEL_TYPES = GAUSSIAN_TYPES + ("sinc", "motion")


def _check_size(kernel_size: int) -> int:
    k = int(kernel_size)
    if k != kernel_size or k < 1 or k % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {kernel_size!r}")
    return k


@lru_cache(maxsize=64)
def _grid(kernel_size: int) -> tuple[np.ndarray, np.ndarray]:
    ax = np.arange(-kernel_size // 2 + 1.0, kernel_size // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    xx.setflags(write=False)
    yy.setflags(write=False)
    return xx, yy


def mesh_grid(kernel_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(xx, yy), each (k, k): column and row offsets from the centre (BasicSR ``mesh_grid`` without ``xy``)."""
    return _grid(_check_size(kernel_size))


def sigma_matrix2(sig_x: float, sig_y: float, theta: float) -> np.ndarray:
    """Σ = R diag(σx², σy²) Rᵀ (2x2)."""
    d = np.array([[sig_x ** 2, 0.0], [0.0, sig_y ** 2]])
    u = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return u @ d @ u.T


def quadratic_form(kernel_size: int, sig_x: float, sig_y: float, theta: float, isotropic: bool) -> np.ndarray:
    """q = xᵀ Σ⁻¹ x on the kernel grid."""
    xx, yy = mesh_grid(kernel_size)
    sx = max(float(sig_x), SIGMA_MIN)
    if isotropic:
        return (xx * xx + yy * yy) / (sx * sx)
    sy = max(float(sig_y), SIGMA_MIN)
    c, s = math.cos(theta), math.sin(theta)
    u = xx * c + yy * s
    v = yy * c - xx * s
    return (u * u) / (sx * sx) + (v * v) / (sy * sy)


def _normalise(k: np.ndarray) -> np.ndarray:
    total = k.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("kernel has no mass (non-finite or zero sum)")
    return k / total


def bivariate_gaussian(kernel_size: int, sig_x: float, sig_y: float | None = None, theta: float = 0.0,
                       isotropic: bool = True) -> np.ndarray:
    """Isotropic (only ``sig_x`` used) or anisotropic Gaussian kernel, normalised to sum 1."""
    q = quadratic_form(kernel_size, sig_x, sig_x if sig_y is None else sig_y, theta, isotropic)
    return _normalise(np.exp(-0.5 * q))


def bivariate_generalized_gaussian(kernel_size: int, sig_x: float, sig_y: float | None, theta: float, beta: float,
                                   isotropic: bool = True) -> np.ndarray:
    """exp(-1/2 q^β), normalised (β = 1 is the Gaussian)."""
    q = quadratic_form(kernel_size, sig_x, sig_x if sig_y is None else sig_y, theta, isotropic)
    return _normalise(np.exp(-0.5 * np.power(q, beta)))


def bivariate_plateau(kernel_size: int, sig_x: float, sig_y: float | None, theta: float, beta: float,
                      isotropic: bool = True) -> np.ndarray:
    """1 / (q^β + 1), normalised."""
    q = quadratic_form(kernel_size, sig_x, sig_x if sig_y is None else sig_y, theta, isotropic)
    return _normalise(np.reciprocal(np.power(q, beta) + 1.0))


def circular_lowpass_kernel(cutoff: float, kernel_size: int, pad_to: int = 0) -> np.ndarray:
    """2-D sinc (ideal circular low-pass) with cut-off ``cutoff`` in radians (π is Nyquist), normalised, then
    zero-padded to ``pad_to`` (odd) when larger."""
    from scipy import special

    k = _check_size(kernel_size)
    c = (k - 1) / 2
    yy, xx = np.mgrid[0:k, 0:k].astype(np.float64)
    r = np.sqrt((xx - c) ** 2 + (yy - c) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
    kernel[k // 2, k // 2] = cutoff ** 2 / (4 * np.pi)
    kernel = _normalise(kernel)
    if pad_to and pad_to > k:
        _check_size(pad_to)
        p = (pad_to - k) // 2
        kernel = np.pad(kernel, ((p, p), (p, p)))
    return kernel


def motion_kernel(kernel_size: int, length: float, angle: float) -> np.ndarray:
    """Linear motion blur: a centred segment of ``length`` pixels at ``angle`` degrees (counter-clockwise from +x,
    image y pointing down), rasterised by bilinear splatting of evenly spaced samples; point-symmetric, sums to 1.
    ``length`` is clipped to ``kernel_size - 1`` so the segment stays inside the kernel."""
    k = _check_size(kernel_size)
    length = float(min(max(length, 0.0), k - 1))
    c = k // 2
    n = max(2, math.ceil(length * 16)) + 1
    t = np.linspace(-length / 2, length / 2, n)
    a = math.radians(angle)
    xs = c + t * math.cos(a)
    ys = c - t * math.sin(a)
    kernel = np.zeros((k, k), dtype=np.float64)
    x0 = np.floor(xs).astype(int)
    y0 = np.floor(ys).astype(int)
    fx = xs - x0
    fy = ys - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi = np.clip(x0 + dx, 0, k - 1)
        yi = np.clip(y0 + dy, 0, k - 1)
        np.add.at(kernel, (yi, xi), w)
    # exact point symmetry (the sample set is symmetric; this removes floating-point asymmetry)
    kernel = 0.5 * (kernel + kernel[::-1, ::-1])
    return _normalise(kernel)


def gaussian_1d(kernel_size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian on ``arange(-k//2+1, k//2+1)``; ``outer(g, g)`` equals the isotropic 2-D kernel."""
    k = _check_size(kernel_size)
    ax = np.arange(-k // 2 + 1.0, k // 2 + 1.0)
    s = max(float(sigma), SIGMA_MIN)
    return _normalise(np.exp(-0.5 * (ax * ax) / (s * s)))


def build_kernel(kernel_type: str, kernel_size: int, *, sigma_x: float | None = None, sigma_y: float | None = None,
                 theta: float | None = None, beta: float | None = None, omega_c: float | None = None,
                 motion_length: float | None = None, motion_angle: float | None = None,
                 pad_to: int = 0) -> np.ndarray:
    """Dispatch on ``kernel_type`` (one of :data:`KERNEL_TYPES`) with the analytic parameters of that type."""
    iso = kernel_type.endswith("_iso") or kernel_type == "iso"
    if kernel_type in ("iso", "aniso"):
        k = bivariate_gaussian(kernel_size, sigma_x, sigma_y, theta or 0.0, isotropic=iso)
    elif kernel_type in ("generalized_iso", "generalized_aniso"):
        k = bivariate_generalized_gaussian(kernel_size, sigma_x, sigma_y, theta or 0.0, beta, isotropic=iso)
    elif kernel_type in ("plateau_iso", "plateau_aniso"):
        k = bivariate_plateau(kernel_size, sigma_x, sigma_y, theta or 0.0, beta, isotropic=iso)
    elif kernel_type == "sinc":
        k = circular_lowpass_kernel(omega_c, kernel_size)
    elif kernel_type == "motion":
        k = motion_kernel(kernel_size, motion_length, motion_angle)
    else:
        raise ValueError(f"unknown kernel type {kernel_type!r}; use one of {KERNEL_TYPES}")
    if pad_to and pad_to > k.shape[0]:
        p = (pad_to - k.shape[0]) // 2
        k = np.pad(k, ((p, p), (p, p)))
    return k


def kernel_sha256(kernel: np.ndarray | None) -> str | None:
    """sha256 of a kernel as float64 C-order bytes, prefixed with its shape (None for no kernel)."""
    if kernel is None:
        return None
    k = np.ascontiguousarray(np.asarray(kernel, dtype=np.float64))
    h = hashlib.sha256(f"float64:{'x'.join(map(str, k.shape))}:".encode())
    h.update(k.tobytes())
    return h.hexdigest()
