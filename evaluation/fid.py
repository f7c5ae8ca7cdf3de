"""FID and KID with the pytorch-fid Inception network (registry ``pytorch-fid-inception``; never random weights).

Layers, as in pytorch-fid's ``fid_score.py``: images -> :func:`preprocess` -> :func:`inception_features` (2048-D
pool3) -> :func:`feature_statistics` (μ, Σ with ``np.cov(rowvar=False)``) -> :func:`frechet_distance`. KID is the
unbiased polynomial-kernel MMD of clean-fid / torch-fidelity (:func:`kernel_inception_distance`).

Resize modes (``mode``):

- ``clean`` (default; clean-fid / pyiqa ``fid`` default): PIL bicubic resize of each channel in float mode 'F' to
  299x299, clipped to [0, 255], then ``(x - 128) / 128``;
- ``legacy_pytorch`` (pytorch-fid, BasicSR/VQFR/RestoreFormer scripts): ``ToTensor`` [0, 1], ``F.interpolate``
  bilinear to 299 (``align_corners=False``), ``2x - 1``.

Reference statistics: the test set's HQ images (default) or a statistics file — ``ffhq512-fid-stats-clean``
(clean-fid npz, mode ``clean``), ``ffhq512-fid-stats-basicsr`` (BasicSR ``inception_FFHQ_512`` .pth, mode
``legacy_pytorch``) or any ``.npz`` with ``mu``/``sigma``. Features are cached by content hash
(:class:`FeatureCache`: sha256 over the images' hashes, the mode and the Inception weights' sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from evaluation.metrics import Column, Metric, MetricOptions, register_metric, weights_available

WEIGHTS_NAME = "pytorch-fid-inception"
MODES = ("clean", "legacy_pytorch")
#: statistics files in the weights registry and the resize mode they were computed with
STATS_ENTRIES = {"ffhq512-fid-stats-clean": "clean", "ffhq512-fid-stats-basicsr": "legacy_pytorch"}
FEATURES_FORMAT = "celebref.inception-features/1"
DIMS = 2048


# ----------------------------------------------------------------------------------------------- network
def build_inception(device: str = "cpu", state_dict: dict | None = None) -> torch.nn.Module:
    """pytorch-fid's ``InceptionV3([3])`` (FID-patched blocks) with the registry's verified weights.

    pytorch-fid fetches its weights from a URL inside ``fid_inception_v3``; that call is redirected to the
    verified local file, so the architecture is exactly pytorch-fid's and no download or random init can happen.
    Raises ``MissingWeightsError`` (with the fix) when the file is absent."""
    from pytorch_fid import inception as pfi

    if state_dict is None:
        from bfrcore import weights as wreg

        state_dict = torch.load(wreg.require(WEIGHTS_NAME), map_location="cpu", weights_only=True)

    def _local(*_args, **_kwargs):
        return state_dict

    with mock.patch.object(pfi, "load_state_dict_from_url", _local):
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[DIMS]], resize_input=False,
                                normalize_input=False, requires_grad=False, use_fid_inception=True)
    return model.eval().to(device)


def _resize_clean(img: np.ndarray, size: int = 299) -> np.ndarray:
    from PIL import Image

    chans = []
    for c in range(3):
        ch = Image.fromarray(np.ascontiguousarray(img[:, :, c]).astype(np.float32))
        if ch.mode != "F":  # pragma: no cover - Pillow always maps float32 2-D arrays to 'F'
            raise RuntimeError("PIL did not open the channel in float mode 'F'")
        chans.append(np.asarray(ch.resize((size, size), resample=Image.BICUBIC)).clip(0, 255))
    return np.stack(chans, axis=0).astype(np.float32)


def preprocess(images: Sequence[np.ndarray], mode: str = "clean") -> torch.Tensor:
    """RGB uint8 (H, W, 3) images -> (N, 3, 299, 299) float32 network input in [-1, 1]."""
    if mode not in MODES:
        raise ValueError(f"unknown FID mode {mode!r}; choose from {MODES}")
    if mode == "clean":
        x = torch.from_numpy(np.stack([_resize_clean(i) for i in images]))
        return (x - 128.0) / 128.0
    x = torch.from_numpy(np.stack([np.ascontiguousarray(i) for i in images])).permute(0, 3, 1, 2)
    x = x.to(torch.float32) / 255.0
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return 2 * x - 1


@torch.no_grad()
def inception_features(model: torch.nn.Module, images: Sequence[np.ndarray], mode: str = "clean",
                       batch_size: int = 16) -> np.ndarray:
    """(N, 2048) float64 pool3 features."""
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(images), batch_size):
        x = preprocess(images[s:s + batch_size], mode).to(device)
        f = model(x)[0]
        out.append(f.reshape(f.shape[0], -1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, DIMS))


# ----------------------------------------------------------------------------------------------- math
def feature_statistics(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """μ (mean) and Σ (``np.cov(rowvar=False)``, ddof 1) of (N, D) features, float64."""
    feats = np.asarray(feats, np.float64)
    if feats.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {feats.shape[0]}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """‖μ1−μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½), as pytorch-fid ``calculate_frechet_distance``: scipy ``sqrtm``; if
    the product is singular, retry with ``eps·I`` added to both Σ; an imaginary part above 1e-3 on the diagonal
    is an error, smaller ones are dropped."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in sqrtm(Σ1Σ2)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def kernel_inception_distance(feats1: np.ndarray, feats2: np.ndarray, num_subsets: int = 100,
                              max_subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD² with the polynomial kernel ``k(x, y) = (xᵀy / d + 1)³`` averaged over random subsets (clean-fid
    ``kernel_distance`` / torch-fidelity KID). Returns (mean, std over subsets). Subsets are drawn with
    ``np.random.RandomState(seed)`` in clean-fid's order (``feats2`` first), so a seeded reference run matches."""
    f1 = np.asarray(feats1, np.float64)
    f2 = np.asarray(feats2, np.float64)
    n = f1.shape[1]
    m = min(f1.shape[0], f2.shape[0], max_subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 images per set")
    rng = np.random.RandomState(seed)
    vals = np.empty(num_subsets)
    for i in range(num_subsets):
        x = f2[rng.choice(f2.shape[0], m, replace=False)]
        y = f1[rng.choice(f1.shape[0], m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        vals[i] = ((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m
    return float(vals.mean()), float(vals.std())


# ----------------------------------------------------------------------------------------------- statistics files
def load_statistics(name_or_path: str) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(μ, Σ, mode or None) from a registry entry (``ffhq512-fid-stats-*``) or an ``.npz`` (mu, sigma) /
    BasicSR ``.pth`` (mean, cov) file."""
    mode = None
    if name_or_path in STATS_ENTRIES:
        from bfrcore import weights as wreg

        mode = STATS_ENTRIES[name_or_path]
        path = wreg.require(name_or_path)
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"FID statistics {name_or_path!r}: neither a file nor one of "
                                    f"{sorted(STATS_ENTRIES)}")
    if str(path).endswith(".npz"):
        with np.load(path) as z:
            return np.asarray(z["mu"], np.float64), np.asarray(z["sigma"], np.float64), mode
    with torch.serialization.safe_globals(_numpy_safe_globals()):
        stats = torch.load(path, map_location="cpu", weights_only=True)
    mu, sigma = stats["mean"], stats["cov"]
    to_np = lambda v: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)  # noqa: E731
    return to_np(mu).astype(np.float64), to_np(sigma).astype(np.float64), mode


def _numpy_safe_globals() -> list:
    out = [np.ndarray, np.dtype]
    try:
        from numpy._core.multiarray import _reconstruct
        out.append(_reconstruct)
    except ImportError:  # pragma: no cover
        pass
    out += [type(np.dtype(np.float64)), type(np.dtype(np.float32))]
    return out


# ----------------------------------------------------------------------------------------------- cache
class FeatureCache:
    """Inception features of an image set in ``<dir>/<key>.npz``, keyed by content: sha256 over the format, the
    resize mode, the Inception weights' sha256 and the sorted per-image content hashes."""

    def __init__(self, directory: str | os.PathLike | None = None):
        if directory is None:
            directory = os.environ.get("CELEBREF_CACHE_DIR")
            if directory is None:
                home = os.environ.get("CELEBREF_HOME")
                base = Path(home).expanduser() if home else Path.home() / ".cache" / "celebref"
                directory = base / "cache"
            directory = Path(directory) / "features"
        self.dir = Path(directory)

    @staticmethod
    def key(image_hashes: Iterable[str], mode: str, weights_sha256: str) -> str:
        h = hashlib.sha256(json.dumps({"format": FEATURES_FORMAT, "mode": mode, "weights": weights_sha256},
                                      sort_keys=True).encode())
        for ih in sorted(image_hashes):
            h.update(f"{ih}\n".encode())
        return h.hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        p = self.dir / f"{key}.npz"
        if not p.is_file():
            return None
        try:
            with np.load(p) as z:
                return np.asarray(z["feats"], np.float64)
        except (OSError, ValueError, KeyError):
            return None

    def put(self, key: str, feats: np.ndarray) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        p = self.dir / f"{key}.npz"
        tmp = self.dir / f".{key}.{os.getpid()}.tmp.npz"
        np.savez_compressed(tmp, feats=np.asarray(feats, np.float64))
        os.replace(tmp, p)
        return p


# ----------------------------------------------------------------------------------------------- metrics
class _InceptionMetric(Metric):
    """Shared state for FID/KID: features of the restored ('fake') and reference ('real') sets."""

    kind = "distribution"
    version = "1"

    def __init__(self, options: MetricOptions | None = None):
        super().__init__(options)
        if self.options.fid_mode not in MODES:
            raise ValueError(f"unknown FID mode {self.options.fid_mode!r}; choose from {MODES}")
        self.mode = self.options.fid_mode
        self.reset()

    def reset(self) -> None:
        self._fake: list[np.ndarray] = []
        self._real: list[np.ndarray] = []

    def _setup(self, device: str) -> None:
        self._model = build_inception(device)

    @property
    def weights_sha256(self) -> str:
        from bfrcore import weights as wreg

        return wreg.fingerprint(wreg.require(WEIGHTS_NAME))

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not self._ready:
            self.setup(self.device)
        return inception_features(self._model, images, self.mode, self.options.batch_size)

    def update(self, images: Sequence[np.ndarray], real: bool = False) -> None:
        """Add RGB uint8 images to the restored (``real=False``) or reference (``real=True``) set."""
        self.add_features(self.features(images), real)

    def add_features(self, feats: np.ndarray, real: bool = False) -> None:
        feats = np.asarray(feats, np.float64)
        if feats.ndim != 2:
            raise ValueError(f"features must be (N, D), got {feats.shape}")
        (self._real if real else self._fake).append(feats)

    def _stack(self, real: bool) -> np.ndarray:
        parts = [p for p in (self._real if real else self._fake) if len(p)]
        return np.concatenate(parts) if parts else np.zeros((0, DIMS))


class FID(_InceptionMetric):
    name = "fid"
    columns = (Column("fid", False, "Fréchet Inception distance"),)
    reference = "pytorch-fid calculate_frechet_distance; scipy sqrtm; clean-fid/pyiqa resize modes"

    def __init__(self, options: MetricOptions | None = None):
        super().__init__(options)
        self.needs = (WEIGHTS_NAME,)
        stats = self.options.fid_stats
        if stats in STATS_ENTRIES:
            self.needs = (WEIGHTS_NAME, stats)
            if STATS_ENTRIES[stats] != self.mode:
                raise ValueError(f"{stats} was computed in mode {STATS_ENTRIES[stats]!r}; use --fid-mode "
                                 f"{STATS_ENTRIES[stats]} with it (got {self.mode!r})")
        self._real_stats: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def convention(self) -> str:
        ref = self.options.fid_stats or "the test set's HQ images"
        resize = ("PIL bicubic per channel (float) to 299, (x-128)/128" if self.mode == "clean"
                  else "bilinear 299 align_corners=False, 2x-1")
        return (f"pytorch-fid InceptionV3 pool3 (pt_inception-2015-12-05), mode {self.mode} ({resize}), "
                f"np.cov ddof 1, scipy sqrtm with eps 1e-6 retry; reference: {ref}")

    def set_reference_statistics(self, mu: np.ndarray, sigma: np.ndarray) -> None:
        self._real_stats = (np.asarray(mu, np.float64), np.asarray(sigma, np.float64))

    def compute_set(self) -> dict:
        fake = self._stack(False)
        mu1, s1 = feature_statistics(fake)
        if self._real_stats is not None:
            mu2, s2 = self._real_stats
            n_real = None
        else:
            real = self._stack(True)
            mu2, s2 = feature_statistics(real)
            n_real = int(real.shape[0])
        return {"fid": frechet_distance(mu1, s1, mu2, s2), "n": int(fake.shape[0]), "n_real": n_real}


class KID(_InceptionMetric):
    name = "kid"
    needs = (WEIGHTS_NAME,)
    columns = (Column("kid", False, "kernel Inception distance (unbiased MMD², polynomial kernel)"),)
    reference = "clean-fid kernel_distance / pyiqa mmd_polynomial_kernel (same subset draws when seeded)"

    @property
    def convention(self) -> str:
        o = self.options
        return (f"pytorch-fid InceptionV3 pool3, mode {self.mode}, polynomial kernel (x.y/d+1)^3, "
                f"{o.kid_subsets} subsets of min(n_fake, n_real, {o.kid_subset_size}), seed {o.seed}; "
                "reference: the test set's HQ images")

    def compute_set(self) -> dict:
        fake, real = self._stack(False), self._stack(True)
        mean, std = kernel_inception_distance(fake, real, self.options.kid_subsets, self.options.kid_subset_size,
                                              self.options.seed)
        return {"kid": mean, "kid_std": std, "n": int(fake.shape[0]), "n_real": int(real.shape[0])}


def fid_available(options: MetricOptions) -> tuple[bool, str]:
    return weights_available(FID(options).needs)


def compute_set_features(metric: _InceptionMetric, items: Sequence[tuple[str, Callable[[], np.ndarray]]],
                         cache: FeatureCache | None = None, batch_size: int = 16) -> np.ndarray:
    """Features of a set given (content hash, loader) pairs, in sorted-hash order (so cached and fresh runs feed
    KID's seeded subsets identically), through the cache when one is given."""
    items = sorted(items, key=lambda it: it[0])
    key = None
    if cache is not None:
        key = FeatureCache.key([h for h, _ in items], metric.mode, metric.weights_sha256)
        hit = cache.get(key)
        if hit is not None and hit.shape[0] == len(items):
            return hit
    feats = []
    for s in range(0, len(items), batch_size):
        feats.append(metric.features([load() for _, load in items[s:s + batch_size]]))
    out = np.concatenate(feats) if feats else np.zeros((0, DIMS))
    if cache is not None and key is not None:
        cache.put(key, out)
    return out


register_metric("fid", lambda o: FID(o))
register_metric("kid", lambda o: KID(o))
