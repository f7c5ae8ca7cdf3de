"""Degradation presets: frozen dataclasses of parameter *ranges*, a registry of named, versioned presets, and
strict YAML load/dump.

A preset says what distribution the parameters are drawn from; :func:`degradations.sampling.sample_params` draws
them with an explicit RNG and :func:`degradations.sampling.apply_params` applies them. YAML/dicts are parsed once,
by the suite's one config parser (:mod:`bfrcore.typed_config`, with the preset :data:`PRESET_RULES`), into typed
dataclasses: an unknown key, a wrong type or an out-of-range value is a :class:`PresetError` (a
:class:`bfrcore.errors.ConfigError`) that names the offending field (no silent ``.get()`` defaults).

Ranges are written ``[lo, hi]`` (uniform), a single number (fixed), or ``{lo: .., hi: .., step: ..}`` (uniform on
the grid ``lo, lo+step, …, hi``). See docs/degradations.md for every built-in preset.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bfrcore.errors import ConfigError
from bfrcore.typed_config import Rules, parse_dataclass
from degradations.kernels import KERNEL_TYPES
from degradations.ops import RESIZE_MODES

PI = math.pi
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")


class PresetError(ConfigError):
    """A preset that is unknown, malformed or out of range (the message names the field)."""


# ----------------------------------------------------------------------------------------------- building blocks
@dataclass(frozen=True)
class Range:
    """Uniform distribution on [lo, hi] (``lo == hi``: fixed), or on the grid lo + k·step when ``step`` is set."""

    lo: float
    hi: float
    step: float | None = None

    @classmethod
    def fixed(cls, v: float) -> Range:
        return cls(float(v), float(v))

    @property
    def is_fixed(self) -> bool:
        return self.lo == self.hi

    @property
    def mean(self) -> float:
        return (self.lo + self.hi) / 2

    def n_steps(self) -> int:
        assert self.step
        return round((self.hi - self.lo) / self.step)

    def validate(self, path: str, lo: float = -math.inf, hi: float = math.inf) -> None:
        for v, what in ((self.lo, "lo"), (self.hi, "hi")):
            if not math.isfinite(v):
                raise PresetError(f"{path}.{what}: must be a finite number, got {v}")
        if self.lo > self.hi:
            raise PresetError(f"{path}: lo {self.lo} > hi {self.hi}")
        if self.lo < lo or self.hi > hi:
            raise PresetError(f"{path}: [{self.lo}, {self.hi}] is outside the allowed [{lo}, {hi}]")
        if self.step is not None:
            if not (self.step > 0 and math.isfinite(self.step)):
                raise PresetError(f"{path}.step: must be > 0, got {self.step}")
            n = (self.hi - self.lo) / self.step
            if abs(n - round(n)) > 1e-6:
                raise PresetError(f"{path}: (hi - lo) = {self.hi - self.lo} is not a multiple of step {self.step}")

    def contains(self, v: float, eps: float = 1e-9) -> bool:
        return self.lo - eps <= v <= self.hi + eps


def _prob(path: str, p: float) -> None:
    if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
        raise PresetError(f"{path}: a probability must be in [0, 1], got {p!r}")


def _probs(path: str, probs: tuple[float, ...], n: int, what: str) -> None:
    if len(probs) != n:
        raise PresetError(f"{path}: {len(probs)} probabilities for {n} {what}")
    for i, p in enumerate(probs):
        _prob(f"{path}[{i}]", p)
    if abs(sum(probs) - 1.0) > 1e-6:
        raise PresetError(f"{path}: probabilities sum to {sum(probs)}, not 1")


def _choice(path: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    if not values:
        raise PresetError(f"{path}: must not be empty")
    for v in values:
        if v not in allowed:
            raise PresetError(f"{path}: unknown value {v!r}; use one of {list(allowed)}")


def _odd_sizes(path: str, sizes: tuple[int, ...]) -> None:
    if not sizes:
        raise PresetError(f"{path}: must not be empty")
    for s in sizes:
        if s < 1 or s % 2 == 0 or s > 201:
            raise PresetError(f"{path}: kernel sizes must be odd integers in [1, 201], got {s}")


# ----------------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class BlurSpec:
    """Blur kernel distribution (BasicSR ``random_mixed_kernels`` + sinc + motion).

    With probability ``prob`` a kernel is used: a size from ``kernel_size`` (uniform), a type from ``kernel_list``
    (``kernel_prob``), then that type's parameters: σx ~ ``sigma_x``, σy ~ ``sigma_y`` (``null``: same range as
    σx), θ ~ ``rotation`` (aniso types; iso types use σy = σx, θ = 0), β ~ U(β0, 1) or U(1, β1) with probability
    ½ each (``betag`` generalized, ``betap`` plateau — BasicSR's rule), ω_c ~ ``sinc_cutoff`` (``sinc_cutoff_small``
    for sizes < 13, Real-ESRGAN's rule), motion length/angle (degrees; a motion kernel is sized to fit its segment,
    2·ceil(L/2)+1, ignoring ``kernel_size``). ``kernel_noise``: optional multiplicative
    U(lo, hi) noise per kernel entry, then renormalised (not applied to plateau kernels, as in BasicSR).
    """

    prob: float = 1.0
    kernel_size: tuple[int, ...] = (21,)
    kernel_list: tuple[str, ...] = ("iso",)
    kernel_prob: tuple[float, ...] = (1.0,)
    sigma_x: Range = Range(0.2, 3.0)
    sigma_y: Range | None = None
    rotation: Range = Range(-PI, PI)
    betag: Range = Range(0.5, 4.0)
    betap: Range = Range(1.0, 2.0)
    kernel_noise: Range | None = None
    sinc_cutoff: Range = Range(PI / 5, PI)
    sinc_cutoff_small: Range = Range(PI / 3, PI)
    motion_length: Range = Range(5.0, 21.0)
    motion_angle: Range = Range(0.0, 180.0)

    def validate(self, path: str) -> None:
        _prob(f"{path}.prob", self.prob)
        _odd_sizes(f"{path}.kernel_size", self.kernel_size)
        _choice(f"{path}.kernel_list", self.kernel_list, KERNEL_TYPES)
        _probs(f"{path}.kernel_prob", self.kernel_prob, len(self.kernel_list), "kernel types")
        self.sigma_x.validate(f"{path}.sigma_x", 0.0, 100.0)
        if self.sigma_y is not None:
            self.sigma_y.validate(f"{path}.sigma_y", 0.0, 100.0)
        self.rotation.validate(f"{path}.rotation", -2 * PI, 2 * PI)
        for name in ("betag", "betap"):
            r: Range = getattr(self, name)
            r.validate(f"{path}.{name}", 1e-3, 100.0)
            if not r.lo <= 1.0 <= r.hi:
                raise PresetError(f"{path}.{name}: must contain 1 (β ~ U(lo, 1) or U(1, hi)), got [{r.lo}, {r.hi}]")
        if self.kernel_noise is not None:
            self.kernel_noise.validate(f"{path}.kernel_noise", 0.0, 10.0)
        self.sinc_cutoff.validate(f"{path}.sinc_cutoff", 1e-3, PI)
        self.sinc_cutoff_small.validate(f"{path}.sinc_cutoff_small", 1e-3, PI)
        self.motion_length.validate(f"{path}.motion_length", 0.0, 200.0)
        self.motion_angle.validate(f"{path}.motion_angle", -360.0, 360.0)


@dataclass(frozen=True)
class ResizeSpec:
    """Resampling. With probability ``prob`` (else no resize), either a downsampling factor s ~ ``scale`` (size →
    floor(size / s); GFPGAN, DFDNet, ReF-LDM) or, when ``updown_prob`` = (up, down, keep) is set, Real-ESRGAN's
    size multiplier m ~ U(1, hi) / U(lo, 1) / 1 from ``updown_range`` (recorded as s = 1/m). The mode is drawn
    from ``modes`` (``mode_prob``, default uniform)."""

    prob: float = 1.0
    scale: Range = Range(1.0, 1.0)
    updown_prob: tuple[float, float, float] | None = None
    updown_range: Range = Range(0.15, 1.5)
    modes: tuple[str, ...] = ("bilinear",)
    mode_prob: tuple[float, ...] | None = None

    def validate(self, path: str) -> None:
        _prob(f"{path}.prob", self.prob)
        self.scale.validate(f"{path}.scale", 0.05, 512.0)
        if self.updown_prob is not None:
            _probs(f"{path}.updown_prob", self.updown_prob, 3, "choices (up, down, keep)")
            self.updown_range.validate(f"{path}.updown_range", 1e-3, 20.0)
            if not self.updown_range.lo <= 1.0 <= self.updown_range.hi:
                raise PresetError(f"{path}.updown_range: must contain 1, got "
                                  f"[{self.updown_range.lo}, {self.updown_range.hi}]")
        _choice(f"{path}.modes", self.modes, RESIZE_MODES)
        if self.mode_prob is not None:
            _probs(f"{path}.mode_prob", self.mode_prob, len(self.modes), "modes")

    def expected_scale(self) -> float:
        if self.updown_prob is not None:
            return 1.0
        return self.prob * self.scale.mean + (1 - self.prob) * 1.0


@dataclass(frozen=True)
class NoiseSpec:
    """Noise. With probability ``prob``: Gaussian (probability ``gaussian_prob``) with σ ~ ``sigma`` on the 0–255
    scale, else Poisson with scale ~ ``poisson_scale``; grey (luma) noise with probability ``gray_prob``."""

    prob: float = 1.0
    gaussian_prob: float = 1.0
    sigma: Range = Range(0.0, 20.0)
    poisson_scale: Range = Range(0.05, 3.0)
    gray_prob: float = 0.0

    def validate(self, path: str) -> None:
        _prob(f"{path}.prob", self.prob)
        _prob(f"{path}.gaussian_prob", self.gaussian_prob)
        _prob(f"{path}.gray_prob", self.gray_prob)
        self.sigma.validate(f"{path}.sigma", 0.0, 255.0)
        self.poisson_scale.validate(f"{path}.poisson_scale", 0.0, 100.0)


@dataclass(frozen=True)
class JpegSpec:
    """JPEG with probability ``prob``; quality q = floor(u), u ~ ``quality`` (see docs: JPEG rounding rule)."""

    prob: float = 1.0
    quality: Range = Range(60.0, 100.0)

    def validate(self, path: str) -> None:
        _prob(f"{path}.prob", self.prob)
        self.quality.validate(f"{path}.quality", 0.0, 100.0)


@dataclass(frozen=True)
class ColorShiftSpec:
    """GFPGAN ``color_jitter``: with probability ``prob`` add U(-shift, shift)/255 to each channel."""

    prob: float = 0.3
    shift: float = 20.0

    def validate(self, path: str) -> None:
        _prob(f"{path}.prob", self.prob)
        if not 0.0 <= self.shift <= 255.0:
            raise PresetError(f"{path}.shift: must be in [0, 255], got {self.shift}")


@dataclass(frozen=True)
class ColorJitterSpec:
    """GFPGAN ``color_jitter_pt``: with probability ``prob``, brightness/contrast/saturation/hue factors in a
    random order (torchvision semantics)."""

    prob: float = 0.3
    brightness: Range = Range(0.5, 1.5)
    contrast: Range = Range(0.5, 1.5)
    saturation: Range = Range(0.0, 1.5)
    hue: Range = Range(-0.1, 0.1)

    def validate(self, path: str) -> None:
        _prob(f"{path}.prob", self.prob)
        self.brightness.validate(f"{path}.brightness", 0.0, 10.0)
        self.contrast.validate(f"{path}.contrast", 0.0, 10.0)
        self.saturation.validate(f"{path}.saturation", 0.0, 10.0)
        self.hue.validate(f"{path}.hue", -0.5, 0.5)


@dataclass(frozen=True)
class SecondOrderSpec:
    """Real-ESRGAN's second degradation (applied after the first blur/resize/noise/JPEG): blur with probability
    ``blur.prob``, resize to floor(H / (target_scale · s2)), noise, then — in random order (``jpeg_first_prob``) —
    JPEG and [resize to H // target_scale (mode from ``final_modes``) + final sinc filter with probability
    ``final_sinc_prob``, size from ``final_sinc_size``, ω_c ~ ``final_sinc_cutoff``]."""

    target_scale: int = 4
    blur: BlurSpec = BlurSpec()
    resize: ResizeSpec = ResizeSpec()
    noise: NoiseSpec | None = None
    jpeg: JpegSpec | None = None
    final_sinc_prob: float = 0.8
    final_sinc_size: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    final_sinc_cutoff: Range = Range(PI / 3, PI)
    final_modes: tuple[str, ...] = ("area", "bilinear", "bicubic")
    jpeg_first_prob: float = 0.5

    def validate(self, path: str) -> None:
        if not (isinstance(self.target_scale, int) and 1 <= self.target_scale <= 64):
            raise PresetError(f"{path}.target_scale: must be an integer in [1, 64], got {self.target_scale!r}")
        self.blur.validate(f"{path}.blur")
        self.resize.validate(f"{path}.resize")
        if self.noise is not None:
            self.noise.validate(f"{path}.noise")
        if self.jpeg is not None:
            self.jpeg.validate(f"{path}.jpeg")
        _prob(f"{path}.final_sinc_prob", self.final_sinc_prob)
        _odd_sizes(f"{path}.final_sinc_size", self.final_sinc_size)
        self.final_sinc_cutoff.validate(f"{path}.final_sinc_cutoff", 1e-3, PI)
        _choice(f"{path}.final_modes", self.final_modes, RESIZE_MODES)
        _prob(f"{path}.jpeg_first_prob", self.jpeg_first_prob)


@dataclass(frozen=True)
class Preset:
    """A named, versioned degradation distribution: y = [(x ⊛ k)↓s + n]_JPEG ↑s, plus optional colour changes and
    an optional second-order stage. ``severity`` is a nominal scale factor used to order test sets (default: the
    expected downsampling factor, or ``second_order.target_scale``)."""

    name: str
    version: str
    description: str = ""
    reference: str = ""
    severity: float | None = None
    blur: BlurSpec | None = None
    resize: ResizeSpec | None = None
    noise: NoiseSpec | None = None
    jpeg: JpegSpec | None = None
    second_order: SecondOrderSpec | None = None
    upsample: str = "bilinear"
    color_shift: ColorShiftSpec | None = None
    gray_prob: float = 0.0
    color_jitter: ColorJitterSpec | None = None

    def validate(self) -> Preset:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise PresetError(f"name: {self.name!r} must be a file-name-safe string ([A-Za-z0-9._-])")
        if not isinstance(self.version, str) or not self.version:
            raise PresetError("version: must be a non-empty string")
        if self.severity is not None and not (math.isfinite(self.severity) and self.severity > 0):
            raise PresetError(f"severity: must be a positive number, got {self.severity}")
        for name in ("blur", "resize", "noise", "jpeg", "second_order", "color_shift", "color_jitter"):
            spec = getattr(self, name)
            if spec is not None:
                spec.validate(name)
        if self.upsample not in RESIZE_MODES:
            raise PresetError(f"upsample: unknown mode {self.upsample!r}; use one of {list(RESIZE_MODES)}")
        _prob("gray_prob", self.gray_prob)
        return self

    @property
    def nominal_severity(self) -> float:
        """``severity`` if set, else the expected overall downsampling factor."""
        if self.severity is not None:
            return float(self.severity)
        if self.second_order is not None:
            return float(self.second_order.target_scale)
        return float(self.resize.expected_scale()) if self.resize is not None else 1.0

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        return _to_plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100,
                              allow_unicode=True)

    @classmethod
    def from_dict(cls, d: Any) -> Preset:
        return _from_plain(cls, d, "").validate()

    @classmethod
    def from_yaml(cls, text: str, source: str = "<yaml>") -> Preset:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise PresetError(f"{source}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise PresetError(f"{source}: a preset must be a YAML mapping, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except PresetError as e:
            raise PresetError(f"{source}: {e}") from e


# ----------------------------------------------------------------------------------------------- plain <-> typed
def _to_plain(obj: Any) -> Any:
    if isinstance(obj, Range):
        if obj.step is not None:
            return {"lo": obj.lo, "hi": obj.hi, "step": obj.step}
        return obj.lo if obj.is_fixed else [obj.lo, obj.hi]
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


def _number(v: Any, path: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise PresetError(f"{path}: expected a number, got {v!r}")
    return float(v)


def _parse_range(v: Any, path: str) -> Range:
    """A :class:`Range` from ``[lo, hi]``, a number (fixed) or ``{lo: .., hi: .., step: ..}``."""
    if isinstance(v, Range):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return Range.fixed(v)
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise PresetError(f"{path}: a range is [lo, hi], got {len(v)} values")
        return Range(_number(v[0], f"{path}[0]"), _number(v[1], f"{path}[1]"))
    if isinstance(v, dict):
        extra = set(v) - {"lo", "hi", "step"}
        if extra or "lo" not in v or "hi" not in v:
            raise PresetError(f"{path}: a range mapping has keys lo, hi[, step]; got {sorted(v)}")
        step = v.get("step")
        return Range(_number(v["lo"], f"{path}.lo"), _number(v["hi"], f"{path}.hi"),
                     None if step is None else _number(step, f"{path}.step"))
    raise PresetError(f"{path}: expected a range ([lo, hi], a number or {{lo, hi, step}}), got {v!r}")


def _version(v: Any, path: str) -> str:
    """``version: 2`` is the string "2"."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str):
        raise PresetError(f"{path}: expected a string, got {v!r}")
    return v


#: how presets are written, on top of the suite's one config parser (:mod:`bfrcore.typed_config`)
PRESET_RULES = Rules(
    converters={Range: _parse_range},
    key_converters={"version": _version},
    scalar_as_list=True,  # kernel_size: 41 is (41,)
    integral_floats=True,  # kernel_size: [21.0] is (21,)
    accept_instances=True,  # Preset.from_dict({"blur": BlurSpec(...)}) from Python
    or_null_hint=False,
    top="preset",
    unknown_keys_message=lambda where, unknown, valid: f"{where}: unknown key(s) {unknown}; allowed: {valid}",
    missing_key_message=lambda where, key: f"{where}: missing required key {key!r}",
)


def _from_plain(cls: type, d: Any, path: str) -> Any:
    if d is None:  # a preset document, never "all defaults"
        raise PresetError(f"{path or PRESET_RULES.top}: expected a mapping, got None")
    return parse_dataclass(cls, d, path, PresetError, rules=PRESET_RULES)


# ----------------------------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    preset.validate()
    if preset.name in _REGISTRY:
        raise PresetError(f"preset {preset.name!r} is already registered")
    _REGISTRY[preset.name] = preset
    return preset


def list_presets() -> list[str]:
    """Names of the built-in presets, sorted."""
    return sorted(_REGISTRY)


def get_preset(name_or_yaml: str | os.PathLike | Preset | dict) -> Preset:
    """A built-in preset by name, a preset YAML file (path ending in .yaml/.yml), a YAML document, a dict (e.g. the
    ``preset`` recorded in testset.json) or a :class:`Preset` (returned as is)."""
    if isinstance(name_or_yaml, Preset):
        return name_or_yaml.validate()
    if isinstance(name_or_yaml, dict):
        return Preset.from_dict(name_or_yaml)
    s = str(name_or_yaml)
    if s in _REGISTRY:
        return _REGISTRY[s]
    p = Path(s)
    if p.suffix.lower() in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise PresetError(f"preset file {s} does not exist")
        return Preset.from_yaml(p.read_text(), source=str(p))
    if "\n" in s or ":" in s:
        return Preset.from_yaml(s)
    raise PresetError(f"unknown preset {s!r}; built-in presets: {', '.join(list_presets())} "
                      f"(or give a .yaml file; `bench degrade --list`)")


# ----------------------------------------------------------------------------------------------- built-ins
_GFPGAN_BLUR = BlurSpec(kernel_size=(41,), kernel_list=("iso", "aniso"), kernel_prob=(0.5, 0.5),
                        sigma_x=Range(0.1, 10.0), sigma_y=Range(0.1, 10.0), rotation=Range(-PI, PI))

register_preset(Preset(
    name="gfpgan", version="1",
    description="GFPGAN v1 training distribution (FFHQDegradationDataset, train_gfpgan_v1.yml)",
    reference="GFPGAN options/train_gfpgan_v1.yml; research/oracles.md §6",
    blur=_GFPGAN_BLUR,
    resize=ResizeSpec(scale=Range(0.8, 8.0), modes=("bilinear",)),
    noise=NoiseSpec(sigma=Range(0.0, 20.0)),
    jpeg=JpegSpec(quality=Range(60.0, 100.0)),
    upsample="bilinear",
    color_shift=ColorShiftSpec(prob=0.3, shift=20.0),
    gray_prob=0.01,
    color_jitter=ColorJitterSpec(prob=0.3),
))

register_preset(Preset(
    name="dfdnet", version="1",
    description="DFDNet training degradations (data/aligned_dataset.py): Gaussian or motion blur, bicubic "
                "x2-x10, noise 1-10, JPEG 40-80 (each step applied with its probability)",
    reference="DFDNet data/aligned_dataset.py; research/dmdnet.md §B (motion kernels: linear substitute)",
    blur=BlurSpec(prob=0.9, kernel_size=tuple(range(3, 37, 2)), kernel_list=("iso", "motion"),
                  kernel_prob=(0.65, 0.35), sigma_x=Range(0.3, 2.0, step=0.1),
                  motion_length=Range(5.0, 21.0), motion_angle=Range(0.0, 180.0)),
    resize=ResizeSpec(prob=0.95, scale=Range(2.0, 10.0, step=0.1), modes=("pil_bicubic",)),
    noise=NoiseSpec(prob=0.9, sigma=Range(1.0, 10.0, step=1.0)),
    jpeg=JpegSpec(prob=0.6, quality=Range(40.0, 80.0, step=1.0)),
    upsample="pil_bicubic",
))

register_preset(Preset(
    name="refldm-moderate", version="1",
    description="ReF-LDM 'moderate' test distribution: sigma in [0, 8], x1-x8, noise 0-15, JPEG 60-100",
    reference="ReF-LDM (Hsiao et al., NeurIPS 2024); research/dmdnet.md §D1; GFPGAN-style implementation",
    blur=dataclasses.replace(_GFPGAN_BLUR, sigma_x=Range(0.0, 8.0), sigma_y=Range(0.0, 8.0)),
    resize=ResizeSpec(scale=Range(1.0, 8.0), modes=("bilinear",)),
    noise=NoiseSpec(sigma=Range(0.0, 15.0)),
    jpeg=JpegSpec(quality=Range(60.0, 100.0)),
    upsample="bilinear",
))

register_preset(Preset(
    name="refldm-severe", version="1",
    description="ReF-LDM 'severe' test distribution: sigma in [8, 16], x8-x32, noise 0-20, JPEG 30-100",
    reference="ReF-LDM (Hsiao et al., NeurIPS 2024); research/dmdnet.md §D1; GFPGAN-style implementation",
    blur=dataclasses.replace(_GFPGAN_BLUR, sigma_x=Range(8.0, 16.0), sigma_y=Range(8.0, 16.0)),
    resize=ResizeSpec(scale=Range(8.0, 32.0), modes=("bilinear",)),
    noise=NoiseSpec(sigma=Range(0.0, 20.0)),
    jpeg=JpegSpec(quality=Range(30.0, 100.0)),
    upsample="bilinear",
))

#: The fixed-severity ladder: scale s, Gaussian σ = s/2 (kernel 2·ceil(3σ)+1), colour Gaussian noise, JPEG.
LADDER = {4: (2.0, 13, 5.0, 80), 8: (4.0, 25, 10.0, 60), 16: (8.0, 49, 15.0, 40)}
for _s, (_sigma, _ks, _noise, _q) in LADDER.items():
    register_preset(Preset(
        name=f"celebref-x{_s}", version="1",
        description=f"fixed severity x{_s}: isotropic Gaussian sigma {_sigma:g} ({_ks}x{_ks}), bicubic x{_s} down "
                    f"and up, Gaussian noise sigma {_noise:g}/255, JPEG q{_q}",
        reference="this suite (CelebRef-HQ severity ladder)",
        severity=float(_s),
        blur=BlurSpec(kernel_size=(_ks,), kernel_list=("iso",), kernel_prob=(1.0,), sigma_x=Range.fixed(_sigma)),
        resize=ResizeSpec(scale=Range.fixed(_s), modes=("bicubic",)),
        noise=NoiseSpec(sigma=Range.fixed(_noise)),
        jpeg=JpegSpec(quality=Range.fixed(_q)),
        upsample="bicubic",
    ))

_RESRGAN_KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso", "sinc")
_RESRGAN_PROBS = tuple(round(p * 0.9, 6) for p in (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)) + (0.1,)
_RESRGAN_SIZES = tuple(range(7, 22, 2))

register_preset(Preset(
    name="realesrgan", version="1",
    description="Real-ESRGAN x4plus second-order degradation (train_realesrgan_x4plus.yml), LQ at 1/4 size "
                "upsampled back bilinearly",
    reference="Real-ESRGAN options/train_realesrgan_x4plus.yml, basicsr realesrgan_dataset.py / realesrgan_model.py",
    blur=BlurSpec(kernel_size=_RESRGAN_SIZES, kernel_list=_RESRGAN_KERNELS, kernel_prob=_RESRGAN_PROBS,
                  sigma_x=Range(0.2, 3.0), sigma_y=Range(0.2, 3.0), betag=Range(0.5, 4.0), betap=Range(1.0, 2.0)),
    resize=ResizeSpec(updown_prob=(0.2, 0.7, 0.1), updown_range=Range(0.15, 1.5),
                      modes=("area", "bilinear", "bicubic")),
    noise=NoiseSpec(gaussian_prob=0.5, sigma=Range(1.0, 30.0), poisson_scale=Range(0.05, 3.0), gray_prob=0.4),
    jpeg=JpegSpec(quality=Range(30.0, 95.0)),
    second_order=SecondOrderSpec(
        target_scale=4,
        blur=BlurSpec(prob=0.8, kernel_size=_RESRGAN_SIZES, kernel_list=_RESRGAN_KERNELS, kernel_prob=_RESRGAN_PROBS,
                      sigma_x=Range(0.2, 1.5), sigma_y=Range(0.2, 1.5), betag=Range(0.5, 4.0),
                      betap=Range(1.0, 2.0)),
        resize=ResizeSpec(updown_prob=(0.3, 0.4, 0.3), updown_range=Range(0.3, 1.2),
                          modes=("area", "bilinear", "bicubic")),
        noise=NoiseSpec(gaussian_prob=0.5, sigma=Range(1.0, 25.0), poisson_scale=Range(0.05, 2.5), gray_prob=0.4),
        jpeg=JpegSpec(quality=Range(30.0, 95.0)),
        final_sinc_prob=0.8,
    ),
    upsample="bilinear",
))
