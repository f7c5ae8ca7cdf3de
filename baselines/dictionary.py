"""DFDNet's offline component dictionaries: K-means over HQ component features, per component and scale.

DFDNet (Li et al., ECCV 2020) builds, for each facial component (left eye, right eye, nose, mouth) and each of its
four feature scales, a dictionary of K cluster centres ("atoms") of the HQ faces' component features: each face's
component box is cropped from the feature map and resized to a fixed atom size; the K-means centres of those
crops are the atoms. The authors release theirs as ``DictionaryCenter512/{part}_{256,128,64,32}_center.npy``.

This module builds such dictionaries (``bench dict build``: :mod:`baselines.dictionary_build`) and reads them:

- :func:`kmeans`: seeded k-means++ initialisation + Lloyd iterations, in torch (deterministic for a seed on a
  given device; empty clusters take the point farthest from its centre);
- :func:`collect_component_features`: atom-sized component crops of every image, from a DFDNet model's feature
  extractor (VGG19 or the learned tiny extractor);
- :func:`build_dictionary` / :func:`write_dictionary` / :func:`read_dictionary`: the whole build and its files.

Files: ``<out>/{part}_{F}_center.npy`` with F the feature-map side (256, 128, 64, 32 for a 512 model; 64, 32, 16,
8 for a 128 one), float32 arrays of shape (K, C, s, s) (the authors' files reshape to that), and
``<out>/dictionary.json`` (format, sizes, K, seed, dataset hash, extractor, sample counts, inertia).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

DICTIONARY_FORMAT = "celebref.dfdnet-dictionary/1"
PARTS = ("left_eye", "right_eye", "nose", "mouth")


# ----------------------------------------------------------------------------------------------- k-means
def _sq_dists(x: torch.Tensor, c: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """(N, K) squared Euclidean distances, computed in chunks of rows (float64 accumulation of the norms)."""
    cn = c.pow(2).sum(1)
    out = []
    for i in range(0, x.shape[0], chunk):
        xb = x[i:i + chunk]
        d = xb.pow(2).sum(1, keepdim=True) - 2 * xb @ c.t() + cn[None]
        out.append(d.clamp_min_(0))
    return torch.cat(out)


def kmeans(x: torch.Tensor, k: int, *, seed: int = 0, n_iter: int = 100, tol: float = 1e-6
           ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """K-means of the rows of ``x`` (N, D): k-means++ seeding with a ``torch.Generator(seed)`` then Lloyd
    iterations until the relative inertia change is below ``tol`` (or ``n_iter``). Returns (centres (K, D),
    labels (N,), inertia). Raises ValueError when N < K."""
    if x.ndim != 2:
        raise ValueError(f"kmeans: x must be (N, D), got {tuple(x.shape)}")
    n = x.shape[0]
    if k < 1:
        raise ValueError("kmeans: k must be >= 1")
    if n < k:
        raise ValueError(f"kmeans: {n} samples cannot make {k} clusters (need at least {k})")
    x = x.float()
    gen = torch.Generator(device="cpu").manual_seed(int(seed))

    # k-means++ seeding
    first = int(torch.randint(n, (1,), generator=gen).item())
    centres = [x[first]]
    d2 = _sq_dists(x, x[first:first + 1])[:, 0]
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # every point coincides with a centre: take the next unused point
            idx = int(torch.randint(n, (1,), generator=gen).item())
        else:
            probs = (d2 / total).double().cpu()
            idx = int(torch.multinomial(probs, 1, generator=gen).item())
        centres.append(x[idx])
        d2 = torch.minimum(d2, _sq_dists(x, x[idx:idx + 1])[:, 0])
    c = torch.stack(centres).clone()

    prev = math.inf
    labels = torch.zeros(n, dtype=torch.long, device=x.device)
    inertia = math.inf
    for _ in range(max(1, n_iter)):
        d = _sq_dists(x, c)
        mind, labels = d.min(1)
        inertia = float(mind.double().sum())
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        new_c = sums / counts.clamp_min(1)[:, None].to(x.dtype)
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty:  # re-seed empty clusters with the points farthest from their centres
            far = torch.argsort(mind, descending=True)
            for j, e in enumerate(empty):
                new_c[e] = x[far[j]]
        c = new_c
        if prev < math.inf and abs(prev - inertia) <= tol * max(prev, 1e-12) and not empty:
            break
        prev = inertia
    d = _sq_dists(x, c)
    mind, labels = d.min(1)
    return c, labels, float(mind.double().sum())


# ----------------------------------------------------------------------------------------------- features
@torch.no_grad()
def collect_component_features(model, batches: Iterable) -> dict[tuple[str, int], torch.Tensor]:
    """Atom-sized component crops of HQ faces from ``model`` (a :class:`baselines.dfdnet.DFDNet`).

    ``batches`` yields ``(images, landmarks)`` or dicts with "hq" and "landmarks": images (B, 3, S, S) in [0, 1]
    at the model's size, landmarks (B, 68, 2) in pixels. Returns {(part, level): (N, C * s * s) float32 (CPU)}."""
    feats: dict[tuple[str, int], list[torch.Tensor]] = {}
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            imgs, lms = (batch["hq"], batch["landmarks"]) if isinstance(batch, dict) else batch
            device = next(iter(model.buffers()), torch.empty(0)).device
            crops = model.component_crops(imgs.to(device), lms)
            for key, t in crops.items():
                feats.setdefault(key, []).append(t.flatten(1).float().cpu())
    finally:
        model.train(was_training)
    return {k: torch.cat(v) for k, v in feats.items()}


def build_dictionary(model, batches: Iterable, n_atoms: int, *, seed: int = 0, n_iter: int = 100,
                     progress: Callable[[str], None] | None = None) -> tuple[dict[tuple[str, int], np.ndarray], dict]:
    """K-means dictionaries for every (part, level) of ``model``: {key: (K, C, s, s) float32}, and statistics.
    Each (part, level) uses its own seed derived from ``seed`` (stable, order-independent)."""
    feats = collect_component_features(model, batches)
    if not feats:
        raise ValueError("no images with landmarks to build a dictionary from")
    atoms: dict[tuple[str, int], np.ndarray] = {}
    stats: dict[str, Any] = {"n_samples": {}, "inertia": {}}
    for (part, level), x in sorted(feats.items(), key=lambda kv: (kv[0][1], PARTS.index(kv[0][0]))):
        c, s = model.atom_shape(part, level)
        sub_seed = int(seed) * 1000 + level * 10 + PARTS.index(part)
        centres, _, inertia = kmeans(x, n_atoms, seed=sub_seed, n_iter=n_iter)
        atoms[part, level] = centres.reshape(n_atoms, c, s, s).numpy().astype(np.float32)
        name = f"{part}_{model.feature_size(level)}"
        stats["n_samples"][name] = int(x.shape[0])
        stats["inertia"][name] = inertia
        if progress:
            progress(f"{name}: {x.shape[0]} samples -> {n_atoms} atoms (inertia {inertia:.4g})")
    return atoms, stats


# ----------------------------------------------------------------------------------------------- files
def dictionary_file(root: Path, part: str, feature_size: int) -> Path:
    return Path(root) / f"{part}_{feature_size}_center.npy"


def write_dictionary(out: str | Path, atoms: dict[tuple[str, int], np.ndarray], model, info: dict) -> Path:
    """Write ``{part}_{F}_center.npy`` files and ``dictionary.json`` into ``out`` (created)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for (part, level), arr in sorted(atoms.items()):
        path = dictionary_file(out, part, model.feature_size(level))
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
        tmp.replace(path)
    meta = {"format": DICTIONARY_FORMAT, **info}
    (out / "dictionary.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    return out


def read_dictionary(root: str | Path, size: int, shapes: dict[tuple[str, int], tuple[int, int]],
                    feature_sizes: dict[int, int]) -> dict[tuple[str, int], torch.Tensor]:
    """Read the atoms for a model of side ``size``: ``shapes`` {(part, level): (C, s)}, ``feature_sizes``
    {level: F}. Every file must reshape to (K, C, s, s) with the same K. Arrays are loaded without pickle."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dictionary folder {root} not found (build one with `bench dict build`)")
    out: dict[tuple[str, int], torch.Tensor] = {}
    k_seen: int | None = None
    for (part, level), (c, s) in shapes.items():
        path = dictionary_file(root, part, feature_sizes[level])
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: a dictionary for a {size}x{size} model needs "
                                    f"{{part}}_{{F}}_center.npy for F in {sorted(set(feature_sizes.values()))}")
        arr = np.load(path, allow_pickle=False)
        per_atom = c * s * s
        if arr.size % per_atom:
            raise ValueError(f"{path}: {arr.shape} does not reshape to (K, {c}, {s}, {s})")
        k = arr.size // per_atom
        if k_seen is not None and k != k_seen:
            raise ValueError(f"{path}: {k} atoms, other files have {k_seen}")
        k_seen = k
        out[part, level] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32).reshape(k, c, s, s))
    return out


def read_info(root: str | Path) -> dict:
    p = Path(root) / "dictionary.json"
    return json.loads(p.read_text()) if p.is_file() else {}
