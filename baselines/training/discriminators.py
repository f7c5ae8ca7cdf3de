"""Spectral-norm discriminators for the hinge GAN: one on the whole face, one per facial component.

- :class:`PatchDiscriminator`: stride-2 4x4 convs (width doubling up to 8x), then two 3x3 convs to a map of patch
  logits. Every conv is spectral-normalised; LeakyReLU(0.2); no normalisation layers.
- :class:`ComponentDiscriminators`: left eye, right eye and mouth crops (the DMDNet/ASFFNet box rules of
  :mod:`baselines.components`, from the 68 landmarks of the ground truth) resized with RoIAlign to a fixed side,
  each judged by its own small patch discriminator.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from baselines import components

#: components judged by the component discriminators (DMDNet uses these three; the nose box is unused there)
GAN_COMPONENTS = ("left_eye", "right_eye", "mouth")


def _sn_conv(cin: int, cout: int, k: int, s: int, p: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, k, s, p))


class PatchDiscriminator(nn.Module):
    """Spectral-norm patch discriminator: (B, 3, H, W) in [0, 1] -> (B, 1, h, w) logits."""

    def __init__(self, channels: int = 64, layers: int = 4):
        super().__init__()
        mods: list[nn.Module] = [_sn_conv(3, channels, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        c = channels
        for i in range(1, layers):
            c_next = channels * min(2**i, 8)
            mods += [_sn_conv(c, c_next, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c = c_next
        mods += [_sn_conv(c, c, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True), _sn_conv(c, 1, 3, 1, 1)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


def component_rois(landmarks: torch.Tensor, size: int, names=GAN_COMPONENTS) -> dict[str, torch.Tensor]:
    """RoIAlign boxes (B, 5) = (batch index, x1, y1, x2, y2) per component, in pixels of a ``size`` image, from
    landmarks (B, 68, 2) in that image (boxes computed in the 512 frame by :func:`components.component_boxes`)."""
    boxes = components.scale_boxes(components.component_boxes(landmarks, size), size)  # (B, 4, 4) float64
    b = boxes.shape[0]
    idx = torch.arange(b, dtype=torch.float32).view(b, 1)
    out = {}
    for name in names:
        bx = torch.as_tensor(boxes[:, components.COMPONENTS.index(name)], dtype=torch.float32)
        out[name] = torch.cat([idx, bx], dim=1).to(landmarks.device)
    return out


def crop_components(images: torch.Tensor, rois: dict[str, torch.Tensor], out_size: int) -> dict[str, torch.Tensor]:
    """Differentiable crops (B, 3, out_size, out_size) of each component box (torchvision RoIAlign)."""
    from torchvision.ops import roi_align

    x = images.float()
    return {name: roi_align(x, r.to(x.dtype), output_size=out_size, spatial_scale=1.0, sampling_ratio=2,
                            aligned=True) for name, r in rois.items()}


class ComponentDiscriminators(nn.Module):
    """One spectral-norm patch discriminator per component, on RoIAlign crops of side ``crop_size``."""

    def __init__(self, crop_size: int, channels: int = 64, names=GAN_COMPONENTS):
        super().__init__()
        self.crop_size = int(crop_size)
        self.names = tuple(names)
        layers = max(1, min(4, int(math.log2(max(self.crop_size, 8))) - 3))
        self.nets = nn.ModuleDict({n: PatchDiscriminator(channels, layers) for n in self.names})

    def rois(self, landmarks: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
        return component_rois(landmarks, size, self.names)

    def forward(self, images: torch.Tensor, rois: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        crops = crop_components(images, rois, self.crop_size)
        return {n: self.nets[n](crops[n]) for n in self.names}
