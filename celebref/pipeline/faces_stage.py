"""Stage 2, faces: decode, detect every face, 68 (+5) landmarks, FFHQ-recipe alignment, pose, source measures.

``process_item(item, params) -> (result, reason)``: a pure function of the photo bytes and the parameters (the
stage runner caches it per item). For each face it records the detector box and score, 68 landmarks in the source
and in the aligned crop, 5 points (the detector's, or eye centres / nose tip / mouth corners from the 68), the
:class:`~bfrcore.faces.AlignTransform` (quad, sizes, padding: enough to re-make the crop exactly with
:func:`remake_crop`), the real face size (eye distance in source pixels), the upsampling factor, the share of the
crop outside the photo (mirror padding), yaw/pitch/roll, and JPEG measures of the source (IJG quality estimated
from the quantisation tables; 8x8 blockiness of the face region). Aligned crops are returned as PNG bytes under
``_files`` and stored by the runner; the crops' pixels go along under ``_pixels`` (never stored) for the
stages fused into the faces pass (:func:`follower_item`, :mod:`celebref.pipeline.runner`).

Aligned sources (CelebRef-HQ layout): landmarks are detected (HOG, no upsampling: the face fills the frame);
when the FFHQ quad of the detected landmarks matches the frame within ``faces.aligned_tolerance`` the pixels are
kept as they are (resized with Lanczos only when ``faces.size`` differs), the transform is the identity and
``aligned_input`` is true. When no face is detected the 68-point regressor runs inside the known aligned face box
(``landmarks_source = aligned_box``). A quad that does not match is re-aligned with the FFHQ recipe.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from bfrcore.imageio import ImageReadError, encode_png, read_image, read_image_with_info
from celebref.pipeline.config import FacesConfig

VERSION = "2"

#: generic 3D face model (mm; nose tip at the origin) for solvePnP: nose tip 30, chin 8, eye outer corners 36/45,
#: mouth corners 48/54 (the widely used model of Mallick 2016, learnopencv "Head pose estimation")
_MODEL_3D = np.array([
    (0.0, 0.0, 0.0), (0.0, -330.0, -65.0), (-225.0, 170.0, -135.0), (225.0, 170.0, -135.0),
    (-150.0, -150.0, -125.0), (150.0, -150.0, -125.0)], dtype=np.float64)
_MODEL_IDX = (30, 8, 36, 45, 48, 54)


@dataclass(frozen=True)
class FacesParams:
    faces: FacesConfig
    max_pixels: int
    max_bytes: int
    png_compress_level: int
    #: the detector's device (``cpu`` unless the detector is a torch/ONNX one and the build runs on a GPU)
    device: str = "cpu"


def five_points(lm68: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip, mouth corners (the ArcFace/FFHQ 5-point convention) from 68 points."""
    lm = np.asarray(lm68, np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]).astype(np.float32)


def head_pose(lm68: np.ndarray, width: int, height: int) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees. Roll: angle of the eye-centre line. Yaw and pitch: cv2.solvePnP of six
    landmarks against a generic 3D face, focal length = the image's larger side, principal point at its centre.
    Approximate (a generic head, an uncalibrated camera): good for rejecting profiles, not for measurement."""
    import cv2

    lm = np.asarray(lm68, np.float64)
    le, re = lm[36:42].mean(0), lm[42:48].mean(0)
    roll = math.degrees(math.atan2(re[1] - le[1], re[0] - le[0]))
    f = float(max(width, height))
    cam = np.array([[f, 0, width / 2.0], [0, f, height / 2.0], [0, 0, 1]], dtype=np.float64)
    pts = lm[list(_MODEL_IDX)].astype(np.float64)
    # the model's y axis points up, image y down: flip the model's y
    model = _MODEL_3D * np.array([1.0, -1.0, 1.0])
    ok, rvec, _ = cv2.solvePnP(model, pts, cam, np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return float("nan"), float("nan"), roll
    rmat, _ = cv2.Rodrigues(rvec)
    sy = math.hypot(rmat[0, 0], rmat[1, 0])
    pitch = math.degrees(math.atan2(rmat[2, 1], rmat[2, 2]))
    yaw = math.degrees(math.atan2(-rmat[2, 0], sy))
    # the model faces -z in camera coordinates: fold pitch into [-90, 90]
    if pitch > 90:
        pitch -= 180
    elif pitch < -90:
        pitch += 180
    return float(yaw), float(pitch), float(roll)


def jpeg_quality(data: bytes) -> float | None:
    """IJG quality (1..100) estimated from a JPEG's luminance quantisation table (None for other formats).

    Inverse of libjpeg's scaling: table = base * S / 100 with S = 5000/Q (Q < 50) or 200 - 2Q (Q >= 50); the
    scale is estimated as the median of table/base over the 64 coefficients."""
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(data))
        if im.format not in ("JPEG", "MPO"):
            return None
        q = getattr(im, "quantization", None)
        if not q or 0 not in q:
            return None
        table = np.asarray(q[0], dtype=np.float64)
    except Exception:
        return None
    base = np.array([  # IJG standard luminance table, natural (row-major) order as Pillow returns it
        16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
        14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)
    if table.size != 64:
        return None
    scale = float(np.median(table * 100.0 / base))
    if scale <= 0:
        return 100.0
    quality = (200.0 - scale) / 2.0 if scale <= 100 else 5000.0 / scale
    return float(np.clip(quality, 1, 100))


def _clip_box(box, w: int, h: int) -> tuple[int, int, int, int] | None:
    """``box`` rounded and clipped to the image; None when less than 24 px either way."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 24 or y2 - y1 < 24:
        return None
    return x1, y1, x2, y2


def _block_edge_ratio(g: np.ndarray, x1: int, y1: int) -> float | None:
    out = []
    for axis, start in ((1, x1), (0, y1)):
        d = np.abs(np.diff(g, axis=axis))
        idx = np.arange(d.shape[axis]) + start  # diff k is between pixels k and k+1 (absolute coords)
        border = (idx % 8) == 7
        if border.sum() == 0 or (~border).sum() == 0:
            return None
        dd = d.mean(axis=1 - axis)
        inner = dd[~border].mean()
        out.append(dd[border].mean() / max(inner, 1e-6))
    return float(np.mean(out))


def blockiness(grey: np.ndarray, box) -> float | None:
    """8x8 JPEG block-edge strength in the face region of the source: mean |gradient| across block borders
    divided by the mean |gradient| elsewhere, averaged over both directions (about 1 for clean images, larger
    with visible blocks). The grid is the image's own (JPEG blocks start at pixel 0)."""
    h, w = grey.shape
    b = _clip_box(box, w, h)
    if b is None:
        return None
    x1, y1, x2, y2 = b
    return _block_edge_ratio(grey[y1:y2, x1:x2].astype(np.float64), x1, y1)


def blockiness_rgb(img: np.ndarray, box) -> float | None:
    """:func:`blockiness` of the grey (mean of R, G, B) of ``img``, computing that grey for the face region only
    (the same values as ``blockiness(img.mean(axis=2), box)``, without averaging the whole photo)."""
    h, w = img.shape[:2]
    b = _clip_box(box, w, h)
    if b is None:
        return None
    x1, y1, x2, y2 = b
    return _block_edge_ratio(img[y1:y2, x1:x2].mean(axis=2), x1, y1)


def _identity_quad(s: int) -> np.ndarray:
    return np.array([[-0.5, -0.5], [-0.5, s - 0.5], [s - 0.5, s - 0.5], [s - 0.5, -0.5]], dtype=np.float64)


def _aligned_box(side: int) -> tuple[float, ...]:
    from bfrcore.faces.embed import ALIGNED_FACE_BOX_512

    s = side / 512.0
    return tuple(v * s for v in ALIGNED_FACE_BOX_512)


#: detectors that run on a GPU when the build does (dlib's HOG and MMOD detectors are CPU builds here)
GPU_DETECTORS = ("mtcnn", "insightface")


def detector_device(detector: str, device: str) -> str:
    """Where ``detector`` runs in a build on ``device``: the build's device for GPU-capable detectors, else cpu."""
    return device if detector in GPU_DETECTORS else "cpu"


def resolve_detector(name: str) -> str:
    if name != "auto":
        return name
    from bfrcore import weights

    return "insightface" if weights.locate("insightface-buffalo_l") is not None else "dlib-hog"


@dataclass(frozen=True)
class FoundFace:
    """One face as found in the source photo: detector box (x1, y1, x2, y2, px) and score (None when the
    landmarks were placed in the known aligned box), 68 and 5 landmarks (source px) and where they came from
    (``detector`` or ``aligned_box``)."""

    box: tuple
    score: float | None
    lm68: np.ndarray
    lm5: np.ndarray
    landmarks_source: str


def _face_record(face_id: str, k: int, img: np.ndarray, found: FoundFace, *, detector: str, tf: dict,
                 aligned: bool, n_det: int) -> dict:
    h, w = img.shape[:2]
    lm68 = found.lm68
    yaw, pitch, roll = head_pose(lm68, w, h)
    return {
        "face_id": face_id,
        "face_index": k,
        "box": [float(v) for v in found.box],
        "det_score": float(found.score) if found.score is not None else None,
        "detector": detector,
        "landmarks68_source": [float(v) for v in np.asarray(lm68, np.float64).reshape(-1)],
        "landmarks5_source": [float(v) for v in np.asarray(found.lm5, np.float64).reshape(-1)],
        "landmarks_source": found.landmarks_source,
        "transform": tf,
        "eye_distance": float(np.hypot(*(lm68[42:48].mean(0) - lm68[36:42].mean(0)))),
        "yaw": yaw,
        "pitch": pitch,
        "roll": roll,
        "aligned_input": aligned,
        "n_detections": n_det,
    }


def process_item(item: dict, params: FacesParams) -> tuple[dict | None, str | None]:
    """Detect, landmark and align every face of one photo. Reasons: imageio's read reasons, ``no_face``."""
    from bfrcore.faces import align_face, detect_faces, landmarks68

    cfg = params.faces
    with open(item["path"], "rb") as f:
        data = f.read()
    try:
        img, info = read_image_with_info(data, max_pixels=params.max_pixels, max_bytes=params.max_bytes)
    except ImageReadError as e:
        return {"image": None, "faces": [], "detail": str(e)[:300]}, e.reason
    h, w = img.shape[:2]
    detector = resolve_detector(cfg.detector)
    image_rec = {"width": w, "height": h, "format": info.format, "mode": info.mode, "jpeg_quality": jpeg_quality(data),
                 "detector": detector}
    faces_out: list[dict] = []
    files: dict[str, bytes] = {}
    size = cfg.size
    prefix = item["item_id"][:16]

    if item.get("aligned"):
        dets = detect_faces(img, detector=detector, upsample=0, with_landmarks=True, device=params.device)
        image_rec["upsample"] = 0
        if dets:
            lm, box, score, lsrc = dets[0].landmarks68, dets[0].box, dets[0].score, "detector"
            lm5 = dets[0].landmarks5 if dets[0].landmarks5 is not None else five_points(lm)
        else:
            box = _aligned_box(w)
            lm, score, lsrc = landmarks68(img, box), None, "aligned_box"
            lm5 = five_points(lm)
        from bfrcore.faces.align import ffhq_quad

        quad, side, _ = ffhq_quad(lm)
        centre = quad.mean(0)
        tol = cfg.aligned_tolerance
        matches = (w == h and abs(side / w - 1) <= tol
                   and np.hypot(*(centre - np.array([(w - 1) / 2, (h - 1) / 2]))) / w <= tol)
        face_id = f"{prefix}-0"
        if matches:
            if w != size:
                from PIL import Image

                out = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS), np.uint8)
            else:
                out = img
            s = size / w
            tf = {"kind": "identity", "quad": _identity_quad(w).tolist(), "size": size, "transform_size": size,
                  "padding": "none", "source_size": [w, h], "quad_side": float(w), "eye_distance": None,
                  "padded_fraction": 0.0, "upsample_factor": size / w}
            lm_al = (np.asarray(lm, np.float64) + 0.5) * s - 0.5
            rec = _face_record(face_id, 0, img, FoundFace(box, score, lm, lm5, lsrc), detector=detector, tf=tf,
                               aligned=True, n_det=len(dets))
        else:
            out, t = align_face(img, lm, size, transform_size=cfg.transform_size, padding=cfg.padding)
            tf = {"kind": "ffhq", **t.to_dict()}
            lm_al = t.to_aligned(lm)
            rec = _face_record(face_id, 0, img, FoundFace(box, score, lm, lm5, lsrc), detector=detector, tf=tf,
                               aligned=False, n_det=len(dets))
        rec["transform"]["eye_distance"] = rec["eye_distance"]
        rec["landmarks68_aligned"] = [float(v) for v in np.asarray(lm_al, np.float64).reshape(-1)]
        rec["blockiness"] = blockiness_rgb(img, box)
        files[f"{face_id}.png"] = encode_png(out, params.png_compress_level)
        rec["crop_file"] = f"{face_id}.png"
        faces_out.append(rec)
        return {"image": image_rec, "faces": faces_out, "_files": files, "_pixels": {face_id: out}}, None

    upsample = cfg.upsample
    if upsample == "auto":
        upsample = 1 if max(w, h) <= cfg.auto_upsample_max_side else 0
    image_rec["upsample"] = int(upsample)
    dets = detect_faces(img, detector=detector, upsample=int(upsample), with_landmarks=True, min_score=cfg.min_score,
                        device=params.device)
    image_rec["n_detections"] = len(dets)
    if not dets:
        return {"image": image_rec, "faces": []}, "no_face"
    pixels: dict[str, np.ndarray] = {}
    for k, d in enumerate(dets):
        face_id = f"{prefix}-{k}"
        if k >= cfg.max_faces:
            faces_out.append({"face_id": face_id, "face_index": k, "box": [float(v) for v in d.box],
                              "skipped": "too_many_faces"})
            continue
        lm = d.landmarks68
        lm5 = d.landmarks5 if d.landmarks5 is not None else five_points(lm)
        out, t = align_face(img, lm, size, transform_size=cfg.transform_size, padding=cfg.padding)
        tf = {"kind": "ffhq", **t.to_dict()}
        rec = _face_record(face_id, k, img, FoundFace(d.box, d.score, lm, lm5, "detector"), detector=detector,
                           tf=tf, aligned=False, n_det=len(dets))
        rec["landmarks68_aligned"] = [float(v) for v in np.asarray(t.to_aligned(lm), np.float64).reshape(-1)]
        rec["blockiness"] = blockiness_rgb(img, d.box)
        files[f"{face_id}.png"] = encode_png(out, params.png_compress_level)
        pixels[face_id] = out
        rec["crop_file"] = f"{face_id}.png"
        faces_out.append(rec)
    return {"image": image_rec, "faces": faces_out, "_files": files, "_pixels": pixels}, None


def crop_pixels(face: dict) -> np.ndarray:
    """A face's aligned crop (RGB uint8) for the embed and quality stages: the ``pixels`` handed over by the faces
    pass when they run fused into it, else its PNG read back (the same array: PNG is lossless)."""
    px = face.get("pixels")
    return px if px is not None else read_image(face["crop"])


def follower_item(item_id: str, result: dict, pixels: dict, file_path) -> dict | None:
    """The embed and quality stages' item for one photo, made in the faces pass (the same item as
    :func:`celebref.pipeline.records.stage_items` makes from the records, plus each crop's ``pixels`` when they are
    RGB uint8 as the PNG decodes); None when the photo has no aligned face."""
    faces = sorted((f for f in result.get("faces") or [] if f.get("crop_file")), key=lambda f: f["face_id"])
    if not faces:
        return None
    out = []
    for f in faces:
        px = pixels.get(f["face_id"])
        if px is not None and not (px.dtype == np.uint8 and px.ndim == 3 and px.shape[2] == 3):
            px = None  # anything else is read back from the PNG, as the stage's own pass does
        out.append({"face_id": f["face_id"], "crop": str(file_path(f["crop_file"])),
                    "aligned_input": f.get("aligned_input", False),
                    "pixels": None if px is None else np.ascontiguousarray(px)})
    return {"item_id": item_id, "faces": out}


def remake_crop(source: np.ndarray, transform: dict) -> np.ndarray:
    """Re-make an aligned crop exactly from its source photo and the stored transform record."""
    from bfrcore.faces.align import AlignTransform, realign

    if transform.get("kind") == "identity":
        size = int(transform["size"])
        if source.shape[1] == size:
            return source
        from PIL import Image

        return np.asarray(Image.fromarray(source).resize((size, size), Image.Resampling.LANCZOS), np.uint8)
    return realign(source, AlignTransform.from_dict(transform))
