"""LPIPS v0.1 (Zhang et al. 2018) through the ``lpips`` package, with every pretrained file from the registry.

The package's linear heads ship in its wheel (registry ``lpips-{alex,vgg}-v0.1``); the AlexNet / VGG16 trunks are
torchvision's ImageNet weights (``torchvision-alexnet``, ``torchvision-vgg16``). :func:`build_lpips` builds
``lpips.LPIPS(pnet_rand=True)`` — so the package never downloads anything — and then loads the verified trunk
state dict into it, strictly: a missing trunk raises ``MissingWeightsError``, never a silent random network.

Convention: inputs in [0, 1] mapped to [-1, 1] (``normalize=True``), v0.1 scaling layer, spatial average; the same
call as ``lpips.LPIPS(net=...)(x, y, normalize=True)`` and pyiqa ``lpips`` / ``lpips-vgg``. Face-restoration papers
(BasicSR/VQFR scripts) report the VGG variant.

``flpips`` (:class:`FaceLPIPSMetric`): the VGG variant on images multiplied by a face mask (ReF-LDM's fLPIPS form),
with the fixed face box :data:`FACE_BOX_512` as the mask.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from bfrcore.versions import package_version
from evaluation.metrics import Batch, Column, Metric, register_metric

NETS = {"alex": ("lpips-alex-v0.1", "torchvision-alexnet"), "vgg": ("lpips-vgg-v0.1", "torchvision-vgg16")}


def load_trunk(model, state_dict: dict) -> None:
    """Copy torchvision ``features.<i>.*`` tensors into an ``lpips.LPIPS`` model's ``net.slice<k>.<i>.*``.

    Every trunk parameter must be found (else ``KeyError``); the classifier part of the torchvision file is unused.
    """
    loaded = 0
    net = model.net
    for slice_name, sl in net.named_children():
        if not slice_name.startswith("slice"):
            continue
        for idx, module in sl.named_children():
            for pname, tensor in module.state_dict().items():
                key = f"features.{idx}.{pname}"
                if key not in state_dict:
                    raise KeyError(f"trunk state dict lacks {key!r} (is this the right torchvision file?)")
                src = state_dict[key]
                if tuple(src.shape) != tuple(tensor.shape):
                    raise ValueError(f"{key}: shape {tuple(src.shape)} != {tuple(tensor.shape)}")
                tensor.copy_(src)
                loaded += 1
    expected = sum(len(m.state_dict()) for m in net.modules() if not list(m.children()))
    if loaded != expected:
        raise RuntimeError(f"loaded {loaded} trunk tensors, expected {expected}")


def build_lpips(net: str = "vgg", device: str = "cpu", trunk_state: dict | None = None):
    """An eval-mode ``lpips.LPIPS`` for ``net`` ('alex' | 'vgg') with registry weights.

    ``trunk_state``: a torchvision state dict to use instead of the registry file (tests only)."""
    import lpips

    from bfrcore import weights as wreg

    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; choose from {sorted(NETS)}")
    heads_name, trunk_name = NETS[net]
    heads = wreg.require(heads_name)
    if trunk_state is None:
        trunk_state = torch.load(wreg.require(trunk_name), map_location="cpu", weights_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, model_path=str(heads),
                            verbose=False)
    with torch.no_grad():
        load_trunk(model, trunk_state)
    return model.eval().to(device)


@torch.no_grad()
def lpips_distance(model, pred: torch.Tensor, target: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """(B,) LPIPS of [0, 1] float (or uint8) (B, 3, H, W) tensors, float64 result."""
    device = next(model.parameters()).device
    out = []
    for s in range(0, pred.shape[0], batch_size):
        a = pred[s:s + batch_size].to(device)
        b = target[s:s + batch_size].to(device)
        a = a.float() / 255.0 if a.dtype == torch.uint8 else a.float()
        b = b.float() / 255.0 if b.dtype == torch.uint8 else b.float()
        out.append(model(a, b, normalize=True).reshape(-1).double().cpu())
    return torch.cat(out)


class LPIPSMetric(Metric):
    kind = "full_reference"
    version = "1"

    def __init__(self, options=None, net: str = "vgg"):
        super().__init__(options)
        self.net = net
        self.name = f"lpips_{net}"
        self.needs = NETS[net]
        self.columns = (Column(self.name, False, f"LPIPS v0.1 ({net})"),)
        self.reference = (f"lpips {package_version('lpips', '?')} LPIPS(net='{net}', version='0.1') per pair; "
                          "pyiqa lpips")

    @property
    def convention(self) -> str:
        return (f"LPIPS v0.1 {self.net} (lpips package heads + torchvision ImageNet trunk), RGB [0,1]->[-1,1], "
                "uint8 inputs, full resolution, spatial mean")

    def _setup(self, device: str) -> None:
        self._model = build_lpips(self.net, device)

    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        v = lpips_distance(self._model, batch.tensor("pred"), batch.tensor("gt"), self.options.batch_size)
        return {self.name: v.numpy()}


#: the face box of an FFHQ-aligned 512x512 image, (x0, y0, x1, y1) in pixels, end-exclusive: the mean box of the
#: 68 landmarks (jaw x 102-403, brows y 194, chin y 468) of the 61 CelebRef-HQ example faces, widened to multiples
#: of 16 and raised 64 px above the brows for the forehead; other sizes scale it (rounded)
FACE_BOX_512 = (96, 128, 416, 480)


def face_box(height: int, width: int) -> tuple[int, int, int, int]:
    """:data:`FACE_BOX_512` scaled to an image of ``height`` x ``width`` pixels (rounded to whole pixels)."""
    x0, y0, x1, y1 = FACE_BOX_512
    return (round(x0 * width / 512), round(y0 * height / 512), round(x1 * width / 512), round(y1 * height / 512))


def face_mask(height: int, width: int) -> torch.Tensor:
    """(1, 1, H, W) float mask: 1 inside :func:`face_box`, 0 elsewhere."""
    x0, y0, x1, y1 = face_box(height, width)
    m = torch.zeros(1, 1, height, width)
    m[..., y0:y1, x0:x1] = 1.0
    return m


class FaceLPIPSMetric(LPIPSMetric):
    """``flpips``: LPIPS on the face region, the way ReF-LDM's ``scripts/eval.py`` writes it: pyiqa ``lpips-vgg``
    of the restored image and the GT, both multiplied by a binary face mask (0 outside), over the full frame.

    ReF-LDM's mask is the 'face' classes of a face-parsing map of the image (FaRL celebm labels: skin, ears, brows,
    eyes, nose, mouth, lips, glasses); no parser is bundled here, so the mask is the fixed face box
    :data:`FACE_BOX_512` of the aligned image. Numbers are comparable across methods on one test set, not to
    ReF-LDM's table."""

    def __init__(self, options=None):
        super().__init__(options, "vgg")
        self.name = "flpips"
        self.columns = (Column("flpips", False, "LPIPS v0.1 (vgg) on the face box, zero outside"),)
        self.reference = (f"lpips {package_version('lpips', '?')} LPIPS(net='vgg', version='0.1')(pred*M, gt*M); ReF-LDM "
                          "scripts/eval.py (commented-out 'Flpips' line: pyiqa lpips-vgg on masked images)")

    @property
    def convention(self) -> str:
        x0, y0, x1, y1 = FACE_BOX_512
        return (f"LPIPS v0.1 vgg (as lpips_vgg) of pred*M and gt*M over the full frame, M = 1 on the face box "
                f"x[{x0},{x1}) y[{y0},{y1}) of the 512 aligned image (scaled for other sizes), 0 elsewhere; "
                "ReF-LDM masks with a face-parsing map instead (not bundled)")

    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        pred, gt = batch.tensor("pred"), batch.tensor("gt")
        m = face_mask(pred.shape[-2], pred.shape[-1]).to(pred.device)
        a = pred.float() / 255.0 * m
        b = gt.float() / 255.0 * m
        return {self.name: lpips_distance(self._model, a, b, self.options.batch_size).numpy()}


register_metric("lpips_vgg", lambda o: LPIPSMetric(o, "vgg"))
register_metric("lpips_alex", lambda o: LPIPSMetric(o, "alex"))
register_metric("flpips", lambda o: FaceLPIPSMetric(o))
