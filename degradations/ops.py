"""Degradation operators: pure functions of (image, parameters[, rng]).

Images are ``float32`` arrays (H, W, 3), RGB, values in [0, 1] (BasicSR's convention, in RGB instead of BGR);
``uint8`` (H, W, 3) RGB at the edges (:func:`to_float`, :func:`to_uint8`). Nothing here draws from a global RNG:
the noise functions take an explicit :class:`numpy.random.Generator`.

Conventions (see docs/degradations.md):

* :func:`blur` is ``cv2.filter2D(img, -1, kernel)``: correlation with reflect-101 borders (identical to convolution
  for the point-symmetric kernels of :mod:`degradations.kernels`). It is computed exactly (to float32 precision) by
  the cheapest of: separable passes of an exact low-rank factorisation, direct filtering, or an FFT product.
* :func:`resize` to an explicit (height, width): ``bilinear``/``bicubic``/``area``/``nearest`` are the OpenCV
  resamplers (half-pixel centres, as in GFPGAN / BasicSR); ``pil_bicubic`` is Pillow's antialiased bicubic
  (DFDNet, MATLAB-like).
* Gaussian noise: ``N(0, 1) · σ / 255`` per pixel and channel (``gray``: one plane repeated), then clip to [0, 1].
* Poisson noise: BasicSR's ``generate_poisson_noise`` (levels = 2^ceil(log2(#unique 8-bit values))).
* JPEG: clip, round to 8 bits, OpenCV encode/decode of the BGR image at an integer quality.
* Colour: additive per-channel shift; greyscale (ITU-R 601 luma, OpenCV weights); brightness / contrast /
  saturation / hue with the semantics of ``torchvision.transforms.functional`` on float tensors.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

#: Resampling modes accepted by :func:`resize`.
RESIZE_MODES = ("bilinear", "bicubic", "area", "nearest", "pil_bicubic")
_CV2_INTERP = {
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
}

#: A kernel entry / factorisation residual below this (in L1 over the kernel) is treated as zero by the fast blur:
#: the result differs from the direct formula by at most this much per pixel (images in [0, 1]), i.e. 2.5e-5 of an
#: 8-bit level — the size of float32 rounding in OpenCV's own filter.
BLUR_TOLERANCE = 1e-7


# ----------------------------------------------------------------------------------------------- conversion
def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 in [0, 1] (``img / 255``)."""
    if img.dtype == np.float32:
        return img
    if img.dtype != np.uint8:
        raise TypeError(f"expected uint8 or float32 image, got {img.dtype}")
    return img.astype(np.float32) * np.float32(1 / 255.0)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 with ``clip(round(x · 255), 0, 255)``, rounding half to even (cv2 / torch.round)."""
    if img.dtype == np.uint8:
        return img
    x = np.multiply(img, np.float32(255.0), dtype=np.float32)
    np.rint(x, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def check_image(img: np.ndarray, name: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3), got shape {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"{name} is empty: {img.shape}")
    if img.dtype not in (np.uint8, np.float32):
        raise TypeError(f"{name} must be uint8 or float32, got {img.dtype}")
    return img


# ----------------------------------------------------------------------------------------------- blur
def crop_kernel(kernel: np.ndarray, tol: float = BLUR_TOLERANCE) -> np.ndarray:
    """The smallest centred square sub-kernel whose discarded entries have L1 mass <= ``tol / 2`` (not
    renormalised: the discarded mass is the whole error)."""
    k = kernel.shape[0]
    c = k // 2
    a = np.abs(kernel)
    # mass outside the centred square of radius r, for r = c .. 0
    outside = 0.0
    r = c
    while r > 0:
        ring = a[c - r, c - r:c + r + 1].sum() + a[c + r, c - r:c + r + 1].sum() \
            + a[c - r + 1:c + r, c - r].sum() + a[c - r + 1:c + r, c + r].sum()
        if outside + ring > tol / 2:
            break
        outside += ring
        r -= 1
    return kernel[c - r:c + r + 1, c - r:c + r + 1]


def separable_factors(kernel: np.ndarray, tol: float = BLUR_TOLERANCE, max_rank: int | None = None):
    """Exact low-rank factorisation ``kernel ≈ Σ_i outer(ky_i, kx_i)`` with L1 residual <= ``tol / 2``, as a list
    of (ky, kx) float64 pairs, or None when more than ``max_rank`` terms would be needed.

    Fully pivoted cross approximation (rank-1 deflation at the largest remaining entry): exact after r steps for a
    rank-r kernel, and the residual is checked explicitly, so the error bound holds whatever the kernel. (Plain
    numpy, no LAPACK: a threaded BLAS call here costs far more than the whole blur on a busy 2-core machine.)"""
    res = np.array(kernel, dtype=np.float64, copy=True)
    limit = res.shape[0] if max_rank is None else min(max_rank, res.shape[0])
    factors = []
    while np.abs(res).sum() > tol / 2:
        if len(factors) >= limit:
            return None
        i, j = np.unravel_index(int(np.argmax(np.abs(res))), res.shape)
        col = res[:, j].copy()
        row = res[i, :] / res[i, j]
        factors.append((col, row))
        res -= col[:, None] * row[None, :]
    return factors


@lru_cache(maxsize=64)
def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b >= n (pocketfft's fastest sizes)."""
    best = 1 << (n - 1).bit_length()
    p3 = 1
    while p3 < best:
        p2 = p3
        while p2 < n:
            p2 *= 2
        best = min(best, p2)
        p3 *= 3
    return best


def _blur_fft(img: np.ndarray, kernel: np.ndarray, scale: float) -> np.ndarray:
    from scipy import fft

    h, w = img.shape[:2]
    r = kernel.shape[0] // 2
    ph, pw = _fast_len(h + 2 * r), _fast_len(w + 2 * r)
    # reflect-101 pad by r, then zeros up to the FFT size: linear convolution outputs k-1 .. P-1 never wrap
    padded = cv2.copyMakeBorder(img, r, r, r, r, cv2.BORDER_REFLECT_101)
    chw = np.zeros((img.shape[2], ph, pw), dtype=np.float32)
    chw[:, :h + 2 * r, :w + 2 * r] = padded.transpose(2, 0, 1)
    kf = fft.rfft2((kernel[::-1, ::-1] * scale).astype(np.float32), s=(ph, pw))
    spec = fft.rfft2(chw, workers=1)
    spec *= kf
    out = fft.irfft2(spec, s=(ph, pw), workers=1)
    k = kernel.shape[0]
    return np.ascontiguousarray(out[:, k - 1:k - 1 + h, k - 1:k - 1 + w].transpose(1, 2, 0))


#: Relative costs per output pixel used to pick a blur implementation (measured on 512x512x3 float32 with OpenCV
#: 5 / scipy pocketfft; only the choice depends on them, never the result beyond float32 rounding).
_COST_SEP_TAP = 1.0       # one tap of one separable pass
_COST_SEP_PASS = 6.0      # fixed cost of a sepFilter2D call (two passes, temporaries)
_COST_DIRECT_TAP = 0.55   # cv2.filter2D direct (kernels smaller than 11x11)
_COST_FFT = 110.0         # rfft2 + product + irfft2 at ~1.1x the image size


def blur(img: np.ndarray, kernel: np.ndarray, *, scale: float = 1.0, method: str = "auto") -> np.ndarray:
    """``cv2.filter2D(img, -1, kernel) · scale`` in float32 (reflect-101 borders).

    ``img`` is float32 or uint8 (use ``scale=1/255`` to get a [0, 1] result from a uint8 image in one pass).
    ``method``: ``auto`` (fastest exact), ``direct`` (cv2.filter2D), ``separable``, ``fft``.
    """
    check_image(img)
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"kernel must be square with odd size, got {kernel.shape}")
    if method == "direct":
        src = img if img.dtype == np.float32 else img.astype(np.float32)
        return cv2.filter2D(src, cv2.CV_32F, (kernel * scale).astype(np.float32))
    kc = crop_kernel(kernel)
    k = kc.shape[0]
    if k == 1:  # a delta (after cropping): a scaled copy
        return img.astype(np.float32) * np.float32(kc[0, 0] * scale)
    if method == "fft":
        return _blur_fft(img, kc, scale)
    max_rank = None if method == "separable" else max(0, int((_COST_FFT - _COST_SEP_PASS) //
                                                             (2 * k * _COST_SEP_TAP + _COST_SEP_PASS)))
    factors = separable_factors(kc, max_rank=max_rank) if max_rank != 0 else None
    if method == "separable" and factors is None:
        raise ValueError("kernel is not separable")
    cost_sep = len(factors) * (2 * k * _COST_SEP_TAP + _COST_SEP_PASS) if factors else math.inf
    cost_direct = k * k * _COST_DIRECT_TAP if k < 11 else math.inf
    if method == "auto" and min(cost_sep, cost_direct) > _COST_FFT:
        return _blur_fft(img, kc, scale)
    if method == "auto" and cost_direct < cost_sep:
        src = img if img.dtype == np.float32 else img.astype(np.float32)
        return cv2.filter2D(src, cv2.CV_32F, (kc * scale).astype(np.float32))
    out = None
    for ky, kx in factors:
        part = cv2.sepFilter2D(img, cv2.CV_32F, (kx * scale).astype(np.float32), ky.astype(np.float32))
        out = part if out is None else cv2.add(out, part)
    return out


# ----------------------------------------------------------------------------------------------- resize
def resize(img: np.ndarray, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """Resample to ``size = (height, width)``. A no-op (same array) when the size already matches."""
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"target size must be positive, got {size}")
    if img.shape[0] == h and img.shape[1] == w:
        return img
    if mode == "pil_bicubic":
        from PIL import Image

        src = to_float(img)
        chans = [np.asarray(Image.fromarray(np.ascontiguousarray(src[:, :, c]), mode="F").resize(
            (w, h), Image.Resampling.BICUBIC), dtype=np.float32) for c in range(src.shape[2])]
        return np.ascontiguousarray(np.stack(chans, axis=2))
    try:
        interp = _CV2_INTERP[mode]
    except KeyError:
        raise ValueError(f"unknown resize mode {mode!r}; use one of {RESIZE_MODES}") from None
    return cv2.resize(img, (w, h), interpolation=interp)


def downscaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """``(max(1, floor(h / scale)), max(1, floor(w / scale)))`` — GFPGAN's ``int(w // scale)``."""
    return max(1, math.floor(h / scale)), max(1, math.floor(w / scale))


# ----------------------------------------------------------------------------------------------- noise
def gaussian_noise(shape: tuple[int, int, int], sigma: float, rng: np.random.Generator,
                   gray: bool = False) -> np.ndarray:
    """float32 noise ``N(0,1) · σ / 255`` of ``shape`` (H, W, C); ``gray``: one (H, W) plane for all channels."""
    h, w, c = shape
    s = np.float32(sigma / 255.0)
    if gray:
        plane = rng.standard_normal((h, w), dtype=np.float32)
        plane *= s
        return np.repeat(plane[:, :, None], c, axis=2)
    noise = rng.standard_normal((h, w, c), dtype=np.float32)
    noise *= s
    return noise


def add_gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator, gray: bool = False,
                       clip: bool = True) -> np.ndarray:
    out = gaussian_noise(img.shape, sigma, rng, gray)
    out += img
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out


def _rgb_to_gray_cv(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def poisson_noise(img: np.ndarray, scale: float, rng: np.random.Generator, gray: bool = False) -> np.ndarray:
    """BasicSR ``generate_poisson_noise``: quantise to 8 bits, ``vals = 2^ceil(log2(#unique levels))``,
    ``noise = (Poisson(img · vals) / vals − img) · scale`` (float32; ``gray``: from the luma, repeated)."""
    src = _rgb_to_gray_cv(img) if gray else img
    levels = np.clip(np.rint(src * np.float32(255.0)), 0, 255).astype(np.uint8)
    n_unique = int(np.count_nonzero(np.bincount(levels.ravel(), minlength=256)))
    vals = float(2 ** math.ceil(math.log2(max(n_unique, 1))))
    q = levels.astype(np.float32) / np.float32(255.0)
    out = (rng.poisson(q * vals) / vals).astype(np.float32)
    noise = out - q
    if gray:
        noise = np.repeat(noise[:, :, None], img.shape[2], axis=2)
    return noise * np.float32(scale)


def add_poisson_noise(img: np.ndarray, scale: float, rng: np.random.Generator, gray: bool = False,
                      clip: bool = True) -> np.ndarray:
    out = img + poisson_noise(img, scale, rng, gray)
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out


# ----------------------------------------------------------------------------------------------- jpeg
def jpeg_uint8(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip of a uint8 RGB image at integer ``quality`` (1–100), OpenCV codec, BGR channel order."""
    q = int(quality)
    if q != quality or not 0 <= q <= 100:
        raise ValueError(f"JPEG quality must be an integer in [0, 100], got {quality!r}")
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, enc = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), q])
    if not ok:
        raise RuntimeError("cv2.imencode('.jpg') failed")
    return cv2.cvtColor(cv2.imdecode(enc, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """BasicSR ``add_jpg_compression`` on a float image: clip to [0, 1], round to 8 bits, encode/decode, /255."""
    return to_float(jpeg_uint8(to_uint8(img), quality))


# ----------------------------------------------------------------------------------------------- colour
def color_shift(img: np.ndarray, shift) -> np.ndarray:
    """GFPGAN ``color_jitter``: add a per-channel offset (R, G, B; [0, 1] scale), clip to [0, 1]."""
    out = img + np.asarray(shift, dtype=np.float32).reshape(1, 1, 3)
    return np.clip(out, 0.0, 1.0, out=out)


def to_gray(img: np.ndarray) -> np.ndarray:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` (OpenCV), repeated to 3 channels."""
    g = _rgb_to_gray_cv(img)
    return np.repeat(g[:, :, None], 3, axis=2)


_TV_GRAY = (0.2989, 0.587, 0.114)  # torchvision rgb_to_grayscale


def _tv_gray(img: np.ndarray) -> np.ndarray:
    r, g, b = img[:, :, 0], img[:, :, 1], img[:, :, 2]
    return (np.float32(_TV_GRAY[0]) * r + np.float32(_TV_GRAY[1]) * g + np.float32(_TV_GRAY[2]) * b).astype(
        np.float32)


def _blend(a: np.ndarray, b, ratio: float) -> np.ndarray:
    out = np.float32(ratio) * a + np.float32(1.0 - ratio) * b
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """torchvision ``adjust_brightness``: ``clip(factor · img)``."""
    return _blend(img, np.float32(0.0), factor)


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """torchvision ``adjust_contrast``: blend with the mean grey level of the image."""
    mean = np.float32(_tv_gray(img).mean(dtype=np.float64))
    return _blend(img, mean, factor)


def adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """torchvision ``adjust_saturation``: blend with the greyscale image."""
    return _blend(img, _tv_gray(img)[:, :, None], factor)


def adjust_hue(img: np.ndarray, factor: float) -> np.ndarray:
    """torchvision ``adjust_hue``: rotate the hue by ``factor`` (in [-0.5, 0.5]) turns in HSV space (OpenCV's float
    HSV conversion: the same hexcone model, equal to torchvision's to ~1e-6)."""
    if not -0.5 <= factor <= 0.5:
        raise ValueError(f"hue factor must be in [-0.5, 0.5], got {factor}")
    hsv = cv2.cvtColor(np.ascontiguousarray(img, dtype=np.float32), cv2.COLOR_RGB2HSV)
    h = hsv[:, :, 0]
    h += np.float32(360.0 * factor)
    np.mod(h, np.float32(360.0), out=h)
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(out, 0.0, 1.0, out=out)


JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


def color_jitter(img: np.ndarray, order, brightness: float, contrast: float, saturation: float,
                 hue: float) -> np.ndarray:
    """GFPGAN ``color_jitter_pt``: apply the four adjustments in ``order`` (a permutation of 0..3 indexing
    :data:`JITTER_OPS`)."""
    fns = (lambda x: adjust_brightness(x, brightness), lambda x: adjust_contrast(x, contrast),
           lambda x: adjust_saturation(x, saturation), lambda x: adjust_hue(x, hue))
    for i in order:
        img = fns[int(i)](img)
    return img
