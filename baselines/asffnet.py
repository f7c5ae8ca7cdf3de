"""ASFFNet: "Enhanced Blind Face Restoration with Multi-Exemplar Images and Adaptive Spatial Feature Fusion"
(Li, Li, Zuo, Zhang, Zhang; CVPR 2020), as re-implemented by the first author at 512 on CelebRef-HQ
(csxmli2016/ASFFNet512). Our implementation, written from that release.

Pipeline (faithful to ``models/ASFFNet.py`` + ``main_test.py`` of the release):

1. guidance selection: among the references, the one whose landmarks best fit the LQ landmarks by per-region
   affine least squares (eye region weight 1.01, mouth 1.49), :func:`baselines.warping.select_guidance`;
2. two separate feature extractors (LQ, reference): spectral-norm convs with dilated residual blocks
   (dilations 7/5 at full size, 5/3 at 1/2, 3/1 at 1/4), output 2*ngf channels at 1/4 of the input;
3. the reference features are AdaIN-ed to the LQ feature statistics and warped by MLS (affine, alpha = 1) with the
   51 landmarks 17-67 scaled to the feature map (1/4), the authors' inverse formulation and border rule
   (:func:`baselines.warping.mls_affine_inverse_grid`), then ``grid_sample`` (bilinear, align_corners=False);
4. landmark mask: 7x7 squares at LQ landmarks 17-67 -> MaskConditionModel (stride 4, sigmoid);
5. component condition model on the warped features, then 4 ASFF blocks (two adaptive spatial feature fusion
   layers each, output ``F_d + (F_r - F_d) * M`` with an unconstrained mask M) and a last fusion layer;
6. MSDilate, skip from the LQ features, decoder with two x2 bilinear upsamplings (align_corners=True) -> Tanh.

Module names and creation order equal the official ``ASFFNet512.pth`` (``weights['params']``, 599 tensors), so
it loads with ``strict=True``. Inputs are [0, 1] outside and [-1, 1] inside, as the release normalises.

Our additions: any size S (tiny config at 128 with ngf 16), per-sample references of any number N_i >= 1, batch
inputs, a landmark fallback when landmarks are not given (:class:`baselines.landmarks.LandmarkProvider`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.base import RestorationModel
from baselines.blocks import (
    LRELU,
    ActResBlock,
    SpectralNormModel,
    adain,
    conv2d,
    from_m11,
    resize_refs,
    sn_conv2d,
    to_m11,
)
from baselines.landmarks import LandmarkFallback
from baselines.registry import ModelInfo, register_model, unwrap_state_dict
from baselines.warping import (
    MLS_POINTS,
    WLS_WEIGHTS,
    grid_for_sampling,
    landmark_point_mask,
    mls_affine_inverse_grid,
    select_guidance,
)


@dataclass(frozen=True)
class ASFFNetConfig:
    #: input / output side (the official model works at 512)
    size: int = 512
    #: base width: feature extractors ngf..4*ngf, fusion features 2*ngf, decoder ngf
    ngf: int = 64
    #: number of ASFF blocks before the last fusion layer
    n_blocks: int = 4
    #: half side of the landmark squares of the mask (3 -> 7x7 at 512)
    mask_half: int = 3
    #: WLS guidance-selection weights (eye region, mouth)
    selection_weights: tuple[float, float] = WLS_WEIGHTS
    #: MLS weight exponent
    mls_alpha: float = 1.0
    #: "source" = the authors' inverse MLS; "target" = exact interpolating inverse
    mls_weights_from: str = "source"

    def __post_init__(self):
        if self.size % 4:
            raise ValueError(f"asffnet: size must be divisible by 4, got {self.size}")
        if self.ngf % 4 or self.ngf < 4:
            raise ValueError(f"asffnet: ngf must be a positive multiple of 4, got {self.ngf}")
        if self.mls_weights_from not in ("source", "target"):
            raise ValueError("asffnet: mls_weights_from must be 'source' or 'target'")


PAPER = ASFFNetConfig()
TINY = ASFFNetConfig(size=128, ngf=16, n_blocks=2, mask_half=1)


# ------------------------------------------------------------------------------------------------- modules
class DilatedResBlock(nn.Module):
    """x + SNconv_d2(LReLU(SNconv_d1(x))) (``stem`` indices 0 and 2)."""

    def __init__(self, dim: int, dilations: tuple[int, int]):
        super().__init__()
        self.stem = nn.Sequential(
            sn_conv2d(dim, dim, dilation=dilations[0]), nn.LeakyReLU(LRELU),
            sn_conv2d(dim, dim, dilation=dilations[1]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.stem(x)


class FeatureExtractor(nn.Module):
    """3 -> ngf (2 blocks, d 7/5) -> stride 2, 2 ngf (d 5/3) -> stride 2, 4 ngf (d 3/1) -> 2 ngf at 1/4."""

    def __init__(self, ngf: int):
        super().__init__()
        self.conv1 = nn.Sequential(sn_conv2d(3, ngf), nn.LeakyReLU(LRELU))
        self.stem1_1 = DilatedResBlock(ngf, (7, 5))
        self.stem1_2 = DilatedResBlock(ngf, (7, 5))
        self.conv2 = nn.Sequential(sn_conv2d(ngf, ngf * 2, stride=2), nn.LeakyReLU(LRELU))
        self.stem2_1 = DilatedResBlock(ngf * 2, (5, 3))
        self.stem2_2 = DilatedResBlock(ngf * 2, (5, 3))
        self.conv3 = nn.Sequential(sn_conv2d(ngf * 2, ngf * 4, stride=2), nn.LeakyReLU(LRELU))
        self.stem3_1 = DilatedResBlock(ngf * 4, (3, 1))
        self.stem3_2 = DilatedResBlock(ngf * 4, (3, 1))
        self.conv4 = nn.Sequential(sn_conv2d(ngf * 4, ngf * 2), nn.LeakyReLU(LRELU))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem1_2(self.stem1_1(self.conv1(x)))
        x = self.stem2_2(self.stem2_1(self.conv2(x)))
        x = self.stem3_2(self.stem3_1(self.conv3(x)))
        return self.conv4(x)


class MaskConditionModel(nn.Module):
    """Landmark mask (1 channel) -> C channels at 1/4: plain convs without bias 9x9/2, 7x7, 5x5/2, 3x3, 3x3,
    LeakyReLU between, sigmoid at the end. Widths C/8, C/4, C/2, C, C (16, 32, 64, 128 at C = 128)."""

    def __init__(self, channels: int):
        super().__init__()
        c8, c4, c2 = channels // 8, channels // 4, channels // 2
        self.model = nn.Sequential(
            nn.Conv2d(1, c8, 9, 2, 4, bias=False), nn.LeakyReLU(LRELU),
            nn.Conv2d(c8, c4, 7, 1, 3, bias=False), nn.LeakyReLU(LRELU),
            nn.Conv2d(c4, c2, 5, 2, 2, bias=False), nn.LeakyReLU(LRELU),
            nn.Conv2d(c2, channels, 3, 1, 1, bias=False), nn.LeakyReLU(LRELU),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.Sigmoid(),
        )

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return self.model(mask)


class ComponentConditionModel(nn.Module):
    """Warped reference features -> condition: (SN 1x1, LReLU, residual block) x 2, SN 1x1, LReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(
            sn_conv2d(channels, channels, 1), nn.LeakyReLU(LRELU), ActResBlock(channels),
            sn_conv2d(channels, channels, 1), nn.LeakyReLU(LRELU), ActResBlock(channels),
            sn_conv2d(channels, channels, 1), nn.LeakyReLU(LRELU),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class FusionLayer(nn.Module):
    """Adaptive spatial feature fusion: D = Degraded(F_lq), R = Ref(F_ref) (SNconv-LReLU-SNconv each);
    M = MaskModel(concat of 1x1 projections to C/2 of the mask condition, D and R); output D + (R - D) * M.
    ``sn_last_mask_conv``: the last MaskModel conv is spectral-normalised only in the final layer (as released)."""

    def __init__(self, channels: int, *, sn_last_mask_conv: bool):
        super().__init__()
        half = channels // 2
        last = (sn_conv2d if sn_last_mask_conv else conv2d)(channels, channels, bias=False)
        self.MaskModel = nn.Sequential(sn_conv2d(half * 3, channels, bias=False), nn.LeakyReLU(LRELU), last)
        self.MaskConcat = nn.Sequential(sn_conv2d(channels, half, 1))
        self.DegradedModel = nn.Sequential(sn_conv2d(channels, channels), nn.LeakyReLU(LRELU),
                                           sn_conv2d(channels, channels))
        self.DegradedConcat = nn.Sequential(sn_conv2d(channels, half, 1))
        self.RefModel = nn.Sequential(sn_conv2d(channels, channels), nn.LeakyReLU(LRELU),
                                      sn_conv2d(channels, channels))
        self.RefConcat = nn.Sequential(sn_conv2d(channels, half, 1))

    def forward(self, lq: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        d = self.DegradedModel(lq)
        r = self.RefModel(ref)
        m = self.MaskModel(torch.cat([self.MaskConcat(mask), self.DegradedConcat(d), self.RefConcat(r)], dim=1))
        return d + (r - d) * m


class ASFFBlock(nn.Module):
    """Two fusion layers, each followed by SNconv5x5-LReLU-SNconv3x3-LReLU, and a residual over the block."""

    def __init__(self, channels: int):
        super().__init__()
        self.sff0 = FusionLayer(channels, sn_last_mask_conv=False)
        self.conv0 = nn.Sequential(sn_conv2d(channels, channels, 5), nn.LeakyReLU(LRELU),
                                   sn_conv2d(channels, channels), nn.LeakyReLU(LRELU))
        self.sff1 = FusionLayer(channels, sn_last_mask_conv=False)
        self.conv1 = nn.Sequential(sn_conv2d(channels, channels, 5), nn.LeakyReLU(LRELU),
                                   sn_conv2d(channels, channels), nn.LeakyReLU(LRELU))

    def forward(self, lq: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.conv0(self.sff0(lq, ref, mask))
        h = self.conv1(self.sff1(h, ref, mask))
        return lq + h


class MSDilateBlock(nn.Module):
    """ASFFNet's multi-scale dilation block: four SNconv(C -> C/2, dilation d)-LReLU branches (d = 4, 3, 2, 1),
    concatenated (2C), SNconv-LReLU-SNconv back to C, plus x."""

    def __init__(self, channels: int, dilations: tuple[int, ...] = (4, 3, 2, 1)):
        super().__init__()
        for i, d in enumerate(dilations, start=1):
            setattr(self, f"conv{i}", nn.Sequential(sn_conv2d(channels, channels // 2, dilation=d),
                                                    nn.LeakyReLU(LRELU)))
        self.n = len(dilations)
        self.convi = nn.Sequential(sn_conv2d(channels // 2 * self.n, channels), nn.LeakyReLU(LRELU),
                                   sn_conv2d(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cat = torch.cat([getattr(self, f"conv{i}")(x) for i in range(1, self.n + 1)], dim=1)
        return self.convi(cat) + x


class UpDilateResBlock(nn.Module):
    """Two residual steps, each x + LReLU(SNconv_d(LReLU(SNconv_d(x)))) with dilations d0 then d1."""

    def __init__(self, dim: int, dilations: tuple[int, int]):
        super().__init__()
        for i, d in enumerate(dilations):
            setattr(self, f"Model{i}", nn.Sequential(
                sn_conv2d(dim, dim, dilation=d), nn.LeakyReLU(LRELU),
                sn_conv2d(dim, dim, dilation=d), nn.LeakyReLU(LRELU)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.Model0(x)
        return x + self.Model1(x)


# ------------------------------------------------------------------------------------------------- the model
class ASFFNet(LandmarkFallback, SpectralNormModel, RestorationModel):
    needs_references = True
    uses_references = True
    needs_landmarks = True

    def __init__(self, config: ASFFNetConfig | None = None):
        config = config or PAPER
        super().__init__(config)
        ngf, c = config.ngf, config.ngf * 2
        # creation order = the official state dict's order
        self.sff_branch = nn.Sequential(*[ASFFBlock(c) for _ in range(config.n_blocks)],
                                        FusionLayer(c, sn_last_mask_conv=True))
        self.MSDilate = MSDilateBlock(c)
        self.UpModel = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            sn_conv2d(c, c), nn.LeakyReLU(LRELU),
            UpDilateResBlock(c, (1, 2)),
            sn_conv2d(c, ngf), nn.LeakyReLU(LRELU),
            UpDilateResBlock(ngf, (1, 2)),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            UpDilateResBlock(ngf, (1, 1)),
            sn_conv2d(ngf, 3), nn.Tanh(),
        )
        self.LQ_Model = FeatureExtractor(ngf)
        self.Ref_Model = FeatureExtractor(ngf)
        self.Mask_CModel = MaskConditionModel(c)
        self.Component_CModel = ComponentConditionModel(c)
        self.finish_init()
        #: index of the guidance reference chosen for each sample by the last call
        self.last_selection: list[int] | None = None

    # -------------------------------------------------------------------------------------------- network
    def forward(self, lq_m11: torch.Tensor, ref_m11: torch.Tensor, mask: torch.Tensor, lq_landmarks: torch.Tensor,
                ref_landmarks: torch.Tensor) -> torch.Tensor:
        """The network as released: lq, ref (B, 3, S, S) in [-1, 1], mask (B, 1, S, S), landmarks (B, 68, 2)
        in pixels of the S image; returns (B, 3, S, S) in [-1, 1]."""
        lq_f = self.LQ_Model(lq_m11)
        ref_f = self.Ref_Model(ref_m11)
        down = lq_m11.shape[-1] / lq_f.shape[-1]
        fh, fw = ref_f.shape[-2:]
        pts = list(MLS_POINTS)
        coords = mls_affine_inverse_grid(ref_landmarks[:, pts] / down, lq_landmarks[:, pts] / down, (fh, fw),
                                         alpha=self.config.mls_alpha, weights_from=self.config.mls_weights_from)
        grid = grid_for_sampling(coords.to(ref_f.device), (fh, fw), "authors").to(ref_f.dtype)
        ref_aligned = F.grid_sample(adain(ref_f, lq_f), grid, mode="bilinear", padding_mode="zeros",
                                    align_corners=False)
        mask_c = self.Mask_CModel(mask)
        comp_c = self.Component_CModel(ref_aligned)
        fea = lq_f
        for block in self.sff_branch:
            fea = block(fea, comp_c, mask_c)
        return self.UpModel(self.MSDilate(fea) + lq_f)

    # -------------------------------------------------------------------------------------------- interface
    def _prepare(self, lq, landmarks, refs, ref_landmarks):
        size = self.config.size
        if lq.ndim == 4 and tuple(lq.shape[-2:]) != (size, size):
            raise ValueError(f"asffnet: lq must be {size}x{size} aligned faces (config size), got {tuple(lq.shape)}")
        refs, ref_landmarks = resize_refs(refs, ref_landmarks, size)
        landmarks, ref_landmarks = self.fill_landmarks(lq, landmarks, refs, ref_landmarks)
        self.check_inputs(lq, landmarks, refs, ref_landmarks)
        return landmarks, refs, ref_landmarks

    def restore(self, lq, landmarks=None, refs=None, ref_landmarks=None) -> torch.Tensor:
        """lq (B, 3, S, S) in [0, 1], one reference set (N_i, 3, S, S) per sample -> (B, 3, S, S) in [0, 1].
        The guidance is each sample's best reference by WLS on landmarks (``last_selection``)."""
        landmarks, refs, ref_landmarks = self._prepare(lq, landmarks, refs, ref_landmarks)
        device = lq.device
        landmarks = landmarks.to(device, torch.float32)
        idx = [select_guidance(landmarks[i], ref_landmarks[i], self.config.selection_weights)
               if refs[i].shape[0] > 1 else 0 for i in range(lq.shape[0])]
        self.last_selection = idx
        guide = torch.stack([r[j] for r, j in zip(refs, idx)]).to(device, lq.dtype)
        guide_lm = torch.stack([rl[j] for rl, j in zip(ref_landmarks, idx)]).to(device, torch.float32)
        mask = landmark_point_mask(landmarks, self.config.size, half=self.config.mask_half).to(device, lq.dtype)
        out = self(to_m11(lq), to_m11(guide), mask, landmarks, guide_lm)
        return from_m11(out)


def _checkpoint_filter(state: Any, model: ASFFNet) -> dict:
    """The official ASFFNet512.pth holds the state dict under 'params' with our key names. Also accepts other
    common wrappers ('params_ema', 'state_dict') and DataParallel 'module.' prefixes; our checkpoints pass
    through unchanged."""
    return unwrap_state_dict(state, ("params_ema", "params", "state_dict"))


register_model(ModelInfo(
    name="asffnet",
    model_cls=ASFFNet,
    config_cls=ASFFNetConfig,
    configs={"paper": PAPER, "tiny": TINY},
    default_config="tiny",
    pretrained={"asffnet512-official": "paper"},
    checkpoint_filter_fn=_checkpoint_filter,
    description="Multi-exemplar: WLS guidance selection, MLS feature warping, landmark mask, ASFF blocks",
    paper="Li et al., Enhanced Blind Face Restoration with Multi-Exemplar Images and Adaptive Spatial Feature "
          "Fusion, CVPR 2020 (512 re-implementation: csxmli2016/ASFFNet512)",
))

__all__ = ["PAPER", "TINY", "ASFFNet", "ASFFNetConfig"]
