"""Metrics computed by pyiqa's own code (the reference package), only when their weights are present in the
registry; pyiqa never downloads anything here and no metric ever runs with random weights.

- ``niqe_pyiqa``: pyiqa ``niqe`` (YIQ luma x255 rounded, ``niqe_modelparameters.mat``; registry ``niqe-pyiqa``);
- ``musiq``: pyiqa ``musiq`` (MUSIQ trained on KonIQ-10k; registry ``musiq-koniq``; higher is better, ~0-100);
- ``dists``: pyiqa ``dists`` (DISTS; registry ``dists-pyiqa`` for alpha/beta and ``torchvision-vgg16`` for the
  trunk, exactly the two files pyiqa itself loads; full reference, lower is better, 0-1);
- ``clipiqa``: pyiqa ``clipiqa`` (CLIP-IQA with OpenAI CLIP RN50, registry ``clip-rn50``; higher is better, 0-1);
- ``maniqa``: pyiqa ``maniqa`` (MANIQA, KonIQ-10k checkpoint, registry ``maniqa-koniq``; higher is better, ~0-1).

The last four are built from pyiqa's architecture classes (``pyiqa.archs.build_network`` with pyiqa's default
options for that metric) inside :func:`no_downloads`, which swaps every download path pyiqa would take (ImageNet
VGG16 for DISTS, timm's ImageNet ViT for MANIQA, the CLIP model, ``load_file_from_url``) for a refusal or a
weight-less constructor; then the registry file is loaded with ``torch.load(weights_only=True)``, unwrapped and
cleaned as pyiqa's ``load_pretrained_network`` does, with pyiqa's own ``strict`` choice. MANIQA's checkpoint holds
its whole ViT (pyiqa loads it strictly), so timm's ImageNet ViT weights are never needed. DISTS: pyiqa builds the
trunk from torchvision's VGG16 and then loads ``alpha``/``beta`` non-strictly; we do the same and refuse a file
without ``alpha``/``beta`` (pyiqa would silently keep its random ones). Inputs are RGB in [0, 1] at full
resolution (uint8 / 255), as pyiqa's ``create_metric(name)(x[, ref])``.

pyiqa is imported lazily (it takes seconds to import).
"""

from __future__ import annotations

import re
import threading
import types
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from bfrcore.versions import package_version
from evaluation.metrics import Batch, Column, Metric, register_metric


class PyiqaMetric(Metric):
    """A metric built by ``pyiqa.create_metric`` with the registry file as ``pretrained_model_path``
    (for metrics whose file pyiqa reads without pickle, e.g. NIQE's .mat)."""

    kind = "no_reference"
    version = "1"

    def __init__(self, options=None, *, name: str, pyiqa_name: str, weights: str, higher_is_better: bool,
                 description: str, convention: str):
        super().__init__(options)
        self.name = name
        self.pyiqa_name = pyiqa_name
        self.needs = (weights,)
        self.columns = (Column(name, higher_is_better, description),)
        self._convention = convention
        self.reference = f"pyiqa {package_version('pyiqa', '?')} create_metric('{pyiqa_name}')"

    @property
    def convention(self) -> str:
        return f"pyiqa {package_version('pyiqa', '?')} '{self.pyiqa_name}': {self._convention}"

    def _setup(self, device: str) -> None:
        import pyiqa

        from bfrcore import weights as wreg

        path = wreg.require(self.needs[0])
        self._model = pyiqa.create_metric(self.pyiqa_name, device=torch.device(device),
                                          pretrained_model_path=str(path))

    @torch.no_grad()
    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        x = batch.tensor("pred").float() / 255.0
        vals = []
        for s in range(0, x.shape[0], self.options.batch_size):
            vals.append(self._model(x[s:s + self.options.batch_size]).reshape(-1).double().cpu())
        return {self.name: torch.cat(vals).numpy()}


# ----------------------------------------------------------------------------------------------- building
_BUILD_LOCK = threading.RLock()


class DownloadRefused(RuntimeError):
    """pyiqa tried to fetch a file: weights come from the celebref registry only."""


def _refuse(*args, **kwargs):
    raise DownloadRefused(f"pyiqa tried to download {args[0] if args else kwargs!r}; weights come only from the "
                          "celebref registry (`bench weights fetch ...`)")


@contextmanager
def no_downloads():
    """While active, pyiqa's architectures build without any download: ``torchvision.models.vgg16`` (DISTS) and
    ``timm.create_model`` (MANIQA) are called with no pretrained weights, and pyiqa's ``load_file_from_url`` and
    CLIP ``_download`` raise :class:`DownloadRefused`. Module attributes are restored on exit (a lock serialises
    builds)."""
    import timm
    import torchvision
    from pyiqa.archs import arch_util, clip_model, clipiqa_arch, dists_arch, maniqa_arch

    patches = [
        (arch_util, "load_file_from_url", _refuse),
        (clipiqa_arch, "load_file_from_url", _refuse),
        (clip_model, "_download", _refuse),
        (dists_arch, "models", types.SimpleNamespace(
            vgg16=lambda *a, **k: torchvision.models.vgg16(weights=None))),
        (maniqa_arch, "timm", types.SimpleNamespace(
            create_model=lambda name, *a, **k: timm.create_model(name, pretrained=False,
                                                                 **{x: v for x, v in k.items() if x != "pretrained"}))),
    ]
    with _BUILD_LOCK:
        saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in patches]
        try:
            for mod, attr, new in patches:
                setattr(mod, attr, new)
            yield
        finally:
            for mod, attr, old in saved:
                setattr(mod, attr, old)


def build_arch(pyiqa_name: str, **overrides) -> torch.nn.Module:
    """pyiqa's network for metric ``pyiqa_name`` with pyiqa's default options (``DEFAULT_CONFIGS``), updated by
    ``overrides``, built with ``pretrained=False`` and no downloads. Random until weights are loaded."""
    from pyiqa.archs import build_network
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    opts = dict(DEFAULT_CONFIGS[pyiqa_name]["metric_opts"])
    opts["pretrained"] = False
    opts.update(overrides)
    with no_downloads():
        return build_network(opts)


def load_state(path: str | Path) -> dict:
    """A checkpoint as pyiqa's ``load_pretrained_network`` reads it, but with ``weights_only=True``: unwrapped from
    ``params`` when it has that key, DataParallel ``module.`` prefixes removed."""
    from pyiqa.archs.arch_util import clean_state_dict

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("params"), dict):
        state = state["params"]
    if not isinstance(state, dict):
        raise TypeError(f"{path}: expected a state dict, got {type(state).__name__}")
    return clean_state_dict(state)


def _load_strict(net: torch.nn.Module, path: Path) -> None:
    net.load_state_dict(load_state(path), strict=True)


_STAGE_KEY = re.compile(r"^stage\d\.(\d+)\.(weight|bias)$")


def load_dists(net: torch.nn.Module, vgg_state: dict, dists_state: dict) -> None:
    """DISTS as pyiqa assembles it: the conv layers of torchvision's VGG16 (``features.<i>.*`` -> ``stage<k>.<i>.*``)
    then the DISTS file loaded non-strictly on top. ``alpha`` and ``beta`` must be in the file and every key of it
    must be a DISTS key of the same shape (else ``ValueError``): nothing is left random."""
    own = net.state_dict()
    trunk = {}
    for key in own:
        m = _STAGE_KEY.match(key)
        if m:
            src = f"features.{m.group(1)}.{m.group(2)}"
            if src not in vgg_state:
                raise ValueError(f"VGG16 state dict lacks {src!r} (is this torchvision's vgg16 file?)")
            trunk[key] = vgg_state[src]
    if len(trunk) != 26:  # 13 conv layers x (weight, bias)
        raise ValueError(f"found {len(trunk)} VGG16 trunk tensors for DISTS, expected 26")
    missing = [k for k in ("alpha", "beta") if k not in dists_state]
    unexpected = [k for k in dists_state if k not in own]
    if missing or unexpected:
        raise ValueError(f"not a DISTS weights file: missing {missing or 'nothing'}, unexpected {unexpected[:5] or 'nothing'}")
    bad = [k for k, v in {**trunk, **dists_state}.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"DISTS tensors of the wrong shape: {', '.join(bad[:5])}")
    net.load_state_dict(trunk, strict=False)
    net.load_state_dict(dists_state, strict=False)


def _build_dists(paths: dict[str, Path]) -> torch.nn.Module:
    net = build_arch("dists")
    load_dists(net, torch.load(paths["torchvision-vgg16"], map_location="cpu", weights_only=True),
               load_state(paths["dists-pyiqa"]))
    return net


def _build_musiq(paths: dict[str, Path]) -> torch.nn.Module:
    net = build_arch("musiq")  # pretrained=False keeps num_class=1, the KonIQ head
    _load_strict(net, paths["musiq-koniq"])
    return net


def _build_maniqa(paths: dict[str, Path]) -> torch.nn.Module:
    net = build_arch("maniqa")
    _load_strict(net, paths["maniqa-koniq"])  # every tensor, the ViT-B/8 included
    return net


def load_clip(path: str | Path) -> torch.nn.Module:
    """The CLIP model of a checkpoint as pyiqa's ``clip_model.load(..., 'cpu')`` builds it (``build_model`` of its
    state dict, then float32). OpenAI's file is a TorchScript archive (its sha256 is checked by the registry); a
    plain state dict is read with ``weights_only=True`` (pyiqa's own ``load`` cannot read one: it re-reads the
    file object the failed ``torch.jit.load`` consumed)."""
    from pyiqa.archs.clip_model import build_model

    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit deprecation notice
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except RuntimeError:
        state = torch.load(path, map_location="cpu", weights_only=True)
    return build_model(dict(state)).float()


def _build_clipiqa(paths: dict[str, Path]) -> torch.nn.Module:
    from pyiqa.archs import clipiqa_arch

    model = load_clip(paths["clip-rn50"])
    with _BUILD_LOCK:
        original = clipiqa_arch.load
        clipiqa_arch.load = lambda name, device="cpu", **k: model  # CLIPIQA.__init__ calls load(backbone, 'cpu')
        try:
            return build_arch("clipiqa")
        finally:
            clipiqa_arch.load = original


class PyiqaArchMetric(Metric):
    """A pyiqa architecture with registry weights (see the module docstring)."""

    version = "1"

    def __init__(self, options=None, *, name: str, pyiqa_name: str, kind: str, weights: tuple[str, ...],
                 build: Callable[[dict[str, Path]], torch.nn.Module], higher_is_better: bool, description: str,
                 convention: str):
        super().__init__(options)
        self.name = name
        self.pyiqa_name = pyiqa_name
        self.kind = kind
        self.needs = weights
        self._build = build
        self.columns = (Column(name, higher_is_better, description),)
        self._convention = convention
        self.reference = f"pyiqa {package_version('pyiqa', '?')} create_metric('{pyiqa_name}')"

    @property
    def convention(self) -> str:
        return f"pyiqa {package_version('pyiqa', '?')} '{self.pyiqa_name}': {self._convention}"

    def _setup(self, device: str) -> None:
        from bfrcore import weights as wreg

        paths = {n: wreg.require(n) for n in self.needs}
        self._net = self._build(paths).eval().to(device)

    @torch.no_grad()
    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        x = batch.tensor("pred").float() / 255.0
        y = batch.tensor("gt").float() / 255.0 if self.kind == "full_reference" else None
        bs = self.options.batch_size
        vals = []
        for s in range(0, x.shape[0], bs):
            args = (x[s:s + bs],) if y is None else (x[s:s + bs], y[s:s + bs])
            vals.append(self._net(*args).reshape(-1).double().cpu())
        return {self.name: torch.cat(vals).numpy()}


register_metric("niqe_pyiqa", lambda o: PyiqaMetric(
    o, name="niqe_pyiqa", pyiqa_name="niqe", weights="niqe-pyiqa", higher_is_better=False,
    description="NIQE (pyiqa convention)",
    convention="Y (YIQ) x255 rounded, 96x96 blocks, niqe_modelparameters.mat"))
register_metric("musiq", lambda o: PyiqaArchMetric(
    o, name="musiq", pyiqa_name="musiq", kind="no_reference", weights=("musiq-koniq",), build=_build_musiq,
    higher_is_better=True, description="MUSIQ (KonIQ-10k; ~0-100)",
    convention="multi-scale transformer (full res + longer side 224, 384; 32 px patches), KonIQ-10k checkpoint "
               "musiq_koniq_ckpt-e95806b9.pth, RGB [0,1]"))
register_metric("dists", lambda o: PyiqaArchMetric(
    o, name="dists", pyiqa_name="dists", kind="full_reference", weights=("dists-pyiqa", "torchvision-vgg16"),
    build=_build_dists, higher_is_better=False, description="DISTS structure+texture distance (0-1)",
    convention="VGG16 (torchvision ImageNet) with L2 pooling, alpha/beta from DISTS_weights-f5e65c96.pth, "
               "ImageNet mean/std, RGB [0,1] at full resolution (no resize), restored vs GT"))
register_metric("clipiqa", lambda o: PyiqaArchMetric(
    o, name="clipiqa", pyiqa_name="clipiqa", kind="no_reference", weights=("clip-rn50",), build=_build_clipiqa,
    higher_is_better=True, description="CLIP-IQA (CLIP RN50; 0-1)",
    convention="OpenAI CLIP RN50, 5 antonym prompt pairs (good/bad, sharp/blurry image, sharp/blurry edges, "
               "high/low resolution, noise-free/noisy) averaged, no positional embedding (any size), OpenAI CLIP "
               "mean/std, RGB [0,1] at full resolution"))
register_metric("maniqa", lambda o: PyiqaArchMetric(
    o, name="maniqa", pyiqa_name="maniqa", kind="no_reference", weights=("maniqa-koniq",), build=_build_maniqa,
    higher_is_better=True, description="MANIQA (KonIQ-10k; ~0-1)",
    convention="MANIQA KonIQ-10k checkpoint ckpt_koniq10k.pt (ViT-B/8 blocks 6-9, 2 TAB + Swin stages, "
               "scale 0.8), 20 uniform 224x224 crops averaged, Inception mean/std 0.5, RGB [0,1]"))
