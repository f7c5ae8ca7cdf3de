"""The build's per-photo and per-face records: what every stage reads and fills, and what the manifest is written
from (:mod:`celebref.pipeline.output`).

A :class:`PhotoRecord` is one ingested photo (an ingest item) with what the faces stage found in it; each of its
faces is a :class:`FaceRecord`. The per-item stages (faces, embed, quality) fill a record's detection, crop,
embedding and scores (:func:`collect_faces`, :func:`add_item_results`); the global stages then fill the cluster and identity group
(:mod:`~celebref.pipeline.identity`), the curation tag, the quality decision (:mod:`~celebref.pipeline.quality`),
the near-duplicate link (:mod:`~celebref.pipeline.dedup`), the identity number, image id and split
(:mod:`~celebref.pipeline.splits`) and the written file's sha256 (:mod:`~celebref.pipeline.output`). A face keeps
the first :class:`Rejection` a stage gave it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from celebref.ingest import IngestResult

#: the stages that may reject, in pipeline order (a manifest row's ``reject_stage``)
REJECT_STAGES = ("ingest", "faces", "identity", "curation", "quality", "dedup")


@dataclass(frozen=True)
class Rejection:
    """Why a face (or photo) is not in the dataset: the ``stage`` that rejected it, a short machine-readable
    ``reason`` (e.g. ``quality``/``blurry``, ``dedup``/``near_duplicate``) and a human-readable ``detail``."""

    stage: str
    reason: str
    detail: str | None = None


@dataclass(frozen=True)
class QualityDecision:
    """The quality stage's verdict on one face: the first failing check (``reason``, None when every check
    passes) with its ``detail``, and every failing check (``flags``, the manifest's ``quality_flags``)."""

    reason: str | None
    detail: str | None
    flags: tuple[str, ...] = ()


@dataclass
class FaceRecord:
    """One detected face of a photo, filled stage by stage.

    ``detection`` is the faces stage's record (box, detector score, landmarks, alignment transform, eye distance,
    pose, blockiness; see :mod:`celebref.pipeline.faces_stage`). A face beyond ``faces.max_faces`` has only its
    box and is rejected at once (``crop`` None)."""

    face_id: str
    photo: PhotoRecord = field(repr=False, compare=False)  # the photo it was found in
    face_index: int
    detection: dict
    crop: str | None = None  # the aligned crop (PNG) in the faces stage's cache
    embedding: np.ndarray | None = None  # identity embedding (embed stage), float32
    scores: dict | None = None  # the quality stage's scores of the crop
    measures: dict | None = None  # scores + the faces stage's measures (faces that reached clustering; see measures)
    quality: QualityDecision | None = None
    cluster: int | None = None  # raw cluster label (identity stage)
    group: str | None = None  # identity group key (identity stage, after curation)
    curated: str | None = None  # the curation actions that touched the face (celebref review)
    duplicate_of: str | None = None  # face id of the kept near-duplicate (dedup stage)
    identity: str | None = None  # 5-digit identity number (splits stage; kept faces and quality rejects)
    n: int | None = None  # image number within the identity (kept faces)
    image_id: str | None = None
    split: str | None = None
    generic_test: bool = False
    sha256: str | None = None  # of the written aligned image (output stage)
    rejection: Rejection | None = None

    @property
    def item_id(self) -> str:
        return self.photo.item_id

    @property
    def kept(self) -> bool:
        return self.rejection is None

    @property
    def is_candidate(self) -> bool:
        """A face with an aligned crop (not beyond ``faces.max_faces``)."""
        return self.crop is not None

    def reject(self, stage: str, reason: str, detail: str | None = None) -> None:
        """Record a rejection, unless an earlier stage already rejected the face (the first one is kept)."""
        if self.rejection is None:
            self.rejection = Rejection(stage, reason, detail)


@dataclass
class PhotoRecord:
    """One ingested photo: its ingest ``item`` (item_id = sha256 of the bytes, source, name, provenance, order),
    the faces stage's ``image`` record (size, format, JPEG quality) and outcome, and its faces."""

    item: dict
    image: dict | None
    reason: str | None  # the faces stage's failure reason for the whole photo (read error, no_face, error_*)
    detail: str | None
    faces: list[FaceRecord] = field(default_factory=list)

    @property
    def item_id(self) -> str:
        return self.item["item_id"]

    @property
    def name(self) -> str | None:
        return self.item["name"]

    @property
    def rejection(self) -> Rejection | None:
        """A photo without any detected face is rejected as a whole at the faces stage."""
        if self.reason is None and self.faces:
            return None
        return Rejection("faces", self.reason or "no_face", self.detail)


@dataclass
class BuildRecords:
    """Every record of one build: the ingest result (its rejections have no photo record), the photos in the
    order the faces stage returned them, and every face by id."""

    ingest: IngestResult
    photos: list[PhotoRecord]
    faces: dict[str, FaceRecord]  # face_id -> record, in face-id order
    metric: str = "euclidean"  # the embedder's distance

    def candidates(self) -> list[FaceRecord]:
        """Faces with an aligned crop, by face id."""
        return [f for f in self.faces.values() if f.is_candidate]

    def clustered(self) -> list[FaceRecord]:
        """Candidate faces that were embedded and scored (the identity stage's input), by face id."""
        return [f for f in self.faces.values() if f.measures is not None]

    def embeddings(self) -> dict[str, np.ndarray]:
        return {fid: f.embedding for fid, f in self.faces.items() if f.embedding is not None}


def measures(face: FaceRecord, scores: dict) -> dict:
    """A face's quality-stage ``scores`` with the faces stage's measures added (the values the quality checks and
    the manifest read): eye distance, pose, upsampling factor, mirror-padded share (unknown for aligned inputs),
    the source's JPEG quality and blockiness."""
    det, tf = face.detection, face.detection["transform"]
    s = dict(scores)
    s["eye_distance"] = det["eye_distance"]
    s["yaw"], s["pitch"], s["roll"] = det["yaw"], det["pitch"], det["roll"]
    s["upsample_factor"] = tf.get("upsample_factor")
    s["padded_fraction"] = None if det.get("aligned_input") else tf.get("padded_fraction")
    s["jpeg_quality"] = (face.photo.image or {}).get("jpeg_quality")
    s["blockiness"] = det.get("blockiness")
    return s


def collect_faces(ingest: IngestResult, faces_run) -> BuildRecords:
    """Records of every photo and face from the faces stage's run (:class:`~celebref.pipeline.runner.StageRun`)."""
    items = {it["item_id"]: it for it in ingest.items}
    photos: list[PhotoRecord] = []
    faces: dict[str, FaceRecord] = {}
    for iid, rec in faces_run.records.items():
        res = rec.get("result") or {}
        photo = PhotoRecord(items[iid], res.get("image"), rec["reason"], rec.get("detail") or res.get("detail"))
        photos.append(photo)
        for det in res.get("faces") or []:
            face = FaceRecord(det["face_id"], photo, det["face_index"], det)
            if det.get("skipped"):
                face.reject("faces", det["skipped"], "more faces than faces.max_faces")
            else:
                face.crop = str(faces_run.cache.file_path(det["crop_file"]))
            photo.faces.append(face)
            faces[face.face_id] = face
    return BuildRecords(ingest, photos, {fid: faces[fid] for fid in sorted(faces)})


def add_item_results(records: BuildRecords, embed_run, quality_run) -> None:
    """Fill embeddings and scores from the embed and quality runs. A face whose embedding or scores are missing
    (its item failed in that stage) is rejected at the faces stage with that stage's reason
    (``embedding_failed`` / ``quality_scoring_failed`` when none was recorded); the others get their
    :func:`measures` and go on to clustering."""
    for rec in embed_run.records.values():
        r = rec.get("result") or {}
        records.metric = r.get("metric", records.metric)
        for fid, v in (r.get("embeddings") or {}).items():
            records.faces[fid].embedding = np.asarray(v, dtype=np.float32)
    for rec in quality_run.records.values():
        for fid, s in ((rec.get("result") or {}).get("scores") or {}).items():
            records.faces[fid].scores = s
    for face in records.candidates():
        if face.embedding is None:
            er = embed_run.records.get(face.item_id, {})
            face.reject("faces", er.get("reason") or "embedding_failed", er.get("detail", ""))
        elif face.scores is None:
            qr = quality_run.records.get(face.item_id, {})
            face.reject("faces", qr.get("reason") or "quality_scoring_failed", qr.get("detail", ""))
        else:
            face.measures = measures(face, face.scores)


def stage_items(records: BuildRecords) -> list[dict]:
    """The embed and quality stages' items: one per photo with candidate faces ({item_id, faces: [{face_id, crop,
    aligned_input}]}), photos in the order of their first face id."""
    per_item: dict[str, list[FaceRecord]] = {}
    for f in records.candidates():
        per_item.setdefault(f.item_id, []).append(f)
    return [{"item_id": iid, "faces": [{"face_id": f.face_id, "crop": f.crop,
                                        "aligned_input": f.detection.get("aligned_input", False)} for f in fl]}
            for iid, fl in per_item.items()]
