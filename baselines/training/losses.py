"""Training losses of the DMDNet / DFDNet / ASFFNet family: pixel L1, perceptual, hinge GAN, identity.

Images are (B, 3, H, W) in [0, 1]. Losses are computed in float32 (inputs from autocast are cast up).

Perceptual loss: L1 between VGG19 features (pre-activation conv1_2, conv2_2, conv3_4, conv4_4, conv5_4 weighted
0.1, 0.1, 1, 1, 1 — the GFPGAN/BasicSR setting) of ImageNet-normalised images, with the ``torchvision-vgg19``
weights from the weights registry. **Without those weights** a random-weight VGG would be meaningless, so
:func:`build_perceptual_loss` warns and returns :class:`StructureLoss` instead: the mean over scales of
(1 - SSIM) plus the L1 of image gradients, which needs no pretrained weights (documented in docs/training.md).

Identity loss: L1 between ArcFace-ResNet18 embeddings (GFPGAN's identity loss; the network of
:mod:`evaluation.identity`, grey 128x128 input in [-1, 1]) of restored and ground-truth faces, with the
``arcface-resnet18`` weights; without them it is disabled with a log line (:func:`build_identity_loss` returns None).
"""

from __future__ import annotations

import logging
import warnings

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

VGG_WEIGHTS = "torchvision-vgg19"
IDENTITY_WEIGHTS = "arcface-resnet18"
#: torchvision vgg19.features index of each pre-activation conv output used, with its weight
VGG_LAYERS = {"conv1_2": (2, 0.1), "conv2_2": (7, 0.1), "conv3_4": (16, 1.0), "conv4_4": (25, 1.0),
              "conv5_4": (34, 1.0)}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualFallbackWarning(UserWarning):
    """The VGG19 weights are missing: the perceptual term uses the structure (SSIM + gradient) fallback."""


# ----------------------------------------------------------------------------------------------- pixel
def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(pred.float(), target.float())


def _fp32(fn):
    """Run a loss in float32 even inside an autocast region (SSIM variances and VGG features lose too much
    precision in bf16/fp16)."""

    def wrapper(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=pred.device.type, enabled=False):
            return fn(self, pred.float(), target.float())

    wrapper.__doc__ = fn.__doc__
    return wrapper


# ----------------------------------------------------------------------------------------------- hinge GAN
def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: E[relu(1 - D(real))] + E[relu(1 + D(fake))]."""
    return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: -E[D(fake)]."""
    return -fake_logits.float().mean()


# ----------------------------------------------------------------------------------------------- perceptual
class VGGPerceptualLoss(nn.Module):
    """L1 between VGG19 features of ImageNet-normalised images (frozen, eval mode)."""

    kind = "vgg19"

    def __init__(self, state_dict: dict[str, torch.Tensor], layers: dict[str, tuple[int, float]] = VGG_LAYERS):
        super().__init__()
        from torchvision.models import vgg19

        net = vgg19(weights=None)
        net.load_state_dict(state_dict)
        last = max(i for i, _ in layers.values())
        self.features = net.features[: last + 1].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.taps = {i: w for i, w in layers.values()}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):  # the feature network stays in eval mode
        super().train(mode)
        self.features.eval()
        return self

    @_fp32
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = (pred.float() - self.mean) / self.std
        y = (target.float() - self.mean) / self.std
        loss = x.new_zeros(())
        for i, layer in enumerate(self.features):
            x = layer(x)
            with torch.no_grad():
                y = layer(y)
            if i in self.taps:
                loss = loss + self.taps[i] * F.l1_loss(x, y)
        return loss


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    ax = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    return g


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
         data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004: Gaussian window, K1=0.01, K2=0.03, valid convolution) per image, (B,)."""
    c = x.shape[1]
    g = _gaussian_window(window, sigma, x.device, x.dtype)
    kh = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    kv = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, kh, groups=c), kv, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


class StructureLoss(nn.Module):
    """Weight-free stand-in for the VGG perceptual loss: mean over scales of (1 - SSIM) + L1 of image gradients.

    Scales: the image and its 2x average-pooled versions while the side stays >= 4 * window (at most 4 scales),
    the multi-scale SSIM idea without the product form (which is unstable early in training)."""

    kind = "ssim+gradient"

    def __init__(self, window: int = 11, max_scales: int = 4, gradient_weight: float = 1.0):
        super().__init__()
        self.window = window
        self.max_scales = max_scales
        self.gradient_weight = gradient_weight

    @_fp32
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y = pred.float(), target.float()
        terms = []
        for _ in range(self.max_scales):
            if min(x.shape[-2:]) < max(self.window, 8):
                break
            terms.append(1.0 - ssim(x, y, window=self.window).mean())
            if min(x.shape[-2:]) // 2 < 4 * self.window:
                break
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        s = torch.stack(terms).mean()
        px, py = pred.float(), target.float()
        grad = (F.l1_loss(px[..., :, 1:] - px[..., :, :-1], py[..., :, 1:] - py[..., :, :-1])
                + F.l1_loss(px[..., 1:, :] - px[..., :-1, :], py[..., 1:, :] - py[..., :-1, :]))
        return s + self.gradient_weight * grad


def build_perceptual_loss() -> nn.Module:
    """VGG19 perceptual loss with the registry's weights, or :class:`StructureLoss` with a clear warning."""
    from bfrcore import weights as wreg

    try:
        path = wreg.require(VGG_WEIGHTS)
    except wreg.MissingWeightsError as e:
        msg = (f"perceptual loss: VGG19 weights unavailable, so the perceptual term uses the documented fallback "
               f"(multi-scale SSIM + image-gradient L1, no pretrained weights) instead of VGG19 features. {e}")
        warnings.warn(msg, PerceptualFallbackWarning, stacklevel=2)
        return StructureLoss()
    state = torch.load(path, map_location="cpu", weights_only=True)
    log.info("perceptual loss: VGG19 features from %s", path)
    return VGGPerceptualLoss(state)


# ----------------------------------------------------------------------------------------------- identity
class IdentityLoss(nn.Module):
    """L1 between ArcFace-ResNet18 embeddings of the restored and ground-truth faces (GFPGAN's identity loss)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()
        return self

    @staticmethod
    def _grey128(x: torch.Tensor) -> torch.Tensor:
        x = x.float() * 2 - 1
        g = 0.2989 * x[:, 0:1] + 0.5870 * x[:, 1:2] + 0.1140 * x[:, 2:3]
        return F.interpolate(g, size=(128, 128), mode="bilinear", align_corners=False)

    @_fp32
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t = self.net(self._grey128(target))
        return F.l1_loss(self.net(self._grey128(pred)), t)


def build_identity_loss() -> IdentityLoss | None:
    """The identity loss with the registry's arcface-resnet18 weights, or None (logged) when they are missing."""
    from bfrcore import weights as wreg

    try:
        path = wreg.require(IDENTITY_WEIGHTS)
    except wreg.MissingWeightsError as e:
        log.warning("identity loss disabled: %s", e)
        return None
    from bfrcore.faces.arcface18 import ResNetArcFace18, strip_module_prefix

    state = torch.load(path, map_location="cpu", weights_only=True)
    net = ResNetArcFace18()
    net.load_state_dict(strip_module_prefix(state), strict=True)
    log.info("identity loss: ArcFace-ResNet18 from %s", path)
    return IdentityLoss(net)
