"""The one interface every restoration model in the zoo implements.

Images are float tensors in [0, 1], shape (B, 3, H, W). Landmarks are (B, 68, 2) pixel coordinates (x, y) in the
same image. References are a list with one entry per sample: a (N_i, 3, H, W) tensor of that person's aligned HQ
images (N_i may differ per sample), with ``ref_landmarks`` a matching list of (N_i, 68, 2).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def conv_weights_to(model: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """Put the 4-D weights of the convolution layers (``weight``, or spectral norm's ``weight_orig``) in
    ``memory_format``; every other tensor keeps its order. ``model.to(memory_format=...)`` would also convert 4-D
    dictionary atoms (DMDNet, DFDNet), whose flattening in the dictionary reads would then copy them on every
    forward (~0.3 s per 512 face for DMDNet). In place; returns ``model``."""
    for mod in model.modules():
        if isinstance(mod, _CONV_TYPES):
            for t in [*mod.parameters(recurse=False), *mod.buffers(recurse=False)]:
                if t.dim() == 4:
                    t.data = t.data.contiguous(memory_format=memory_format)
    return model


class RestorationModel(nn.Module):
    """Base class of the model zoo. Subclasses implement :meth:`restore` and declare what they need."""

    #: registry name, set by :func:`baselines.registry.register_model`
    model_name: ClassVar[str] = ""
    #: restore() raises without references (ASFFNet, GFRNet, GWAInet)
    needs_references: ClassVar[bool] = False
    #: restore() uses references when given (DMDNet's specific dictionary)
    uses_references: ClassVar[bool] = False
    #: restore() needs 68-point landmarks of the LQ input (and of the references)
    needs_landmarks: ClassVar[bool] = False
    #: restore() uses landmarks when given (e.g. to pick the best-aligned reference) but works without them
    uses_landmarks: ClassVar[bool] = False
    #: restore() has trainable parameters (False for bicubic / reference-copy)
    trainable: ClassVar[bool] = True

    def __init__(self, config: Any = None):
        super().__init__()
        self.config = config
        #: what weights were loaded (name / path and sha256), recorded in result manifests
        self.weights_record: dict | None = None

    @property
    def input_size(self) -> int:
        """Side length (pixels) the model works at; callers pass aligned faces of this size."""
        return int(getattr(self.config, "size", 512))

    def restore(
        self,
        lq: torch.Tensor,
        landmarks: torch.Tensor | None = None,
        refs: list[torch.Tensor] | None = None,
        ref_landmarks: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Restore ``lq`` (B, 3, H, W) in [0, 1]; returns (B, 3, H, W) in [0, 1]. Differentiable."""
        raise NotImplementedError

    def training_outputs(
        self,
        lq: torch.Tensor,
        landmarks: torch.Tensor | None = None,
        refs: list[torch.Tensor] | None = None,
        ref_landmarks: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Outputs used by the trainer. Keys starting with ``restored`` are supervised by the image losses
        (``restored`` is the main one); other keys feed :meth:`extra_losses`."""
        return {"restored": self.restore(lq, landmarks, refs, ref_landmarks)}

    def extra_losses(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Model-specific training losses (e.g. GFRNet's landmark and TV flow losses). Default: none."""
        return {}

    def check_inputs(
        self,
        lq: torch.Tensor,
        landmarks: torch.Tensor | None,
        refs: list[torch.Tensor] | None,
        ref_landmarks: list[torch.Tensor] | None,
    ) -> None:
        """Raise ValueError with a clear message when the inputs do not match what the model declared."""
        if lq.ndim != 4 or lq.shape[1] != 3:
            raise ValueError(f"{self.model_name}: lq must be (B, 3, H, W), got {tuple(lq.shape)}")
        b = lq.shape[0]
        if self.needs_landmarks and landmarks is None:
            raise ValueError(f"{self.model_name} needs 68-point landmarks of the input")
        if landmarks is not None and tuple(landmarks.shape) != (b, 68, 2):
            raise ValueError(f"{self.model_name}: landmarks must be ({b}, 68, 2), got {tuple(landmarks.shape)}")
        if self.needs_references and not refs:
            raise ValueError(f"{self.model_name} needs reference images of the same person")
        if refs is not None:
            if len(refs) != b:
                raise ValueError(f"{self.model_name}: refs must be a list of {b} tensors, got {len(refs)}")
            for i, r in enumerate(refs):
                if r.ndim != 4 or r.shape[1] != 3 or r.shape[0] < 1:
                    raise ValueError(f"{self.model_name}: refs[{i}] must be (N>=1, 3, H, W), got {tuple(r.shape)}")
            if self.needs_landmarks:
                if ref_landmarks is None or len(ref_landmarks) != b:
                    raise ValueError(f"{self.model_name} needs ref_landmarks, one (N_i, 68, 2) tensor per sample")
                for i, (r, rl) in enumerate(zip(refs, ref_landmarks)):
                    if tuple(rl.shape) != (r.shape[0], 68, 2):
                        raise ValueError(
                            f"{self.model_name}: ref_landmarks[{i}] must be ({r.shape[0]}, 68, 2), got {tuple(rl.shape)}"
                        )

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else dict(self.config or {})
