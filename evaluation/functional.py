"""Pure, batched full-reference image metrics: PSNR, SSIM, MS-SSIM and the colour conversions behind them.

Every function takes ``pred`` and ``target`` as (B, 3, H, W) tensors — float in [0, 1] or uint8 — on any device and
returns a float64 tensor of shape (B,). Conventions are explicit keyword arguments:

``convention='basicsr'`` (default; BasicSR ``calculate_psnr`` / ``calculate_ssim``, identical to the MATLAB scripts
most face-restoration papers quote)
    inputs are put on the 8-bit grid (``round(clamp(x, 0, 1) * 255)``, what a saved PNG holds), ``crop_border``
    pixels are cut from each edge, ``test_y_channel`` uses MATLAB ``rgb2ycbcr`` BT.601 luma
    ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (R, G, B in [0, 1]; **not** rounded, with BasicSR's float32
    intermediate), float64 arithmetic, PSNR = ``10 log10(255² / MSE)`` (``inf`` when identical), SSIM with an
    11x11 Gaussian window (σ = 1.5), 'valid' filtering, C1 = (0.01·255)², C2 = (0.03·255)², per-channel mean.
``convention='pyiqa'`` (IQA-PyTorch ``psnr``, ``psnry``, ``ssim``, ``ssimc``, ``ms_ssim``)
    PSNR on [0, 1] values ``10 log10(1 / (MSE + 1e-8))``, Y = YIQ luma ``0.299 R + 0.587 G + 0.114 B``; SSIM on
    ``round(255 · Y_yiq)`` (or ``round(255 · RGB)``), the contrast-structure map clamped at 0 (ReLU), optional
    MATLAB-style ``downsample``.
``convention='matlab'`` (SSIM only: Wang et al.'s ``ssim.m`` on MATLAB ``rgb2gray`` input, as in pyiqa's
"official" calibration column; no automatic downsampling)
    ``Y = round(0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B)`` on the 8-bit grid.

The Gaussian filter is separable and applied in float64; on CPU it runs as banded matrix products (BLAS), on CUDA
as two 1-D convolutions.
"""

from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

CONVENTIONS = ("basicsr", "pyiqa", "matlab")

#: BasicSR / MATLAB rgb2ycbcr luma weights for R, G, B in [0, 1] (output on the 0-255 scale, + 16)
BT601_Y = (65.481, 128.553, 24.966)
#: pyiqa rgb2yiq matrix (rows Y, I, Q), applied to [0, 1] RGB
YIQ = ((0.299, 0.587, 0.114), (0.5959, -0.2746, -0.3213), (0.2115, -0.5227, 0.3112))
#: MATLAB rgb2gray weights (the inverse of the NTSC YIQ matrix's first row, as MATLAB computes them)
MATLAB_GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)
#: MS-SSIM scale weights (Wang et al. 2003; pyiqa)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


# ----------------------------------------------------------------------------------------------- threads
@contextlib.contextmanager
def plane_parallel():
    """Run per-plane CPU work with single-threaded torch ops on a pool of ``torch.get_num_threads()`` Python threads.

    The planes of a batch are independent and each fits in cache; intra-op threading of their small GEMMs and
    elementwise ops only adds synchronisation (measured 10-100x slower on 2 shared cores). Yields a ``map``."""
    n = torch.get_num_threads()
    if n <= 1:
        yield map
        return
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=n) as pool:
            yield pool.map
    finally:
        torch.set_num_threads(n)


# ----------------------------------------------------------------------------------------------- inputs
def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim != 4 or pred.shape[1] not in (1, 3):
        raise ValueError(f"expected (B, 3, H, W) or (B, 1, H, W) tensors, got {tuple(pred.shape)}")


def _check_convention(convention: str, allowed=CONVENTIONS) -> None:
    if convention not in allowed:
        raise ValueError(f"unknown convention {convention!r}; choose from {allowed}")


def to_uint8_grid(x: torch.Tensor) -> torch.Tensor:
    """Values on the 8-bit grid as float64 in [0, 255]: uint8 input as is, float input ``round(clamp(x,0,1)·255)``."""
    if x.dtype == torch.uint8:
        return x.to(torch.float64)
    return torch.round(x.to(torch.float64).clamp(0, 1) * 255.0)


def _as_uint8(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x
    return torch.round(x.to(torch.float64).clamp(0, 1) * 255.0).to(torch.uint8)


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats (uint8 input divided by 255 in float32, like ``ToTensor``); float input unchanged."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0
    if not torch.is_floating_point(x):
        raise TypeError(f"expected a float or uint8 tensor, got {x.dtype}")
    return x


def _crop(x: torch.Tensor, crop_border: int) -> torch.Tensor:
    if crop_border < 0:
        raise ValueError("crop_border must be >= 0")
    if crop_border == 0:
        return x
    if 2 * crop_border >= min(x.shape[-2:]):
        raise ValueError(f"crop_border {crop_border} leaves nothing of a {tuple(x.shape[-2:])} image")
    return x[..., crop_border:-crop_border, crop_border:-crop_border]


# ----------------------------------------------------------------------------------------------- colour
def rgb_to_y(x: torch.Tensor, convention: str = "basicsr") -> torch.Tensor:
    """Luma of (B, 3, H, W) RGB on the 0-255 scale, float64, shape (B, 1, H, W).

    - ``basicsr``: MATLAB ``rgb2ycbcr`` Y (BT.601, offset 16), computed exactly as BasicSR ``to_y_channel`` does on
      8-bit input (float32 ``u8/255``, float64 dot product, float32 result, ×255 in float32); **not rounded**.
    - ``pyiqa``: YIQ luma ``0.299 R + 0.587 G + 0.114 B`` of the [0, 1] input in the input's float precision, ×255,
      **not rounded** (pyiqa rounds only inside SSIM/MS-SSIM; see :func:`ssim`).
    - ``matlab``: MATLAB ``rgb2gray`` of 8-bit input, rounded to integers.
    """
    _check_convention(convention)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"rgb_to_y expects (B, 3, H, W), got {tuple(x.shape)}")
    if convention == "basicsr":
        x32 = to_uint8_grid(x).to(torch.float32) / 255.0
        w = torch.tensor(BT601_Y, dtype=torch.float64, device=x.device)
        y64 = torch.einsum("bchw,c->bhw", x32.to(torch.float64), w) + 16.0
        y32 = (y64 / 255.0).to(torch.float32) * 255.0
        return y32.to(torch.float64).unsqueeze(1)
    if convention == "pyiqa":
        return (_yiq_luma(to_unit_float(x)) * 255.0).to(torch.float64)
    u8 = to_uint8_grid(x)
    w = torch.tensor(MATLAB_GRAY, dtype=torch.float64, device=x.device)
    return torch.round(torch.einsum("bchw,c->bhw", u8, w)).unsqueeze(1)


def _yiq_luma(xf: torch.Tensor) -> torch.Tensor:
    """pyiqa ``rgb2yiq(x)[:, :1]``: the full 3x3 YIQ product in the input's precision (same rounding as pyiqa)."""
    m = torch.tensor(YIQ, dtype=xf.dtype, device=xf.device).t()
    return torch.matmul(xf.permute(0, 2, 3, 1), m).permute(0, 3, 1, 2)[:, :1]


# ----------------------------------------------------------------------------------------------- filtering
@lru_cache(maxsize=16)
def gaussian_window_1d(size: int = 11, sigma: float = 1.5) -> tuple[float, ...]:
    """Normalised 1-D Gaussian (``cv2.getGaussianKernel(size, sigma)``; its outer product is MATLAB
    ``fspecial('gaussian', size, sigma)``)."""
    half = (size - 1) / 2.0
    x = np.arange(size, dtype=np.float64) - half
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return tuple(float(v) for v in g / g.sum())


_BLOCK = 24  # outputs per banded-GEMM block: 34 multiply-adds per output and pass (measured best on AVX2)


@lru_cache(maxsize=32)
def _band(window: tuple[float, ...], block: int, dtype: torch.dtype, device: str = "cpu") -> torch.Tensor:
    """(block + k - 1, block) banded matrix: column j holds the window at rows j..j+k-1."""
    k = len(window)
    m = torch.zeros(block + k - 1, block, dtype=dtype)
    w = torch.tensor(window, dtype=dtype)
    for j in range(block):
        m[j:j + k, j] = w
    return m.to(device)


def _vertical_pass(cols: torch.Tensor, window: tuple[float, ...]) -> torch.Tensor:
    """(H, M) -> (H - k + 1, M): 'valid' correlation along the first dimension, one GEMM per row block."""
    k = len(window)
    h = cols.shape[0]
    ho = h - k + 1
    band_t = _band(window, _BLOCK, cols.dtype, str(cols.device)).t()
    out = torch.empty(ho, cols.shape[1], dtype=cols.dtype, device=cols.device)
    for s in range(0, ho, _BLOCK):
        e = min(s + _BLOCK, ho)
        m = e - s
        torch.mm(band_t[:m, :m + k - 1], cols[s:e + k - 1], out=out[s:e])
    return out


def _horizontal_blocks(rows: torch.Tensor, window: tuple[float, ...]):
    """Yield (start, (R, n) block) of the 'valid' correlation of (R, W) along its last dimension."""
    k = len(window)
    wo = rows.shape[1] - k + 1
    band = _band(window, _BLOCK, rows.dtype, str(rows.device))
    for s in range(0, wo, _BLOCK):
        e = min(s + _BLOCK, wo)
        n = e - s
        yield s, rows[:, s:e + k - 1] @ band[:n + k - 1, :n]


def gaussian_filter_valid(x: torch.Tensor, window: tuple[float, ...]) -> torch.Tensor:
    """Separable 'valid' filtering of (N, C, H, W) with the outer product of ``window`` (float64 recommended).

    Output (N, C, H-k+1, W-k+1). Equals ``cv2.filter2D(img, -1, outer(w, w))[k//2:-(k//2), k//2:-(k//2)]`` and
    ``F.conv2d(x, outer(w, w), groups=C)`` up to floating-point summation order.
    """
    k = len(window)
    n, c, h, w = x.shape
    if h < k or w < k:
        raise ValueError(f"image {h}x{w} is smaller than the {k}x{k} window")
    if x.device.type != "cpu":
        g = torch.tensor(window, dtype=x.dtype, device=x.device)
        y = F.conv2d(x.reshape(n * c, 1, h, w), g.view(1, 1, k, 1))
        y = F.conv2d(y, g.view(1, 1, 1, k))
        return y.view(n, c, h - k + 1, w - k + 1)
    ho, wo = h - k + 1, w - k + 1
    v = _vertical_pass(x.permute(2, 0, 1, 3).reshape(h, n * c * w), window).view(ho * n * c, w)
    out = torch.empty(ho * n * c, wo, dtype=x.dtype)
    for s, blk in _horizontal_blocks(v, window):
        out[:, s:s + blk.shape[1]] = blk
    return out.view(ho, n, c, wo).permute(1, 2, 0, 3)


# ----------------------------------------------------------------------------------------------- PSNR
def psnr(pred: torch.Tensor, target: torch.Tensor, *, crop_border: int = 0, test_y_channel: bool = False,
         convention: str = "basicsr") -> torch.Tensor:
    """Peak signal-to-noise ratio per image, (B,) float64 (dB). See the module docstring for the conventions."""
    _check_pair(pred, target)
    _check_convention(convention, ("basicsr", "pyiqa"))
    pred, target = _crop(pred, crop_border), _crop(target, crop_border)
    if convention == "basicsr":
        if test_y_channel:
            a, b = rgb_to_y(pred, "basicsr"), rgb_to_y(target, "basicsr")
            mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
        else:  # exact integer arithmetic: the same value as BasicSR's float64 mean of exact squares
            p8, t8 = _as_uint8(pred), _as_uint8(target)
            sse = torch.empty(p8.shape[0], dtype=torch.int64, device=p8.device)
            for i in range(p8.shape[0]):  # per image: the int32 temporaries stay in cache
                d = p8[i].to(torch.int32) - t8[i].to(torch.int32)
                sse[i] = (d * d).sum(dtype=torch.int64)
            mse = sse.to(torch.float64) / float(p8[0].numel())
        val = 10.0 * torch.log10(255.0 * 255.0 / mse)
        return torch.where(mse == 0, torch.full_like(val, math.inf), val)
    a, b = to_unit_float(pred), to_unit_float(target)
    if test_y_channel:
        a, b = _yiq_luma(a), _yiq_luma(b)
    a, b = a.to(torch.float64), b.to(torch.float64)
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(1.0 / (mse + 1e-8))


# ----------------------------------------------------------------------------------------------- SSIM
def _prepare_ssim(x: torch.Tensor, test_y_channel: bool, convention: str) -> torch.Tensor:
    """To the 0-255 float64 planes SSIM works on."""
    if convention == "basicsr":
        return rgb_to_y(x, "basicsr") if test_y_channel else to_uint8_grid(x)
    if convention == "pyiqa":
        if test_y_channel:
            return torch.round(rgb_to_y(x, "pyiqa"))
        xf = to_unit_float(x)
        return torch.round(xf * 255.0).to(torch.float64)
    if not test_y_channel:
        raise ValueError("convention='matlab' is defined on rgb2gray input only (test_y_channel=True)")
    return rgb_to_y(x, "matlab")


def _ssim_map_terms(mu1, mu2, s_sq, s12, relu_cs: bool):
    """SSIM and contrast-structure maps from the four filtered planes (sigma terms from E[x²+y²] and E[xy])."""
    mu12 = mu1 * mu2
    mu_sq = mu1 * mu1 + mu2 * mu2
    cs_map = (2 * (s12 - mu12) + _C2) / (s_sq - mu_sq + _C2)
    if relu_cs:
        cs_map = F.relu(cs_map)
    return (2 * mu12 + _C1) / (mu_sq + _C1) * cs_map, cs_map


_VBLOCK = 48  # output rows per vertical GEMM block (measured best on AVX2 with the 24-column horizontal blocks)


def _ssim_plane_cpu(a: torch.Tensor, b: torch.Tensor, relu_cs: bool, window) -> tuple[float, float]:
    """Mean SSIM and mean cs of one (H, W) float64 plane pair.

    The four planes (a, b, a²+b², ab) are filtered vertically with banded GEMMs into (4, Ho, W), then horizontally
    in 24-column blocks, each block reduced at once with in-place ops, so intermediates stay in cache."""
    k = len(window)
    h, w = a.shape
    ho, wo = h - k + 1, w - k + 1
    sq = torch.mul(a, a)
    sq.addcmul_(b, b)
    maps = (a, b, sq, torch.mul(a, b))
    band_v = _band(window, _VBLOCK, a.dtype).t()
    v = torch.empty(4, ho, w, dtype=a.dtype)
    for s in range(0, ho, _VBLOCK):
        e = min(s + _VBLOCK, ho)
        m = e - s
        bm = band_v[:m, :m + k - 1]
        for i, x in enumerate(maps):
            torch.mm(bm, x[s:e + k - 1], out=v[i, s:e])
    band_h = _band(window, _BLOCK, a.dtype)
    ssim_acc = torch.zeros((), dtype=torch.float64)
    cs_acc = torch.zeros((), dtype=torch.float64)
    buf = torch.empty(4, ho, _BLOCK, dtype=a.dtype)
    for s in range(0, wo, _BLOCK):
        e = min(s + _BLOCK, wo)
        n = e - s
        bn = band_h[:n + k - 1, :n]
        f = buf[:, :, :n] if n == _BLOCK else torch.empty(4, ho, n, dtype=a.dtype)
        for i in range(4):
            torch.mm(v[i][:, s:e + k - 1], bn, out=f[i])
        mu1, mu2, s_sq, s12 = f
        mu12 = torch.mul(mu1, mu2)
        mu_sq = torch.mul(mu1, mu1)
        mu_sq.addcmul_(mu2, mu2)
        s12.sub_(mu12).mul_(2).add_(_C2)  # 2 sigma12 + C2
        s_sq.sub_(mu_sq).add_(_C2)  # sigma1² + sigma2² + C2
        mu12.mul_(2).add_(_C1)  # 2 mu1 mu2 + C1
        mu_sq.add_(_C1)  # mu1² + mu2² + C1
        if relu_cs:
            cs = s12.div_(s_sq).clamp_(min=0)
            cs_acc += cs.sum()
            ssim_acc += mu12.div_(mu_sq).mul_(cs).sum()
        else:
            cs_acc += torch.div(s12, s_sq).sum()
            ssim_acc += s12.mul_(mu12).div_(s_sq.mul_(mu_sq)).sum()
    n_px = ho * wo
    return float(ssim_acc) / n_px, float(cs_acc) / n_px


def _ssim_and_cs(a: torch.Tensor, b: torch.Tensor, relu_cs: bool, window) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure per (image, channel) of 0-255 float64 planes: (B, C) each."""
    k = len(window)
    if min(a.shape[-2:]) < k:
        raise ValueError(f"image {tuple(a.shape[-2:])} is smaller than the {k}x{k} SSIM window")
    if a.device.type == "cpu":
        bsz, c = a.shape[:2]
        planes = [(i, j) for i in range(bsz) for j in range(c)]
        with plane_parallel() as pmap:
            res = list(pmap(lambda ij: _ssim_plane_cpu(a[ij].contiguous(), b[ij].contiguous(), relu_cs, window),
                            planes))
        s_out = torch.tensor([r[0] for r in res], dtype=torch.float64).view(bsz, c)
        cs_out = torch.tensor([r[1] for r in res], dtype=torch.float64).view(bsz, c)
        return s_out, cs_out
    c = a.shape[1]
    f = gaussian_filter_valid(torch.cat([a, b, a * a + b * b, a * b], dim=1), window)
    s_map, cs_map = _ssim_map_terms(f[:, :c], f[:, c:2 * c], f[:, 2 * c:3 * c], f[:, 3 * c:], relu_cs)
    return s_map.mean(dim=(2, 3)), cs_map.mean(dim=(2, 3))


def ssim(pred: torch.Tensor, target: torch.Tensor, *, crop_border: int = 0, test_y_channel: bool = False,
         convention: str = "basicsr", downsample: bool = False, chunk: int = 8) -> torch.Tensor:
    """Structural similarity per image, (B,) float64. ``downsample`` (pyiqa only): MATLAB's automatic
    ``f = max(1, round(min(H, W) / 256))`` average pooling. ``chunk`` bounds memory (images per pass)."""
    _check_pair(pred, target)
    _check_convention(convention)
    if downsample and convention != "pyiqa":
        raise ValueError("downsample is a pyiqa option")
    pred, target = _crop(pred, crop_border), _crop(target, crop_border)
    window = gaussian_window_1d(11, 1.5)
    relu = convention == "pyiqa"

    def prepare(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        a = _prepare_ssim(pred[lo:hi], test_y_channel, convention)
        b = _prepare_ssim(target[lo:hi], test_y_channel, convention)
        if downsample:
            f = max(1, round(min(a.shape[-2:]) / 256))
            if f > 1:
                a, b = F.avg_pool2d(a, kernel_size=f), F.avg_pool2d(b, kernel_size=f)
        return a, b

    if pred.device.type == "cpu":  # one image per task: its planes stay in cache
        def one(i: int) -> float:
            a, b = prepare(i, i + 1)
            if min(a.shape[-2:]) < len(window):
                raise ValueError(f"image {tuple(a.shape[-2:])} is smaller than the 11x11 SSIM window")
            vals = [_ssim_plane_cpu(a[0, c].contiguous(), b[0, c].contiguous(), relu, window)[0]
                    for c in range(a.shape[1])]
            return sum(vals) / len(vals)

        with plane_parallel() as pmap:
            return torch.tensor(list(pmap(one, range(pred.shape[0]))), dtype=torch.float64)
    out = []
    for s in range(0, pred.shape[0], chunk):
        a, b = prepare(s, s + chunk)
        val, _ = _ssim_and_cs(a, b, relu_cs=relu, window=window)
        out.append(val.mean(dim=1))
    return torch.cat(out)


def ms_ssim(pred: torch.Tensor, target: torch.Tensor, *, test_y_channel: bool = True,
            convention: str = "pyiqa") -> torch.Tensor:
    """Multi-scale SSIM per image, (B,) float64, as pyiqa ``ms_ssim``: 5 scales with weights
    (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), rounded YIQ luma (or rounded RGB), ReLU-clamped contrast term,
    2x2 average pooling (padding H%2, W%2) between scales, product form. Needs min(H, W) >= 176."""
    _check_pair(pred, target)
    _check_convention(convention, ("pyiqa",))
    a = _prepare_ssim(pred, test_y_channel, "pyiqa")
    b = _prepare_ssim(target, test_y_channel, "pyiqa")
    if min(a.shape[-2:]) < 11 * 2 ** (len(MS_SSIM_WEIGHTS) - 1):
        raise ValueError(f"MS-SSIM needs images of at least 176 pixels per side, got {tuple(a.shape[-2:])}")
    window = gaussian_window_1d(11, 1.5)
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64, device=a.device)
    mcs = []
    ssim_val = None
    for _ in range(len(MS_SSIM_WEIGHTS)):
        ssim_c, cs_c = _ssim_and_cs(a, b, relu_cs=True, window=window)
        ssim_val = ssim_c.mean(dim=1)
        mcs.append(cs_c.mean(dim=1))
        padding = (a.shape[2] % 2, a.shape[3] % 2)
        a = F.avg_pool2d(a, kernel_size=2, padding=padding)
        b = F.avg_pool2d(b, kernel_size=2, padding=padding)
    mcs_t = torch.stack(mcs[:-1], dim=0)
    return torch.prod(mcs_t ** weights[:-1].unsqueeze(1), dim=0) * ssim_val ** weights[-1]
