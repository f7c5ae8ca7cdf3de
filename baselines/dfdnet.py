"""DFDNet: "Blind Face Restoration via Deep Multi-scale Component Dictionaries" (Li, Chen, Li, Zuo, Zhang;
ECCV 2020). Our implementation, written from the authors' release (csxmli2016/DFDNet, ``models/networks.py``
``UNetDictFace`` and ``test_FaceDict.py``), with BasicSR's port (``dfdnet_arch.py``) as a cross-check.

Faithful to the release:

- features: frozen VGG19 (ImageNet, torchvision weights) on ImageNet-normalised input, tapped at relu2_2,
  relu3_4, relu4_4 and conv5_4 (strides 2, 4, 8, 16; 128, 256, 512, 512 channels). The release slices
  ``vgg19.features`` at [0, 8, 17, 26, 35], which would be the pre-ReLU conv outputs, but each next slice starts
  with an in-place ReLU that overwrites the stored tensor, so the first three taps are post-ReLU (as BasicSR notes);
- component boxes (``test_FaceDict.get_part_location``): left eye = brow 17-21 + eye 36-41, right eye = 22-26 +
  42-47, nose 29-35, mouth 48-67; centre = mean, half side = max(max(x/y extent) / 2, 16);
  box = [c - half + 1, c + half] truncated to int at 512; at stride k the box is ``box // k``;
- dictionaries: per part and scale, K atoms of size part_size / k (part sizes 80, 80, 50, 110 at 512), from
  ``{part}_{256,128,64,32}_center.npy`` (the official ``DictionaryCenter512``) or ``bench dict build`` (K-means);
- DFT block, per part and scale: crop the box, resize bilinearly to the atom size, AdaIN every atom to that crop's
  statistics, score = inner product (full-window conv), hard selection (argmax of the softmax = argmax), resize
  the chosen atom to the box (nearest), confidence ``Att(atom - F) * atom + F`` (conv-LReLU-conv, no sigmoid),
  overwrite the box in a copy of the feature map (order left eye, right eye, nose, mouth);
- decoder: MSDilate (four dilated conv-LReLU-conv branches, d = 4, 3, 2, 1, fused by a conv, + x) on conv5_4,
  four SFT up-blocks conditioned on the updated features at strides 16, 8, 4, 2, then conv-LReLU, two residual
  blocks, conv -> Tanh. Inputs [0, 1] outside, the release's [-1, 1] -> ImageNet normalisation inside.

Our additions / deviations (docs/baselines.md): per-sample boxes and selections (the release uses sample 0's
boxes for the whole batch and argmaxes over the flattened batch); any size S (boxes computed in the 512 frame and
mapped to each feature map with ``floor(b * S / (512 k))``, atom sides ``floor(part * S / (512 k))``); the
*learned* feature extractor variant (``feature_extractor="learned"``, the tiny config): a small VGG-like conv
stack with the same four taps, trained with the rest, with trainable atoms initialised by K-means over its
features (:meth:`DFDNet.generic_dictionary_init`) -- a deviation, so its results are "DFDNet-tiny (learned
features)", never a VGG19 DFDNet. A VGG19 DFDNet cannot be built without the torchvision-vgg19 file
(MissingWeightsError naming ``bench weights fetch torchvision-vgg19``); it never falls back to a random VGG.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines.base import RestorationModel
from baselines.blocks import LRELU, SFTUpBlock, SpectralNormModel, adain, calc_mean_std, conv2d, sn_conv2d
from baselines.components import REFERENCE_SIZE, feature_boxes
from baselines.dictionary import PARTS, build_dictionary, read_dictionary, read_info
from baselines.landmarks import LandmarkFallback
from baselines.registry import ModelInfo, register_model, unwrap_state_dict

log = logging.getLogger(__name__)

#: strides of the four feature taps
STRIDES = (2, 4, 8, 16)
#: the release's part sizes at 512 (left eye, right eye, nose, mouth)
PART_SIZES_512 = (80, 80, 50, 110)
#: landmark indices of each part's box (the release's Map_LE, Map_RE, Map_NO, Map_MO)
PART_POINTS = (
    tuple(range(17, 22)) + tuple(range(36, 42)),
    tuple(range(22, 27)) + tuple(range(42, 48)),
    tuple(range(29, 36)),
    tuple(range(48, 68)),
)
#: ImageNet statistics (the release's VGGFeat RGB_mean / RGB_std initial values)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: torchvision vgg19.features conv indices used up to conv5_4, per stage
VGG19_STAGES = ((0, 2), (5, 7), (10, 12, 14, 16), (19, 21, 23, 25), (28, 30, 32, 34))


@dataclass(frozen=True)
class DFDNetConfig:
    #: input / output side (the release works at 512)
    size: int = 512
    #: "vgg19" (frozen torchvision VGG19, as released) or "learned" (small trainable extractor; a deviation)
    feature_extractor: str = "vgg19"
    #: weights-registry name or .pth path of the VGG19 ImageNet weights (feature_extractor="vgg19")
    vgg_weights: str = "torchvision-vgg19"
    #: decoder base width; the four feature taps have (2, 4, 8, 8) * ngf channels (VGG19: ngf = 64)
    ngf: int = 64
    #: box / atom sizes of left eye, right eye, nose, mouth at 512
    part_sizes: tuple[int, int, int, int] = PART_SIZES_512
    #: atoms per part and scale; None = as many as the dictionary files hold
    n_atoms: int | None = None
    #: weights-registry name or folder of {part}_{F}_center.npy files; None = seeded random atoms (to be replaced
    #: by generic_dictionary_init() or by a checkpoint)
    dictionary: str | None = "dfdnet-dictionary512"
    #: atoms are trainable parameters (the learned-extractor variant) instead of fixed buffers
    learn_dictionary: bool = False
    #: seed of the learned extractor's initialisation and of random atoms (independent of the global RNG, so a
    #: dictionary built with `bench dict build` for a fresh model matches a fresh model built later)
    init_seed: int = 0
    #: K-means iterations of generic_dictionary_init()
    kmeans_iters: int = 50

    def __post_init__(self):
        if self.feature_extractor not in ("vgg19", "learned"):
            raise ValueError("dfdnet: feature_extractor must be 'vgg19' or 'learned'")
        if self.feature_extractor == "vgg19" and self.ngf != 64:
            raise ValueError("dfdnet: the VGG19 extractor fixes ngf = 64 (taps of 128, 256, 512, 512 channels)")
        if self.size % 16:
            raise ValueError(f"dfdnet: size must be divisible by 16, got {self.size}")
        if self.n_atoms is None and self.dictionary is None:
            raise ValueError("dfdnet: give n_atoms when no dictionary is given")
        if self.n_atoms is not None and self.n_atoms < 1:
            raise ValueError("dfdnet: n_atoms must be >= 1")

    @property
    def channels(self) -> tuple[int, int, int, int]:
        n = self.ngf
        return (2 * n, 4 * n, 8 * n, 8 * n)


PAPER = DFDNetConfig()
TINY = DFDNetConfig(size=128, feature_extractor="learned", ngf=16, n_atoms=16, dictionary=None,
                    learn_dictionary=True)


# ------------------------------------------------------------------------------------------------- geometry
def dfdnet_part_boxes(landmarks, size: int = REFERENCE_SIZE) -> np.ndarray:
    """Integer part boxes (..., 4, 4) (x1, y1, x2, y2; end exclusive) in the 512 frame from landmarks (..., 68, 2)
    in pixels of a ``size`` image, by the release's rule (no landmark clamping; truncation toward zero)."""
    if hasattr(landmarks, "detach"):
        landmarks = landmarks.detach().cpu().numpy()
    lm = np.asarray(landmarks, dtype=np.float64) * (REFERENCE_SIZE / float(size))
    if lm.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must be (..., 68, 2), got {lm.shape}")
    out = np.empty(lm.shape[:-2] + (4, 4), dtype=np.float64)
    for i, pts in enumerate(PART_POINTS):
        p = lm[..., list(pts), :]
        c = p.mean(axis=-2)
        half = np.maximum((p.max(axis=-2) - p.min(axis=-2)).max(axis=-1) / 2, 16.0)[..., None]
        out[..., i, 0:2] = c - half + 1
        out[..., i, 2:4] = c + half
    return np.trunc(out).astype(np.int64)


# ------------------------------------------------------------------------------------------------- extractors
class VGG19Features(nn.Module):
    """Frozen VGG19 taps (relu2_2, relu3_4, relu4_4, conv5_4) on ImageNet-normalised [0, 1] input.

    The conv weights are non-persistent buffers loaded from the torchvision file (not part of our state dict;
    never trained). ``mean`` / ``std`` are persistent buffers: the release keeps them as trainable parameters
    (``RGB_mean`` / ``RGB_std``), so the official checkpoint's values are loaded."""

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        for stage in VGG19_STAGES:
            for i in stage:
                w, b = state[f"features.{i}.weight"], state[f"features.{i}.bias"]
                self.register_buffer(f"w{i}", w.detach().float().clone(), persistent=False)
                self.register_buffer(f"b{i}", b.detach().float().clone(), persistent=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _conv(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return F.conv2d(x, getattr(self, f"w{i}"), getattr(self, f"b{i}"), padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        taps = []
        for s, stage in enumerate(VGG19_STAGES):
            if s > 0:
                x = F.max_pool2d(x, 2)
            for j, i in enumerate(stage):
                x = self._conv(x, i)
                if j < len(stage) - 1:
                    x = F.relu(x)
            if s == 0:
                x = F.relu(x)  # relu1_2, then pool
                continue
            taps.append(x if s == 4 else F.relu(x))  # in-place ReLU of the release: post-ReLU except conv5_4
            x = F.relu(x)
        return taps


class LearnedFeatures(nn.Module):
    """The tiny variant's trainable extractor: VGG-like plain conv stages with the same four taps (strides 2, 4,
    8, 16; ReLU after the first three, conv output for the last). Not VGG19; documented as a deviation."""

    def __init__(self, channels: tuple[int, int, int, int]):
        super().__init__()
        c0 = channels[0]
        self.stem = nn.Sequential(conv2d(3, c0 // 2), nn.ReLU(), nn.MaxPool2d(2))
        prev = c0 // 2
        self.stages = nn.ModuleList()
        for i, c in enumerate(channels):
            layers: list[nn.Module] = [] if i == 0 else [nn.MaxPool2d(2)]
            layers += [conv2d(prev, c), nn.ReLU(), conv2d(c, c)]
            self.stages.append(nn.Sequential(*layers))
            prev = c
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem((x - self.mean) / self.std)
        taps = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.stages) - 1:
                x = F.relu(x)
            taps.append(x)
        return taps


def load_vgg19_state(name_or_path: str) -> dict[str, torch.Tensor]:
    """The torchvision VGG19 state dict from the weights registry (MissingWeightsError naming the fix when it is
    not on this machine) or from a file path."""
    from bfrcore import weights as wreg

    p = Path(name_or_path)
    if p.suffix in (".pth", ".pt") and p.is_file():
        path = p
    else:
        path = wreg.require(name_or_path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing = [f"features.{i}.weight" for st in VGG19_STAGES for i in st if f"features.{i}.weight" not in state]
    if missing:
        raise ValueError(f"{path}: not a torchvision VGG19 state dict (missing {missing[:3]}...)")
    return state


def resolve_dictionary_dir(name_or_path: str) -> Path:
    """A dictionary folder from a weights-registry name (e.g. dfdnet-dictionary512) or a path."""
    from bfrcore import weights as wreg

    p = Path(name_or_path)
    if p.is_dir():
        return p
    try:
        wreg.get_entry(name_or_path)
    except KeyError:
        raise FileNotFoundError(f"dfdnet: dictionary {name_or_path!r} is neither a folder nor a weights-registry "
                                "entry (build one with `bench dict build --dataset D --out F`)") from None
    return Path(wreg.require(name_or_path))


# ------------------------------------------------------------------------------------------------- blocks
class MSDilateBlock(nn.Module):
    """DFDNet's multi-scale dilation block: branches SNconv_d-LReLU-SNconv_d (C -> C, d = 4, 3, 2, 1),
    concatenated, fused by one SNconv (4C -> C), plus x."""

    def __init__(self, channels: int, dilations: tuple[int, ...] = (4, 3, 2, 1)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(sn_conv2d(channels, channels, dilation=d), nn.LeakyReLU(LRELU),
                          sn_conv2d(channels, channels, dilation=d))
            for d in dilations)
        self.fuse = sn_conv2d(channels * len(dilations), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([b(x) for b in self.branches], dim=1)) + x


class UpResBlock(nn.Module):
    """DFDNet's output residual block: x + conv(LReLU(conv(x))), plain convs (no spectral norm)."""

    def __init__(self, dim: int):
        super().__init__()
        self.Model = nn.Sequential(conv2d(dim, dim), nn.LeakyReLU(LRELU), conv2d(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.Model(x)


@torch.no_grad()
def select_atom(atoms: torch.Tensor, roi: torch.Tensor) -> int:
    """Index of the atom (K, C, s, s) whose AdaIN-to-``roi`` version has the largest inner product with ``roi``
    (1, C, s, s): the release's conv2d score + softmax + argmax. Computed from per-channel sums, without
    materialising the K normalised atoms: with a_n = (a - mu_a) / sd_a * sd_r + mu_r per channel,
    <a_n, r> = sum_c sd_r / sd_a (<a_c, r_c> - mu_a sum r_c) + mu_r sum r_c."""
    k, c = atoms.shape[:2]
    a = atoms.reshape(k, c, -1).double()
    r = roi.reshape(c, -1).double()
    a_mean, a_std = calc_mean_std(atoms.double())
    r_mean, r_std = calc_mean_std(roi.double())
    a_mean, a_std = a_mean.view(k, c), a_std.view(k, c)
    r_mean, r_std = r_mean.view(c), r_std.view(c)
    dot = torch.einsum("kcp,cp->kc", a, r)
    r_sum = r.sum(1)
    score = (r_std / a_std * (dot - a_mean * r_sum) + r_mean * r_sum).sum(1)
    return int(torch.argmax(score).item())


def attention_block(channels: int) -> nn.Sequential:
    """Confidence block Att: SNconv-LReLU-SNconv (no sigmoid), applied to (atom - F)."""
    return nn.Sequential(sn_conv2d(channels, channels), nn.LeakyReLU(LRELU), sn_conv2d(channels, channels))


# ------------------------------------------------------------------------------------------------- the model
class DFDNet(LandmarkFallback, SpectralNormModel, RestorationModel):
    needs_references = False
    uses_references = False
    needs_landmarks = True

    def __init__(self, config: DFDNetConfig | None = None):
        config = config or PAPER
        super().__init__(config)
        chans = config.channels
        gen = torch.Generator().manual_seed(config.init_seed)
        if config.feature_extractor == "vgg19":
            self.features = VGG19Features(load_vgg19_state(config.vgg_weights))
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.init_seed)
                self.features = LearnedFeatures(chans)
        for p in self.features.parameters():
            p.requires_grad_(config.feature_extractor == "learned")

        # dictionaries
        loaded = None
        #: dictionary.json of the folder the atoms were read from (empty otherwise)
        self.dictionary_info: dict = {}
        self.dictionary_source = "random (seeded); replace with generic_dictionary_init() or a checkpoint"
        if config.dictionary is not None:
            root = resolve_dictionary_dir(config.dictionary)
            loaded = read_dictionary(root, config.size, self._atom_shapes(), self._feature_sizes())
            k = next(iter(loaded.values())).shape[0]
            if config.n_atoms is not None and k != config.n_atoms:
                raise ValueError(f"dfdnet: {root} holds {k} atoms per part, config n_atoms = {config.n_atoms}")
            self.dictionary_source = str(root)
            self.dictionary_info = read_info(root)
        n_atoms = config.n_atoms if loaded is None else next(iter(loaded.values())).shape[0]
        self.n_atoms = int(n_atoms)
        for level in range(4):
            for part in PARTS:
                c, s = self.atom_shape(part, level)
                atoms = loaded[part, level] if loaded is not None else torch.randn(n_atoms, c, s, s, generator=gen)
                if config.learn_dictionary:
                    setattr(self, self._atom_name(part, level), nn.Parameter(atoms.clone()))
                else:
                    self.register_buffer(self._atom_name(part, level), atoms.clone())
        #: whether the atoms came from K-means / files (False: seeded random atoms)
        self.register_buffer("dictionary_ready", torch.tensor(loaded is not None))

        self.attn = nn.ModuleDict({f"{part}_{level}": attention_block(chans[level])
                                   for level in range(4) for part in PARTS})
        ngf = config.ngf
        self.msdilate = MSDilateBlock(8 * ngf)
        self.up = nn.ModuleList([SFTUpBlock(8 * ngf, 8 * ngf), SFTUpBlock(8 * ngf, 4 * ngf),
                                 SFTUpBlock(4 * ngf, 2 * ngf), SFTUpBlock(2 * ngf, ngf)])
        self.head = nn.Sequential(sn_conv2d(ngf, ngf), nn.LeakyReLU(LRELU), UpResBlock(ngf), UpResBlock(ngf),
                                  conv2d(ngf, 3), nn.Tanh())
        self.finish_init()
        #: atom index chosen per (sample, part, level) by the last forward
        self.last_selection: list[dict[str, int]] | None = None

    # -------------------------------------------------------------------------------------------- geometry
    @staticmethod
    def _atom_name(part: str, level: int) -> str:
        return f"dict_{part}_{level}"

    def atoms(self, part: str, level: int) -> torch.Tensor:
        return getattr(self, self._atom_name(part, level))

    def feature_size(self, level: int) -> int:
        return self.config.size // STRIDES[level]

    def _feature_sizes(self) -> dict[int, int]:
        return {level: self.feature_size(level) for level in range(4)}

    def atom_shape(self, part: str, level: int) -> tuple[int, int]:
        """(channels, side) of the atoms of ``part`` at ``level``: side = floor(part_512 * S / (512 * stride)), at
        least 2 (AdaIN statistics of a 1x1 atom are undefined; only reached by models smaller than 512)."""
        side = (self.config.part_sizes[PARTS.index(part)] * self.config.size) // (REFERENCE_SIZE * STRIDES[level])
        return self.config.channels[level], max(2, side)

    def _atom_shapes(self) -> dict[tuple[str, int], tuple[int, int]]:
        return {(part, level): self.atom_shape(part, level) for level in range(4) for part in PARTS}

    def boxes(self, landmarks) -> np.ndarray:
        """(B, 4, 4) integer 512-frame part boxes from (B, 68, 2) landmarks in model pixels."""
        return dfdnet_part_boxes(landmarks, self.config.size)

    # -------------------------------------------------------------------------------------------- network
    def component_crops(self, images: torch.Tensor, landmarks) -> dict[tuple[str, int], torch.Tensor]:
        """Atom-sized crops {(part, level): (B, C, s, s)} of images (B, 3, S, S) in [0, 1] (dictionary building)."""
        feats = self.features(images)
        boxes = self.boxes(landmarks)
        out = {}
        for level, fmap in enumerate(feats):
            fb = feature_boxes(boxes, self.config.size, STRIDES[level])
            for pi, part in enumerate(PARTS):
                _, s = self.atom_shape(part, level)
                crops = [F.interpolate(fmap[b:b + 1, :, y1:y2, x1:x2], size=(s, s), mode="bilinear",
                                       align_corners=False)
                         for b, (x1, y1, x2, y2) in enumerate(fb[:, pi].tolist())]
                out[part, level] = torch.cat(crops)
        return out

    def _dft(self, fmap: torch.Tensor, boxes512: np.ndarray, level: int, chosen: list[dict[str, int]]) -> torch.Tensor:
        """Dictionary feature transfer at one level: returns a copy of ``fmap`` with every part box replaced by
        ``Att(atom - F) * atom + F`` of the selected (AdaIN-ed) atom."""
        fb = feature_boxes(boxes512, self.config.size, STRIDES[level])
        updated = fmap.clone()
        for b in range(fmap.shape[0]):
            for pi, part in enumerate(PARTS):
                x1, y1, x2, y2 = (int(v) for v in fb[b, pi])
                roi = fmap[b:b + 1, :, y1:y2, x1:x2]
                atoms = self.atoms(part, level).to(fmap.dtype)
                s = atoms.shape[-1]
                roi_r = F.interpolate(roi, size=(s, s), mode="bilinear", align_corners=False)
                idx = select_atom(atoms, roi_r)
                chosen[b][f"{part}_{level}"] = idx
                swap = F.interpolate(adain(atoms[idx:idx + 1], roi_r), size=roi.shape[-2:], mode="nearest")
                att = self.attn[f"{part}_{level}"](swap - roi)
                updated[b:b + 1, :, y1:y2, x1:x2] = att * swap + roi
        return updated

    def forward(self, lq: torch.Tensor, boxes512: np.ndarray) -> torch.Tensor:
        """lq (B, 3, S, S) in [0, 1], boxes (B, 4, 4) 512-frame part boxes -> (B, 3, S, S) in [-1, 1]."""
        feats = self.features(lq)
        chosen: list[dict[str, int]] = [{} for _ in range(lq.shape[0])]
        updated = [self._dft(f, boxes512, level, chosen) for level, f in enumerate(feats)]
        self.last_selection = chosen
        x = self.msdilate(feats[3])
        for i, up in enumerate(self.up):
            x = up(x, updated[3 - i])
        return self.head(x)

    # -------------------------------------------------------------------------------------------- interface
    def restore(self, lq, landmarks=None, refs=None, ref_landmarks=None) -> torch.Tensor:
        """lq (B, 3, S, S) in [0, 1] -> (B, 3, S, S) in [0, 1]; references are not used. Missing landmarks are
        found with :class:`baselines.landmarks.LandmarkProvider` (sources in ``last_landmark_sources``)."""
        size = self.config.size
        if lq.ndim == 4 and tuple(lq.shape[-2:]) != (size, size):
            raise ValueError(f"dfdnet: lq must be {size}x{size} aligned faces (config size), got {tuple(lq.shape)}")
        landmarks, _ = self.fill_landmarks(lq, landmarks)
        self.check_inputs(lq, landmarks, None, None)
        out = self(lq, self.boxes(landmarks))
        return ((out + 1) / 2).clamp(0, 1)

    # -------------------------------------------------------------------------------------------- dictionary
    @torch.no_grad()
    def generic_dictionary_init(self, hq_batches: Iterable, *, force: bool = False) -> dict[str, Any]:
        """DFDNet's offline dictionary step run on this model's current extractor: K-means (``n_atoms`` centres,
        seeded by ``init_seed``) over the component crops of the HQ faces yielded by ``hq_batches``
        (``(images, landmarks)`` or dicts with "hq" / "landmarks"). Skipped when the atoms already come from a
        dictionary (files, an earlier init or a checkpoint) unless ``force``. Raises ValueError (atoms untouched)
        with fewer than ``n_atoms`` faces."""
        if bool(self.dictionary_ready) and not force:
            return {"skipped": f"dictionary already set ({self.dictionary_source})"}
        atoms, stats = build_dictionary(self, hq_batches, self.n_atoms, seed=self.config.init_seed,
                                        n_iter=self.config.kmeans_iters)
        for (part, level), arr in atoms.items():
            t = self.atoms(part, level)
            t.data.copy_(torch.from_numpy(arr).to(t.device, t.dtype))
        self.dictionary_ready.fill_(True)
        self.dictionary_source = "k-means over HQ training faces (generic_dictionary_init)"
        return {"n_atoms": self.n_atoms, **stats}

    def config_dict(self) -> dict:
        """The config as saved in checkpoints: the atoms live in the state dict, so a restored model must not need
        the dictionary files again (``dictionary`` -> None, ``n_atoms`` -> the actual count)."""
        return dataclasses.asdict(dataclasses.replace(self.config, dictionary=None, n_atoms=self.n_atoms))


# ------------------------------------------------------------------------------------------------- checkpoints
_PART_CODES = {"le": "left_eye", "re": "right_eye", "no": "nose", "mo": "mouth"}
_LEVEL_LABELS = {"256": 0, "128": 1, "64": 2, "32": 3}


def official_key_map(key: str) -> str | None:
    """Our key for a key of the official ``latest_net_G.pth`` (``UNetDictFace``), or None for tensors we do not
    keep: the frozen VGG copies (``VggExtract.model.*`` / ``VggExtract.features.*``, loaded from torchvision),
    the Blur kernels (fixed) and the unused ``to_rgb*`` heads."""
    parts = key.split(".")
    head = parts[0]
    if head == "VggExtract":
        if parts[1] == "RGB_mean":
            return "features.mean"
        if parts[1] == "RGB_std":
            return "features.std"
        return None
    if head.startswith("to_rgb"):
        return None
    if "_" in head and head.split("_")[0] in _PART_CODES and head.split("_")[1] in _LEVEL_LABELS:
        code, label = head.split("_")
        return ".".join([f"attn.{_PART_CODES[code]}_{_LEVEL_LABELS[label]}"] + parts[1:])
    if head == "MSDilate":
        if parts[1] == "convi":
            return ".".join(["msdilate.fuse"] + parts[2:])
        i = int(parts[1].removeprefix("conv")) - 1
        return ".".join([f"msdilate.branches.{i}"] + parts[2:])
    if head in ("up0", "up1", "up2", "up3"):
        k = head[2:]
        sub = parts[1]
        if sub == "conv1":
            if parts[2] == "0":  # Blur kernel buffers
                return None
            return ".".join([f"up.{k}.conv"] + parts[2:])
        if sub == "convup":
            return ".".join([f"up.{k}.up"] + parts[2:])
        if sub == "ScaleModel1":
            return ".".join([f"up.{k}.scale"] + parts[2:])
        if sub == "ShiftModel1":
            return ".".join([f"up.{k}.shift"] + parts[2:])
    if head == "up4":
        return ".".join(["head"] + parts[1:])
    raise KeyError(f"dfdnet: unexpected key {key!r} in the official checkpoint")


def _checkpoint_filter(state: Any, model: DFDNet) -> dict:
    """Maps the official DFDNet generator (``checkpoints/facefh_dictionary/latest_net_G.pth``, keys of the
    release's ``UNetDictFace``, optional DataParallel ``module.`` prefix) onto ours; the atoms (not in that file)
    are kept from the dictionary the model was built with. Our own state dicts pass through unchanged."""
    state = unwrap_state_dict(state, ("params_ema", "params", "state_dict"))
    if not any(k.startswith(("VggExtract.", "MSDilate.", "le_256.")) for k in state):
        return state  # ours
    out = {}
    for k, v in state.items():
        nk = official_key_map(k)
        if nk is not None:
            out[nk] = v
    own = model.state_dict()
    for k, v in own.items():
        if k.startswith("dict_") or k == "dictionary_ready":
            out[k] = v
    return out


register_model(ModelInfo(
    name="dfdnet",
    model_cls=DFDNet,
    config_cls=DFDNetConfig,
    configs={"paper": PAPER, "tiny": TINY},
    default_config="tiny",
    pretrained={"dfdnet-official": "paper"},
    checkpoint_filter_fn=_checkpoint_filter,
    description="Generic: K-means component dictionaries over VGG19 features, DFT blocks, SFT decoder "
                "(tiny: learned extractor, trainable atoms)",
    paper="Li et al., Blind Face Restoration via Deep Multi-scale Component Dictionaries, ECCV 2020",
))

__all__ = ["PAPER", "TINY", "DFDNet", "DFDNetConfig", "dfdnet_part_boxes", "official_key_map"]
