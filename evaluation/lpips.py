"""LPIPS v0.1 (Zhang et al. 2018) through the ``lpips`` package, with every pretrained file from the registry.

The package's linear heads ship in its wheel (registry ``lpips-{alex,vgg}-v0.1``); the AlexNet / VGG16 trunks are
torchvision's ImageNet weights (``torchvision-alexnet``, ``torchvision-vgg16``). :func:`build_lpips` builds
``lpips.LPIPS(pnet_rand=True)`` — so the package never downloads anything — and then loads the verified trunk
state dict into it, strictly: a missing trunk raises ``MissingWeightsError``, never a silent random network.

Convention: inputs in [0, 1] mapped to [-1, 1] (``normalize=True``), v0.1 scaling layer, spatial average; the same
call as ``lpips.LPIPS(net=...)(x, y, normalize=True)`` and pyiqa ``lpips`` / ``lpips-vgg``. Face-restoration papers
(BasicSR/VQFR scripts) report the VGG variant.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

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
    from celebref import weights as wreg

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
        self.reference = f"lpips {_version('lpips')} LPIPS(net='{net}', version='0.1') per pair; pyiqa lpips"

    @property
    def convention(self) -> str:
        return (f"LPIPS v0.1 {self.net} (lpips package heads + torchvision ImageNet trunk), RGB [0,1]->[-1,1], "
                "uint8 inputs, full resolution, spatial mean")

    def _setup(self, device: str) -> None:
        self._model = build_lpips(self.net, device)

    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        v = lpips_distance(self._model, batch.tensor("pred"), batch.tensor("gt"), self.options.batch_size)
        return {self.name: v.numpy()}


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return "?"


register_metric("lpips_vgg", lambda o: LPIPSMetric(o, "vgg"))
register_metric("lpips_alex", lambda o: LPIPSMetric(o, "alex"))
