"""ArcFace-18: the GFPGAN/VQFR ``arcface_resnet18`` recipe (ResNet-IR 18, IRBlock [2,2,2,2], no SE, 128x128 grey
input, 512-D, cosine), as a network (used by training's identity loss) and as the embedder ``arcface18``.

Preprocessing as VQFR ``metric_paper/calculate_cos_dist.py``: OpenCV grey (0.299 R + 0.587 G + 0.114 B, uint8),
``cv2.resize`` to 128x128 (bilinear), ``(x - 127.5) / 127.5``; eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from bfrcore.faces.embed import Embedder, register_embedder


# ----------------------------------------------------------------------------------------------- ResNet-IR 18
def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class IRBlock(nn.Module):
    """Improved residual block of ArcFace ResNets: BN-conv-BN-PReLU-conv-BN (+ shortcut), PReLU."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(inplanes)
        self.conv1 = _conv3x3(inplanes, inplanes)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.prelu = nn.PReLU()
        self.conv2 = _conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + shortcut)


class ResNetArcFace18(nn.Module):
    """``resnet_face18(use_se=False)`` / GFPGAN ``ResNetArcFace('IRBlock', [2, 2, 2, 2], use_se=False)``:
    1x128x128 grey input in [-1, 1] -> 512-D embedding. Parameter names match the released checkpoints."""

    def __init__(self, layers: Sequence[int] = (2, 2, 2, 2)):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(1, 64, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.bn4 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [IRBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [IRBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x))
        return self.bn5(self.fc5(x.flatten(1)))


def strip_module_prefix(state: dict) -> dict:
    """Drop DataParallel ``module.`` prefixes (resnet18_110.pth / some arcface_resnet18.pth copies carry them)."""
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {(k.removeprefix("module.")): v for k, v in state.items()}


def arcface18_preprocess(images: Sequence[np.ndarray]) -> torch.Tensor:
    """VQFR recipe: RGB uint8 -> OpenCV grey uint8 -> cv2.resize 128x128 (INTER_LINEAR) -> (x-127.5)/127.5."""
    import cv2

    out = []
    for img in images:
        grey = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        grey = cv2.resize(grey, (128, 128), interpolation=cv2.INTER_LINEAR)
        out.append(torch.from_numpy(grey.astype(np.float32)))
    x = torch.stack(out).unsqueeze(1)
    return (x - 127.5) / 127.5


class ArcFace18Embedder(Embedder):
    """The arcface_resnet18 recipe as a celebref embedder (512-D, cosine)."""

    name = "arcface18"
    dim = 512
    metric = "cosine"
    weights = ("arcface-resnet18",)

    def __init__(self, device: str = "cpu", state_dict: dict | None = None):
        from bfrcore import weights as wreg

        if state_dict is None:
            state_dict = torch.load(wreg.require("arcface-resnet18"), map_location="cpu", weights_only=True)
        self.model = ResNetArcFace18()
        self.model.load_state_dict(strip_module_prefix(state_dict), strict=True)
        self.model.eval().to(device)
        self.device = device

    @torch.no_grad()
    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        x = arcface18_preprocess(images).to(self.device)
        return self.model(x).float().cpu().numpy()


register_embedder("arcface18", ArcFace18Embedder)
