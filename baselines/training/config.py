"""Training configuration: typed frozen dataclasses, parsed once from YAML at the edge.

Every section is a frozen dataclass whose fields are the only accepted keys: an unknown key, a value of the wrong
type or an out-of-range value raises :class:`ConfigError` (a :class:`bfrcore.errors.ConfigError`, so ``bench train``
exits with code 2) naming the offending key, e.g. ``loss.l2: unknown key (valid: adversarial, ...)``. Nothing
downstream reads option dicts: the trainer takes a :class:`TrainConfig` and passes plain keyword arguments inward.

YAML layout (see ``configs/train/*.yaml`` and docs/training.md)::

    model: dmdnet                  # registered model name (`bench models`)
    model_config: tiny             # a named config, or a mapping of overrides {base: tiny, field: value, ...}
    seed: 0
    device: auto                   # auto | cpu | cuda
    out: out/train/dmdnet_tiny     # run folder (checkpoints, logs); relative paths are relative to the CWD
    batch_size: 4                  # the global batch (split over the processes of a torchrun / DDP job)
    ...                            # workers, amp, amp_dtype, val_every, ckpt_every, log_every, ...
    data:      {dataset, train_split, val_split, size, max_refs, references, preset, val_preset, ...}
    optim:     {lr, betas, weight_decay, grad_clip, d_lr, d_betas, d_weight_decay}
    schedule:  {total_steps, warmup_steps, min_lr_ratio}
    loss:      {l1, perceptual, adversarial, component_adversarial, identity, outputs, extra, gan_start_step}
    discriminator: {channels, layers, component_channels, component_size}
    ema:       {decay, warmup}
    init:      {generic_dictionary_images, batch_size}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from bfrcore import errors
from bfrcore.typed_config import parse_dataclass, read_yaml_mapping, set_dotted, to_plain

CONFIG_FORMAT = "celebref.train-config/1"


class ConfigError(errors.ConfigError):
    """A training config that cannot be used (unknown key, wrong type, bad value). Exit code 2."""


# ----------------------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class DataConfig:
    #: DATASET folder (bfrcore.dataset format, `celebref build` output)
    dataset: str
    train_split: str = "train"
    #: held-out split used for validation (identity-disjoint from train_split)
    val_split: str = "test"
    #: side length the model is trained at; None = the model's input_size
    size: int | None = None
    #: references per sample: a seeded random subset (of the same identity, never the image itself) of this size
    max_refs: int = 4
    #: auto: 'required' when the model needs or uses references, else 'none'.
    #: required: samples whose identity has no other image (with landmarks, when needed) are skipped;
    #: optional: such samples are kept and a batch containing one is passed without references;
    #: none: never load references.
    references: Literal["auto", "required", "optional", "none"] = "auto"
    #: training degradation preset (degradations.get_preset name or YAML path), sampled per (seed, image, epoch)
    preset: str = "default"
    #: fixed preset of the validation LQ images (one deterministic LQ per held-out image)
    val_preset: str = "default"
    #: validate on at most this many held-out images (0 = all), the first ones in sorted image_id order
    val_max_images: int = 0
    #: degrade at the dataset's resolution (as test sets are made) and then resize, or directly at the model size
    degrade_at: Literal["dataset", "model"] = "dataset"
    #: random horizontal flips (landmarks mirrored with the 68-point permutation), seeded per sample
    hflip: bool = True
    #: keep decoded HQ images in memory (per worker)
    cache_images: bool = True


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    #: clip the generator's gradient norm to this value (0 = no clipping); discriminators use the same value
    grad_clip: float = 1.0
    #: discriminator learning rate / betas / weight decay (AdamW)
    d_lr: float = 2e-4
    d_betas: tuple[float, float] = (0.0, 0.99)
    d_weight_decay: float = 0.0


@dataclass(frozen=True)
class ScheduleConfig:
    total_steps: int = 1000
    #: linear warm-up from 0 to lr over this many steps, then cosine decay to lr * min_lr_ratio
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0


@dataclass(frozen=True)
class LossConfig:
    #: pixel L1
    l1: float = 1.0
    #: VGG19 perceptual loss (torchvision-vgg19 weights); without them: multi-scale SSIM + gradient fallback
    perceptual: float = 0.0
    #: hinge GAN on the whole face (spectral-norm patch discriminator)
    adversarial: float = 0.0
    #: hinge GAN on left-eye / right-eye / mouth crops (one spectral-norm discriminator per component)
    component_adversarial: float = 0.0
    #: ArcFace-ResNet18 feature L1 (arcface-resnet18 weights); disabled with a log line when they are missing
    identity: float = 0.0
    #: adversarial terms start at this step (the discriminators are not trained before it)
    gan_start_step: int = 0
    #: weight of each image output: 'restored' and the model's 'restored_*' keys (missing keys weigh 1.0)
    outputs: dict[str, float] = field(default_factory=dict)
    #: weight of each model.extra_losses() term (missing keys weigh 1.0)
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DiscriminatorConfig:
    #: base width / number of stride-2 layers of the whole-face patch discriminator
    channels: int = 64
    layers: int = 4
    #: width of the component discriminators and the side their crops are resized to (0 = size // 4)
    component_channels: int = 64
    component_size: int = 0


@dataclass(frozen=True)
class EMAConfig:
    decay: float = 0.999
    #: ramp the decay as min(decay, (1 + n) / (10 + n)) so early averages are not dominated by the init
    warmup: bool = True


@dataclass(frozen=True)
class InitConfig:
    #: models with generic_dictionary_init(): number Y of random HQ training images used to initialise the
    #: generic dictionary from encoder features before step 0 (dmdnet.md A.4); 0 disables
    generic_dictionary_images: int = 64
    batch_size: int = 8


@dataclass(frozen=True)
class TrainConfig:
    model: str
    data: DataConfig
    #: a named config of the model ('tiny', 'paper') or a mapping of field overrides (optionally with 'base')
    model_config: str | dict[str, Any] = "tiny"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    out: str = "out/train/run"
    batch_size: int = 4
    workers: int = 0
    #: torch intra-op threads of the training process (0 = torch's default). On a CPU shared with other jobs,
    #: 1 thread (+ 1 data worker) is often several times faster than 2 contending OpenMP threads.
    threads: int = 0
    #: channels-last memory format for the model and images (faster convolutions on CPU; same results up to
    #: floating-point rounding)
    channels_last: bool = False
    #: mixed precision on CUDA (ignored on CPU, with a log line)
    amp: bool = True
    amp_dtype: Literal["bf16", "fp16"] = "bf16"
    val_every: int = 500
    ckpt_every: int = 500
    log_every: int = 10
    #: step checkpoints kept besides last.pt
    keep_checkpoints: int = 2
    tensorboard: bool = True
    #: dlib identity distance during validation (needs the dlib models that ship with face_recognition_models)
    val_identity: bool = True
    #: multi-process runs (torchrun, DDP): let DistributedDataParallel look for parameters that get no gradient in
    #: a step (DMDNet's generic / specific branches, outputs or extra losses weighted 0). False saves a graph
    #: traversal per step but fails when a step leaves a trainable parameter unused. Ignored in one process.
    ddp_find_unused_parameters: bool = True
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    init: InitConfig = field(default_factory=InitConfig)

    def to_dict(self) -> dict:
        """Plain types only (tuples -> lists), for YAML dumps and checkpoints loaded with weights_only=True."""
        return to_plain(self)

    @property
    def out_path(self) -> Path:
        return Path(self.out)


#: fields that may differ between a run and its resumption (they do not change what is computed)
RUNTIME_FIELDS = frozenset({"out", "device", "workers", "threads", "channels_last", "val_every", "ckpt_every",
                            "log_every", "keep_checkpoints", "tensorboard", "val_identity",
                            "ddp_find_unused_parameters", "data.cache_images", "data.val_max_images",
                            "schedule.total_steps"})


# ----------------------------------------------------------------------------------------------- validation
def _check(cfg: TrainConfig) -> None:
    def need(cond: bool, key: str, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{key}: {msg}")

    need(bool(cfg.model), "model", "must name a registered model (see `bench models`)")
    d = cfg.data
    need(bool(d.dataset), "data.dataset", "must be a DATASET folder")
    need(d.size is None or d.size >= 16, "data.size", "must be >= 16 (or null for the model's input size)")
    need(d.max_refs >= 1, "data.max_refs", "must be >= 1")
    need(d.val_max_images >= 0, "data.val_max_images", "must be >= 0")
    need(d.train_split != d.val_split, "data.val_split", "must differ from data.train_split (held-out images)")
    o = cfg.optim
    for k in ("lr", "d_lr"):
        need(getattr(o, k) > 0, f"optim.{k}", "must be > 0")
    for k in ("betas", "d_betas"):
        need(all(0.0 <= b < 1.0 for b in getattr(o, k)), f"optim.{k}", "each beta must be in [0, 1)")
    for k in ("weight_decay", "d_weight_decay", "grad_clip"):
        need(getattr(o, k) >= 0, f"optim.{k}", "must be >= 0")
    s = cfg.schedule
    need(s.total_steps >= 1, "schedule.total_steps", "must be >= 1")
    need(0 <= s.warmup_steps <= s.total_steps, "schedule.warmup_steps", "must be in [0, total_steps]")
    need(0.0 <= s.min_lr_ratio <= 1.0, "schedule.min_lr_ratio", "must be in [0, 1]")
    lo = cfg.loss
    for k in ("l1", "perceptual", "adversarial", "component_adversarial", "identity"):
        need(getattr(lo, k) >= 0, f"loss.{k}", "must be >= 0")
    need(lo.gan_start_step >= 0, "loss.gan_start_step", "must be >= 0")
    for sect in ("outputs", "extra"):
        for k, v in getattr(lo, sect).items():
            need(v >= 0, f"loss.{sect}.{k}", "must be >= 0")
    for k in lo.outputs:
        need(k == "restored" or k.startswith("restored_"), f"loss.outputs.{k}",
             "output weights are for 'restored' or 'restored_*' keys")
    ds = cfg.discriminator
    need(ds.channels >= 1 and ds.component_channels >= 1, "discriminator.channels", "must be >= 1")
    need(1 <= ds.layers <= 8, "discriminator.layers", "must be in [1, 8]")
    need(ds.component_size == 0 or ds.component_size >= 8, "discriminator.component_size", "must be 0 or >= 8")
    need(0.0 <= cfg.ema.decay < 1.0, "ema.decay", "must be in [0, 1)")
    need(cfg.init.generic_dictionary_images >= 0, "init.generic_dictionary_images", "must be >= 0")
    need(cfg.init.batch_size >= 1, "init.batch_size", "must be >= 1")
    need(cfg.batch_size >= 1, "batch_size", "must be >= 1")
    need(cfg.workers >= 0, "workers", "must be >= 0")
    need(cfg.threads >= 0, "threads", "must be >= 0 (0 = torch's default)")
    for k in ("val_every", "ckpt_every", "log_every"):
        need(getattr(cfg, k) >= 0, k, "must be >= 0 (0 = only at the end)")
    need(cfg.keep_checkpoints >= 0, "keep_checkpoints", "must be >= 0")
    if isinstance(cfg.model_config, str):
        need(bool(cfg.model_config), "model_config", "must be a config name or a mapping")


# ----------------------------------------------------------------------------------------------- parsing
def parse_config(raw: Mapping[str, Any]) -> TrainConfig:
    """A validated :class:`TrainConfig` from a mapping (the YAML document)."""
    raw = dict(raw)
    fmt = raw.pop("format", CONFIG_FORMAT)
    if fmt != CONFIG_FORMAT:
        raise ConfigError(f"format: expected {CONFIG_FORMAT!r}, got {fmt!r}")
    cfg = parse_dataclass(TrainConfig, raw, "", ConfigError)
    _check(cfg)
    return cfg


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
                raw: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config (or take ``raw``), apply dotted ``overrides`` (e.g. ``{"schedule.total_steps": 10}``),
    parse and validate. Errors are :class:`ConfigError` naming the file and key."""
    where = ""
    if path is not None:
        raw = read_yaml_mapping(path, "training config", ConfigError)
        where = f"{Path(path)}: "
    if raw is None:
        raise ConfigError("no config given")
    raw = _deepcopy_plain(raw)
    for k, v in (overrides or {}).items():
        if v is not None:
            set_dotted(raw, k, v, ConfigError)
    try:
        return parse_config(raw)
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None


def replace(cfg: TrainConfig, **dotted: Any) -> TrainConfig:
    """A copy of ``cfg`` with dotted keys replaced and re-validated, e.g. ``replace(cfg, **{"schedule.total_steps": 5})``."""
    raw = cfg.to_dict()
    for k, v in dotted.items():
        set_dotted(raw, k, v, ConfigError)
    return parse_config(raw)


def diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        key = f"{prefix}{k}"
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict) and not (key == "model_config" or key.startswith("loss.")):
            out += diff(va, vb, key + ".")
        elif to_plain(va) != to_plain(vb):
            out.append(key)
    return out


def dump_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump({"format": CONFIG_FORMAT, **cfg.to_dict()}, sort_keys=False)


def _deepcopy_plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _deepcopy_plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_deepcopy_plain(x) for x in v]
    return v
