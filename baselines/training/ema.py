"""Exponential moving average of a model's weights (the copy that is validated, saved as ``ema`` and restored by
``create_model(weights=checkpoint)``)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """``shadow = d * shadow + (1 - d) * param`` after every optimiser step for every parameter; buffers (spectral
    norm's power-iteration vectors, counters) are copied from the live model, because an average of unit singular
    vectors is not one. With ``warmup`` the decay at update ``n`` is ``min(decay, (1 + n) / (10 + n))``."""

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.updates = 0

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        self.updates += 1
        params = dict(model.named_parameters())
        for k, v in self.module.named_parameters():
            v.lerp_(params[k].detach().to(v.dtype), 1.0 - d)
        buffers = dict(model.named_buffers())
        for k, v in self.module.named_buffers():
            v.copy_(buffers[k])

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Reset the average to ``model``'s current weights (e.g. after a data-dependent initialisation)."""
        self.module.load_state_dict(model.state_dict())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = int(updates)
