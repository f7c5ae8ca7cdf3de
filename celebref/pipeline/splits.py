"""Stage 5: identity-disjoint train/test split, reference lists and a generic test subset.

(With ``splits.mode: image`` the split is per image instead — see :func:`split_images`.)

Every draw is a sha256 of (global seed, a content-derived key), so the split does not depend on the order of the
inputs or the number of workers: an identity's key is its smallest face id (face ids derive from photo hashes),
identities are ordered by sha256(f"{seed}:split:{key}") and the first ``round(test_fraction * K)`` (at least one
when K >= 2) are the test identities. Each test image's references are the other kept images of the same person,
nearest first in identity-embedding distance (ties: image id), never itself, at most ``max_refs``. The generic test
subset takes ``generic_per_identity`` images of each test identity (ordered by sha256(f"{seed}:generic:{face_id}")).

As a pipeline stage (:func:`splits_stage`) it also numbers the final identities (``00000``, ... in the order of
each group's smallest face id) and their images (``n`` in face-id order), and writes identity, image id, split and
``generic_test`` into the face records.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from bfrcore.dataset import image_id_for
from celebref.pipeline.config import SplitsConfig
from celebref.pipeline.records import BuildRecords


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


@dataclass
class Layout:
    """The splits stage's outcome: the final groups in identity-number order, each group's identity number,
    every identity's split (``train``/``test``, or ``mixed`` in image mode) and the reference rows."""

    order: list[str]
    identity_of: dict[str, str]  # group key -> identity
    split_of: dict[str, str]  # identity -> split
    references: list[tuple[str, str, int, float]] = field(default_factory=list)


def splits_stage(records: BuildRecords, groups: dict[str, dict], final: dict[str, list[str]], *, seed: int,
                 cfg: SplitsConfig) -> Layout:
    """Number the ``final`` groups (key -> sorted face ids; ``groups``: the identity stage's groups), split them
    and list the references of every test image."""
    order = sorted(final, key=lambda g: min(groups[g]["faces"]))
    identity_of = {g: f"{i:05d}" for i, g in enumerate(order)}
    for face in records.faces.values():
        if face.group in identity_of:
            face.identity = identity_of[face.group]
    members_of: dict[str, list[tuple[str, str]]] = {}
    for g in order:
        ident = identity_of[g]
        for n, fid in enumerate(final[g]):
            face = records.faces[fid]
            face.n, face.image_id = n, image_id_for(ident, n)
        members_of[ident] = [(records.faces[f].image_id, f) for f in final[g]]
    if cfg.mode == "image":
        image_split = {iid: sp for ident in members_of
                       for iid, sp in split_images(members_of[ident], seed, cfg).items()}
        split_of = {ident: ("mixed" if len({image_split[i] for i, _ in m}) > 1 else image_split[m[0][0]])
                    for ident, m in members_of.items()}
    else:
        split_of = split_identities({identity_of[g]: min(groups[g]["faces"]) for g in order}, seed, cfg)
        image_split = {iid: split_of[ident] for ident, m in members_of.items() for iid, _ in m}
    layout = Layout(order, identity_of, split_of)
    emb = records.embeddings()
    generic: set[str] = set()
    for ident, members in members_of.items():
        test_ids = {iid for iid, _ in members if image_split[iid] == "test"}
        if not test_ids:
            continue
        layout.references += references(members, emb, records.metric, cfg.max_refs, targets=test_ids)
        generic.update(generic_subset([m for m in members if m[0] in test_ids], seed, cfg.generic_per_identity))
    for members in members_of.values():
        for iid, fid in members:
            records.faces[fid].split = image_split[iid]
            records.faces[fid].generic_test = iid in generic
    return layout
