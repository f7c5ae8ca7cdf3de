"""Stage 3b, identities: cluster the embeddings, then reconcile the clusters with the weak name labels.

Name reconciliation (``identity.name_policy = majority``): for every name, the cluster holding most of its faces
(ties: the earlier cluster) is that person; the name's faces elsewhere are label noise or other people in a
labelled photo, flagged ``name_outlier`` and dropped. A cluster claimed by several names is either one person under
several labels (``shared_cluster = merge``: one identity, the most frequent name, the rest kept as aliases) or
``split`` by name (unlabelled faces of such a cluster are dropped as ``ambiguous_cluster``). Clusters no name
claims become unnamed identities (their labelled faces are outliers of other names, already dropped).
``min_images`` is applied by the builder after the quality and near-duplicate filters.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from celebref.build.clustering import DEFAULT_THRESHOLDS, cluster
from celebref.build.config import IdentityConfig

VERSION = "1"


@dataclass
class IdentityGroups:
    clusters: dict[str, int]  # face_id -> raw cluster label
    group_of: dict[str, str]  # face_id -> group key (faces not rejected here)
    groups: dict[str, dict] = field(default_factory=dict)  # key -> {"name", "aliases", "cluster", "faces"}
    rejects: dict[str, tuple[str, str]] = field(default_factory=dict)  # face_id -> (reason, detail)
    threshold: float = 0.0

    def to_json(self) -> dict:
        return {"clusters": self.clusters, "group_of": self.group_of, "groups": self.groups,
                "rejects": {k: list(v) for k, v in self.rejects.items()}, "threshold": self.threshold}

    @classmethod
    def from_json(cls, d: dict) -> "IdentityGroups":
        return cls(d["clusters"], d["group_of"], d["groups"], {k: tuple(v) for k, v in d["rejects"].items()},
                   d["threshold"])


def threshold_for(cfg: IdentityConfig, embedder: str) -> float:
    return float(cfg.threshold if cfg.threshold is not None else DEFAULT_THRESHOLDS.get(embedder, 0.6))


def assign_identities(face_ids: list[str], x: np.ndarray, names: list[str | None], *, metric: str,
                      embedder: str, cfg: IdentityConfig) -> IdentityGroups:
    """``face_ids`` sorted (the caller's canonical order); ``x`` (N, D) embeddings; ``names`` weak labels."""
    thr = threshold_for(cfg, embedder)
    labels = cluster(x, metric=metric, threshold=thr, algorithm=cfg.algorithm, linkage=cfg.linkage)
    clusters = {f: int(c) for f, c in zip(face_ids, labels)}
    res = IdentityGroups(clusters=clusters, group_of={}, threshold=thr)
    by_cluster: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(labels):
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
        fl = [face_ids[i] for i in members]
        if not fl:
            continue
        res.groups[key] = {"name": claimants[0] if claimants else None, "aliases": claimants[1:], "cluster": c,
                           "faces": fl}
        for f in fl:
            res.group_of[f] = key
    return res


def median_distance_to_group(x: np.ndarray, metric: str) -> np.ndarray:
    """For each row, the median distance to the other rows (an outlier score used in reports)."""
    from celebref.faces import pairwise_distance

    if len(x) < 2:
        return np.zeros(len(x))
    d = pairwise_distance(x, x, metric)
    np.fill_diagonal(d, np.nan)
    return np.nanmedian(d, axis=1)
