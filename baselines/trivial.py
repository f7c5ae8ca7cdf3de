"""Trivial reference points for the leaderboard (no training, no parameters).

- ``bicubic`` (lower bound): the input resampled to the model size with bicubic interpolation. Test-set LQ images
  are already upsampled back to the dataset size by the degradation pipeline (``y = [(x*k)↓s + n]_JPEG ↑s``), so at
  that size this is the **identity**: the score of doing nothing. At another size (e.g. the 128 'tiny' size all
  tiny models are compared at) it is the LQ as the caller resized it.
- ``ref_colormatch`` ("best reference, colour-matched"): the reference whose landmarks best fit the input's
  (ASFFNet's WLS score; the first reference without landmarks), with each RGB channel's mean and standard deviation
  matched to the input's. It shows what copying a reference would score: high identity similarity, poor fidelity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from baselines.base import RestorationModel
from baselines.blocks import color_match, resize_refs
from baselines.registry import ModelInfo, register_model
from baselines.warping import select_references


@dataclass(frozen=True)
class TrivialConfig:
    #: output side
    size: int = 512


PAPER = TrivialConfig(size=512)
#: the size the other models' tiny configs work at, so tiny results are comparable
TINY = TrivialConfig(size=128)


class Bicubic(RestorationModel):
    trainable = False

    def restore(self, lq, landmarks=None, refs=None, ref_landmarks=None) -> torch.Tensor:
        """lq (B, 3, H, W) in [0, 1] -> (B, 3, S, S): a copy when H = W = S, else bicubic resampling (clamped)."""
        self.check_inputs(lq, landmarks, refs, ref_landmarks)
        s = self.config.size
        if tuple(lq.shape[-2:]) == (s, s):
            return lq.clone()
        return F.interpolate(lq, size=(s, s), mode="bicubic", align_corners=False).clamp(0, 1)


class RefColorMatch(RestorationModel):
    needs_references = True
    uses_references = True
    #: restore() uses landmarks when given (reference choice by WLS); without them the first reference is copied
    uses_landmarks: ClassVar[bool] = True
    trainable = False

    def __init__(self, config: TrivialConfig | None = None):
        super().__init__(config or PAPER)
        self.last_selection: list[int] | None = None

    def restore(self, lq, landmarks=None, refs=None, ref_landmarks=None) -> torch.Tensor:
        """lq (B, 3, S, S) in [0, 1] and one reference set per sample -> the best-aligned reference of each sample,
        resized to S, with per-channel mean/std matched to the input."""
        s = self.config.size
        if tuple(lq.shape[-2:]) != (s, s):
            raise ValueError(f"ref_colormatch: lq must be {s}x{s} (config size), got {tuple(lq.shape)}")
        refs, ref_landmarks = resize_refs(refs, ref_landmarks, s)
        self.check_inputs(lq, landmarks, refs, ref_landmarks)
        guide, _, idx = select_references(refs, landmarks, ref_landmarks)
        self.last_selection = idx
        return color_match(guide.to(lq.device, lq.dtype), lq)


register_model(ModelInfo(
    name="bicubic",
    model_cls=Bicubic,
    config_cls=TrivialConfig,
    configs={"paper": PAPER, "tiny": TINY},
    default_config="tiny",
    description="Lower bound: the input, bicubic-resampled to the model size (identity at the test-set size)",
    paper="",
))

register_model(ModelInfo(
    name="ref_colormatch",
    model_cls=RefColorMatch,
    config_cls=TrivialConfig,
    configs={"paper": PAPER, "tiny": TINY},
    default_config="tiny",
    description="Copy of the best-aligned reference (WLS on landmarks, else the first), colour-matched to the input",
    paper="",
))

__all__ = ["PAPER", "TINY", "Bicubic", "RefColorMatch", "TrivialConfig"]
