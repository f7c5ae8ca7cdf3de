"""dlib models, loaded once per process from the weights registry (they ship in face-recognition-models)."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

from bfrcore import weights

_lock = threading.Lock()


def _dlib():
    import dlib

    return dlib


@lru_cache(maxsize=None)
def hog_detector():
    """dlib's HOG + linear SVM frontal face detector (built into dlib, no file needed). Loaded from a copy saved by
    dlib in the weights cache (:mod:`bfrcore.weights.derived`; ~2 ms instead of ~0.4 s for decoding the copy built
    into dlib; detections identical, tested)."""
    import tempfile

    from bfrcore.weights.derived import load_or_derive

    dlib = _dlib()
    built = None

    def make() -> bytes:
        nonlocal built
        built = dlib.get_frontal_face_detector()
        with tempfile.TemporaryDirectory() as tmp:
            built.save(f"{tmp}/detector.svm")
            return Path(f"{tmp}/detector.svm").read_bytes()

    with _lock:
        _, path = load_or_derive(f"dlib-frontal-face-detector.dlib-{dlib.__version__}.svm", make)
        # just derived: the detector is in hand; else the checked copy (path is None only when it was derived)
        return built if built is not None else dlib.fhog_object_detector(str(path))


@lru_cache(maxsize=None)
def cnn_detector():
    with _lock:
        return _dlib().cnn_face_detection_model_v1(str(weights.require("dlib-mmod-detector")))


@lru_cache(maxsize=None)
def shape_predictor_68():
    with _lock:
        return _dlib().shape_predictor(str(weights.require("dlib-shape-predictor-68")))


@lru_cache(maxsize=None)
def shape_predictor_5():
    with _lock:
        return _dlib().shape_predictor(str(weights.require("dlib-shape-predictor-5")))


@lru_cache(maxsize=None)
def face_recognizer():
    with _lock:
        return _dlib().face_recognition_model_v1(str(weights.require("dlib-resnet-face-v1")))


def rectangle(box) -> "object":
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return _dlib().rectangle(x1, y1, x2, y2)


def full_object_detections(shapes) -> "object":
    """A dlib ``full_object_detections`` holding ``shapes`` (the per-image argument of batched descriptor calls)."""
    out = _dlib().full_object_detections()
    for s in shapes:
        out.append(s)
    return out
