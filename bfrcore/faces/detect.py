"""Face detection and 68-point landmarks.

Backends: ``dlib-hog`` (default, offline, built into dlib), ``dlib-cnn`` (MMOD, offline, slower, more robust to
pose), ``mtcnn`` (facenet-pytorch, offline; gives 5 points, 68 points come from the dlib regressor inside its box),
and ``insightface`` (SCRFD from buffalo_l, only when its weights are present). Landmarks are (x, y) in pixels of the
input image, 68-point iBUG/Multi-PIE order (0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from bfrcore.faces import dlib_models

DETECTORS = ("dlib-hog", "dlib-cnn", "mtcnn", "insightface")


@dataclass
class Face:
    """One detected face. ``box`` = (x1, y1, x2, y2) pixels; ``score`` is the detector's confidence."""

    box: tuple[float, float, float, float]
    score: float
    detector: str
    landmarks68: np.ndarray | None = None  # (68, 2) float32
    landmarks5: np.ndarray | None = None  # (5, 2) float32, detector-specific order
    extra: dict = field(default_factory=dict)

    @property
    def height(self) -> float:
        """Chin-to-brow height (landmark 8 y minus landmark 19 y), the authors' rule for picking the main face;
        box height when no landmarks."""
        if self.landmarks68 is not None:
            return float(self.landmarks68[8, 1] - self.landmarks68[19, 1])
        return float(self.box[3] - self.box[1])

    @property
    def eye_distance(self) -> float | None:
        """Distance between eye centres in pixels (a proxy for the face's real resolution)."""
        if self.landmarks68 is None:
            return None
        le = self.landmarks68[36:42].mean(0)
        re = self.landmarks68[42:48].mean(0)
        return float(np.hypot(*(re - le)))


def _check_rgb(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
    return np.ascontiguousarray(img)


def landmarks68(img: np.ndarray, box) -> np.ndarray:
    """dlib's 68-point regressor inside ``box`` (x1, y1, x2, y2). Returns (68, 2) float32 pixels."""
    shape = dlib_models.shape_predictor_68()(_check_rgb(img), dlib_models.rectangle(box))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def _dlib_hog(img: np.ndarray, upsample: int, device: str = "cpu") -> list[Face]:
    rects, scores, _ = dlib_models.hog_detector().run(img, upsample, 0.0)
    return [Face((r.left(), r.top(), r.right(), r.bottom()), float(s), "dlib-hog") for r, s in zip(rects, scores)]


def _dlib_cnn(img: np.ndarray, upsample: int, device: str = "cpu") -> list[Face]:
    dets = dlib_models.cnn_detector()(img, upsample)
    return [Face((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence), "dlib-cnn")
            for d in dets]


_MTCNN: dict = {}


def mtcnn_model(device: str = "cpu"):
    """facenet-pytorch's MTCNN (weights shipped in its wheel, checked by hash) on ``device``, one per process."""
    if device not in _MTCNN:
        from facenet_pytorch import MTCNN

        from bfrcore import weights

        for net in ("pnet", "rnet", "onet"):  # they ship in the wheel; verify they are the expected files
            weights.require(f"mtcnn-{net}")
        _MTCNN[device] = MTCNN(keep_all=True, device=device, post_process=False)
    return _MTCNN[device]


def _mtcnn(img: np.ndarray, upsample: int, device: str = "cpu") -> list[Face]:
    boxes, probs, points = mtcnn_model(device).detect(img, landmarks=True)
    if boxes is None:
        return []
    return [Face(tuple(float(v) for v in b), float(p), "mtcnn", landmarks5=np.asarray(pt, np.float32))
            for b, p, pt in zip(boxes, probs, points)]


_INSIGHTFACE: dict = {}


def _insightface(img: np.ndarray, upsample: int, device: str = "cpu") -> list[Face]:
    if device not in _INSIGHTFACE:
        from insightface.model_zoo import get_model

        from bfrcore import weights
        from bfrcore.faces.embed import onnx_providers

        pack = weights.require("insightface-buffalo_l")
        providers, ctx = onnx_providers(device)
        det = get_model(str(pack / "det_10g.onnx"), providers=providers)
        det.prepare(ctx_id=ctx, input_size=(640, 640), det_thresh=0.5)
        _INSIGHTFACE[device] = det
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    bboxes, kpss = _INSIGHTFACE[device].detect(bgr, max_num=0, metric="default")
    out = []
    for i, b in enumerate(bboxes):
        kps = kpss[i].astype(np.float32) if kpss is not None else None
        out.append(Face(tuple(float(v) for v in b[:4]), float(b[4]), "insightface", landmarks5=kps))
    return out


#: backend(img, upsample, device) -> faces; dlib's ignore ``device`` (CPU builds)
_BACKENDS: dict[str, Callable[..., list[Face]]] = {
    "dlib-hog": _dlib_hog,
    "dlib-cnn": _dlib_cnn,
    "mtcnn": _mtcnn,
    "insightface": _insightface,
}


def detect_faces(img: np.ndarray, *, detector: str = "dlib-hog", upsample: int = 1,
                 with_landmarks: bool = True, min_score: float | None = None, device: str = "cpu") -> list[Face]:
    """Every face in ``img`` (RGB uint8), largest first, each with 68-point landmarks when ``with_landmarks``.

    ``upsample``: dlib image pyramid upsampling (1 finds faces down to ~40 px; 0 is 4x faster, ~80 px).
    ``device``: where ``mtcnn`` / ``insightface`` run (``cpu``, ``cuda``, ``cuda:N``); the 68 points always come from
    dlib's regressor on the CPU.
    """
    img = _check_rgb(img)
    if detector not in _BACKENDS:
        raise ValueError(f"unknown detector {detector!r}; choose from {DETECTORS}")
    faces = _BACKENDS[detector](img, upsample, device)
    if min_score is not None:
        faces = [f for f in faces if f.score >= min_score]
    if with_landmarks:
        for f in faces:
            f.landmarks68 = landmarks68(img, f.box)
    faces.sort(key=lambda f: -f.height)
    return faces


def detect_landmarks68(img: np.ndarray, *, detector: str = "dlib-hog", upsample: int = 1) -> np.ndarray | None:
    """68 landmarks (float32 (68, 2)) of the main face — largest chin-to-brow height, the DMDNet authors' rule —
    or None when no face is found."""
    faces = detect_faces(img, detector=detector, upsample=upsample, with_landmarks=True)
    return faces[0].landmarks68 if faces else None
