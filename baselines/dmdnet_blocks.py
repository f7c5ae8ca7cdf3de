"""Building blocks of DMDNet (Li et al., TPAMI 2022), written from the layer definitions of the authors' released
inference code. Module and attribute names (``conv1``, ``Res``, ``Key``, ``ScaleModel1``, ...) and the order in
which sub-modules are created are those of the official checkpoint, so its state dict loads with strict=True.

Every convolution is 3x3 and wrapped in the old-style ``torch.nn.utils.spectral_norm`` (state-dict keys
``weight_orig`` / ``weight_u`` / ``weight_v``); activations are LeakyReLU(0.2); there are no normalisation layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm
from torch.nn.utils.spectral_norm import SpectralNorm

LRELU_SLOPE = 0.2


def lrelu() -> nn.LeakyReLU:
    """LeakyReLU(0.2) applied in place: it always follows a convolution whose output nothing else reads (autograd
    supports the in-place form for a positive slope). Saves one full-size tensor and its page faults per use."""
    return nn.LeakyReLU(LRELU_SLOPE, inplace=True)


def sn_conv(cin: int, cout: int, *, stride: int = 1, dilation: int = 1) -> nn.Module:
    """Spectral-normalised 3x3 convolution with 'same' padding (for stride 1)."""
    return spectral_norm(nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation))


@torch.no_grad()
def init_spectral_norm(module: nn.Module, n_iter: int = 15) -> None:
    """Converge the power-iteration vectors ``weight_u`` / ``weight_v`` of every spectral-normalised layer.

    ``spectral_norm`` starts u, v at random and only iterates in training mode, so a freshly built network used
    in eval mode would divide by a random sigma (often near 0 -> inf/NaN). Loading a checkpoint overwrites u, v."""
    for mod in module.modules():
        for hook in mod._forward_pre_hooks.values():
            if isinstance(hook, SpectralNorm):
                w = hook.reshape_weight_to_matrix(getattr(mod, hook.name + "_orig"))
                if w.is_meta:
                    continue
                u, v = getattr(mod, hook.name + "_u"), getattr(mod, hook.name + "_v")
                for _ in range(n_iter):
                    v.copy_(F.normalize(torch.mv(w.t(), u), dim=0, eps=hook.eps))
                    u.copy_(F.normalize(torch.mv(w, v), dim=0, eps=hook.eps))


def conv_pair(cin: int, cout: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """conv(cin->cout, stride) - LReLU - conv(cout->cout); no activation at the end. Indices 0 and 2."""
    return nn.Sequential(
        sn_conv(cin, cout, stride=stride, dilation=dilation),
        lrelu(),
        sn_conv(cout, cout, dilation=dilation),
    )


class DilateResBlock(nn.Module):
    """x + conv_d2(LReLU(conv_d1(x)))."""

    def __init__(self, dim: int, dilations: tuple[int, int]):
        super().__init__()
        self.Res = nn.Sequential(
            sn_conv(dim, dim, dilation=dilations[0]),
            lrelu(),
            sn_conv(dim, dim, dilation=dilations[1]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Res(x).add_(x)  # = x + Res(x); the conv output is not needed by autograd


class UpResBlock(nn.Module):
    """x + conv(LReLU(conv(x))) in the output head."""

    def __init__(self, dim: int):
        super().__init__()
        self.Model = conv_pair(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Model(x).add_(x)  # = x + Model(x)


class Query(nn.Module):
    """Query head on an LQ component ROI: C -> C/key_scale."""

    def __init__(self, dim: int, key_dim: int):
        super().__init__()
        self.Query = conv_pair(dim, key_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Query(x)


class KeyValue(nn.Module):
    """Key (C -> C/key_scale) and value (C -> C) heads on an HQ component ROI."""

    def __init__(self, dim: int, key_dim: int, value_dim: int):
        super().__init__()
        self.Key = conv_pair(dim, key_dim)
        self.Value = conv_pair(dim, value_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.Key(x), self.Value(x)


class MaskAttention(nn.Module):
    """Fusion mask of the generic and specific readings: three C -> C//3 branches on (LQ ROI, specific reading,
    generic reading), concatenated, then conv-LReLU-conv back to C. No sigmoid (as released)."""

    def __init__(self, dim: int):
        super().__init__()
        third = dim // 3
        self.conv1 = conv_pair(dim, third)
        self.conv2 = conv_pair(dim, third)
        self.conv3 = conv_pair(dim, third)
        self.convCat = conv_pair(third * 3, dim)

    def forward(self, lq: torch.Tensor, specific: torch.Tensor, generic: torch.Tensor) -> torch.Tensor:
        return self.convCat(torch.cat([self.conv1(lq), self.conv2(specific), self.conv3(generic)], dim=1))


def attention_block(dim: int) -> nn.Sequential:
    """Att in F_out = Att(F_hat - F_lq) * F_hat + F_lq: conv-LReLU-conv, no sigmoid (as released)."""
    return conv_pair(dim, dim)


class MSDilateBlock(nn.Module):
    """Four parallel conv-LReLU-conv branches with dilations (4, 3, 2, 1), concatenated, fused by a conv, + x."""

    def __init__(self, dim: int, dilations: tuple[int, int, int, int] = (4, 3, 2, 1)):
        super().__init__()
        self.conv1 = conv_pair(dim, dim, dilation=dilations[0])
        self.conv2 = conv_pair(dim, dim, dilation=dilations[1])
        self.conv3 = conv_pair(dim, dim, dilation=dilations[2])
        self.conv4 = conv_pair(dim, dim, dilation=dilations[3])
        self.convi = sn_conv(dim * 4, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.conv1(x), self.conv2(x), self.conv3(x), self.conv4(x)]
        return self.convi(torch.cat(branches, dim=1)).add_(x)  # = convi(...) + x


class StyledUpBlock(nn.Module):
    """SFT block: h = LReLU(conv-LReLU-conv(x)); h = h * Scale(style) + Shift(style) (both at x's resolution);
    then x2 bilinear upsampling and conv-LReLU-conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = conv_pair(cin, cout)
        self.convup = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            sn_conv(cout, cout),
            lrelu(),
            sn_conv(cout, cout),
        )
        self.lrelu1 = lrelu()
        self.ScaleModel1 = conv_pair(cin, cout)
        self.ShiftModel1 = conv_pair(cin, cout)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = self.lrelu1(self.conv1(x))
        scale, shift = self.ScaleModel1(style), self.ShiftModel1(style)
        if torch.is_grad_enabled():  # autograd needs h (the in-place LReLU's result)
            h = h * scale + shift
        else:  # same values, no new full-size tensors
            h = h.mul_(scale).add_(shift)
        return self.convup(h)


class FeatureExtractor(nn.Module):
    """Encoder (E_lq / E_hq): three stride-2 stages giving features at 1/2, 1/4, 1/8 of the input
    (ngf, 2 ngf, 4 ngf channels), plus the per-component query heads (used on E_lq only; E_hq's exist in the
    official checkpoint but are never used)."""

    def __init__(self, ngf: int, key_scale: int, components: tuple[str, ...], scale_labels: tuple[int, ...]):
        super().__init__()
        self.conv1 = conv_pair(3, ngf, stride=2)
        self.conv2 = conv_pair(ngf, ngf)
        self.res1 = DilateResBlock(ngf, (5, 3))
        self.res2 = DilateResBlock(ngf, (5, 3))
        self.conv3 = conv_pair(ngf, ngf * 2, stride=2)
        self.conv4 = conv_pair(ngf * 2, ngf * 2)
        self.res3 = DilateResBlock(ngf * 2, (3, 1))
        self.res4 = DilateResBlock(ngf * 2, (3, 1))
        self.conv5 = conv_pair(ngf * 2, ngf * 4, stride=2)
        self.conv6 = conv_pair(ngf * 4, ngf * 4)
        self.res5 = DilateResBlock(ngf * 4, (1, 1))
        self.res6 = DilateResBlock(ngf * 4, (1, 1))
        for i, label in enumerate(scale_labels):
            dim = ngf * 2**i
            for comp in components:
                setattr(self, f"{comp}_{label}_Q", Query(dim, dim // key_scale))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f1 = self.res2(self.conv2(self.res1(self.conv1(x))))
        f2 = self.res4(self.conv4(self.res3(self.conv3(f1))))
        f3 = self.res6(self.conv6(self.res5(self.conv5(f2))))
        return f1, f2, f3

    def query(self, comp: str, label: int, roi: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"{comp}_{label}_Q")(roi)


def calc_mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std (N, C, 1, 1) of (N, C, H, W): unbiased variance + ``eps``, as the
    DMDNet / DFDNet / ASFFNet releases compute them."""
    n, c = feat.shape[:2]
    flat = feat.reshape(n, c, -1)
    return flat.mean(2).view(n, c, 1, 1), (flat.var(2) + eps).sqrt().view(n, c, 1, 1)


def adain(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """AdaIN: ``content`` (N, C, H, W) with its per-sample, per-channel mean/std replaced by those of ``style``
    ((N or 1), C, h, w)."""
    c_mean, c_std = calc_mean_std(content, eps)
    s_mean, s_std = calc_mean_std(style, eps)
    return (content - c_mean) / c_std * s_std + s_mean


def read_shared_dictionary(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Adaptive reading of a dictionary shared by the batch: query (B, c, s, s), keys (M, c, s, s),
    values (M, C, s, s) -> (B, C, s, s). sim = full-window inner product; softmax over atoms with temperature
    sqrt(M) (the number of atoms, as released); output = weighted sum of values."""
    b, m = query.shape[0], keys.shape[0]
    sim = query.reshape(b, -1) @ keys.reshape(m, -1).t()
    w = torch.softmax(sim / m**0.5, dim=1)
    return (w @ values.reshape(m, -1)).view(b, *values.shape[1:])


def read_per_sample_dictionary(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                               counts: torch.Tensor) -> torch.Tensor:
    """Adaptive reading with one dictionary per sample: keys (B, N, c, s, s) and values (B, N, C, s, s), padded to
    N = max N_i; ``counts`` (B,) holds N_i. Padded atoms get zero weight; the temperature is sqrt(N_i)."""
    b, n = keys.shape[:2]
    sim = torch.einsum("bd,bnd->bn", query.reshape(b, -1), keys.reshape(b, n, -1))
    sim = sim / counts.to(sim.dtype).sqrt()[:, None]
    pad = torch.arange(n, device=counts.device)[None, :] >= counts[:, None]
    w = torch.softmax(sim.masked_fill(pad.to(sim.device), float("-inf")), dim=1)
    return torch.einsum("bn,bnd->bd", w, values.reshape(b, n, -1)).view(b, *values.shape[2:])


def crop_resize(fmap: torch.Tensor, boxes, size: int) -> torch.Tensor:
    """ROI extraction as released (not torchvision roi_align): per sample, crop ``fmap[i, :, y1:y2, x1:x2]`` and
    resize it bilinearly (align_corners=False) to size x size. ``boxes``: (B, 4) integer feature-map boxes."""
    crops = []
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        crop = fmap[i:i + 1, :, int(y1):int(y2), int(x1):int(x2)]
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False))
    return torch.cat(crops, dim=0)
