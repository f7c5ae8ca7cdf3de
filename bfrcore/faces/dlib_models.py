"""dlib models, loaded once per process from the weights registry (they ship in face-recognition-models)."""

from __future__ import annotations

import threading
from functools import lru_cache

from bfrcore import weights

_lock = threading.Lock()


def _dlib():
    import dlib

    return dlib


@lru_cache(maxsize=None)
def hog_detector():
    """dlib's HOG + linear SVM frontal face detector (built into dlib, no file needed)."""
    return _dlib().get_frontal_face_detector()


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
