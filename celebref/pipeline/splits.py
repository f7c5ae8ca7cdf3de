"""Stage 5: identity-disjoint train/test split, reference lists and a generic test subset.

(With ``splits.mode: image`` the split is per image instead — see :func:`split_images`.)

Every draw is a sha256 of (global seed, a content-derived key), so the split does not depend on the order of the
inputs or the number of workers: an identity's key is its smallest face id (face ids derive from photo hashes),
identities are ordered by sha256(f"{seed}:split:{key}") and the first ``round(test_fraction * K)`` (at least one
when K >= 2) are the test identities. Each test image's references are the other kept images of the same person,
nearest first in identity-embedding distance (ties: image id), never itself, at most ``max_refs``. The generic test
subset takes ``generic_per_identity`` images of each test identity (ordered by sha256(f"{seed}:generic:{face_id}")).
"""

from __future__ import annotations

import hashlib

import numpy as np

from celebref.pipeline.config import SplitsConfig


def item_seed(seed: int, key: str, purpose: str) -> int:
    return int(hashlib.sha256(f"{seed}:{purpose}:{key}".encode()).hexdigest()[:16], 16)


def split_identities(identity_keys: dict[str, str], seed: int, cfg: SplitsConfig) -> dict[str, str]:
    """identity -> 'train'|'test'. ``identity_keys``: identity -> stable key (smallest face id)."""
    ids = sorted(identity_keys, key=lambda i: (item_seed(seed, identity_keys[i], "split"), i))
    k = len(ids)
    n_test = int(round(cfg.test_fraction * k))
    if cfg.test_fraction > 0 and k >= 2:
        n_test = max(1, min(n_test, k - 1))
    return {i: ("test" if r < n_test else "train") for r, i in enumerate(ids)}


def split_images(members: list[tuple[str, str]], seed: int, cfg: SplitsConfig) -> dict[str, str]:
    """Image-level split of one identity (mode 'image'): members [(image_id, face_id)] -> image_id -> split.
    round(test_fraction * n) images (at least 1, at most n - 1) ordered by sha256(f"{seed}:split-image:{face_id}")
    are test; an identity with a single image is all train."""
    n = len(members)
    if n < 2 or cfg.test_fraction <= 0:
        return {iid: "train" for iid, _ in members}
    n_test = max(1, min(int(round(cfg.test_fraction * n)), n - 1))
    order = sorted(members, key=lambda m: (item_seed(seed, m[1], "split-image"), m[0]))
    return {iid: ("test" if r < n_test else "train") for r, (iid, _) in enumerate(order)}


def references(members: list[tuple[str, str]], emb: dict[str, np.ndarray], metric: str,
               max_refs: int | None, targets: set[str] | None = None) -> list[tuple[str, str, int, float]]:
    """members: [(image_id, face_id)] of one identity -> rows (image_id, ref_image_id, rank, distance) for every
    member (or only the image ids in ``targets``), its references being all the other members."""
    from bfrcore.faces import pairwise_distance

    rows = []
    if len(members) < 2:
        return rows
    x = np.stack([emb[f] for _, f in members])
    d = pairwise_distance(x, x, metric)
    for a, (iid, _) in enumerate(members):
        if targets is not None and iid not in targets:
            continue
        cand = sorted(((round(float(d[a, b]), 9), members[b][0]) for b in range(len(members)) if b != a))
        if max_refs is not None:
            cand = cand[:max_refs]
        rows += [(iid, rid, rank, dist) for rank, (dist, rid) in enumerate(cand)]
    return rows


def generic_subset(members: list[tuple[str, str]], seed: int, per_identity: int) -> list[str]:
    order = sorted(members, key=lambda m: (item_seed(seed, m[1], "generic"), m[0]))
    return [iid for iid, _ in order[:per_identity]]
