"""One registry for every model (timm-style): ``create_model(name, config=..., weights=...)``.

A model file registers itself on import with :func:`register_model`, giving its config dataclass, named configs
(at least ``paper`` and ``tiny``), the official weights it can load (weights-registry names) and a
``checkpoint_filter_fn`` that maps an upstream state dict onto ours unchanged in meaning.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from baselines.base import RestorationModel, conv_weights_to
from bfrcore.errors import ConfigError, InputError
from bfrcore.typed_config import Rules, parse_overrides, read_yaml_mapping

CHECKPOINT_FORMAT = "celebref.checkpoint/1"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    model_cls: type[RestorationModel]
    config_cls: type
    configs: dict[str, Any]
    default_config: str = "tiny"
    #: weights-registry names this model can load, e.g. {"dmdnet-official": "paper"} (entry -> config name)
    pretrained: dict[str, str] = field(default_factory=dict)
    #: maps a loaded upstream file onto a state dict for model.load_state_dict(strict=True)
    checkpoint_filter_fn: Callable[[Any, RestorationModel], dict] | None = None
    description: str = ""
    paper: str = ""


_MODELS: dict[str, ModelInfo] = {}
_MODEL_MODULES = (
    "baselines.dmdnet", "baselines.dfdnet", "baselines.asffnet", "baselines.gfrnet", "baselines.gwainet",
    "baselines.trivial",
)


def unwrap_state_dict(state: Any, wrappers: tuple[str, ...] = ("params_ema", "params", "state_dict", "model")) -> Any:
    """The state dict inside a checkpoint: the first of ``wrappers`` that holds a dict (BasicSR's ``params_ema`` /
    ``params``, Lightning-style ``state_dict``…), with DataParallel/DDP ``module.`` prefixes stripped. A plain
    state dict passes through unchanged."""
    for wrapper in wrappers:
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
            break
    if isinstance(state, dict) and any(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


#: what commands say about a trainable model that runs without trained weights
UNTRAINED_NOTE = ("UNTRAINED (random-init) weights: outputs and scores are not those of the method, only a check "
                  "that the code runs")


def is_untrained(model: RestorationModel) -> bool:
    """A model with trainable parameters and no weights loaded (neither a pretrained file nor a checkpoint)."""
    return bool(model.trainable) and not model.weights_record


def untrained_error(name: str, pretrained: dict) -> str:
    """The message of a command that refuses an untrained model, with the fixes."""
    fetch = (f" or `--weights {next(iter(pretrained))}` (`bench weights fetch {next(iter(pretrained))}`)"
             if pretrained else "")
    return (f"{name} has no trained weights: pass `--weights` with a checkpoint of `bench train`{fetch}; "
            "`--allow-untrained` runs the random initialisation (smoke tests and timing only; the outputs say so)")


def register_model(info: ModelInfo) -> ModelInfo:
    if info.name in _MODELS:
        raise ValueError(f"model {info.name!r} registered twice")
    for required in ("paper", "tiny"):
        if required not in info.configs:
            raise ValueError(f"model {info.name!r} must define a {required!r} config")
    info.model_cls.model_name = info.name
    _MODELS[info.name] = info
    return info


def _load_all() -> None:
    import importlib

    for mod in _MODEL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a real import error inside an existing model file
                raise


def list_models(pattern: str = "*") -> list[str]:
    _load_all()
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def get_model_info(name: str) -> ModelInfo:
    _load_all()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def resolve_config(info: ModelInfo, config: Any = None) -> Any:
    """``config``: None (default config), a config name ('paper', 'tiny'), a dict of fields (overrides on the
    default config, or on the named config ``base``), a YAML file path, or a config instance. Overrides go
    through the suite's config parser (:func:`bfrcore.typed_config.parse_overrides`): an unknown field or a value
    of the wrong type is a :class:`bfrcore.errors.ConfigError` naming it."""
    if config is None:
        return info.configs[info.default_config]
    if isinstance(config, info.config_cls):
        return config
    if isinstance(config, str) and config in info.configs:
        return info.configs[config]
    if isinstance(config, (str, os.PathLike)):
        if not Path(config).is_file():
            raise ConfigError(f"{info.name}: unknown config {config!r} (named configs: {', '.join(info.configs)})")
        loaded = read_yaml_mapping(config, "model config", ConfigError, empty_ok=True)
        config = loaded.get("model_config", loaded)
    if isinstance(config, dict):
        config = dict(config)
        base_name = config.pop("base", info.default_config)
        if base_name not in info.configs:
            raise ConfigError(f"{info.name}: unknown base config {base_name!r}")
        try:
            return parse_overrides(info.configs[base_name], config, error=ConfigError, rules=_MODEL_CONFIG_RULES)
        except ConfigError as e:
            raise ConfigError(f"{info.name}: {e}") from None
    raise TypeError(f"{info.name}: cannot use {type(config).__name__} as a config")


#: model configs: the suite's strict rules, worded for fields of a model config
_MODEL_CONFIG_RULES = Rules(
    unknown_keys_message=lambda where, unknown, valid: f"unknown config fields {unknown}; valid: {valid}",
    top="model config")


class CheckpointReadError(InputError):
    """A weights file that torch cannot read safely (not a torch file, truncated, or holding pickled code)."""


def load_file(path: str | os.PathLike) -> Any:
    """torch.load with weights_only=True (safe), on CPU. A file torch cannot read raises
    :class:`CheckpointReadError` naming it (the CLIs exit 2)."""
    import pickle
    import zipfile

    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, KeyError, RuntimeError, ValueError) as e:
        raise CheckpointReadError(f"{path}: not a readable torch weights file (torch.load with weights_only=True "
                                  f"failed with {type(e).__name__}: truncated, not a torch file, or pickled code)") from e


def create_model(
    name: str,
    config: Any = None,
    weights: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    strict: bool = True,
    channels_last: bool = False,
) -> RestorationModel:
    """Build model ``name``. ``weights``: a weights-registry name the model declares (e.g. 'dmdnet-official'),
    a checkpoint written by our trainer (its config is used unless ``config`` is given) or a state-dict file.
    ``channels_last``: 4-D weights in channels-last memory order, which makes convolutions pick the faster NHWC
    kernels (~20 % less time for DMDNet at 512 on CPU; outputs differ by float rounding, ~1e-7)."""
    info = get_model_info(name)
    state = None
    record = None
    if weights is not None:
        from bfrcore import weights as wreg

        wname = str(weights)
        if wname in info.pretrained:
            path = wreg.require(wname)
            if config is None:
                config = info.pretrained[wname]
            record = {"name": wname, "path": str(path), "sha256": wreg.fingerprint(path)}
        else:
            path = Path(weights)
            if not path.exists():
                raise FileNotFoundError(
                    f"{name}: weights {wname!r} is neither a file nor one of {sorted(info.pretrained) or 'none'}")
            record = {"name": path.name, "path": str(path), "sha256": wreg.fingerprint(path)}
        state = load_file(path) if path.is_file() else path
        if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
            if state.get("model") != name:
                raise ValueError(f"{path} is a checkpoint of {state.get('model')!r}, not {name!r}")
            if config is None:
                config = state.get("config")
            record["checkpoint_step"] = state.get("step")
            state = state.get("ema") or state["state_dict"]
    cfg = resolve_config(info, config)
    model = info.model_cls(cfg)
    if state is not None:
        if info.checkpoint_filter_fn is not None:
            state = info.checkpoint_filter_fn(state, model)
        result = model.load_state_dict(state, strict=strict)
        if not strict and (result.missing_keys or result.unexpected_keys):
            record = {**(record or {}), "missing_keys": len(result.missing_keys),
                      "unexpected_keys": len(result.unexpected_keys)}
    model.weights_record = record
    model = model.to(device)
    if channels_last:
        conv_weights_to(model, torch.channels_last)
    return model.eval()
