"""Training for every trainable model of the zoo (`bench train`): typed config, datasets with on-the-fly
degradations, losses, discriminators, EMA, checkpoints, logs and the model-agnostic loop. See docs/training.md."""

from baselines.training.config import ConfigError, TrainConfig, load_config, parse_config
from baselines.training.trainer import Trainer, TrainResult, resolve_model, train

__all__ = ["ConfigError", "TrainConfig", "TrainResult", "Trainer", "load_config", "parse_config", "resolve_model",
           "train"]
