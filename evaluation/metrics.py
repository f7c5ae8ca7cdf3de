"""Metric objects: what each metric is and how it runs on a batch.

A :class:`Metric` states its ``name``, the per-image ``columns`` it writes (each with ``higher_is_better``), its
``convention`` (one line naming the reference implementation and every choice that changes the number), a
``version``, the weights-registry files it ``needs`` and :meth:`Metric.available` -> ``(ok, reason)``. A metric
whose weights are missing is never computed: :func:`resolve_metrics` reports it with the exact fix from
:class:`bfrcore.weights.MissingWeightsError`.

Distribution metrics (FID, KID; :mod:`evaluation.fid`) are stateful: ``update(images, real=...)`` then
``compute()``, and accumulating batch by batch gives the same value as passing every image at once.

Names (``--metrics``): ``psnr psnr_y ssim ssim_y ms_ssim lpips_vgg lpips_alex flpips dists ids ids_arcface
ids_arcface18 ids_dlib deg lmd lmd_awing fid kid niqe niqe_pyiqa musiq clipiqa maniqa``; ``default`` =
:data:`DEFAULT_METRICS`, ``all``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch

from bfrcore.metrics import functional as fn

DEFAULT_METRICS = ("psnr", "ssim", "lpips_vgg", "lpips_alex", "ids", "lmd", "fid", "niqe")
#: modules that register further metrics when imported
_METRIC_MODULES = ("evaluation.lpips", "evaluation.identity", "evaluation.lmd", "evaluation.fid",
                   "evaluation.pyiqa_metrics")


@dataclass(frozen=True)
class Column:
    """One per-image output column (or, for distribution metrics, one set-level value)."""

    name: str
    higher_is_better: bool
    description: str = ""


@dataclass(frozen=True)
class MetricOptions:
    """Conventions that change numbers; recorded in every metric's convention string."""

    crop_border: int = 0
    convention: str = "basicsr"  # psnr/ssim: 'basicsr' | 'pyiqa'
    fid_mode: str = "clean"  # 'clean' | 'legacy_pytorch'
    fid_stats: str | None = None  # weights-registry name or .npz path; None = the test set's HQ images
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    seed: int = 0
    batch_size: int = 8  # images per forward pass inside network metrics
    cache_dir: str | None = None  # FID/KID feature cache (default: $CELEBREF_HOME/cache/features)


@dataclass
class Batch:
    """What a metric sees: restored images and, where they exist, ground truth and reference images.

    Images are RGB uint8 (H, W, 3) arrays (what the saved PNGs hold). ``refs[i]`` are other HQ images of sample
    i's person (empty list when the test set has none); ``ref_ids`` name them (used as cache keys)."""

    image_ids: list[str]
    pred: list[np.ndarray]
    gt: list[np.ndarray] | None = None
    refs: list[list[np.ndarray]] | None = None
    ref_ids: list[list[str]] | None = None
    device: str = "cpu"
    _cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.pred)

    def tensor(self, which: str = "pred") -> torch.Tensor:
        """(B, 3, H, W) uint8 tensor of ``pred`` or ``gt`` on :attr:`device` (cached)."""
        if which not in self._cache:
            imgs = self.pred if which == "pred" else self.gt
            if imgs is None:
                raise ValueError(f"this batch has no {which!r} images")
            arr = np.stack([np.ascontiguousarray(i) for i in imgs])
            self._cache[which] = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().to(self.device)
        return self._cache[which]


class MetricUnavailable(RuntimeError):
    """Raised by :meth:`Metric.setup` when a metric cannot run here (the message says how to fix it)."""


class Metric:
    """Base class. Subclasses set the class attributes and implement :meth:`compute` (per-image metrics) or the
    stateful ``update``/``compute_set`` pair (distribution metrics)."""

    name: str = ""
    #: 'full_reference' (needs GT), 'no_reference', 'identity' (GT and references), 'distribution' (set-level)
    kind: str = "full_reference"
    version: str = "1"
    needs: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    reference: str = ""  # the reference implementation tests compare against

    def __init__(self, options: MetricOptions | None = None):
        self.options = options or MetricOptions()
        self.device = "cpu"
        self._ready = False

    # ------------------------------------------------------------------ description
    @property
    def convention(self) -> str:
        return ""

    @property
    def higher_is_better(self) -> bool:
        return self.columns[0].higher_is_better

    def available(self) -> tuple[bool, str]:
        """(True, '') when every weights file in :attr:`needs` is present and verified, else (False, fix)."""
        return weights_available(self.needs)

    def weights_records(self) -> list[dict]:
        from bfrcore import weights as wreg

        return [{k: v for k, v in wreg.describe(n).items() if k != "path"} for n in self.needs]

    def info(self) -> dict:
        return {
            "metric": self.name,
            "kind": self.kind,
            "version": f"celebref.{self.name}/{self.version}",
            "convention": self.convention,
            "reference": self.reference,
            "weights": self.weights_records(),
        }

    # ------------------------------------------------------------------ computing
    def setup(self, device: str = "cpu") -> "Metric":
        """Load models (once). Raises :class:`MetricUnavailable` or ``MissingWeightsError`` when it cannot run."""
        ok, why = self.available()
        if not ok:
            raise MetricUnavailable(why)
        if not self._ready or device != self.device:
            self.device = device
            self._setup(device)
            self._ready = True
        return self

    def _setup(self, device: str) -> None:
        pass

    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        """Per-image values for each column: {column: (B,) float64 array}."""
        raise NotImplementedError


def weights_available(names: Sequence[str]) -> tuple[bool, str]:
    """(True, '') or (False, the MissingWeightsError message of every absent file, joined)."""
    if not names:
        return True, ""
    from bfrcore import weights as wreg

    problems = []
    for n in names:
        st = wreg.status(n)
        if st.path is None:
            err = wreg.MissingWeightsError(st.entry, [p for _, p in wreg.candidate_paths(st.entry)], st.detail)
            problems.append(str(err))
    return (not problems), " ".join(problems)


# ----------------------------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Callable[[MetricOptions], Metric]] = {}
_ALIASES: dict[str, Callable[[MetricOptions], tuple[str, dict[str, str]]]] = {}


def register_metric(name: str, factory: Callable[[MetricOptions], Metric]) -> None:
    _REGISTRY[name] = factory


def register_alias(name: str, resolver: Callable[[MetricOptions], tuple[str, dict[str, str]]]) -> None:
    """An alias resolves to a concrete metric name plus {metric: reason} notes for preferred-but-missing ones."""
    _ALIASES[name] = resolver


def _load_all() -> None:
    for mod in _METRIC_MODULES:
        importlib.import_module(mod)


def list_metrics() -> list[str]:
    _load_all()
    return sorted(set(_REGISTRY) | set(_ALIASES))


def create_metric(name: str, options: MetricOptions | None = None) -> Metric:
    """A concrete metric object (aliases such as ``ids`` resolved)."""
    _load_all()
    options = options or MetricOptions()
    if name in _ALIASES:
        name, _ = _ALIASES[name](options)
    if name not in _REGISTRY:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(list_metrics())}")
    return _REGISTRY[name](options)


@dataclass
class Resolved:
    """The outcome of :func:`resolve_metrics`: metrics to compute, and those that cannot run, with the fix."""

    metrics: list[Metric]
    unavailable: dict[str, str]
    notes: dict[str, str]


def expand_names(names: Sequence[str] | str | None) -> list[str]:
    """``None``/'default' -> DEFAULT_METRICS; 'all' -> every registered metric; comma/space separated lists."""
    if names is None:
        return list(DEFAULT_METRICS)
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for item in names:
        for n in str(item).replace(",", " ").split():
            if n == "default":
                out += [m for m in DEFAULT_METRICS if m not in out]
            elif n == "all":
                _load_all()
                out += [m for m in sorted(_REGISTRY) if m not in out]
            elif n not in out:
                out.append(n)
    return out


def resolve_metrics(names: Sequence[str] | str | None = None, options: MetricOptions | None = None) -> Resolved:
    """Metric objects for ``names``; each metric whose weights are missing goes to ``unavailable`` with its fix
    (never dropped silently, never computed with random weights)."""
    _load_all()
    options = options or MetricOptions()
    metrics: list[Metric] = []
    unavailable: dict[str, str] = {}
    notes: dict[str, str] = {}
    seen: set[str] = set()
    for name in expand_names(names):
        concrete = name
        if name in _ALIASES:
            concrete, missing = _ALIASES[name](options)
            for k, why in missing.items():
                unavailable.setdefault(k, why)
                notes[name] = f"{name} -> {concrete} (preferred {k} is unavailable)"
        if concrete not in _REGISTRY:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(list_metrics())}")
        if concrete in seen:
            continue
        seen.add(concrete)
        m = _REGISTRY[concrete](options)
        ok, why = m.available()
        if ok:
            metrics.append(m)
        else:
            unavailable[concrete] = why
    return Resolved(metrics, unavailable, notes)


# ----------------------------------------------------------------------------------------------- PSNR / SSIM
def _colour_text(y: bool, convention: str) -> str:
    if not y:
        return "RGB"
    if convention == "basicsr":
        return "Y (MATLAB rgb2ycbcr BT.601, 16-235, unrounded)"
    return "Y (YIQ 0.299/0.587/0.114)"


class PSNR(Metric):
    kind = "full_reference"
    version = "1"

    def __init__(self, options: MetricOptions | None = None, y: bool = False):
        super().__init__(options)
        self.y = y
        self.name = "psnr_y" if y else "psnr"
        self.columns = (Column(self.name, True, "peak signal-to-noise ratio (dB)"),)
        self.reference = ("BasicSR calculate_psnr; scikit-image peak_signal_noise_ratio (RGB)"
                          if self.options.convention == "basicsr" else "pyiqa psnr/psnry")

    @property
    def convention(self) -> str:
        o = self.options
        if o.convention == "basicsr":
            return (f"BasicSR calculate_psnr, {_colour_text(self.y, 'basicsr')}, crop_border={o.crop_border}, "
                    "uint8, float64, 10*log10(255^2/MSE), inf when identical")
        return (f"pyiqa psnr, {_colour_text(self.y, 'pyiqa')}, crop_border={o.crop_border}, [0,1], "
                "10*log10(1/(MSE+1e-8))")

    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        v = fn.psnr(batch.tensor("pred"), batch.tensor("gt"), crop_border=self.options.crop_border,
                    test_y_channel=self.y, convention=self.options.convention)
        return {self.name: v.cpu().numpy()}


class SSIM(Metric):
    kind = "full_reference"
    version = "1"

    def __init__(self, options: MetricOptions | None = None, y: bool = False):
        super().__init__(options)
        self.y = y
        self.name = "ssim_y" if y else "ssim"
        self.columns = (Column(self.name, True, "structural similarity"),)
        self.reference = ("BasicSR calculate_ssim (cv2.filter2D); scikit-image structural_similarity"
                          if self.options.convention == "basicsr" else "pyiqa ssim/ssimc")

    @property
    def convention(self) -> str:
        o = self.options
        if o.convention == "basicsr":
            return (f"BasicSR calculate_ssim, {_colour_text(self.y, 'basicsr')}, crop_border={o.crop_border}, "
                    "uint8, 11x11 Gaussian sigma 1.5 valid, C1=(0.01*255)^2, C2=(0.03*255)^2, mean over channels")
        return (f"pyiqa ssim, {_colour_text(self.y, 'pyiqa')} x255 rounded, crop_border={o.crop_border}, "
                "11x11 Gaussian sigma 1.5 valid, ReLU on contrast-structure, no downsampling")

    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        v = fn.ssim(batch.tensor("pred"), batch.tensor("gt"), crop_border=self.options.crop_border,
                    test_y_channel=self.y, convention=self.options.convention)
        return {self.name: v.cpu().numpy()}


class MSSSIM(Metric):
    name = "ms_ssim"
    kind = "full_reference"
    version = "1"
    columns = (Column("ms_ssim", True, "multi-scale structural similarity"),)
    reference = "pyiqa ms_ssim"

    @property
    def convention(self) -> str:
        return ("pyiqa ms_ssim, Y (YIQ) x255 rounded, 5 scales weights (0.0448,0.2856,0.3001,0.2363,0.1333), "
                "ReLU on contrast-structure, product form; needs >=176 px per side")

    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        return {self.name: fn.ms_ssim(batch.tensor("pred"), batch.tensor("gt")).cpu().numpy()}


class NIQE(Metric):
    """BasicSR NIQE (see :mod:`bfrcore.metrics.niqe`)."""

    name = "niqe"
    kind = "no_reference"
    version = "1"
    needs = ("niqe-basicsr",)
    columns = (Column("niqe", False, "natural image quality evaluator"),)
    reference = "BasicSR calculate_niqe (oracle: baboon.png 5.7295763; MATLAB 5.72957338)"

    @property
    def convention(self) -> str:
        return (f"BasicSR calculate_niqe, Y (MATLAB rgb2ycbcr) rounded, crop_border={self.options.crop_border}, "
                "96x96 blocks, MATLAB bicubic antialiased imresize 0.5, niqe_pris_params.npz, float64")

    def _setup(self, device: str) -> None:
        from bfrcore import weights as wreg
        from bfrcore.metrics import niqe as niqe_mod

        self._params = niqe_mod.load_pristine_params(str(wreg.require("niqe-basicsr")))

    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        from bfrcore.metrics import niqe as niqe_mod

        v = niqe_mod.niqe(batch.tensor("pred"), self._params, crop_border=self.options.crop_border)
        return {self.name: v.numpy()}


register_metric("psnr", lambda o: PSNR(o, y=False))
register_metric("psnr_y", lambda o: PSNR(o, y=True))
register_metric("ssim", lambda o: SSIM(o, y=False))
register_metric("ssim_y", lambda o: SSIM(o, y=True))
register_metric("ms_ssim", lambda o: MSSSIM(o))
register_metric("niqe", lambda o: NIQE(o))


def with_options(options: MetricOptions, **changes) -> MetricOptions:
    return replace(options, **changes)
