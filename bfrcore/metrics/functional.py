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

The Gaussian filter is separable and applied in float64 with the same torch operations on every device. SSIM filters
its four maps strip by strip (banded matrix products down the columns, shifted multiply-adds along the rows; on CPU
one image per task and 48-row strips that stay in cache, on a GPU the whole chunk at once);
``gaussian_filter_valid`` uses banded matrix products in both directions.
"""

from __future__ import annotations

import contextlib
import math
import threading
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
    """pyiqa ``rgb2yiq(x)[:, :1]`` in the input's precision, as ``(R·0.299 + G·0.587) + B·0.114`` with every
    product and sum rounded once, in this order. Not a matrix product: a GEMM kernel (MKL's Intel and non-Intel
    paths, FMA or not) moves the last bit, and 8-bit inputs with 299R + 587G + 114B ≡ 500 (mod 1000) sit exactly
    on a .5 that SSIM/MS-SSIM then round (MS-SSIM moved by 1.2e-6; docs/evaluation.md "Same numbers on any CPU")."""
    w = YIQ[0]
    return ((xf[:, 0:1] * w[0] + xf[:, 1:2] * w[1]) + xf[:, 2:3] * w[2]).contiguous()


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
    ``F.conv2d(x, outer(w, w), groups=C)`` up to floating-point summation order. Banded matrix products (BLAS /
    cuBLAS) in both directions, on every device.
    """
    k = len(window)
    n, c, h, w = x.shape
    if h < k or w < k:
        raise ValueError(f"image {h}x{w} is smaller than the {k}x{k} window")
    ho, wo = h - k + 1, w - k + 1
    v = _vertical_pass(x.permute(2, 0, 1, 3).reshape(h, n * c * w), window).view(ho * n * c, w)
    out = torch.empty(ho * n * c, wo, dtype=x.dtype, device=x.device)
    for s, blk in _horizontal_blocks(v, window):
        out[:, s:s + blk.shape[1]] = blk
    return out.view(ho, n, c, wo).permute(1, 2, 0, 3)


# ----------------------------------------------------------------------------------------------- PSNR
def _sse_uint8(a: torch.Tensor, b: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """Exact sum of squared differences of two uint8 images (any layout) as a float64 scalar: the int16 difference
    (dense, laid out like ``a``) converted chunk by chunk into a small float64 buffer and squared-summed with dot
    products over its memory. The squares and every partial sum are integers below 2^53, so the value is exact
    whatever the order (no large float64 temporary: those cost page faults, not arithmetic)."""
    d = a.to(torch.int16)
    d.sub_(b.to(torch.int16))
    flat = d.as_strided((d.numel(),), (1,))
    buf = torch.empty(min(chunk, flat.numel()), dtype=torch.float64, device=d.device)
    acc = torch.zeros((), dtype=torch.float64, device=d.device)
    for s in range(0, flat.numel(), chunk):
        part = buf[:min(chunk, flat.numel() - s)]
        part.copy_(flat[s:s + chunk])
        acc += torch.dot(part, part)
    return acc


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
        else:  # exact: integer squares summed in float64 (< 2^53), the value of BasicSR's float64 mean
            p8, t8 = _as_uint8(pred), _as_uint8(target)
            if _per_image_tasks(p8.device):
                with plane_parallel() as pmap:
                    sse = torch.stack(list(pmap(lambda i: _sse_uint8(p8[i], t8[i]), range(p8.shape[0]))))
            else:  # one pass over the batch (exact for the same reason)
                d = p8.to(torch.int16).sub_(t8.to(torch.int16)).to(torch.float64)
                sse = d.mul_(d).sum(dim=(1, 2, 3))
            mse = sse / float(p8[0].numel())
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


#: tiling of the SSIM strips: output rows per strip and rows per vertical band GEMM, for the CPU path ("cpu") and
#: the batched path of other devices ("gpu"; no entry = the whole image). On CPU a strip of 48 rows of all maps of
#: one image stays in L2/L3 and the 8-row band GEMMs run at ~0.5 G outputs/s (measured on the 2 shared AVX2 cores;
#: 16/24/32-row strips and 12/16/24-row blocks were slower); on a GPU the whole chunk is one strip.
_SSIM_ROWS = {"cpu": 48}
_SSIM_VBLOCK = {"cpu": 8, "gpu": 32}
_WORKSPACES = threading.local()
#: run the CPU code path (one image per pool task, cached per-thread workspaces) on CPU tensors; the tests set it to
#: False to exercise the batched path other devices take (whole chunks, whole-image strips) on CPU
_CPU_TASKS = True


def _per_image_tasks(device: torch.device) -> bool:
    """True where batches are split into one task per image (CPU), False where whole chunks run at once."""
    return device.type == "cpu" and _CPU_TASKS


def _ssim_tiling(device: torch.device) -> tuple[int | None, int | None]:
    """(output rows per strip, rows per vertical band GEMM) for ``device``; None: the whole image / strip."""
    kind = "cpu" if _per_image_tasks(device) else "gpu"
    return _SSIM_ROWS.get(kind), _SSIM_VBLOCK.get(kind)


class _SsimStrips:
    """Buffers and precomputed views for SSIM of P plane pairs of size (H, W), strip after strip.

    Per strip of ``m`` output rows: the four maps u = a+b, v = a-b, u² + 2C1 + 2C2, v² of the m + k - 1 input
    rows (``x``, (m+k-1, 4, P, W); the first k - 1 rows are carried over from the previous strip) are filtered
    vertically with banded GEMMs (``v``), then horizontally by k shifted multiply-adds (``f``, (m, 4, P, W-k+1)).
    With mu_u = mu1 + mu2 and mu_v = mu1 - mu2, the SSIM terms are (all ×2, which cancels in the ratios)
    ``2 mu1 mu2 + C1 ~ mu_u² - mu_v² + 2C1``, ``mu1² + mu2² + C1 ~ mu_u² + mu_v² + 2C1``,
    ``2 sigma12 + C2 ~ s_u - s_v + 2C2``, ``sigma1² + sigma2² + C2 ~ s_u + s_v + 2C2`` with
    s_u = E[u²] - mu_u², s_v = E[v²] - mu_v²: the BasicSR formula, in float64, with fewer passes."""

    def __init__(self, p: int, h: int, w: int, window: tuple[float, ...], device: torch.device,
                 tiling: tuple[int | None, int | None] = (None, None)):
        k = len(window)
        self.k, self.p, self.ho, self.wo = k, p, h - k + 1, w - k + 1
        dt = torch.float64
        kw = {"dtype": dt, "device": device}
        rows = min(max(tiling[0] or self.ho, k - 1), self.ho)
        vblock = min(tiling[1] or rows, rows)
        self.rows = rows
        self.x = torch.empty(rows + k - 1, 4, p, w, **kw)
        self.v = torch.empty(rows, 4, p, w, **kw)
        self.f = torch.empty(rows, 4, p, self.wo, **kw)
        self.t1 = torch.empty(rows, p, self.wo, **kw)
        self.t2 = torch.empty(rows, p, self.wo, **kw)
        self.c1 = torch.tensor(2 * _C1, **kw)
        self.k2 = torch.tensor(2 * _C1 + 2 * _C2, **kw)
        self.window = window
        band = torch.zeros(vblock, vblock + k - 1, dtype=dt)
        wt = torch.tensor(window, dtype=dt)
        for j in range(vblock):
            band[j, j:j + k] = wt
        self.band = band.to(device)
        self.vblock = vblock
        self._views: dict[int, tuple] = {}

    def views(self, m: int) -> tuple:
        """GEMM operands, shifted views and map views of a strip of m output rows (cached: strips repeat)."""
        got = self._views.get(m)
        if got is None:
            k = self.k
            x2 = self.x[:m + k - 1].view(m + k - 1, -1)
            v2 = self.v[:m].view(m, -1)
            gemms = [(self.band[:min(self.vblock, m - s), :min(self.vblock, m - s) + k - 1],
                      x2[s:min(s + self.vblock, m) + k - 1], v2[s:min(s + self.vblock, m)])
                     for s in range(0, m, self.vblock)]
            v = self.v[:m]
            shifted = [v[..., j:j + self.wo] for j in range(k)]
            got = (gemms, shifted, self.f[:m], self.f[:m].unbind(1), self.t1[:m], self.t2[:m])
            self._views[m] = got
        return got

    def build(self, dst: int, ap: torch.Tensor, bp: torch.Tensor, src: int, n: int) -> None:
        """Maps of input rows src..src+n (planes ``ap``/``bp`` laid out (H, P, W)) into x[dst:dst+n]."""
        x = self.x[dst:dst + n]
        sa, sb = ap[src:src + n], bp[src:src + n]
        u, v = x[:, 0], x[:, 1]
        torch.add(sa, sb, out=u)
        torch.sub(sa, sb, out=v)
        torch.addcmul(self.k2, u, u, out=x[:, 2])
        torch.mul(v, v, out=x[:, 3])

    def filter_h(self, shifted: list[torch.Tensor], out: torch.Tensor) -> None:
        """out = sum_j window[j] * shifted[j], symmetric taps from the outside in."""
        w, k = self.window, self.k
        c = k // 2
        torch.mul(shifted[c], w[c], out=out)
        for j in range(c):
            out.add_(shifted[j], alpha=w[j])
            out.add_(shifted[k - 1 - j], alpha=w[k - 1 - j])

    def run(self, ap: torch.Tensor, bp: torch.Tensor, relu_cs: bool, want_cs: bool):
        """Mean SSIM (and mean cs) per plane, (P,) float64 each, of planes laid out (H, P, W)."""
        k, rows = self.k, self.rows
        n_strips = -(-self.ho // rows)
        s_sums = torch.empty(n_strips, self.p, dtype=torch.float64, device=self.x.device)
        cs_sums = torch.empty_like(s_sums) if want_cs else None
        for i, s in enumerate(range(0, self.ho, rows)):
            m = min(rows, self.ho - s)
            if s == 0:
                self.build(0, ap, bp, 0, m + k - 1)
            else:  # the last k - 1 input rows of the previous strip are the first ones of this one
                self.x[:k - 1].copy_(self.x[rows:rows + k - 1])
                self.build(k - 1, ap, bp, s + k - 1, m)
            gemms, shifted, f, (mu_u, mu_v, e_u, e_v), t1, t2 = self.views(m)
            for band, xin, vout in gemms:
                torch.mm(band, xin, out=vout)
            self.filter_h(shifted, f)
            u2 = torch.addcmul(self.c1, mu_u, mu_u, out=t1)  # mu_u² + 2C1
            v2 = torch.mul(mu_v, mu_v, out=t2)  # mu_v²
            e_u.sub_(u2)  # s_u + 2C2
            e_v.sub_(v2)  # s_v
            num1 = torch.sub(u2, v2, out=mu_u)
            den1 = u2.add_(v2)
            num2 = torch.sub(e_u, e_v, out=mu_v)
            den2 = e_u.add_(e_v)
            if want_cs or relu_cs:
                cs = num2.div_(den2)
                if relu_cs:
                    cs.clamp_(min=0)
                if want_cs:
                    torch.sum(cs, dim=(0, 2), out=cs_sums[i])
                torch.sum(num1.div_(den1).mul_(cs), dim=(0, 2), out=s_sums[i])
            else:
                num1.mul_(num2)
                den1.mul_(den2)
                torch.sum(num1.div_(den1), dim=(0, 2), out=s_sums[i])
        n_px = self.ho * self.wo
        return s_sums.sum(0) / n_px, (cs_sums.sum(0) / n_px if want_cs else None)


def _workspace(p: int, h: int, w: int, window: tuple[float, ...], device: torch.device) -> _SsimStrips:
    """A thread's reusable CPU workspace for this shape and tiling (a few MB; the last 8 are kept); a fresh one
    elsewhere (whole-image strips of a whole chunk: large, and allocation is cheap on a GPU)."""
    tiling = _ssim_tiling(device)
    if not _per_image_tasks(device):
        return _SsimStrips(p, h, w, window, device, tiling)
    cache = getattr(_WORKSPACES, "cache", None)
    if cache is None:
        cache = _WORKSPACES.cache = {}
    key = (p, h, w, window, tiling)
    ws = cache.pop(key, None)
    if ws is None:
        ws = _SsimStrips(p, h, w, window, device, tiling)
        while len(cache) >= 8:
            cache.pop(next(iter(cache)))
    cache[key] = ws
    return ws


def _ssim_planes(ap: torch.Tensor, bp: torch.Tensor, relu_cs: bool, window, want_cs: bool = False):
    """Mean SSIM (and mean cs) per plane, (P,) float64 each, of 0-255 planes (int16 or float64) given as (H, P, W)
    views with unit stride along W (image rows of all planes side by side)."""
    k = len(window)
    h, p, w = ap.shape
    if min(h, w) < k:
        raise ValueError(f"image {(h, w)} is smaller than the {k}x{k} SSIM window")
    return _workspace(p, h, w, window, ap.device).run(ap, bp, relu_cs, want_cs)


def _rows_view(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (H, N*C, W) with unit stride along W: a view of NCHW input, else one copy."""
    n, c, h, w = x.shape
    v = x.reshape(n * c, h, w).transpose(0, 1)
    return v if v.stride(-1) == 1 else v.contiguous()


def _ssim_and_cs(a: torch.Tensor, b: torch.Tensor, relu_cs: bool, window) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure per (image, channel) of 0-255 planes: (B, C) each. On CPU one image
    per task (its strips stay in cache), on other devices the whole batch at once."""
    bsz, c = a.shape[:2]
    if _per_image_tasks(a.device):
        with plane_parallel() as pmap:
            res = list(pmap(lambda i: _ssim_planes(_rows_view(a[i:i + 1]), _rows_view(b[i:i + 1]), relu_cs, window,
                                                   True), range(bsz)))
        return torch.stack([r[0] for r in res]), torch.stack([r[1] for r in res])
    s, cs = _ssim_planes(_rows_view(a), _rows_view(b), relu_cs, window, True)
    return s.view(bsz, c), cs.view(bsz, c)


def ssim(pred: torch.Tensor, target: torch.Tensor, *, crop_border: int = 0, test_y_channel: bool = False,
         convention: str = "basicsr", downsample: bool = False, chunk: int = 8) -> torch.Tensor:
    """Structural similarity per image, (B,) float64. ``downsample`` (pyiqa only): MATLAB's automatic
    ``f = max(1, round(min(H, W) / 256))`` average pooling. ``chunk`` bounds memory on GPUs (images per pass);
    on CPU each image is one task (``plane_parallel``)."""
    _check_pair(pred, target)
    _check_convention(convention)
    if downsample and convention != "pyiqa":
        raise ValueError("downsample is a pyiqa option")
    pred, target = _crop(pred, crop_border), _crop(target, crop_border)
    window = gaussian_window_1d(11, 1.5)
    relu = convention == "pyiqa"

    def planes(x: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) input -> (H, n*C', W) planes: BasicSR RGB as int16 in one copy (exact 8-bit values, a
        quarter of the bytes of float64), the other conventions as float64."""
        if convention == "basicsr" and not test_y_channel:
            x8 = _as_uint8(x)
            n, c, h, w = x8.shape
            out = torch.empty(h, n, c, w, dtype=torch.int16, device=x8.device)
            return out.copy_(x8.permute(2, 0, 1, 3)).view(h, n * c, w)
        y = _prepare_ssim(x, test_y_channel, convention)
        if downsample:
            f = max(1, round(min(y.shape[-2:]) / 256))
            if f > 1:
                y = F.avg_pool2d(y, kernel_size=f)
        return _rows_view(y)

    def one(lo: int, hi: int) -> torch.Tensor:
        a, b = planes(pred[lo:hi]), planes(target[lo:hi])
        s, _ = _ssim_planes(a, b, relu, window)
        return s.view(min(hi, pred.shape[0]) - lo, -1).mean(dim=1)

    if _per_image_tasks(pred.device):  # one image per task: its strips stay in cache
        with plane_parallel() as pmap:
            return torch.cat(list(pmap(lambda i: one(i, i + 1), range(pred.shape[0]))))
    return torch.cat([one(s, s + chunk) for s in range(0, pred.shape[0], chunk)])


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
