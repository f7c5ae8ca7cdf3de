"""The build's typed stages: per-face records and their rejections, the manifest written from them, the global
stages cached only through the stage runner, and ingest below the pipeline (no import cycle)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from celebref.ingest import IngestResult
from celebref.pipeline import output
from celebref.pipeline.records import BuildRecords, FaceRecord, PhotoRecord, QualityDecision, Rejection
from celebref.pipeline.runner import GlobalStage, run_global_stage
from tests.helpers import PROJECT_ROOT


def test_rejection_is_frozen_and_the_first_stage_wins():
    photo = PhotoRecord({"item_id": "a" * 64, "name": None}, None, None, None)
    face = FaceRecord("aaaa-0", photo, 0, {})
    assert face.kept
    face.reject("quality", "blurry", "sharpness=3 < min_sharpness=30")
    face.reject("dedup", "near_duplicate", "later stage")
    assert face.rejection == Rejection("quality", "blurry", "sharpness=3 < min_sharpness=30") and not face.kept
    with pytest.raises(dataclasses.FrozenInstanceError):
        face.rejection.stage = "dedup"


def _item(sha: str, name: str | None, k: int) -> dict:
    return {"item_id": sha, "source_kind": "folder", "source": "folder:x", "source_path": f"x/{k}.jpg",
            "path": f"/x/{k}.jpg", "name": name, "aligned": False, "provenance": {"path": f"x/{k}.jpg"},
            "order": [0, k]}


def _detection(fid: str, k: int) -> dict:
    tf = {"kind": "ffhq", "upsample_factor": 1.5, "padded_fraction": 0.0}
    return {"face_id": fid, "face_index": k, "box": [0.0, 0.0, 10.0, 10.0], "det_score": 0.9, "detector": "dlib-hog",
            "landmarks68_aligned": [1.0, 2.0], "landmarks_source": "detector", "transform": tf, "eye_distance": 50.0,
            "yaw": 1.0, "pitch": 2.0, "roll": 3.0, "aligned_input": False, "blockiness": 1.1}


def test_manifest_rows_are_written_from_the_records():
    """Kept, quality-rejected (keeps its identity), near-duplicate (duplicate_of -> the kept image id), a face beyond
    max_faces, a photo without a face and an ingest rejection: one row each, reject_* from the Rejection."""
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    ing = IngestResult(items=[_item(a, "ann", 0), _item(b, "ann", 1), _item(c, None, 2)],
                       rejects=[{"source_kind": "folder", "source": "folder:x", "source_path": "x/3.jpg",
                                 "order": [0, 3], "provenance": {}, "reject_reason": "empty",
                                 "reject_detail": "zero bytes"}])
    pa = PhotoRecord(ing.items[0], {"width": 100, "height": 80, "format": "JPEG"}, None, None)
    pb = PhotoRecord(ing.items[1], {"width": 90, "height": 90, "format": "PNG"}, None, None)
    pc = PhotoRecord(ing.items[2], {"width": 50, "height": 50, "format": "PNG"}, "no_face", None)
    kept, blurry = FaceRecord(f"{a[:16]}-0", pa, 0, _detection(f"{a[:16]}-0", 0), crop="/c/0.png"), \
        FaceRecord(f"{a[:16]}-1", pa, 1, _detection(f"{a[:16]}-1", 1), crop="/c/1.png")
    extra = FaceRecord(f"{a[:16]}-2", pa, 2, {"face_id": f"{a[:16]}-2", "face_index": 2, "box": [1, 2, 3, 4]})
    extra.reject("faces", "too_many_faces", "more faces than faces.max_faces")
    dup = FaceRecord(f"{b[:16]}-0", pb, 0, _detection(f"{b[:16]}-0", 0), crop="/c/2.png")
    pa.faces, pb.faces = [kept, blurry, extra], [dup]
    for f in (kept, blurry, dup):
        f.measures = {"sharpness": 40.0, "phash": "00ff00ff00ff00ff", "padded_fraction": 0.0}
        f.quality = QualityDecision(None, None, ())
        f.cluster, f.group, f.identity = 0, "c0", "00000"
    kept.n, kept.image_id, kept.split, kept.sha256 = 0, "00000_0", "train", "d" * 64
    blurry.quality = QualityDecision("blurry", "sharpness=3 < 30", ("blurry", "noisy"))
    blurry.reject("quality", "blurry", "sharpness=3 < 30")
    dup.reject("dedup", "near_duplicate", "phash distance 0")
    dup.duplicate_of = kept.face_id
    dup.curated = "merge#1"
    rec = BuildRecords(ing, [pa, pb, pc], {f.face_id: f for f in sorted((kept, blurry, extra, dup),
                                                                      key=lambda f: f.face_id)})
    m = output.manifest(rec).set_index("face_id")
    assert list(m.index) == [kept.face_id, blurry.face_id, extra.face_id, dup.face_id, f"{c[:16]}-img",
                             m.index[-1]]
    assert m.loc[kept.face_id, ["kept", "identity", "image_id", "path", "split"]].tolist() == \
        [True, "00000", "00000_0", "images/00000/0.png", "train"]
    assert m.loc[blurry.face_id, ["kept", "reject_stage", "reject_reason", "identity"]].tolist() == \
        [False, "quality", "blurry", "00000"]
    assert list(m.loc[blurry.face_id, "quality_flags"]) == ["blurry", "noisy"]
    assert m.loc[dup.face_id, ["reject_stage", "duplicate_of", "curated"]].tolist() == \
        ["dedup", "00000_0", "merge#1"]
    assert m.loc[extra.face_id, ["reject_stage", "reject_reason"]].tolist() == ["faces", "too_many_faces"]
    assert m.loc[f"{c[:16]}-img", ["reject_stage", "reject_reason", "face_index"]].tolist() == ["faces", "no_face", -1]
    assert m.iloc[-1][["reject_stage", "reject_reason", "reject_detail"]].tolist() == ["ingest", "empty", "zero bytes"]
    counts = output.funnel(rec, {"c0": [kept.face_id]})
    assert counts["candidate_faces"] == 3 and counts["rejected_by_stage"] == {"dedup": 1, "quality": 1}
    assert counts["kept_images"] == 1 and counts["photos_with_faces"] == 2


def test_global_stage_is_cached_by_the_runner(tmp_path):
    """A global stage computes once per key; a changed parameter or upstream key computes again."""
    calls = []
    stage = GlobalStage("demo", "1", "result.json", lambda r: {"v": r}, lambda d: d["v"])

    def compute():
        calls.append(1)
        return [1, 2, 3]

    first = run_global_stage(stage, compute, {"t": 0.5}, cache_root=tmp_path, upstream=("u",))
    again = run_global_stage(stage, compute, {"t": 0.5}, cache_root=tmp_path, upstream=("u",))
    assert (first.cached, again.cached, again.result, again.key) == (False, True, [1, 2, 3], first.key)
    assert (tmp_path / "demo" / first.key / "result.json").is_file()
    other = run_global_stage(stage, compute, {"t": 0.6}, cache_root=tmp_path, upstream=("u",))
    moved = run_global_stage(stage, compute, {"t": 0.5}, cache_root=tmp_path, upstream=("v",))
    assert not other.cached and not moved.cached and len({first.key, other.key, moved.key}) == 3
    assert len(calls) == 3


def test_ingest_does_not_import_the_pipeline():
    """celebref.ingest sits below celebref.pipeline: importing it (any source kind) loads nothing of the pipeline."""
    code = ("import sys, celebref.ingest, celebref.ingest.urls, celebref.ingest.hf, celebref.ingest.archive\n"
            "print(sorted(m for m in sys.modules if m.startswith('celebref.pipeline')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
