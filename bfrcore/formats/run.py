"""RUN contract (``bench train`` output folder ``<out>/``; written by :mod:`baselines.training.trainer`).

    <out>/checkpoints/step_<n>.pt, last.pt   :func:`validate_checkpoint` (header keys + tensor state dicts)
    <out>/summary.json                       :class:`TrainSummary` (celebref.train-summary/1)
    <out>/config.yaml                        :class:`TrainConfigHeader` (celebref.train-config/1; every field is
                                             then parsed by baselines.training.config.load_config)

A checkpoint is a dict of tensors and plain types (``torch.load(weights_only=True)``). A *training* checkpoint
(one with ``train_config``, what a run resumes from) also carries the optimiser, scheduler and RNG states.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from bfrcore.formats import Document, FormatError, NonEmptyStr, format_tag, show, validate_model

FORMAT = "celebref.checkpoint/1"
TRAIN_SUMMARY_FORMAT = "celebref.train-summary/1"
TRAIN_CONFIG_FORMAT = "celebref.train-config/1"
#: keys whose values are state dicts (name -> tensor)
TENSOR_DICTS = ("state_dict", "ema")


class CheckpointHeader(Document):
    """The plain-typed keys of a checkpoint (``state_dict``/``ema`` are checked as tensor dicts)."""

    format: Literal["celebref.checkpoint/1"]
    model: NonEmptyStr
    config: dict[str, Any]
    step: int = Field(ge=0)
    ema_updates: int | None = Field(default=None, ge=0)
    train_config: dict[str, Any] | None = None
    metrics: dict[str, float] | None = None
    versions: dict[str, str | None] | None = None


class _Slot(Document):
    g: dict[str, Any]


class _Rng(Document):
    python: list[Any]
    numpy: dict[str, Any]


class TrainingState(Document):
    """What a resumable checkpoint adds (present when ``train_config`` is)."""

    train_config: dict[str, Any]
    ema_updates: int = Field(ge=0)
    optimizers: _Slot
    schedulers: _Slot
    rng: _Rng
    discriminators: dict[str, dict[str, Any]] = {}


def validate_checkpoint(ck: Any, path: str | os.PathLike, *, writing: bool = False) -> None:
    """A checkpoint dict as saved/loaded: format, header types, tensor state dicts, training state."""
    import torch

    format_tag(ck, path, (FORMAT,), writing=writing)
    header = {k: v for k, v in ck.items() if k not in TENSOR_DICTS and k not in ("optimizers", "rng", "rng_ranks")}
    validate_model(CheckpointHeader, header, path, writing=writing)
    for key in TENSOR_DICTS:
        if key not in ck or (key == "ema" and ck[key] is None):
            if key == "state_dict":
                raise FormatError(path, key, "a state dict (name -> tensor)", "nothing", writing=writing)
            continue
        sd = ck[key]
        if not isinstance(sd, Mapping):
            raise FormatError(path, key, "a state dict (name -> tensor)", type(sd).__name__, writing=writing)
        for name, t in sd.items():
            if not isinstance(name, str) or not isinstance(t, torch.Tensor):
                raise FormatError(path, f"{key}.{name}", "a tensor under a string key", type(t).__name__,
                                  writing=writing)
    if ck.get("train_config") is not None:
        state = {k: ck.get(k) for k in ("train_config", "ema_updates", "optimizers", "schedulers", "rng",
                                        "discriminators") if k in ck}
        validate_model(TrainingState, state, path, writing=writing)
        if not isinstance(ck["rng"].get("torch"), torch.Tensor):
            raise FormatError(path, "rng.torch", "a torch RNG state tensor", show(ck["rng"].get("torch")),
                              writing=writing)


class _BatchSize(Document):
    global_: int = Field(alias="global", ge=1)
    per_rank: int = Field(ge=1)


class _DatasetRef(Document):
    path: str
    hash: str
    train_images: int = Field(ge=0)
    val_images: int = Field(ge=0)


class TrainSummary(Document):
    """summary.json of a training run."""

    format: Literal["celebref.train-summary/1"]
    model: NonEmptyStr
    model_config_: dict[str, Any] = Field(alias="model_config")
    step: int = Field(ge=0)
    total_steps: int = Field(ge=0)
    resumed_from: int | None
    checkpoint: str | None
    seconds: float
    device: str
    world_size: int = Field(ge=1)
    batch_size: _BatchSize
    dataset: _DatasetRef
    val: dict[str, float]
    notes: list[str]


def validate_train_summary(doc: Any, path: str | os.PathLike, *, writing: bool = False) -> TrainSummary:
    format_tag(doc, path, (TRAIN_SUMMARY_FORMAT,), writing=writing)
    return validate_model(TrainSummary, doc, path, writing=writing)


class _Schedule(Document):
    total_steps: int = Field(ge=1)


class TrainConfigHeader(Document):
    """config.yaml: the keys every training config has (the full schema is TrainConfig)."""

    format: Literal["celebref.train-config/1"]
    model: NonEmptyStr
    data: dict[str, Any]
    seed: int
    out: str
    batch_size: int = Field(ge=1)
    schedule: _Schedule


def validate_train_config(doc: Any, path: str | os.PathLike, *, writing: bool = False) -> TrainConfigHeader:
    format_tag(doc, path, (TRAIN_CONFIG_FORMAT,), writing=writing)
    return validate_model(TrainConfigHeader, doc, path, writing=writing)


__all__ = ["FORMAT", "TRAIN_SUMMARY_FORMAT", "TRAIN_CONFIG_FORMAT", "validate_checkpoint", "validate_train_summary",
           "validate_train_config"]
