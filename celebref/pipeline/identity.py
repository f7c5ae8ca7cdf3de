"""Stage 3b, identities: cluster the embeddings, then reconcile the clusters with the weak name labels.

Name reconciliation (``identity.name_policy = majority``): for every name, the cluster holding most of its faces
(ties: the earlier cluster) is that person; the name's faces elsewhere are label noise or other people in a
labelled photo, flagged ``name_outlier`` and dropped. A cluster claimed by several names is either one person under
several labels (``shared_cluster = merge``: one identity, the most frequent name, the rest kept as aliases) or
``split`` by name (unlabelled faces of such a cluster are dropped as ``ambiguous_cluster``). Clusters no name
claims become unnamed identities (their labelled faces are outliers of other names, already dropped).
``min_images`` is applied after the quality and near-duplicate filters (:func:`apply_min_images`).

As a pipeline stage (:func:`identity_stage`) it reads the :class:`~celebref.pipeline.records.FaceRecord` of every
embedded face, is cached by the stage runner (:func:`~celebref.pipeline.runner.run_global_stage`, keyed by the
config, the embed stage's key and the faces with their name labels), and writes back each face's cluster, group
and ``identity`` rejection (:func:`apply_groups`); a review's curation is applied in between (:func:`curate`).

Purity levers (off by default; measured in docs/build.md): ``split_margin`` splits a cluster whose two
average-linkage halves are far apart compared with their own spread (:func:`split_bimodal`); ``core_margin`` drops
the members not clearly nearer their own cluster's centre than any other (``identity_uncertain``,
:func:`core_outliers`), before the name reconciliation.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from celebref.pipeline.clustering import DEFAULT_THRESHOLDS, cluster, resolve_neighbors
from celebref.pipeline.config import IdentityConfig
from celebref.pipeline.records import BuildRecords
from celebref.pipeline.runner import GlobalRun, GlobalStage, run_global_stage

VERSION = "4"  # 3: near-duplicates count once in the subgroup test; 4: split_margin, core_margin


@dataclass
class IdentityGroups:
    clusters: dict[str, int]  # face_id -> raw cluster label
    group_of: dict[str, str]  # face_id -> group key (faces not rejected here)
    groups: dict[str, dict] = field(default_factory=dict)  # key -> {"name", "aliases", "cluster", "faces"}
    rejects: dict[str, tuple[str, str]] = field(default_factory=dict)  # face_id -> (reason, detail)
    threshold: float = 0.0
    stats: dict = field(default_factory=dict)  # how the clustering ran (neighbour search, graph, timings)

    def to_json(self) -> dict:
        return {"clusters": self.clusters, "group_of": self.group_of, "groups": self.groups,
                "rejects": {k: list(v) for k, v in self.rejects.items()}, "threshold": self.threshold,
                "stats": self.stats}

    @classmethod
    def from_json(cls, d: dict) -> "IdentityGroups":
        return cls(d["clusters"], d["group_of"], d["groups"], {k: tuple(v) for k, v in d["rejects"].items()},
                   d["threshold"], d.get("stats", {}))


STAGE = GlobalStage("identity", VERSION, "groups.json", IdentityGroups.to_json, IdentityGroups.from_json)


def identity_stage(records: BuildRecords, *, embedder: str, cfg: IdentityConfig, cache_root: Path,
                   embed_key: str) -> GlobalRun:
    """Cluster and name the embedded faces (cached by the stage runner). ``result``: :class:`IdentityGroups`."""
    faces = records.clustered()
    face_ids = [f.face_id for f in faces]
    names = [f.photo.name for f in faces]
    # the faces (and their weak labels) are part of the key: the embed key alone does not say which faces failed
    face_key = hashlib.sha256("\n".join(f"{f}\t{n}" for f, n in zip(face_ids, names)).encode()).hexdigest()
    params = {"identity": cfg, "embedder": embedder, "metric": records.metric}

    def compute() -> IdentityGroups:
        x = np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 128), np.float32)
        return assign_identities(face_ids, x, names, metric=records.metric, embedder=embedder, cfg=cfg)

    return run_global_stage(STAGE, compute, params, cache_root=cache_root, upstream=(embed_key, face_key))


@dataclass
class Curated:
    """:func:`curate`'s outcome: the curated groups and the ``curation`` record of build.json (None without one)."""

    groups: IdentityGroups
    record: dict | None = None


def curate(records: BuildRecords, groups: IdentityGroups, curation) -> Curated:
    """Apply a review's curation (``(Curation, file sha256)`` from :func:`celebref.review.curation.load_curation`,
    or None) to ``groups``: tags the curated faces and rejects those it rejects (stage ``curation``)."""
    if curation is None:
        return Curated(groups)
    import logging

    from celebref.review.curation import apply_curation

    cres = apply_curation(groups, curation[0])
    for fid, label in cres.curated.items():
        records.faces[fid].curated = label
    for fid, (reason, detail) in cres.rejects.items():
        records.faces[fid].reject("curation", reason, detail)
    for w in cres.warnings:
        logging.getLogger("celebref.pipeline").warning("curation: %s", w)
    return Curated(cres.groups, cres.record(*curation))


def apply_groups(records: BuildRecords, groups: IdentityGroups) -> None:
    """Write the identity stage's outcome into the face records: cluster, group and ``identity`` rejections."""
    for fid, (reason, detail) in groups.rejects.items():
        records.faces[fid].reject("identity", reason, detail)
    for fid, c in groups.clusters.items():
        records.faces[fid].cluster = c
    for fid, g in groups.group_of.items():
        records.faces[fid].group = g


def apply_min_images(records: BuildRecords, survivors: dict[str, list[str]], min_images: int) -> dict[str, list[str]]:
    """Groups left with fewer than ``min_images`` faces after the quality and near-duplicate filters lose them
    (``identity``/``too_few_images``). Returns the final groups: key -> sorted face ids."""
    final = {}
    for gkey, fl in survivors.items():
        if len(fl) < min_images:
            for f in fl:
                records.faces[f].reject("identity", "too_few_images",
                                        f"{len(fl)} image(s) left after filtering < identity.min_images={min_images}")
        else:
            final[gkey] = sorted(fl)
    return final


def threshold_for(cfg: IdentityConfig, embedder: str) -> float:
    return float(cfg.threshold if cfg.threshold is not None else DEFAULT_THRESHOLDS.get(embedder, 0.6))


def assign_identities(face_ids: list[str], x: np.ndarray, names: list[str | None], *, metric: str,
                      embedder: str, cfg: IdentityConfig) -> IdentityGroups:
    """``face_ids`` sorted (the caller's canonical order); ``x`` (N, D) embeddings; ``names`` weak labels."""
    thr = threshold_for(cfg, embedder)
    stats: dict = {}
    neighbors = resolve_neighbors(cfg.neighbors, len(face_ids), cfg.faiss_min_faces)
    labels = cluster(x, metric=metric, threshold=thr, algorithm=cfg.algorithm, linkage=cfg.linkage,
                     neighbors=neighbors, knn_k=cfg.knn_k, faiss_index=cfg.faiss_index, stats=stats)
    if cfg.split_margin is not None and len(labels):
        labels, splits = split_bimodal(np.asarray(x, np.float64), labels, metric, margin=cfg.split_margin,
                                       min_size=cfg.split_min_size)
        stats["bimodal_splits"] = len(splits)
    uncertain: dict[int, str] = {}
    if cfg.core_margin is not None and len(labels):
        uncertain = core_outliers(x, labels, metric, margin=cfg.core_margin)
        stats["identity_uncertain"] = len(uncertain)
    clusters = {f: int(c) for f, c in zip(face_ids, labels)}
    res = IdentityGroups(clusters=clusters, group_of={}, threshold=thr, stats=stats)
    for i, detail in sorted(uncertain.items()):
        res.rejects[face_ids[i]] = ("identity_uncertain", detail)
    names = [None if i in uncertain else n for i, n in enumerate(names)]
    by_cluster: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(labels):
        if i not in uncertain:
            by_cluster[int(c)].append(i)

    if cfg.name_policy == "ignore" or not any(names):
        for c, idx in sorted(by_cluster.items()):
            key = f"c{c}"
            cnt = Counter(names[i] for i in idx if names[i])
            res.groups[key] = {"name": cnt.most_common(1)[0][0] if cnt else None, "aliases": [], "cluster": c,
                               "faces": [face_ids[i] for i in idx]}
            for i in idx:
                res.group_of[face_ids[i]] = key
        return res

    # majority cluster of every name
    per_name: dict[str, Counter] = defaultdict(Counter)
    for i, n in enumerate(names):
        if n:
            per_name[n][int(labels[i])] += 1
    home: dict[str, int] = {}
    for n, cnt in sorted(per_name.items()):
        best = max(cnt.values())
        home[n] = min(c for c, v in cnt.items() if v == best)
    for i, n in enumerate(names):
        if n and int(labels[i]) != home[n]:
            tot = sum(per_name[n].values())
            res.rejects[face_ids[i]] = (
                "name_outlier",
                f"labelled {n!r} but clustered apart from the name's majority cluster "
                f"({per_name[n][home[n]]}/{tot} of its faces)")
    claims: dict[int, list[str]] = defaultdict(list)
    for n, c in home.items():
        claims[c].append(n)

    for c, idx in sorted(by_cluster.items()):
        members = [i for i in idx if face_ids[i] not in res.rejects]
        claimants = sorted(claims.get(c, []), key=lambda n: (-per_name[n][c], n))
        if len(claimants) > 1 and cfg.shared_cluster == "split":
            for n in claimants:
                key = f"c{c}:{n}"
                fl = [face_ids[i] for i in members if names[i] == n]
                res.groups[key] = {"name": n, "aliases": [], "cluster": c, "faces": fl}
                for f in fl:
                    res.group_of[f] = key
            for i in members:
                if not names[i]:
                    res.rejects[face_ids[i]] = ("ambiguous_cluster",
                                                f"unlabelled face in a cluster claimed by names {claimants}")
            continue
        key = f"c{c}"
        if cfg.name_subgroups:
            for n in claimants:
                named = [i for i in members if names[i] == n]
                for i, detail in name_subgroup_outliers(x[named], metric, cfg).items():
                    res.rejects[face_ids[named[i]]] = ("name_outlier", f"labelled {n!r}: {detail}")
            members = [i for i in members if face_ids[i] not in res.rejects]
        fl = [face_ids[i] for i in members]
        if not fl:
            continue
        res.groups[key] = {"name": claimants[0] if claimants else None, "aliases": claimants[1:], "cluster": c,
                           "faces": fl}
        for f in fl:
            res.group_of[f] = key
    return res


@dataclass(frozen=True)
class Subgroup:
    """One average-linkage subgroup of a name's faces (distances in the embedder's metric, between distinct photos:
    near-duplicates count once, see :func:`near_duplicate_groups`)."""

    rows: tuple[int, ...]  # row indices into the name's faces (near-duplicates of a member included)
    n: int  # faces of the name
    distinct: int  # distinct photos of the name (near-duplicates merged)
    size: int  # distinct photos in the subgroup
    inner: float  # mean distance inside the subgroup
    rest: float  # mean distance inside the rest of the name
    link: float  # mean distance subgroup <-> rest

    @property
    def margin(self) -> float:
        """How far the link exceeds the larger internal mean (flagged when >= subgroup_margin)."""
        return self.link - max(self.inner, self.rest)


def near_duplicate_groups(d: np.ndarray, max_distance: float | None) -> list[np.ndarray]:
    """Rows chained by distances <= ``max_distance`` (single linkage), in order of their first row; every row its
    own group when ``max_distance`` is None or <= 0."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = len(d)
    if not max_distance or max_distance <= 0 or n < 2:
        return [np.array([i]) for i in range(n)]
    lab = fcluster(linkage(squareform(np.maximum(d, 0), checks=False), "single"), max_distance, "distance")
    groups = [np.flatnonzero(lab == c) for c in set(lab.tolist())]
    return sorted(groups, key=lambda g: int(g[0]))


def name_subgroups(x: np.ndarray, metric: str, cfg: IdentityConfig) -> list[Subgroup]:
    """The subgroups the within-name test judges. Near-duplicates (faces closer than ``subgroup_dup_distance``:
    the same photo twice, e.g. two crops of it) are one photo, represented by its first face: two copies of a photo
    are trivially tight, which is no evidence of another person. The distinct photos are clustered with average
    linkage cut at ``subgroup_cut``; groups of 2+ photos and at most a third of the name, with 2+ photos left, are
    returned (none when the name has fewer than ``subgroup_min_faces`` distinct photos)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    from bfrcore.faces import pairwise_distance

    n = len(x)
    if n < max(cfg.subgroup_min_faces, 4):
        return []
    d = pairwise_distance(x, x, metric)
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    dups = near_duplicate_groups(d, cfg.subgroup_dup_distance)
    m = len(dups)
    if m < max(cfg.subgroup_min_faces, 4):
        return []
    keep = [int(g[0]) for g in dups]
    d = d[np.ix_(keep, keep)]
    lab = fcluster(linkage(squareform(np.maximum(d, 0), checks=False), "average"), cfg.subgroup_cut, "distance")
    out: list[Subgroup] = []
    for c in sorted(set(lab.tolist())):
        g = np.flatnonzero(lab == c)
        r = np.flatnonzero(lab != c)
        if len(g) < 2 or len(g) > m / 3 or len(r) < 2:
            continue
        rows = tuple(sorted(int(i) for k in g for i in dups[k]))
        out.append(Subgroup(rows, n, m, len(g),
                            inner=float(d[np.ix_(g, g)][np.triu_indices(len(g), 1)].mean()),
                            rest=float(d[np.ix_(r, r)][np.triu_indices(len(r), 1)].mean()),
                            link=float(d[np.ix_(g, r)].mean())))
    return out


def name_subgroup_outliers(x: np.ndarray, metric: str, cfg: IdentityConfig) -> dict[int, str]:
    """Within-name subgroup test (``identity.name_subgroups``): label noise that sits inside a name's cluster.

    The faces of one name (already its majority cluster; near-duplicates counted once, see :func:`name_subgroups`)
    are clustered with average linkage cut at ``subgroup_cut``. A subgroup of at least 2 photos and at most a third
    of the name is flagged when its mean
    distance to the rest of the name ("link") is at least ``subgroup_min_link`` and exceeds both the subgroup's
    and the rest's own mean internal distance by at least ``subgroup_margin``: a tight group of someone else that
    only joined the name's cluster through average linkage. Returns {row: detail}."""
    out: dict[int, str] = {}
    for s in name_subgroups(x, metric, cfg):
        if s.link >= cfg.subgroup_min_link and s.margin >= cfg.subgroup_margin:
            for i in s.rows:
                out[i] = (f"subgroup of {s.size}/{s.distinct} distinct photos: mean distance to the rest {s.link:.3f} >= "
                          f"{cfg.subgroup_min_link:g}, exceeds its own {s.inner:.3f} and the rest's {s.rest:.3f} by "
                          f"{s.margin:.3f} >= subgroup_margin={cfg.subgroup_margin:g}")
    return out


def median_distance_to_group(x: np.ndarray, metric: str) -> np.ndarray:
    """For each row, the median distance to the other rows (an outlier score used in reports)."""
    from bfrcore.faces import pairwise_distance

    if len(x) < 2:
        return np.zeros(len(x))
    d = pairwise_distance(x, x, metric)
    np.fill_diagonal(d, np.nan)
    return np.nanmedian(d, axis=1)


# ------------------------------------------------------------------------------------------ purity levers
def _mean_upper(d: np.ndarray) -> float:
    n = len(d)
    return float(d[np.triu_indices(n, 1)].mean()) if n > 1 else 0.0


def split_bimodal(x: np.ndarray, labels: np.ndarray, metric: str, *, margin: float, min_size: int = 4,
                  min_part: int = 2) -> tuple[np.ndarray, list[dict]]:
    """Purity check (``identity.split_margin``): a cluster whose internal distances are bimodal is two people.

    Every cluster of at least ``min_size`` faces is cut into the two groups of its own average-linkage top merge;
    when both have at least ``min_part`` faces and their mean distance to each other ("link") exceeds both groups'
    mean internal distance by at least ``margin`` (in the embedder's metric), the cluster is split, and each part
    is checked again. Returns (canonical labels, one record per split: rows, link, inner distances)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    from bfrcore.faces import pairwise_distance
    from celebref.pipeline.clustering import canonical

    labels = np.asarray(labels).copy()
    splits: list[dict] = []
    todo = [np.flatnonzero(labels == c) for c in sorted(set(labels.tolist()))]
    nxt = int(labels.max()) + 1 if len(labels) else 0
    while todo:
        rows = todo.pop(0)
        if len(rows) < max(min_size, 2 * min_part):
            continue
        d = pairwise_distance(x[rows], x[rows], metric)
        d = np.maximum((d + d.T) / 2, 0)
        np.fill_diagonal(d, 0.0)
        lab = fcluster(linkage(squareform(d, checks=False), "average"), 2, "maxclust")
        a, b = np.flatnonzero(lab == 1), np.flatnonzero(lab == 2)
        if min(len(a), len(b)) < min_part:
            continue
        link = float(d[np.ix_(a, b)].mean())
        ia, ib = _mean_upper(d[np.ix_(a, a)]), _mean_upper(d[np.ix_(b, b)])
        if link - max(ia, ib) >= margin:
            labels[rows[b]] = nxt
            nxt += 1
            splits.append({"rows": [rows[a].tolist(), rows[b].tolist()], "link": link, "inner": [ia, ib]})
            todo += [rows[a], rows[b]]
    return canonical(labels), splits


def core_outliers(x: np.ndarray, labels: np.ndarray, metric: str, *, margin: float,
                  min_size: int = 2) -> dict[int, str]:
    """Confident core (``identity.core_margin``): a member of a cluster of at least ``min_size`` faces is kept only
    when its distance to its own cluster's centre (the mean of the *other* members) is smaller, by at least
    ``margin``, than its distance to the centre of every other cluster of at least ``min_size`` faces. Returns
    {row: detail} for the members that are not (recorded ``identity_uncertain``). Centres are means of the
    embeddings (unit-normalised first for the cosine metric)."""
    from bfrcore.faces import pairwise_distance

    x = np.asarray(x, np.float64)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    labels = np.asarray(labels)
    groups = {c: np.flatnonzero(labels == c) for c in sorted(set(labels.tolist()))}
    big = [c for c, r in groups.items() if len(r) >= min_size]
    if len(big) == 0:
        return {}
    sums = np.stack([x[groups[c]].sum(0) for c in big])
    sizes = np.array([len(groups[c]) for c in big], dtype=np.float64)
    centres = sums / sizes[:, None]
    out: dict[int, str] = {}
    for k, c in enumerate(big):
        rows = groups[c]
        own = (sums[k][None, :] - x[rows]) / (sizes[k] - 1)  # leave-one-out centre
        d_own = np.array([pairwise_distance(x[r:r + 1], own[j:j + 1], metric)[0, 0] for j, r in enumerate(rows)])
        if len(big) > 1:
            d_all = pairwise_distance(x[rows], np.delete(centres, k, axis=0), metric)
            j_other = d_all.argmin(1)
            d_other = d_all[np.arange(len(rows)), j_other]
        else:
            d_other = np.full(len(rows), np.inf)
        for j, r in enumerate(rows):
            if d_other[j] - d_own[j] < margin:
                other = big[:k] + big[k + 1:]
                out[int(r)] = (f"distance to its cluster's centre {d_own[j]:.3f}, to cluster "
                               f"{other[int(j_other[j])]}'s {d_other[j]:.3f}: margin "
                               f"{d_other[j] - d_own[j]:.3f} < core_margin={margin:g}")
    return out
