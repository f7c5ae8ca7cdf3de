"""Near-duplicate removal within an identity: two faces are near-duplicates when their 64-bit perceptual hashes
differ in at most ``dedup.phash_max_distance`` bits AND their identity embeddings are within
``dedup.embedding_max_distance`` (the same photo re-encoded, resized, lightly cropped or re-uploaded).

Greedy and deterministic: faces are visited best first (larger real face size, then sharper, then face id); a face
is kept unless it is a near-duplicate of a face already kept, in which case it is rejected with
``duplicate_of`` naming that face.

As a pipeline stage (:func:`dedup_stage`) it runs inside every identity group on the faces no earlier stage
rejected, and records ``dedup``/``near_duplicate`` rejections with the kept face in ``duplicate_of``.
"""

from __future__ import annotations

import numpy as np

from celebref.pipeline.config import DedupConfig
from celebref.pipeline.quality import hamming_hex
from celebref.pipeline.records import BuildRecords


def quality_rank_key(face: dict):
    ed = face.get("eye_distance") or 0.0
    sh = face.get("sharpness") or 0.0
    return (-round(float(ed), 6), -round(float(sh), 6), face["face_id"])


def near_duplicates(faces: list[dict], emb: dict[str, np.ndarray], metric: str, cfg: DedupConfig) -> dict[str, tuple[str, str]]:
    """faces: [{face_id, phash, eye_distance, sharpness}] of one identity. Returns {face_id: (kept_face_id, detail)}."""
    from bfrcore.faces import pairwise_distance

    if not cfg.enabled or len(faces) < 2:
        return {}
    order = sorted(faces, key=quality_rank_key)
    kept: list[dict] = []
    out: dict[str, tuple[str, str]] = {}
    for f in order:
        dup = None
        for k in kept:
            if f.get("phash") is None or k.get("phash") is None:
                continue
            hd = hamming_hex(f["phash"], k["phash"])
            if hd > cfg.phash_max_distance:
                continue
            d = float(pairwise_distance(emb[f["face_id"]][None], emb[k["face_id"]][None], metric)[0, 0])
            if d <= cfg.embedding_max_distance:
                dup = (k["face_id"], f"phash distance {hd} <= {cfg.phash_max_distance} and embedding distance "
                                     f"{d:.3f} <= {cfg.embedding_max_distance:g}")
                break
        if dup:
            out[f["face_id"]] = dup
        else:
            kept.append(f)
    return out


def dedup_stage(records: BuildRecords, groups: dict[str, dict], cfg: DedupConfig) -> dict[str, list[str]]:
    """Near-duplicates within each identity group (``groups``: key -> {"faces": [...], ...}, the identity
    stage's). Returns the survivors of every group: key -> face ids (group order kept)."""
    emb = records.embeddings()
    survivors: dict[str, list[str]] = {}
    for gkey, g in groups.items():
        members = [f for f in g["faces"] if records.faces[f].kept]
        dups = near_duplicates(
            [{"face_id": f, "phash": records.faces[f].measures.get("phash"),
              "eye_distance": records.faces[f].measures["eye_distance"],
              "sharpness": records.faces[f].measures.get("sharpness")} for f in members], emb, records.metric, cfg)
        for f, (kept_f, detail) in dups.items():
            records.faces[f].reject("dedup", "near_duplicate", detail)
            records.faces[f].duplicate_of = kept_f
        survivors[gkey] = [f for f in members if f not in dups]
    return survivors
