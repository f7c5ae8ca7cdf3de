"""Building blocks shared by the baselines (DFDNet, ASFFNet, GFRNet, GWAInet, trivial references).

What lives here and who uses it:

- spectral-norm convolutions of any kernel size (old-style ``torch.nn.utils.spectral_norm``, state-dict keys
  ``weight_orig`` / ``weight_u`` / ``weight_v`` as in the authors' checkpoints) and :class:`SpectralNormModel`, the
  mixin that makes freshly built spectral-norm models usable in eval mode and deep-copyable (EMA);
- :class:`ActResBlock`: ``x + LReLU(conv(LReLU(conv(x))))`` (DFDNet / ASFFNet ``UpResBlock``, attribute ``Model``);
- :class:`Blur` and :class:`SFTUpBlock`: DFDNet's ``StyledUpBlock`` (blur, conv, SFT scale/shift from the
  updated features, x2 upsampling);
- :class:`UNet`: the encoder-decoder used by GFRNet (WarpNet, RecNet) and GWAInet (warper);
- flow helpers: :func:`identity_grid`, :func:`warp`, :func:`sample_at_points`, :func:`tv_loss`;
- :func:`color_match` (per-channel mean/std), :func:`resize_refs`.

- :func:`adain` / :func:`calc_mean_std`: AdaIN with the release's statistics (unbiased variance + 1e-5), where the
  style batch may be 1 and is then broadcast (DFDNet normalises all K atoms to one crop; DMDNet's ``adain`` in
  ``baselines.dmdnet_blocks`` needs equal batches).

The spectral-norm power-iteration warm-up (:func:`init_spectral_norm`) is DMDNet's (``baselines.dmdnet_blocks``),
re-exported so every model uses the same code.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm
from torch.nn.utils.spectral_norm import SpectralNorm

from baselines.dmdnet_blocks import adain, calc_mean_std, init_spectral_norm

__all__ = [
    "LRELU",
    "ActResBlock",
    "Blur",
    "SFTUpBlock",
    "SpectralNormModel",
    "UNet",
    "adain",
    "calc_mean_std",
    "color_match",
    "conv2d",
    "from_m11",
    "identity_grid",
    "init_spectral_norm",
    "resize_refs",
    "sample_at_points",
    "sn_conv2d",
    "to_m11",
    "tv_loss",
    "warp",
]

#: LeakyReLU slope used by every model of the family
LRELU = 0.2


# ---------------------------------------------------------------------------------------------- convolutions
def conv2d(cin: int, cout: int, k: int = 3, *, stride: int = 1, dilation: int = 1, bias: bool = True) -> nn.Conv2d:
    """A k x k convolution with 'same' padding (for stride 1): padding = (k - 1) // 2 * dilation."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2 * dilation, dilation=dilation, bias=bias)


def sn_conv2d(cin: int, cout: int, k: int = 3, *, stride: int = 1, dilation: int = 1, bias: bool = True) -> nn.Module:
    """:func:`conv2d` wrapped in spectral norm (keys ``weight_orig``, ``weight_u``, ``weight_v``, ``bias``)."""
    return spectral_norm(conv2d(cin, cout, k, stride=stride, dilation=dilation, bias=bias))


class SpectralNormModel(nn.Module):
    """Mixin for models made of old-style spectral-norm layers.

    * call :meth:`finish_init` at the end of ``__init__``: converges the power-iteration vectors, so that a fresh
      model in eval mode divides by its true largest singular value (not by a random ``u^T W v``);
    * deepcopy (an EMA copy made right after a training forward) works: spectral norm leaves a non-leaf
      ``weight`` attribute on each conv, which ``copy.deepcopy`` refuses; detached copies are swapped in meanwhile.
    """

    def finish_init(self) -> None:
        init_spectral_norm(self)

    def __deepcopy__(self, memo):
        swapped = []
        for mod in self.modules():
            for hook in mod._forward_pre_hooks.values():
                if isinstance(hook, SpectralNorm):
                    w = getattr(mod, hook.name, None)
                    if isinstance(w, torch.Tensor) and not w.is_leaf:
                        swapped.append((mod, hook.name, w))
                        setattr(mod, hook.name, w.detach())
        self.__deepcopy__ = None  # this instance: default protocol
        try:
            new = copy.deepcopy(self, memo)
        finally:
            del self.__dict__["__deepcopy__"]
            for mod, name, w in swapped:
                setattr(mod, name, w)
        new.__dict__.pop("__deepcopy__", None)
        return new


class ActResBlock(nn.Module):
    """``x + LReLU(conv(LReLU(conv(x))))`` with spectral-norm 3x3 convs (DFDNet / ASFFNet ``UpResBlock``).
    The sub-module is called ``Model`` (indices 0 and 2 are the convs), as in the authors' checkpoints."""

    def __init__(self, dim: int, dilation: int = 1):
        super().__init__()
        self.Model = nn.Sequential(
            sn_conv2d(dim, dim, dilation=dilation), nn.LeakyReLU(LRELU),
            sn_conv2d(dim, dim, dilation=dilation), nn.LeakyReLU(LRELU),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.Model(x)


class Blur(nn.Module):
    """Depthwise 3x3 binomial blur ([1 2 1] x [1 2 1] / 16), padding 1 (DFDNet's ``Blur``; the kernel is a fixed,
    non-persistent buffer, so it is not part of the state dict)."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = torch.outer(k, k) / 16.0
        self.channels = channels
        self.register_buffer("kernel", k.expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel.to(x.dtype), padding=1, groups=self.channels)


class SFTUpBlock(nn.Module):
    """DFDNet's ``StyledUpBlock`` (the decoder's spatial feature transform + x2 upsampling).

    ``h = LReLU_0.04(SNconv(Blur(x)))`` (two stacked LeakyReLU(0.2) in the release = one of slope 0.04);
    ``h = h * Scale(style) + Shift(style)`` with Scale = SNconv-LReLU-SNconv and Shift = SNconv-LReLU-SNconv-Sigmoid
    (the release ends Shift with a sigmoid), both on the updated features at x's resolution; then bilinear x2
    upsampling (align_corners=False), SNconv, LReLU. ``style`` has ``cin`` channels."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(Blur(cin), sn_conv2d(cin, cout), nn.LeakyReLU(LRELU * LRELU))
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            sn_conv2d(cout, cout), nn.LeakyReLU(LRELU),
        )
        self.scale = nn.Sequential(sn_conv2d(cin, cout), nn.LeakyReLU(LRELU), sn_conv2d(cout, cout))
        self.shift = nn.Sequential(sn_conv2d(cin, cout), nn.LeakyReLU(LRELU), sn_conv2d(cout, cout), nn.Sigmoid())

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        h = h * self.scale(style) + self.shift(style)
        return self.up(h)


# ---------------------------------------------------------------------------------------------- encoder-decoder
class UNet(nn.Module):
    """A pix2pix-style U-Net: ``depth`` stride-2 4x4 conv stages (LeakyReLU 0.2, instance norm except the first
    and the innermost),
    then ``depth`` bilinear-upsample + 3x3 conv stages (ReLU, instance norm) with skip concatenations, and a 3x3
    output conv to ``out_ch`` (no activation). Channels: ``base * 2**i`` capped at ``max_ch``.

    Used by GFRNet (WarpNet, RecNet: "encoder-decoder with skip connections" in the paper) and GWAInet's warper.
    ``zero_init_head`` starts the output at exactly 0 (flow networks start at the identity warp)."""

    def __init__(self, in_ch: int, out_ch: int, *, base: int = 64, depth: int = 5, max_ch: int = 512,
                 zero_init_head: bool = False):
        super().__init__()
        chans = [min(base * 2**i, max_ch) for i in range(depth)]
        self.down = nn.ModuleList()
        prev = in_ch
        for i, c in enumerate(chans):
            layers: list[nn.Module] = [nn.Conv2d(prev, c, 4, stride=2, padding=1)]
            if 0 < i < depth - 1:  # no norm on the first and the innermost layer (pix2pix)
                layers.append(nn.InstanceNorm2d(c, affine=True))
            layers.append(nn.LeakyReLU(LRELU))
            self.down.append(nn.Sequential(*layers))
            prev = c
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            skip = chans[i - 1] if i > 0 else in_ch
            c = chans[i - 1] if i > 0 else base
            self.up.append(nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(prev, c, 3, padding=1), nn.InstanceNorm2d(c, affine=True), nn.ReLU(),
            ))
            prev = c + skip
        self.head = nn.Conv2d(prev, out_ch, 3, padding=1)
        if zero_init_head:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        div = 2**self.depth
        if x.shape[-1] % div or x.shape[-2] % div:
            raise ValueError(f"UNet of depth {self.depth} needs sides divisible by {div}, got {tuple(x.shape[-2:])}")
        skips = [x]
        h = x
        for d in self.down:
            h = d(h)
            skips.append(h)
        skips.pop()  # the bottleneck itself
        for u in self.up:
            h = torch.cat([u(h), skips.pop()], dim=1)
        return self.head(h)


# ---------------------------------------------------------------------------------------------- flow helpers
def identity_grid(b: int, h: int, w: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(B, H, W, 2) sampling grid of the identity warp for ``grid_sample(align_corners=False)``: pixel centres,
    x then y, in [-1, 1]."""
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).unsqueeze(0).expand(b, h, w, 2)


def pixels_to_grid(pts: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pixel coordinates (x, y) (pixel centres at integers) -> normalised coordinates of grid_sample
    (align_corners=False)."""
    scale = torch.tensor([2.0 / w, 2.0 / h], device=pts.device, dtype=pts.dtype)
    return (pts + 0.5) * scale - 1


def grid_to_pixels(grid: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`pixels_to_grid`."""
    scale = torch.tensor([w / 2.0, h / 2.0], device=grid.device, dtype=grid.dtype)
    return (grid + 1) * scale - 0.5


def warp(img: torch.Tensor, grid: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Backward warp: ``out[y, x] = img[grid[y, x]]`` (bilinear, align_corners=False)."""
    return F.grid_sample(img, grid.to(img.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=False)


def sample_at_points(field: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of a (B, C, H, W) field at (B, N, 2) pixel positions (x, y) -> (B, N, C)."""
    h, w = field.shape[-2:]
    g = pixels_to_grid(pts.to(field.dtype), h, w).unsqueeze(2)  # (B, N, 1, 2)
    out = F.grid_sample(field, g, mode="bilinear", padding_mode="border", align_corners=False)  # (B, C, N, 1)
    return out.squeeze(-1).transpose(1, 2)


def tv_loss(flow: torch.Tensor) -> torch.Tensor:
    """Squared total variation of a (B, 2, H, W) displacement field: mean of squared neighbour differences."""
    dx = flow[..., :, 1:] - flow[..., :, :-1]
    dy = flow[..., 1:, :] - flow[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


# ---------------------------------------------------------------------------------------------- images
def to_m11(x: torch.Tensor) -> torch.Tensor:
    return x * 2 - 1


def from_m11(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


def color_match(src: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``src`` (B, C, H, W) with each channel's mean and standard deviation replaced by ``target``'s
    (population statistics over the image), clamped to [0, 1]."""
    sm, ss = src.mean((2, 3), keepdim=True), src.std((2, 3), keepdim=True, unbiased=False)
    tm, ts = target.mean((2, 3), keepdim=True), target.std((2, 3), keepdim=True, unbiased=False)
    return ((src - sm) / (ss + eps) * ts + tm).clamp(0, 1)


def resize_refs(refs: Sequence[torch.Tensor] | None, ref_landmarks: Sequence[torch.Tensor] | None, size: int,
                ) -> tuple[list[torch.Tensor] | None, list[torch.Tensor] | None]:
    """References resized to ``size`` x ``size`` (bilinear with antialias) with their landmarks scaled to match;
    references already at ``size`` are returned unchanged."""
    if refs is None:
        return None, None if ref_landmarks is None else list(ref_landmarks)
    out_r, out_l = [], ([] if ref_landmarks is not None else None)
    for i, r in enumerate(refs):
        h, w = r.shape[-2:]
        if (h, w) != (size, size):
            r = F.interpolate(r, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        out_r.append(r)
        if out_l is not None:
            lm = ref_landmarks[i]
            if (h, w) != (size, size):
                lm = lm * torch.tensor([size / w, size / h], device=lm.device, dtype=lm.dtype)
            out_l.append(lm)
    return out_r, out_l
