"""Identity preservation: embeddings of the restored face vs the ground truth and vs the person's references.

Backends (embedders from :mod:`bfrcore.faces`):

- ``arcface`` — InsightFace buffalo_l ArcFace R50 (512-D, cosine), the reporting default when its weights exist;
- ``arcface18`` — the GFPGAN/VQFR ``arcface_resnet18`` recipe (ResNet-IR 18, IRBlock [2,2,2,2], no SE, 128x128
  grey input), added here and registered with :func:`bfrcore.faces.register_embedder`. Preprocessing as VQFR
  ``metric_paper/calculate_cos_dist.py``: OpenCV grey (0.299 R + 0.587 G + 0.114 B, uint8), ``cv2.resize`` to
  128x128 (bilinear), ``(x - 127.5) / 127.5``; eval mode;
- ``dlib`` — dlib ResNet-29 (128-D), works offline; Euclidean distance reported too (same person < 0.6).

Per image: ``ids_<b>`` cosine similarity with the GT (higher is better), ``deg_<b>`` the angle
``degrees(arccos(cos))`` ("Deg." in VQFR; lower is better), for dlib ``l2_dlib``; against the references
``ids_ref_<b>`` / ``deg_ref_<b>`` (means over the reference list; NaN when the person has none). VQFR drops pairs
with Deg < 1 from its mean; these columns keep every pair. ``deg`` (:class:`DegMetric`) is VQFR's "Deg." as a metric
of its own: ``deg`` (every pair) and ``deg_vqfr`` (NaN below 1 degree, so its mean is VQFR's).
"""

from __future__ import annotations

import numpy as np

from bfrcore.faces import get_embedder
from bfrcore.faces.arcface18 import ArcFace18Embedder
from evaluation.metrics import Batch, Column, Metric, register_alias, register_metric, weights_available

BACKENDS = {
    "arcface": ("insightface-buffalo_l", "dlib-shape-predictor-68"),
    "arcface18": ("arcface-resnet18",),
    "dlib": ("dlib-shape-predictor-5", "dlib-resnet-face-v1"),
}




# ----------------------------------------------------------------------------------------------- metric
def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (N, D) arrays (float64)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(na * nb, 1e-12)


def angle_degrees(cos: np.ndarray) -> np.ndarray:
    """arccos(cos) in degrees (VQFR's 'Deg.'), cos clipped to [-1, 1]."""
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


class IdentityMetric(Metric):
    kind = "identity"
    version = "1"

    def __init__(self, options=None, backend: str = "dlib"):
        super().__init__(options)
        if backend not in BACKENDS:
            raise ValueError(f"unknown identity backend {backend!r}")
        self.backend = backend
        self.name = f"ids_{backend}"
        self.needs = BACKENDS[backend]
        b = backend
        cols = [Column(f"ids_{b}", True, f"cosine similarity restored vs GT ({b})"),
                Column(f"deg_{b}", False, f"angle restored vs GT in degrees ({b})")]
        if b == "dlib":
            cols.append(Column("l2_dlib", False, "Euclidean distance restored vs GT (dlib; same person < 0.6)"))
        cols += [Column(f"ids_ref_{b}", True, f"mean cosine similarity restored vs references ({b})"),
                 Column(f"deg_ref_{b}", False, f"mean angle restored vs references in degrees ({b})")]
        self.columns = tuple(cols)
        self.reference = {
            "arcface": "InsightFace buffalo_l w600k_r50 (bfrcore.faces 'arcface')",
            "arcface18": "VQFR metric_paper/calculate_cos_dist.py (arcface_resnet18)",
            "dlib": "dlib compute_face_descriptor; NumPy cosine/Euclidean on the same embeddings",
        }[b]
        self._ref_cache: dict[str, np.ndarray] = {}

    @property
    def convention(self) -> str:
        if self.backend == "arcface":
            return ("ArcFace R50 (InsightFace buffalo_l w600k), 112x112 norm_crop from dlib 5 points in the fixed "
                    "aligned-face box, cosine similarity and angle in degrees")
        if self.backend == "arcface18":
            return ("arcface_resnet18 (GFPGAN/VQFR), OpenCV grey, resize 128 bilinear, (x-127.5)/127.5, cosine "
                    "similarity and angle in degrees (all pairs kept)")
        return ("dlib ResNet-29 face descriptor (128-D) in the fixed aligned-face box, cosine similarity, angle in "
                "degrees and Euclidean distance")

    def _setup(self, device: str) -> None:
        if self.backend == "arcface18":
            self._embedder = ArcFace18Embedder(device)
        else:
            self._embedder = get_embedder(self.backend)

    def _ref_embeddings(self, ids: list[str], imgs: list[np.ndarray]) -> np.ndarray:
        missing = [(i, img) for i, img in zip(ids, imgs) if i not in self._ref_cache]
        if missing:
            emb = self._embedder.embed([img for _, img in missing])
            for (i, _), e in zip(missing, emb):
                self._ref_cache[i] = e
        return np.stack([self._ref_cache[i] for i in ids]) if ids else np.zeros((0, self._embedder.dim))

    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        b = self.backend
        n = len(batch)
        e_pred = self._embedder.embed(batch.pred)
        e_gt = self._embedder.embed(batch.gt)
        cos = cosine_similarity(e_pred, e_gt)
        out = {f"ids_{b}": cos, f"deg_{b}": angle_degrees(cos)}
        if b == "dlib":
            out["l2_dlib"] = np.linalg.norm(e_pred.astype(np.float64) - e_gt.astype(np.float64), axis=1)
        ref_cos = np.full(n, np.nan)
        ref_deg = np.full(n, np.nan)
        if batch.refs is not None:
            for i in range(n):
                refs = batch.refs[i]
                if not refs:
                    continue
                ids = batch.ref_ids[i] if batch.ref_ids else [f"{batch.image_ids[i]}#ref{j}" for j in range(len(refs))]
                e_ref = self._ref_embeddings(list(ids), list(refs))
                c = cosine_similarity(np.repeat(e_pred[i:i + 1], len(e_ref), axis=0), e_ref)
                ref_cos[i] = float(c.mean())
                ref_deg[i] = float(angle_degrees(c).mean())
        out[f"ids_ref_{b}"] = ref_cos
        out[f"deg_ref_{b}"] = ref_deg
        return out


class DegMetric(Metric):
    """``deg``: "Deg." as VQFR's ``metric_paper/calculate_cos_dist.py`` computes it (GFPGAN ships no evaluation
    script; its identity network is the same arcface_resnet18): the angle in degrees between the arcface_resnet18
    embeddings of the restored image and its GT, ``degrees(arccos(cos))``, on the whole image (no face crop).

    Columns: ``deg`` keeps every pair; ``deg_vqfr`` is NaN where Deg < 1, the pairs VQFR counts as "identical" and
    leaves out of its mean (summaries average finite values, so the mean of ``deg_vqfr`` is VQFR's number)."""

    name = "deg"
    kind = "full_reference"
    version = "1"
    needs = BACKENDS["arcface18"]
    columns = (Column("deg", False, "identity angle restored vs GT in degrees (arcface_resnet18; all pairs)"),
               Column("deg_vqfr", False, "as deg, NaN where deg < 1 (left out of the mean, as VQFR)"))
    reference = "VQFR metric_paper/calculate_cos_dist.py (resnet_face18 / GFPGAN arcface_resnet18)"
    #: VQFR's rule: pairs closer than this (degrees) are 'identical' and dropped from the mean
    VQFR_MIN_DEG = 1.0

    @property
    def convention(self) -> str:
        return ("VQFR Deg.: arcface_resnet18 (GFPGAN v0.1.0 release; VQFR used resnet18_110.pth, same resnet_face18 "
                "architecture), whole image, OpenCV grey uint8, cv2.resize 128x128 bilinear, (x-127.5)/127.5, eval "
                "mode, angle = degrees(arccos(cos)) in float64; deg keeps every pair, deg_vqfr is NaN where "
                "deg < 1 (VQFR's exclusion)")

    def _setup(self, device: str) -> None:
        self._embedder = ArcFace18Embedder(device)

    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        deg = angle_degrees(cosine_similarity(self._embedder.embed(batch.pred), self._embedder.embed(batch.gt)))
        return {"deg": deg, "deg_vqfr": np.where(deg < self.VQFR_MIN_DEG, np.nan, deg)}


def _resolve_ids(options) -> tuple[str, dict[str, str]]:
    """``ids``: ArcFace (InsightFace) when its weights are present, else dlib (offline), with the fix noted."""
    ok, why = weights_available(BACKENDS["arcface"])
    if ok:
        return "ids_arcface", {}
    return "ids_dlib", {"ids_arcface": why}


for _b in BACKENDS:
    register_metric(f"ids_{_b}", lambda o, _b=_b: IdentityMetric(o, _b))
register_alias("ids", _resolve_ids)
register_metric("deg", lambda o: DegMetric(o))
