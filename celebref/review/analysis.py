"""What the review page shows: each kept identity's faces ordered by distance to the identity centre, identities that
look impure (a face far from the rest, or two separate modes) and pairs of identities whose centres are close.

Distances are in the build's embedder metric (build.json ``resolved.metric``: Euclidean for dlib, cosine distance
for ArcFace) and judged against the build's clustering threshold (``resolved.cluster_threshold``). Embeddings come
from the build's embed cache (``<dataset>/cache/embed/<key>/``, exactly what the clustering used); faces without a
cached embedding (a published or moved dataset) are embedded again from their aligned image with the same embedder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from bfrcore.dataset import FaceDataset


@dataclass(frozen=True)
class FaceEntry:
    face_id: str
    image_id: str
    path: str  # relative to the dataset root
    distance: float  # to the identity centre
    outlier: bool  # farther than the threshold from the centre of the identity's other faces


@dataclass
class IdentityReview:
    identity: str
    name: str | None
    split: str
    faces: list[FaceEntry]  # ascending distance to the centre
    flags: list[str] = field(default_factory=list)  # human-readable reasons to look at it
    impure: bool = False
    near: list[tuple[str, float]] = field(default_factory=list)  # (other identity, centre distance), ascending
    aliases: list[str] = field(default_factory=list)  # other names of the identity (identities.parquet)

    @property
    def max_distance(self) -> float:
        return max((f.distance for f in self.faces), default=0.0)


@dataclass
class Review:
    dataset_hash: str
    metric: str
    threshold: float
    embeddings_from: dict[str, int]  # "cache" / "computed" -> faces
    identities: list[IdentityReview]  # flagged first (impure, then near-merges), then by identity id
    near_pairs: list[tuple[str, str, float]]  # (identity a, identity b, centre distance), ascending


def load_embeddings(ds: FaceDataset) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """face_id -> embedding for every kept face: from the build's embed cache, else computed from the aligned
    image with the build's embedder. Returns (embeddings, counts by origin)."""
    kept = ds.images
    out: dict[str, np.ndarray] = {}
    key = (ds.info.get("stage_keys") or {}).get("embed")
    if key:
        items = ds.root / "cache" / "embed" / str(key) / "items"
        for sha, grp in kept.groupby("source_sha256", sort=True):
            p = items / str(sha)[:2] / f"{sha}.json"
            try:
                rec = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            vecs = (rec.get("result") or {}).get("embeddings") or {}
            for fid in grp["face_id"]:
                if fid in vecs:
                    out[str(fid)] = np.asarray(vecs[fid], np.float64)
    n_cache = len(out)
    todo = [(str(f), str(i)) for f, i in zip(kept["face_id"], kept["image_id"]) if str(f) not in out]
    if todo:
        from bfrcore.faces import get_embedder

        resolved = ds.info.get("resolved") or {}
        engine = resolved.get("embed_engine") or "dlib"  # builds before the engine setting used dlib's own code
        emb = get_embedder(resolved.get("embedder", "dlib"), engine=engine if engine != "-" else "dlib")
        for k in range(0, len(todo), 32):
            chunk = todo[k:k + 32]
            vecs = emb.embed([ds.read(iid) for _, iid in chunk])
            for (fid, _), v in zip(chunk, vecs):
                out[fid] = np.asarray(v, np.float64)
    return out, {"cache": n_cache, "computed": len(todo)}


def _centre(x: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x.mean(axis=0, keepdims=True)


def _bimodal(x: np.ndarray, metric: str, threshold: float) -> tuple[int, int] | None:
    """Average linkage cut at ``threshold``: the two largest parts when both hold 2+ faces, else None."""
    if len(x) < 4:
        return None
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    from bfrcore.faces import pairwise_distance

    d = pairwise_distance(x, x, metric)
    d = np.maximum((d + d.T) / 2, 0)
    np.fill_diagonal(d, 0.0)
    lab = fcluster(linkage(squareform(d, checks=False), "average"), threshold, "distance")
    sizes = sorted(np.bincount(lab)[1:].tolist(), reverse=True)
    return (sizes[0], sizes[1]) if len(sizes) > 1 and sizes[1] >= 2 else None


def review_dataset(ds: FaceDataset, embeddings: dict[str, np.ndarray] | None = None,
                   origin: dict[str, int] | None = None) -> Review:
    """Per-identity centre distances and flags of a loaded dataset (see the module docstring)."""
    from bfrcore.faces import pairwise_distance

    if embeddings is None:
        embeddings, origin = load_embeddings(ds)
    resolved = ds.info.get("resolved") or {}
    metric = str(resolved.get("metric", "euclidean"))
    thr = float(resolved.get("cluster_threshold") or 0.6)
    kept = ds.images
    names = dict(zip(ds.identities["identity"].astype(str), ds.identities["name"]))
    splits = dict(zip(ds.identities["identity"].astype(str), ds.identities["split"].astype(str)))
    aliases = dict(zip(ds.identities["identity"].astype(str),
                       ds.identities["aliases"] if "aliases" in ds.identities.columns else [None] * len(ds.identities)))
    idents: list[IdentityReview] = []
    centres: dict[str, np.ndarray] = {}
    for ident, grp in kept.groupby("identity", sort=True):
        ident = str(ident)
        fids = [str(f) for f in grp["face_id"]]
        x = np.stack([embeddings[f] for f in fids])
        c = _centre(x, metric)
        centres[ident] = c
        d = pairwise_distance(x, c, metric)[:, 0]
        loo = np.zeros(len(x))
        if len(x) >= 2:  # distance to the centre of the other faces: (sum - x_i) / (n - 1), O(n d)
            xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) if metric == "cosine" else x
            others = (xn.sum(axis=0, keepdims=True) - xn) / (len(x) - 1)
            loo = np.array([pairwise_distance(xn[i:i + 1], others[i:i + 1], metric)[0, 0] for i in range(len(x))])
        faces = [FaceEntry(f, str(iid), str(p), float(di), bool(li > thr))
                 for f, iid, p, di, li in zip(fids, grp["image_id"], grp["path"], d, loo)]
        faces.sort(key=lambda e: (e.distance, e.face_id))
        name = names.get(ident)
        rv = IdentityReview(ident, name if isinstance(name, str) else None, splits.get(ident, ""), faces,
                            aliases=[str(a) for a in (aliases.get(ident) if aliases.get(ident) is not None else [])])
        n_out = sum(f.outlier for f in faces)
        if n_out:
            rv.flags.append(f"impure: {n_out} face(s) farther than {thr:g} from the centre of the others")
        bi = _bimodal(x, metric, thr)
        if bi:
            rv.flags.append(f"bimodal: two groups of {bi[0]} and {bi[1]} faces at threshold {thr:g}")
        rv.impure = bool(n_out or bi)
        idents.append(rv)
    ids = [r.identity for r in idents]
    pairs: list[tuple[str, str, float]] = []
    if len(ids) >= 2:
        c = np.concatenate([centres[i] for i in ids])
        for s in range(0, len(ids), 1024):  # in row blocks: memory O(1024 x identities)
            cd = pairwise_distance(c[s:s + 1024], c, metric)
            for a, b in zip(*np.nonzero(cd < thr)):
                if s + a < b:
                    pairs.append((ids[s + a], ids[b], float(cd[a, b])))
    pairs.sort(key=lambda t: (t[2], t[0], t[1]))
    by_id = {r.identity: r for r in idents}
    for a, b, dist in pairs:
        by_id[a].near.append((b, dist))
        by_id[b].near.append((a, dist))
    for r in idents:
        if r.near:
            r.flags.append("near-merge: centre within " + ", ".join(f"{o} ({dd:.3f})" for o, dd in r.near)
                           + f" < {thr:g}")
    idents.sort(key=lambda r: (0 if r.impure else 1 if r.near else 2,
                               -r.max_distance if r.impure else (r.near[0][1] if r.near else 0.0), r.identity))
    return Review(ds.hash, metric, thr, dict(origin or {}), idents, pairs)
