"""DMDNet: "Learning Dual Memory Dictionaries for Blind Face Restoration" (Li, Zhang, Zhou, Zhang, Zuo;
TPAMI 2022), our implementation.

Faithful to the authors' released inference code (csxmli2016/DMDNet, ``models/DMDNet.py``), re-written:
two spectral-norm encoders (E_lq, E_hq) with features at 1/2, 1/4, 1/8 of the input ("256", "128", "64" at 512);
component ROIs (left eye, right eye, mouth) cropped from the feature maps with the authors' box rules and resized
bilinearly; per component and scale a *generic* dictionary of learned key/value atoms and a *specific* dictionary
built from the references (one key/value item per reference, from E_hq + K/V heads); adaptive reading (softmax of
full-window inner products, temperature sqrt(#atoms)); a learned fusion mask of the generic and specific readings;
AdaIN to the LQ ROI statistics; the attention residual; reverse-ROI paste (overwrite, order LE, RE, MO) into the
encoder maps; and the SFT decoder at the three scales. Output: Tanh, [-1, 1] internally, [0, 1] outside.

Our extensions (documented in docs/dmdnet.md): one specific dictionary *per sample* (the released code shares one
across the batch), each of any size N_i >= 1; generic atoms are ``nn.Parameter`` (buffers in the release, same
keys); other sizes than 512 (boxes computed in the 512 frame, scaled to the model's size); landmark fallback; the
generic-dictionary initialisation (:meth:`DMDNet.generic_dictionary_init`), reconstructed from the author's issue
answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from baselines.base import RestorationModel
from baselines.blocks import SpectralNormModel
from baselines.components import LEFT_EYE, MOUTH, REFERENCE_SIZE, RIGHT_EYE, component_boxes, feature_boxes
from baselines.dmdnet_blocks import (
    FeatureExtractor,
    KeyValue,
    MaskAttention,
    MSDilateBlock,
    StyledUpBlock,
    UpResBlock,
    adain,
    attention_block,
    crop_resize,
    init_spectral_norm,
    lrelu,
    read_per_sample_dictionary,
    read_shared_dictionary,
    sn_conv,
)
from baselines.landmarks import LandmarkFallback
from baselines.registry import ModelInfo, register_model, unwrap_state_dict

#: components used by the network, in pasting order, with their index in components.component_boxes
COMPONENTS = ("LE", "RE", "MO")
_BOX_INDEX = {"LE": LEFT_EYE, "RE": RIGHT_EYE, "MO": MOUTH}
#: scale labels (feature size of the 512 model, used in the official key names) and their strides
SCALES = ((256, 2), (128, 4), (64, 8))


@dataclass(frozen=True)
class DMDNetConfig:
    """``size``: input side (multiple of 8). ``ngf``: channels of the first encoder stage (64 in the paper).
    ``n_atoms``: generic dictionary atoms per component and scale (128 released). ``key_scale``: key/query
    channels = C / key_scale. ``eye_part`` / ``mouth_part``: component patch sides in the 512 frame from which the
    ROI sizes derive (80, 110 released: ROIs 40/20/10 and 55/27/13); ``eye_roi`` / ``mouth_roi`` give the three
    ROI sides (strides 2, 4, 8) explicitly instead."""

    size: int = 512
    ngf: int = 64
    n_atoms: int = 128
    key_scale: int = 4
    eye_part: int = 80
    mouth_part: int = 110
    eye_roi: tuple[int, int, int] | None = None
    mouth_roi: tuple[int, int, int] | None = None

    def __post_init__(self):
        for f in ("eye_roi", "mouth_roi"):
            v = getattr(self, f)
            if v is not None:
                v = tuple(int(x) for x in v)
                if len(v) != 3:
                    raise ValueError(f"{f} must give 3 sizes (strides 2, 4, 8), got {v}")
                object.__setattr__(self, f, v)
        if self.size % 8 or self.size < 64:
            raise ValueError(f"size must be a multiple of 8 and >= 64, got {self.size}")
        if self.ngf < 3 or self.ngf % self.key_scale:
            raise ValueError(f"ngf must be >= 3 and divisible by key_scale={self.key_scale}, got {self.ngf}")
        if self.n_atoms < 1:
            raise ValueError("n_atoms must be >= 1")
        for comp in COMPONENTS:
            for _, stride in SCALES:
                if self.roi_size(comp, stride) < 2:
                    raise ValueError(f"{comp} ROI at stride {stride} is below 2 pixels; raise size or the parts")

    def roi_size(self, comp: str, stride: int) -> int:
        """ROI side of ``comp`` at feature ``stride``: floor(part * size / (512 * stride)) unless explicit."""
        explicit = self.mouth_roi if comp == "MO" else self.eye_roi
        if explicit is not None:
            return explicit[[s for _, s in SCALES].index(stride)]
        part = self.mouth_part if comp == "MO" else self.eye_part
        return part * self.size // (REFERENCE_SIZE * stride)

    def channels(self, stride: int) -> int:
        return self.ngf * stride // 2


PAPER = DMDNetConfig()
#: trains on CPU in minutes: ROIs eye 10/5/2, mouth 13/6/3; 2.5M parameters + 0.39M dictionary values
TINY = DMDNetConfig(size=128, ngf=16, n_atoms=32)


@dataclass
class SpecificDictionary:
    """Per-sample specific dictionaries: for each (component, scale label) keys (B, N, c, s, s) and values
    (B, N, C, s, s) padded to N = max N_i, and ``counts`` (B,) with N_i."""

    keys: dict[tuple[str, int], torch.Tensor]
    values: dict[tuple[str, int], torch.Tensor]
    counts: torch.Tensor


class DMDNet(LandmarkFallback, SpectralNormModel, RestorationModel):
    uses_references = True
    needs_landmarks = True

    #: references are encoded in chunks of this many images at inference (no effect on results)
    ref_chunk_size: int = 16

    def __init__(self, config: DMDNetConfig | None = None):
        config = config or PAPER
        super().__init__(config)
        ngf, ks = config.ngf, config.key_scale
        labels = tuple(label for label, _ in SCALES)

        # generic dictionary (parameters; buffers with the same names in the official checkpoint)
        for label, stride in SCALES:
            c = config.channels(stride)
            for kind, dim in (("key", c // ks), ("value", c)):
                for comp in COMPONENTS:
                    s = config.roi_size(comp, stride)
                    setattr(self, f"{comp.lower()}_{label}_mem_{kind}",
                            nn.Parameter(torch.randn(config.n_atoms, dim, s, s)))

        self.E_lq = FeatureExtractor(ngf, ks, COMPONENTS, labels)
        self.E_hq = FeatureExtractor(ngf, ks, COMPONENTS, labels)
        for label, stride in SCALES:
            c = config.channels(stride)
            for comp in COMPONENTS:
                setattr(self, f"{comp}_{label}_KV", KeyValue(c, c // ks, c))
        for label, stride in SCALES:
            for comp in COMPONENTS:
                setattr(self, f"{comp}_{label}_Attention", attention_block(config.channels(stride)))
        for label, stride in SCALES:
            for comp in COMPONENTS:
                setattr(self, f"{comp}_{label}_Mask", MaskAttention(config.channels(stride)))
        self.MSDilate = MSDilateBlock(ngf * 4, (4, 3, 2, 1))
        self.up1 = StyledUpBlock(ngf * 4, ngf * 2)
        self.up2 = StyledUpBlock(ngf * 2, ngf)
        self.up3 = StyledUpBlock(ngf, ngf)
        self.up4 = nn.Sequential(
            sn_conv(ngf, ngf),
            lrelu(),
            UpResBlock(ngf),
            UpResBlock(ngf),
            sn_conv(ngf, 3),
            nn.Tanh(),
        )
        init_spectral_norm(self)
        self._specific_cache = None  # see _specific_cached

    # ------------------------------------------------------------------------------------------ parameters
    def dictionary_parameters(self) -> list[nn.Parameter]:
        """The generic dictionary atoms (18 tensors)."""
        return [p for n, p in self.named_parameters(recurse=False) if "_mem_" in n]

    def network_parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter except the dictionary atoms."""
        ids = {id(p) for p in self.dictionary_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    def _mem(self, comp: str, label: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (getattr(self, f"{comp.lower()}_{label}_mem_key"), getattr(self, f"{comp.lower()}_{label}_mem_value"))

    # ------------------------------------------------------------------------------------------ geometry
    def boxes(self, landmarks) -> np.ndarray:
        """Integer component boxes (B, 4, 4) in the 512 frame from (B, 68, 2) landmarks in model pixels."""
        return component_boxes(landmarks, self.config.size)

    def _rois(self, feats, boxes512: np.ndarray) -> dict[tuple[str, int], torch.Tensor]:
        rois = {}
        for (label, stride), fmap in zip(SCALES, feats):
            fb = feature_boxes(boxes512, self.config.size, stride)
            for comp in COMPONENTS:
                rois[comp, label] = crop_resize(fmap, fb[:, _BOX_INDEX[comp]], self.config.roi_size(comp, stride))
        return rois

    def _paste(self, fmap: torch.Tensor, boxes512: np.ndarray, stride: int, label: int,
               finals: dict[tuple[str, int], torch.Tensor]) -> torch.Tensor:
        """Reverse ROI: resize each enhanced ROI to its box and overwrite it in a copy of ``fmap``
        (order LE, RE, MO, so later components win where boxes overlap)."""
        out = fmap.clone()
        fb = feature_boxes(boxes512, self.config.size, stride)
        for i in range(fmap.shape[0]):
            for comp in COMPONENTS:
                x1, y1, x2, y2 = (int(v) for v in fb[i, _BOX_INDEX[comp]])
                out[i:i + 1, :, y1:y2, x1:x2] = nn.functional.interpolate(
                    finals[comp, label][i:i + 1], size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)
        return out

    # ------------------------------------------------------------------------------------------ dictionaries
    def _items(self, hq_m11: torch.Tensor, boxes512: np.ndarray):
        """E_hq + K/V heads: one key/value item per image, component and scale."""
        rois = self._rois(self.E_hq(hq_m11), boxes512)
        keys, values = {}, {}
        for label, _ in SCALES:
            for comp in COMPONENTS:
                keys[comp, label], values[comp, label] = getattr(self, f"{comp}_{label}_KV")(rois[comp, label])
        return keys, values

    def build_specific_dictionary(self, refs: list[torch.Tensor], ref_landmarks: list) -> SpecificDictionary:
        """Specific dictionaries from per-sample reference sets: ``refs[i]`` (N_i, 3, S, S) in [0, 1] with
        ``ref_landmarks[i]`` (N_i, 68, 2) in pixels. Differentiable (trains E_hq and the K/V heads)."""
        counts = [int(r.shape[0]) for r in refs]
        if min(counts) < 1:
            raise ValueError("every sample needs at least one reference")
        imgs = torch.cat(list(refs), dim=0) * 2 - 1
        lms = np.concatenate([np.asarray(torch.as_tensor(lm).detach().cpu(), np.float64) for lm in ref_landmarks])
        boxes = self.boxes(lms)
        chunk = imgs.shape[0] if torch.is_grad_enabled() else self.ref_chunk_size
        parts = [self._items(imgs[j:j + chunk], boxes[j:j + chunk]) for j in range(0, imgs.shape[0], chunk)]
        nmax = max(counts)
        keys, values = {}, {}
        for name, out in (("k", keys), ("v", values)):
            for label, _ in SCALES:
                for comp in COMPONENTS:
                    flat = torch.cat([p[0 if name == "k" else 1][comp, label] for p in parts], dim=0)
                    per = torch.split(flat, counts, dim=0)
                    out[comp, label] = torch.stack(
                        [nn.functional.pad(t, (0, 0, 0, 0, 0, 0, 0, nmax - t.shape[0])) for t in per])
        return SpecificDictionary(keys, values, torch.tensor(counts, device=imgs.device))

    # ------------------------------------------------------------------------------------------ network
    def forward(self, lq_m11: torch.Tensor, boxes512: np.ndarray, specific: SpecificDictionary | None = None,
                *, with_generic: bool = True) -> dict[str, torch.Tensor]:
        """``lq_m11`` (B, 3, S, S) in [-1, 1]; ``boxes512`` (B, 4, 4) from :meth:`boxes`. Returns in [-1, 1]
        {"generic": generic-only output (unless with_generic=False and specific is given),
         "specific": generic+specific output (when ``specific`` is given)}."""
        f256, f128, f64 = self.E_lq(lq_m11)
        feats = (f256, f128, f64)
        rois = self._rois(feats, boxes512)
        finals_g: dict = {}
        finals_s: dict = {}
        for label, _ in SCALES:
            for comp in COMPONENTS:
                roi = rois[comp, label]
                q = self.E_lq.query(comp, label, roi)
                mem_g = read_shared_dictionary(q, *self._mem(comp, label))
                att = getattr(self, f"{comp}_{label}_Attention")
                paths = []
                if with_generic or specific is None:
                    paths.append((finals_g, mem_g))
                if specific is not None:
                    mem_s = read_per_sample_dictionary(q, specific.keys[comp, label], specific.values[comp, label],
                                                       specific.counts)
                    mask = getattr(self, f"{comp}_{label}_Mask")(roi, mem_s, mem_g)
                    paths.append((finals_s, mask * mem_s + (1 - mask) * mem_g))
                for finals, mem in paths:
                    mem = adain(mem, roi)
                    finals[comp, label] = att(mem - roi) * mem + roi
        base = self.MSDilate(f64)
        out = {}
        for key, finals in (("generic", finals_g), ("specific", finals_s)):
            if not finals:
                continue
            c = {label: self._paste(fmap, boxes512, stride, label, finals)
                 for (label, stride), fmap in zip(SCALES, feats)}
            x = self.up1(base, c[64])
            x = self.up2(x, c[128])
            x = self.up3(x, c[256])
            out[key] = self.up4(x)
        return out

    # ------------------------------------------------------------------------------------------ interface
    def _prepare(self, lq, landmarks, refs, ref_landmarks):
        size = self.config.size
        if lq.ndim == 4 and tuple(lq.shape[-2:]) != (size, size):
            raise ValueError(f"dmdnet: lq must be {size}x{size} aligned faces (config size), got {tuple(lq.shape)}")
        if refs is not None:
            for i, r in enumerate(refs):
                if r.ndim == 4 and tuple(r.shape[-2:]) != (size, size):
                    raise ValueError(f"dmdnet: refs[{i}] must be {size}x{size}, got {tuple(r.shape)}")
        landmarks, ref_landmarks = self.fill_landmarks(lq, landmarks, refs, ref_landmarks)
        self.check_inputs(lq, landmarks, refs, ref_landmarks)
        return landmarks, ref_landmarks

    def _weights_stamp(self) -> int:
        """Changes whenever a parameter or buffer is modified in place (optimizer step, load_state_dict, ...)."""
        return sum(t._version for t in self.parameters()) + sum(t._version for t in self.buffers())

    def _specific_cached(self, refs, ref_landmarks, given_landmarks) -> SpecificDictionary:
        """build_specific_dictionary, memoised for inference (eval mode, no grad): restoring many inputs with
        the same reference tensors (``bench restore --refs``, several faces of a photo) encodes them once.
        The entry holds the tensors themselves and is keyed on their identity and version and on the weights'
        versions, so any change recomputes; results are identical to an uncached call."""
        if self.training or torch.is_grad_enabled():
            return self.build_specific_dictionary(refs, ref_landmarks)
        lms = given_landmarks if given_landmarks is not None else [None] * len(refs)
        key = (tuple((id(r), r._version) for r in refs),
               tuple(None if lm is None else (id(lm), getattr(lm, "_version", 0)) for lm in lms),
               self._weights_stamp())
        cache = getattr(self, "_specific_cache", None)
        if cache is not None and cache[0] == key:
            return cache[2]
        specific = self.build_specific_dictionary(refs, ref_landmarks)
        # keep the keyed tensors alive so their ids cannot be reused by other tensors while cached
        self._specific_cache = (key, (list(refs), list(lms)), specific)
        return specific

    def clear_reference_cache(self) -> None:
        self._specific_cache = None

    def _run(self, lq, landmarks, refs, ref_landmarks, *, with_generic: bool):
        given_ref_landmarks = ref_landmarks
        landmarks, ref_landmarks = self._prepare(lq, landmarks, refs, ref_landmarks)
        boxes = self.boxes(landmarks)
        specific = self._specific_cached(refs, ref_landmarks, given_ref_landmarks) if refs else None
        out = self(lq * 2 - 1, boxes, specific, with_generic=with_generic)
        return {k: ((v + 1) / 2).clamp(0, 1) for k, v in out.items()}

    def restore(self, lq, landmarks=None, refs=None, ref_landmarks=None) -> torch.Tensor:
        """lq (B, 3, S, S) in [0, 1] -> (B, 3, S, S) in [0, 1]: generic+specific restoration when ``refs`` are
        given (one (N_i, 3, S, S) set per sample), generic otherwise. Missing landmarks are found with
        :class:`baselines.landmarks.LandmarkProvider` (sources in ``last_landmark_sources``)."""
        out = self._run(lq, landmarks, refs, ref_landmarks, with_generic=False)
        return out["specific"] if refs else out["generic"]

    def training_outputs(self, lq, landmarks=None, refs=None, ref_landmarks=None) -> dict[str, torch.Tensor]:
        """{"restored": generic+specific output if refs else generic, "restored_generic": generic output (only
        with refs)}; both are supervised by the image losses."""
        out = self._run(lq, landmarks, refs, ref_landmarks, with_generic=True)
        if refs:
            return {"restored": out["specific"], "restored_generic": out["generic"]}
        return {"restored": out["generic"]}

    # ------------------------------------------------------------------------------------------ dictionary init
    @torch.no_grad()
    def generic_dictionary_init(self, hq_batches: Iterable, *, momentum: float | None = None) -> dict[str, Any]:
        """Initialise the generic dictionary from HQ faces (the author's recipe, DMDNet issue #3).

        ``hq_batches`` yields ``(images, landmarks)`` pairs (or dicts with "hq" and "landmarks"): images
        (B, 3, S, S) in [0, 1], landmarks (B, 68, 2) in pixels. Items = E_hq + K/V heads of the current (randomly
        initialised) network, one per image, component and scale.

        1. Initialisation: the first ``n_atoms`` images' items become the atoms (atom m = image m).
        2. Forward update, every further image: per component and scale, the item is assigned to the atom whose
           key has the highest cosine similarity with its key; that atom's key and value move to the running mean
           of the items assigned to it (online k-means; the init item counts as the first). With ``momentum`` b,
           instead atom <- b * atom + (1 - b) * mean of the batch's items assigned to it.
        3. Backward update is ordinary training: the atoms are nn.Parameters (create the optimizer after this).

        Raises ValueError (atoms untouched) when fewer than ``n_atoms`` images are given. Returns statistics."""
        m = self.config.n_atoms
        device = self._mem("LE", 256)[0].device
        was_training = self.training
        self.eval()  # no spectral-norm power iterations while encoding
        init_k: dict = {}
        init_v: dict = {}
        n_init = 0
        counts = {key: torch.zeros(m, device=device) for key in ((c, lab) for lab, _ in SCALES for c in COMPONENTS)}
        n_seen = 0
        try:
            for batch in hq_batches:
                imgs, lms = (batch["hq"], batch["landmarks"]) if isinstance(batch, dict) else batch
                imgs = imgs.to(device)
                keys, values = self._items(imgs * 2 - 1, self.boxes(lms))
                n = imgs.shape[0]
                n_seen += n
                take = min(n, m - n_init)
                if take > 0:
                    for key in counts:
                        init_k.setdefault(key, []).append(keys[key][:take])
                        init_v.setdefault(key, []).append(values[key][:take])
                    n_init += take
                    if n_init == m:
                        for key, count in counts.items():
                            k_atoms, v_atoms = self._mem(*key)
                            k_atoms.copy_(torch.cat(init_k[key]))
                            v_atoms.copy_(torch.cat(init_v[key]))
                            count.fill_(1)
                        init_k.clear()
                        init_v.clear()
                if take < n and n_init == m:
                    for key, count in counts.items():
                        self._forward_update(key, keys[key][take:], values[key][take:], count, momentum)
        finally:
            self.train(was_training)
        if n_init < m:
            raise ValueError(f"generic_dictionary_init needs at least n_atoms={m} HQ images, got {n_seen}")
        return {
            "n_images": n_seen,
            "init_images": m,
            "update_images": n_seen - m,
            "rule": "running mean" if momentum is None else f"momentum {momentum}",
            "items_per_atom": {f"{c}_{lab}": counts[c, lab].tolist() for c, lab in counts},
        }

    def _forward_update(self, key, k_items, v_items, counts, momentum):
        k_atoms, v_atoms = self._mem(*key)
        m = k_atoms.shape[0]
        sim = nn.functional.normalize(k_items.flatten(1), dim=1) @ nn.functional.normalize(k_atoms.flatten(1), dim=1).t()
        assign = sim.argmax(dim=1)
        hits = torch.bincount(assign, minlength=m).to(counts.dtype)
        k_sum = torch.zeros_like(k_atoms).index_add_(0, assign, k_items)
        v_sum = torch.zeros_like(v_atoms).index_add_(0, assign, v_items)
        used = hits > 0
        shape = (-1,) + (1,) * (k_atoms.ndim - 1)
        if momentum is None:
            total = (counts + hits).view(shape)
            k_atoms[used] = ((k_atoms * counts.view(shape) + k_sum) / total)[used]
            v_atoms[used] = ((v_atoms * counts.view(shape) + v_sum) / total)[used]
        else:
            h = hits.clamp(min=1).view(shape)
            k_atoms[used] = (momentum * k_atoms + (1 - momentum) * k_sum / h)[used]
            v_atoms[used] = (momentum * v_atoms + (1 - momentum) * v_sum / h)[used]
        counts += hits


def _checkpoint_filter(state: Any, model: DMDNet) -> dict:
    """The official DMDNet.pth is a plain state dict with our key names (dictionaries as buffers under the same
    names). Also accepts {'params': ...} / {'state_dict': ...} wrappers and DataParallel 'module.' prefixes."""
    return unwrap_state_dict(state)


register_model(ModelInfo(
    name="dmdnet",
    model_cls=DMDNet,
    config_cls=DMDNetConfig,
    configs={"paper": PAPER, "tiny": TINY},
    default_config="tiny",
    pretrained={"dmdnet-official": "paper"},
    checkpoint_filter_fn=_checkpoint_filter,
    description="Dual memory dictionaries (generic + reference-specific) with SFT decoder; uses references when given",
    paper="Li et al., Learning Dual Memory Dictionaries for Blind Face Restoration, TPAMI 2022 (arXiv 2210.08160)",
))

__all__ = ["COMPONENTS", "PAPER", "SCALES", "TINY", "DMDNet", "DMDNetConfig", "SpecificDictionary"]
