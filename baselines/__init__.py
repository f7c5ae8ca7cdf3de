"""The model zoo: DMDNet and its baselines behind one registry and one restore() interface."""

from baselines import weights_checks  # noqa: F401  (registers the content checks of the baselines' weights files)
from baselines.base import RestorationModel
from baselines.registry import ModelInfo, create_model, get_model_info, list_models, register_model

__all__ = ["ModelInfo", "RestorationModel", "create_model", "get_model_info", "list_models", "register_model"]
