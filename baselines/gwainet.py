"""GWAInet: "Exemplar Guided Face Image Super-Resolution without Facial Landmarks" (Dogan, Gu, Timofte; CVPR
Workshops 2019). **Our reconstruction from the paper's description**: no official code or weights are available
to us, and every architectural detail below is our choice within what the paper states.

What the paper states (and we keep): one HQ exemplar of the same person guides the restoration; a *warper*
network aligns the exemplar to the input and is trained end to end with the generator, **without landmark
supervision** (no landmarks anywhere, neither at training nor at test time); the generator fuses features of the
warped exemplar into the restoration path ("identity-aware" fusion); training uses content, adversarial and
identity (face-recognition feature) losses; the paper's task is x8 face super-resolution at 256.

Our reconstruction:

- **exemplar choice** (landmark-free): the reference closest to the input at low resolution (mean absolute
  difference of 16 x 16 grey thumbnails), or the first one (``exemplar_selection``);
- **warper**: a U-Net on (input, exemplar) predicting flow offsets from the identity grid (zero-initialised last
  layer: training starts from the identity warp), bilinear ``grid_sample``; a small TV term on the flow
  (:meth:`GWAInet.extra_losses`, "tv") keeps it smooth, the reconstruction losses train it;
- **generator**: two encoders (input, warped exemplar) with features at 1, 1/2 and 1/4 of the input; at each scale
  a gated fusion ``f = f_in + sigmoid(G([f_in, f_ex])) * P(f_ex)`` (the gate decides where the exemplar's identity
  details are trusted); residual blocks at 1/4; a decoder with the fused features as skips; the output is a
  residual added to the (already upsampled) input;
- **losses**: L1 / adversarial / identity come from the trainer (``loss.l1``, ``loss.adversarial``,
  ``loss.identity`` with the ArcFace-ResNet18 weights when present), plus the model's "tv".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.base import RestorationModel
from baselines.blocks import LRELU, UNet, conv2d, from_m11, identity_grid, resize_refs, to_m11, tv_loss, warp
from baselines.registry import ModelInfo, register_model, unwrap_state_dict


@dataclass(frozen=True)
class GWAInetConfig:
    #: input / output side (the paper: x8 super-resolution to 256)
    size: int = 256
    #: generator width (features: c, 2c, 4c at 1, 1/2, 1/4)
    channels: int = 64
    #: residual blocks at 1/4
    n_res: int = 8
    #: warper U-Net base width / depth / width cap
    warp_base: int = 32
    warp_depth: int = 6
    max_channels: int = 256
    #: "lowres_l1" (closest 16x16 grey thumbnail) or "first"
    exemplar_selection: str = "lowres_l1"

    def __post_init__(self):
        if self.size % (2**self.warp_depth) or self.size % 4:
            raise ValueError(f"gwainet: size {self.size} must be divisible by 4 and 2**warp_depth")
        if self.exemplar_selection not in ("lowres_l1", "first"):
            raise ValueError("gwainet: exemplar_selection must be 'lowres_l1' or 'first'")


PAPER = GWAInetConfig()
TINY = GWAInetConfig(size=128, channels=16, n_res=2, warp_base=16, warp_depth=5, max_channels=128)


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv2d(c, c), nn.LeakyReLU(LRELU), conv2d(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """Features at 1 (c), 1/2 (2c), 1/4 (4c)."""

    def __init__(self, c: int):
        super().__init__()
        self.e0 = nn.Sequential(conv2d(3, c), nn.LeakyReLU(LRELU), ResBlock(c))
        self.e1 = nn.Sequential(nn.Conv2d(c, 2 * c, 4, 2, 1), nn.LeakyReLU(LRELU), ResBlock(2 * c))
        self.e2 = nn.Sequential(nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.LeakyReLU(LRELU), ResBlock(4 * c))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f0 = self.e0(x)
        f1 = self.e1(f0)
        return [f0, f1, self.e2(f1)]


class GatedFusion(nn.Module):
    """f_in + sigmoid(gate([f_in, f_ex])) * proj(f_ex)."""

    def __init__(self, c: int):
        super().__init__()
        self.gate = nn.Sequential(conv2d(2 * c, c), nn.LeakyReLU(LRELU), conv2d(c, c))
        self.proj = nn.Sequential(conv2d(c, c), nn.LeakyReLU(LRELU), conv2d(c, c))

    def forward(self, f_in: torch.Tensor, f_ex: torch.Tensor) -> torch.Tensor:
        return f_in + torch.sigmoid(self.gate(torch.cat([f_in, f_ex], dim=1))) * self.proj(f_ex)


class GWAInet(RestorationModel):
    needs_references = True
    uses_references = True
    needs_landmarks = False

    def __init__(self, config: GWAInetConfig | None = None):
        config = config or PAPER
        super().__init__(config)
        c = config.channels
        self.warper = UNet(6, 2, base=config.warp_base, depth=config.warp_depth, max_ch=config.max_channels,
                           zero_init_head=True)
        self.enc_in = Encoder(c)
        self.enc_ex = Encoder(c)
        self.fuse = nn.ModuleList([GatedFusion(c), GatedFusion(2 * c), GatedFusion(4 * c)])
        self.body = nn.Sequential(*[ResBlock(4 * c) for _ in range(config.n_res)])
        self.up1 = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                 conv2d(4 * c, 2 * c), nn.LeakyReLU(LRELU))
        self.dec1 = nn.Sequential(conv2d(4 * c, 2 * c), nn.LeakyReLU(LRELU), ResBlock(2 * c))
        self.up0 = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                 conv2d(2 * c, c), nn.LeakyReLU(LRELU))
        self.dec0 = nn.Sequential(conv2d(2 * c, c), nn.LeakyReLU(LRELU), ResBlock(c))
        self.out = conv2d(c, 3)
        self.last_selection: list[int] | None = None

    # -------------------------------------------------------------------------------------------- exemplar
    @staticmethod
    def _thumb(x: torch.Tensor) -> torch.Tensor:
        grey = x.mean(1, keepdim=True)
        return F.adaptive_avg_pool2d(grey, 16).flatten(1)

    def select_exemplars(self, lq: torch.Tensor, refs: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
        idx = []
        for i, r in enumerate(refs):
            if self.config.exemplar_selection == "first" or r.shape[0] == 1:
                idx.append(0)
            else:
                d = (self._thumb(r.to(lq.device, lq.dtype)) - self._thumb(lq[i:i + 1])).abs().mean(1)
                idx.append(int(torch.argmin(d).item()))
        return torch.stack([r[j] for r, j in zip(refs, idx)]).to(lq.device, lq.dtype), idx

    # -------------------------------------------------------------------------------------------- network
    def forward(self, lq_m11: torch.Tensor, ex_m11: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = lq_m11.shape
        offset = self.warper(torch.cat([lq_m11, ex_m11], dim=1))
        grid = identity_grid(b, h, w, device=lq_m11.device, dtype=lq_m11.dtype) + offset.permute(0, 2, 3, 1)
        warped = warp(ex_m11, grid)
        f_in = self.enc_in(lq_m11)
        f_ex = self.enc_ex(warped)
        fused = [fu(a, e) for fu, a, e in zip(self.fuse, f_in, f_ex)]
        x = self.body(fused[2])
        x = self.dec1(torch.cat([self.up1(x), fused[1]], dim=1))
        x = self.dec0(torch.cat([self.up0(x), fused[0]], dim=1))
        restored = lq_m11 + self.out(x)
        return {"restored": restored, "warped_exemplar": warped, "flow": offset}

    def _run(self, lq, refs):
        size = self.config.size
        if lq.ndim == 4 and tuple(lq.shape[-2:]) != (size, size):
            raise ValueError(f"gwainet: lq must be {size}x{size} aligned faces (config size), got {tuple(lq.shape)}")
        refs, _ = resize_refs(refs, None, size)
        self.check_inputs(lq, None, refs, None)
        ex, idx = self.select_exemplars(lq, refs)
        self.last_selection = idx
        return self(to_m11(lq), to_m11(ex))

    def restore(self, lq, landmarks=None, refs=None, ref_landmarks=None) -> torch.Tensor:
        """lq (B, 3, S, S) in [0, 1] and one reference set per sample -> (B, 3, S, S) in [0, 1]. Landmarks are
        ignored (the method works without them)."""
        return from_m11(self._run(lq, refs)["restored"])

    def training_outputs(self, lq, landmarks=None, refs=None, ref_landmarks=None) -> dict[str, torch.Tensor]:
        out = self._run(lq, refs)
        return {"restored": from_m11(out["restored"]), "warped_exemplar": from_m11(out["warped_exemplar"]),
                "flow": out["flow"]}

    def extra_losses(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """{"tv": squared total variation of the warper's flow offsets}."""
        return {"tv": tv_loss(outputs["flow"])}


def _checkpoint_filter(state: Any, model: GWAInet) -> dict:
    """Our checkpoints only (no official weights): 'module.' prefixes are stripped."""
    return unwrap_state_dict(state, ())


register_model(ModelInfo(
    name="gwainet",
    model_cls=GWAInet,
    config_cls=GWAInetConfig,
    configs={"paper": PAPER, "tiny": TINY},
    default_config="tiny",
    pretrained={},
    checkpoint_filter_fn=_checkpoint_filter,
    description="One exemplar, no landmarks: end-to-end warper + gated (identity-aware) feature fusion; our "
                "reconstruction from the paper",
    paper="Dogan, Gu, Timofte, Exemplar Guided Face Image Super-Resolution without Facial Landmarks, CVPRW 2019",
))

__all__ = ["PAPER", "TINY", "GWAInet", "GWAInetConfig"]
