"""Stage 6, output: the DATASET folder written from the records (:mod:`celebref.pipeline.records`).

:func:`write_images` copies every kept face's aligned crop to ``images/<identity>/<n>.png`` (atomically, only
when changed; images of an earlier build no longer kept are removed) and records its sha256; :func:`manifest`
makes one row per ingest rejection, per photo without a usable face and per detected face; :func:`identities`
and :func:`references` the other tables; :func:`funnel` and :func:`reason_counts` the counts of build.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from bfrcore.dataset import relpath_for
from bfrcore.imageio import file_sha256
from celebref.pipeline.identity import IdentityGroups
from celebref.pipeline.records import BuildRecords, FaceRecord, PhotoRecord
from celebref.pipeline.splits import Layout

#: manifest columns that come first, in this order (the others follow in order of first appearance)
LEAD_COLUMNS = ["face_id", "kept", "reject_stage", "reject_reason", "reject_detail", "identity", "image_id", "n",
                "path", "sha256", "split", "generic_test", "landmarks", "source_path", "source_sha256", "source_kind",
                "source", "name", "name_outlier", "cluster", "face_index", "n_faces_in_photo"]
_BOOL_COLUMNS = ("kept", "name_outlier", "generic_test", "aligned_input", "upsampled")
_OBJECT_COLUMNS = ("reject_stage", "reject_reason", "reject_detail", "identity", "image_id", "path", "sha256", "split",
                   "landmarks", "duplicate_of", "name", "phash", "niqe_status", "detector", "transform",
                   "landmarks_method", "source_format", "url", "license", "author", "fetched_at")
_INT_COLUMNS = ("n", "cluster", "face_index", "n_faces_in_photo", "source_width", "source_height")


def write_images(records: BuildRecords, out: Path) -> int:
    """Copy the kept faces' crops into ``out/images`` and set each record's ``sha256``. Returns the image count."""
    images_root = out / "images"
    wanted: dict[Path, FaceRecord] = {out / relpath_for(f.identity, f.n): f for f in records.faces.values()
                                      if f.kept and f.image_id is not None}
    for dst, face in sorted(wanted.items()):
        src_sha = file_sha256(face.crop)
        if not (dst.is_file() and file_sha256(dst) == src_sha):
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copyfile(face.crop, tmp)
            os.replace(tmp, dst)
        face.sha256 = src_sha
    if images_root.is_dir():  # drop images of an earlier build that are no longer kept
        for p in sorted(images_root.rglob("*")):
            if p.is_file() and p not in wanted:
                p.unlink()
        for d in sorted((p for p in images_root.iterdir() if p.is_dir()), reverse=True):
            if not any(d.iterdir()):
                d.rmdir()
    return len(wanted)


# ------------------------------------------------------------------------------------------------ manifest
def _provenance_columns(prov: dict) -> dict:
    return {"url": prov.get("url"), "license": prov.get("license"), "author": prov.get("author"),
            "fetched_at": prov.get("fetched_at"), "provenance": json.dumps(prov, sort_keys=True)}


def _ingest_reject_row(rj: dict) -> dict:
    fid = f"src-{hashlib.sha256((str(rj.get('source')) + '|' + str(rj.get('source_path'))).encode()).hexdigest()[:16]}"
    return {"face_id": fid, "kept": False, "reject_stage": "ingest", "reject_reason": rj["reject_reason"],
            "reject_detail": rj.get("reject_detail"), "source_path": rj.get("source_path"),
            "source_sha256": rj.get("source_sha256") or None, "source_kind": rj.get("source_kind"),
            "source": rj.get("source"), "name": rj.get("name"), "duplicate_of": rj.get("duplicate_of"),
            "face_index": -1, "_order": tuple(rj.get("order") or (1 << 30, 0)),
            **_provenance_columns(rj.get("provenance") or {})}


def _photo_columns(photo: PhotoRecord) -> dict:
    it, img = photo.item, photo.image or {}
    return {"source_path": it["source_path"], "source_sha256": photo.item_id, "source_kind": it["source_kind"],
            "source": it["source"], "name": it["name"], "_order": tuple(it["order"]),
            "source_width": img.get("width"), "source_height": img.get("height"),
            "source_format": img.get("format"), **_provenance_columns(it["provenance"])}


def _face_row(face: FaceRecord, base: dict) -> dict:
    det = face.detection
    row = {"face_id": face.face_id, "face_index": face.face_index, "n_faces_in_photo": len(face.photo.faces),
           **base, "box": det.get("box")}
    if not face.is_candidate:  # beyond faces.max_faces
        rj = face.rejection
        row.update(kept=False, reject_stage=rj.stage, reject_reason=rj.reason, reject_detail=rj.detail)
        return row
    s = face.measures or {}
    tf = det["transform"]
    row.update({
        "det_score": det.get("det_score"), "detector": det.get("detector"),
        "landmarks": det.get("landmarks68_aligned"), "landmarks68_source": det.get("landmarks68_source"),
        "landmarks5_source": det.get("landmarks5_source"), "landmarks_method": det.get("landmarks_source"),
        "aligned_input": bool(det.get("aligned_input")), "transform": json.dumps(tf, sort_keys=True),
        "eye_distance": det.get("eye_distance"), "upsample_factor": tf.get("upsample_factor"),
        "upsampled": bool((tf.get("upsample_factor") or 0) > 1.0),
        "padded_fraction": s.get("padded_fraction"), "yaw": det.get("yaw"), "pitch": det.get("pitch"),
        "roll": det.get("roll"), "sharpness": s.get("sharpness"), "niqe": s.get("niqe"),
        "niqe_status": s.get("niqe_status"), "brightness": s.get("brightness"), "clipped": s.get("clipped"),
        "chroma": s.get("chroma"), "tone_r2": s.get("tone_r2"), "noise_ratio": s.get("noise_ratio"),
        "jpeg_quality": s.get("jpeg_quality"), "blockiness": s.get("blockiness"), "phash": s.get("phash"),
        "cluster": face.cluster,
    })
    if face.identity is not None:
        row["identity"] = face.identity
    row["quality_flags"] = list(face.quality.flags) if face.quality else []
    if face.rejection is not None:
        rj = face.rejection
        row.update(kept=False, reject_stage=rj.stage, reject_reason=rj.reason, reject_detail=rj.detail)
        if rj.reason == "name_outlier":
            row["name_outlier"] = True
        if face.duplicate_of is not None:
            row["duplicate_of"] = face.duplicate_of
    else:
        row.update(kept=True, identity=face.identity, image_id=face.image_id, path=relpath_for(face.identity, face.n),
                   n=face.n, sha256=face.sha256, split=face.split, generic_test=face.generic_test)
    return row


def manifest(records: BuildRecords) -> pd.DataFrame:
    """The manifest (bfrcore.dataset format): ingest rejections, photos without a usable face and every face,
    in source order (then face index, face id); a face's ``reject_*`` columns are its :class:`Rejection`."""
    rows = [_ingest_reject_row(rj) for rj in records.ingest.rejects]
    for photo in records.photos:
        base = _photo_columns(photo)
        rj = photo.rejection
        if rj is not None:
            rows.append({"face_id": f"{photo.item_id[:16]}-img", "kept": False, "reject_stage": rj.stage,
                         "reject_reason": rj.reason, "reject_detail": rj.detail, "face_index": -1, **base})
            continue
        rows += [_face_row(face, base) for face in photo.faces]
    # duplicate_of: face id -> the kept image id when there is one
    image_of = {f.face_id: f.image_id for f in records.faces.values() if f.kept and f.image_id is not None}
    for r in rows:
        d = r.get("duplicate_of")
        if d and d in image_of:
            r["duplicate_of"] = image_of[d]
    rows.sort(key=lambda r: (r["_order"], r.get("face_index", -1), r["face_id"]))
    df = pd.DataFrame(rows)
    df = df.drop(columns=["_order"])
    for col in _BOOL_COLUMNS:
        if col not in df.columns:
            df[col] = False
        df[col] = df[col].fillna(False).astype(bool)
    for col in _OBJECT_COLUMNS:
        if col not in df.columns:
            df[col] = None
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    for col in _INT_COLUMNS:
        if col not in df.columns:
            df[col] = pd.NA
        df[col] = df[col].astype("Int64")
    if "quality_flags" not in df.columns:
        df["quality_flags"] = None
    df["quality_flags"] = [list(v) if isinstance(v, (list, tuple, np.ndarray)) else [] for v in df["quality_flags"]]
    df = df[LEAD_COLUMNS + [c for c in df.columns if c not in LEAD_COLUMNS]].reset_index(drop=True)
    curated = {fid: f.curated for fid, f in records.faces.items()}
    df["curated"] = [curated.get(f) for f in df["face_id"]]  # curation (celebref review)
    return df


def identities(groups: IdentityGroups, final: dict[str, list[str]], layout: Layout) -> pd.DataFrame:
    """One row per final identity: number, name and aliases, image count, split, raw cluster."""
    return pd.DataFrame([{
        "identity": layout.identity_of[g], "name": groups.groups[g]["name"],
        "aliases": list(groups.groups[g]["aliases"]), "n_images": len(final[g]),
        "split": layout.split_of[layout.identity_of[g]], "cluster": int(groups.groups[g]["cluster"]),
    } for g in layout.order], columns=["identity", "name", "aliases", "n_images", "split", "cluster"])


def references(layout: Layout) -> pd.DataFrame:
    refs = pd.DataFrame(layout.references, columns=["image_id", "ref_image_id", "rank", "distance"])
    refs["rank"] = refs["rank"].astype("int64")
    return refs


# ------------------------------------------------------------------------------------------------ counts
def reason_counts(manifest_df: pd.DataFrame) -> dict:
    """{stage: {reason: count}} of the rejected manifest rows."""
    rej = manifest_df[~manifest_df["kept"]]
    out: dict = {}
    for (stage, reason), n in rej.groupby(["reject_stage", "reject_reason"]).size().items():
        out.setdefault(stage, {})[reason] = int(n)
    return out


#: the funnel's steps in pipeline order (build.json stores ``counts`` with sorted keys; the report lists them in
#: this order)
FUNNEL_STEPS = ("ingest_entries", "ingest_items", "decoded", "photos_with_faces", "candidate_faces", "faces_embedded",
                "after_identity", "after_quality", "after_dedup", "kept_images", "identities")


def funnel(records: BuildRecords, final: dict[str, list[str]]) -> dict:
    """How many entries, photos and faces are left after each step (build.json ``counts``). The per-stage losses
    count the candidate faces (faces beyond ``faces.max_faces`` and photos without a face are not in them)."""
    photos = records.photos
    candidates = records.candidates()
    n_clustered = len(records.clustered())
    lost = [f.rejection for f in candidates if f.rejection is not None]
    stage_lost = Counter(r.stage for r in lost)
    after_identity = (n_clustered - stage_lost["identity"] - stage_lost["curation"]
                      + sum(1 for r in lost if r.reason == "too_few_images"))
    return {
        "ingest_entries": len(records.ingest.items) + len(records.ingest.rejects),
        "ingest_items": len(records.ingest.items),
        "decoded": sum(1 for p in photos if p.image),
        "photos_with_faces": sum(1 for p in photos if p.faces),
        "candidate_faces": len(candidates),
        "faces_embedded": n_clustered,
        "after_identity": after_identity,
        "after_quality": after_identity - stage_lost["quality"],
        "after_dedup": after_identity - stage_lost["quality"] - stage_lost["dedup"],
        "kept_images": sum(1 for f in records.faces.values() if f.kept and f.image_id is not None),
        "identities": len(final),
        "rejected_by_stage": dict(sorted(stage_lost.items())),
    }
