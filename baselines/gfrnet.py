"""GFRNet: "Learning Warped Guidance for Blind Face Restoration" (Li, Liu, Ren, Lin, Zuo, Wang; ECCV 2018).
Our reconstruction from the paper; trained by our code (the release, csxmli2016/GFRNet, is Lua/Torch7 inference
with a serialized ``.t7`` model, so its architecture cannot be read and there are no PyTorch weights).

What the release shows (``test.lua``): the network takes the degraded face and one guidance face of the same person
(256 x 256, concatenated) and returns the warped guidance, the flow and the restoration; warping is bilinear
sampling (``stn``). What the paper describes and we reconstruct:

- **WarpNet**: an encoder-decoder on (degraded, guide) that outputs a dense 2-channel sampling grid; here a
  pix2pix-style U-Net predicting the *offset* from the identity grid in grid_sample coordinates (last layer
  zero-initialised, so training starts from the identity warp). The guide is warped with ``grid_sample``
  (bilinear, border padding, align_corners=False).
- **Landmark loss**: no ground-truth flow exists, so at the 68 landmark positions of the ground truth (the LQ is
  aligned with it) the flow must point to the guide's corresponding landmarks:
  ``mean_i || Phi(l_i^gt) - l_i^guide ||^2`` in grid coordinates ([-1, 1]); plus a **TV regulariser**
  (squared differences of neighbouring offsets). Both are :meth:`GFRNet.extra_losses` terms ("landmark", "tv");
  the trainer weighs them (``loss.extra`` in configs/train/gfrnet_*.yaml).
- **RecNet**: an encoder-decoder with skip connections (U-Net) on (degraded, warped guide) -> restored face (Tanh);
  trained with the trainer's image losses (the paper: MSE + perceptual + global/local adversarial).
- **Guide**: one reference. The paper uses a frontal HQ image of the same person; we choose the reference whose
  landmarks best fit the input's (ASFFNet's WLS score, :func:`baselines.warping.select_guidance`) when landmarks of
  both are given, else the first reference.

Landmarks: ``restore()`` does not need them (``needs_landmarks = False``; they only choose the guide), training
does (``training_needs_landmarks = True``: the landmark loss). The paper's WarpNet pre-training stage (landmark +
TV loss only, before joint training) is not reproduced as a separate stage: both losses are on from step 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from baselines.base import RestorationModel
from baselines.blocks import (
    UNet,
    from_m11,
    identity_grid,
    pixels_to_grid,
    resize_refs,
    sample_at_points,
    to_m11,
    tv_loss,
    warp,
)
from baselines.registry import ModelInfo, register_model, unwrap_state_dict
from baselines.warping import select_references


@dataclass(frozen=True)
class GFRNetConfig:
    #: input / output side (the paper works at 256)
    size: int = 256
    #: WarpNet / RecNet U-Nets: base width, number of stride-2 stages, width cap
    warp_base: int = 64
    warp_depth: int = 8
    rec_base: int = 64
    rec_depth: int = 8
    max_channels: int = 512

    def __post_init__(self):
        for name in ("warp_depth", "rec_depth"):
            d = getattr(self, name)
            if self.size % (2**d):
                raise ValueError(f"gfrnet: size {self.size} must be divisible by 2**{name} = {2**d}")


PAPER = GFRNetConfig()
TINY = GFRNetConfig(size=128, warp_base=16, warp_depth=5, rec_base=16, rec_depth=5, max_channels=128)


class GFRNet(RestorationModel):
    needs_references = True
    uses_references = True
    needs_landmarks = False
    #: restore() uses landmarks when given (guide choice by WLS); without them the first reference guides
    uses_landmarks: ClassVar[bool] = True
    #: the landmark loss needs landmarks of the input and of the references during training
    training_needs_landmarks: ClassVar[bool] = True

    def __init__(self, config: GFRNetConfig | None = None):
        config = config or PAPER
        super().__init__(config)
        self.warpnet = UNet(6, 2, base=config.warp_base, depth=config.warp_depth, max_ch=config.max_channels,
                            zero_init_head=True)
        self.recnet = UNet(6, 3, base=config.rec_base, depth=config.rec_depth, max_ch=config.max_channels)
        #: index of the reference used as guide per sample in the last call
        self.last_selection: list[int] | None = None

    def forward(self, lq_m11: torch.Tensor, guide_m11: torch.Tensor) -> dict[str, torch.Tensor]:
        """lq, guide (B, 3, S, S) in [-1, 1] -> {"restored" [-1, 1], "warped_guide" [-1, 1], "flow" (B, 2, S, S)
        offsets, "grid" (B, S, S, 2)}."""
        b, _, h, w = lq_m11.shape
        offset = self.warpnet(torch.cat([lq_m11, guide_m11], dim=1))
        grid = identity_grid(b, h, w, device=lq_m11.device, dtype=lq_m11.dtype) + offset.permute(0, 2, 3, 1)
        warped = warp(guide_m11, grid)
        restored = torch.tanh(self.recnet(torch.cat([lq_m11, warped], dim=1)))
        return {"restored": restored, "warped_guide": warped, "flow": offset, "grid": grid}

    def _run(self, lq, landmarks, refs, ref_landmarks):
        size = self.config.size
        if lq.ndim == 4 and tuple(lq.shape[-2:]) != (size, size):
            raise ValueError(f"gfrnet: lq must be {size}x{size} aligned faces (config size), got {tuple(lq.shape)}")
        refs, ref_landmarks = resize_refs(refs, ref_landmarks, size)
        self.check_inputs(lq, landmarks, refs, ref_landmarks)
        guide, guide_lm, idx = select_references(refs, landmarks, ref_landmarks)
        self.last_selection = idx
        out = self(to_m11(lq), to_m11(guide.to(lq.device, lq.dtype)))
        return out, guide_lm

    def restore(self, lq, landmarks=None, refs=None, ref_landmarks=None) -> torch.Tensor:
        """lq (B, 3, S, S) in [0, 1] and one reference set per sample -> (B, 3, S, S) in [0, 1]. The guide is the
        best-aligned reference by landmarks when they are given, else the first."""
        out, _ = self._run(lq, landmarks, refs, ref_landmarks)
        return from_m11(out["restored"])

    def training_outputs(self, lq, landmarks=None, refs=None, ref_landmarks=None) -> dict[str, torch.Tensor]:
        """{"restored", "warped_guide" ([0, 1]), "flow" (offsets), "lm_pred" / "lm_target" (B, 68, 2) in grid
        coordinates: the flow sampled at the input's landmarks, and the guide's landmarks}."""
        if landmarks is None or ref_landmarks is None:
            raise ValueError("gfrnet: training needs landmarks of the input and of the references (landmark loss)")
        out, guide_lm = self._run(lq, landmarks, refs, ref_landmarks)
        s = self.config.size
        lm = landmarks.to(lq.device, out["grid"].dtype)
        lm_pred = sample_at_points(out["grid"].permute(0, 3, 1, 2), lm)  # (B, 68, 2) grid coords
        lm_target = pixels_to_grid(guide_lm.to(lq.device, lm.dtype), s, s)
        return {"restored": from_m11(out["restored"]), "warped_guide": from_m11(out["warped_guide"]),
                "flow": out["flow"], "lm_pred": lm_pred, "lm_target": lm_target}

    def extra_losses(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """{"landmark": mean squared distance (grid coordinates) between the flow at the ground-truth landmarks and
        the guide's landmarks, "tv": squared total variation of the flow offsets}."""
        return {"landmark": landmark_loss(outputs["lm_pred"], outputs["lm_target"]),
                "tv": tv_loss(outputs["flow"])}


def landmark_loss(lm_pred: torch.Tensor, lm_target: torch.Tensor) -> torch.Tensor:
    """mean over samples and points of the squared Euclidean distance, (B, N, 2) each."""
    return (lm_pred - lm_target).pow(2).sum(-1).mean()


def _checkpoint_filter(state: Any, model: GFRNet) -> dict:
    """Our checkpoints only (no official PyTorch weights exist): 'module.' prefixes are stripped."""
    return unwrap_state_dict(state, ())


register_model(ModelInfo(
    name="gfrnet",
    model_cls=GFRNet,
    config_cls=GFRNetConfig,
    configs={"paper": PAPER, "tiny": TINY},
    default_config="tiny",
    pretrained={},
    checkpoint_filter_fn=_checkpoint_filter,
    description="One guide: WarpNet flow (landmark loss + TV) warps the guide, RecNet restores; reconstructed "
                "from the paper, trained by our code",
    paper="Li et al., Learning Warped Guidance for Blind Face Restoration, ECCV 2018",
))

__all__ = ["PAPER", "TINY", "GFRNet", "GFRNetConfig", "landmark_loss"]
