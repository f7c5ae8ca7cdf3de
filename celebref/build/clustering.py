"""Identity clustering of face embeddings.

- ``agglomerative`` (default): scipy hierarchical clustering, ``average`` linkage on the embedder's own distance
  (Euclidean for dlib, cosine distance for ArcFace), cut at ``threshold``: two groups merge while the mean
  distance between their members is below the threshold. Deterministic; O(n^2) memory (about 1.6 GB at 20k faces).
- ``chinese_whispers``: dlib's graph clustering (edges between faces closer than ``threshold``), the method of
  dlib's face clustering example; near-linear, fed in sorted face order so it is deterministic.

Labels are canonical: numbered 0.. in the order of first appearance in the input (which the builder sorts by
face id), so the same faces always get the same labels.
"""

from __future__ import annotations

import numpy as np

#: per-embedder default cut distances (measured on the labelled shared data; see docs/build.md)
DEFAULT_THRESHOLDS = {"dlib": 0.65, "arcface": 0.65}


def canonical(labels) -> np.ndarray:
    out, seen = np.empty(len(labels), dtype=np.int64), {}
    for i, lab in enumerate(labels):
        out[i] = seen.setdefault(lab, len(seen))
    return out


def cluster(x: np.ndarray, *, metric: str, threshold: float, algorithm: str = "agglomerative",
            linkage: str = "average") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"unknown metric {metric!r}")
    if algorithm == "agglomerative":
        from scipy.cluster.hierarchy import fcluster
        from scipy.cluster.hierarchy import linkage as scipy_linkage
        from scipy.spatial.distance import pdist

        d = pdist(x, metric=metric)
        d = np.maximum(d, 0.0)
        z = scipy_linkage(d, method=linkage)
        return canonical(fcluster(z, t=threshold, criterion="distance"))
    if algorithm == "chinese_whispers":
        import dlib

        if metric == "cosine":  # unit vectors: |a-b|^2 = 2 (1 - cos)
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            thr = float(np.sqrt(2.0 * threshold))
        else:
            thr = float(threshold)
        vecs = [dlib.vector([float(v) for v in row]) for row in x]
        return canonical(dlib.chinese_whispers_clustering(vecs, thr))
    raise ValueError(f"unknown clustering algorithm {algorithm!r}")
