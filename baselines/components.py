"""Facial component boxes from 68-point landmarks (the DMDNet / ASFFNet512 box rules), shared by the models.

All rules work in the 512x512 FFHQ-aligned frame the authors used. Landmarks are (x, y) pixel coordinates in the
iBUG 68-point scheme; "left"/"right" are as seen in the image (the authors' naming): the *left eye* is points
36-41 (+ brow 17-21), which is the subject's right eye.

Rules (csxmli2016/DMDNet ``main_test.get_component_location``), after clamping every landmark to [8, 504]:

- eye (left: eye 36-41, brow 17-21; right: eye 42-47, brow 22-26):
  c = mean(eye points); L1 = 1.3 * (c_y - min y over brow+eye points); L2 = L1 / 1.9; s = L1 + L2;
  box = [c_x - s/2 + 1, c_y - L1 + 1, c_x + s/2, c_y + L2]  (square, reaching up to include the brow)
- nose: c = mean(29-35); a = 1.25 * max(c_x - x31, x35 - c_x); b = 1.1 * (y33 - c_y);
  box = [c_x - a + 1, c_y - (2a - b) + 1, c_x + a, c_y + b]
- mouth: c = mean(48-67); h = 1.1 * max(max(extent_x, extent_y) / 2, 16);
  box = [c - h + 1, min(c + h, 510)]

Boxes are ``x1, y1, x2, y2`` with an exclusive end (they are used as slices ``[y1:y2, x1:x2]``). The integer boxes
truncate toward zero, as ``ndarray.astype(int)`` does in the authors' code.

For models working at another size S (e.g. a 128 'tiny' model), landmarks are mapped to the 512 frame
(x * 512 / S), boxes are computed there, and a box is mapped to a feature map of stride ``k`` at size S with
``floor(b * S / (512 * k))`` (:func:`feature_boxes`); at S = 512 this is exactly the authors' ``box // k``.
"""

from __future__ import annotations

import numpy as np

REFERENCE_SIZE = 512
#: the authors clamp landmarks to [8, 504] at 512 before computing boxes
LANDMARK_CLAMP_512 = (8.0, 504.0)
#: the authors clamp the mouth box's bottom-right corner to 510 at 512
MOUTH_MAX_512 = 510.0

COMPONENTS = ("left_eye", "right_eye", "nose", "mouth")
LEFT_EYE, RIGHT_EYE, NOSE, MOUTH = range(4)

LEFT_EYE_POINTS = tuple(range(36, 42))
RIGHT_EYE_POINTS = tuple(range(42, 48))
LEFT_BROW_POINTS = tuple(range(17, 22))
RIGHT_BROW_POINTS = tuple(range(22, 27))
NOSE_POINTS = tuple(range(29, 36))
MOUTH_POINTS = tuple(range(48, 68))


def _as_landmarks(landmarks) -> np.ndarray:
    if hasattr(landmarks, "detach"):  # torch tensor on any device
        landmarks = landmarks.detach().cpu().numpy()
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim < 2 or lm.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must be (..., 68, 2), got {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise ValueError("landmarks contain NaN or inf")
    return lm


def clamp_landmarks(landmarks, low: float, high: float) -> np.ndarray:
    """Landmarks (..., 68, 2) clipped to [low, high] in both coordinates (float64 copy)."""
    return np.clip(_as_landmarks(landmarks), low, high)


def component_boxes_float(landmarks_512) -> np.ndarray:
    """Boxes (..., 4, 4) float64 (x1, y1, x2, y2) for left eye, right eye, nose, mouth from landmarks (..., 68, 2)
    in the 512 frame, before integer truncation. Landmarks are clamped to [8, 504] first."""
    lm = clamp_landmarks(landmarks_512, *LANDMARK_CLAMP_512)
    out = np.empty(lm.shape[:-2] + (4, 4), dtype=np.float64)

    for idx, eye, brow in ((LEFT_EYE, LEFT_EYE_POINTS, LEFT_BROW_POINTS),
                           (RIGHT_EYE, RIGHT_EYE_POINTS, RIGHT_BROW_POINTS)):
        c = lm[..., eye, :].mean(axis=-2)
        top = lm[..., eye + brow, 1].min(axis=-1)
        up = 1.3 * (c[..., 1] - top)
        down = up / 1.9
        side = up + down
        out[..., idx, :] = np.stack(
            [c[..., 0] - side / 2 + 1, c[..., 1] - up + 1, c[..., 0] + side / 2, c[..., 1] + down], axis=-1)

    c = lm[..., NOSE_POINTS, :].mean(axis=-2)
    half = 1.25 * np.maximum(c[..., 0] - lm[..., 31, 0], lm[..., 35, 0] - c[..., 0])
    down = 1.1 * (lm[..., 33, 1] - c[..., 1])
    out[..., NOSE, :] = np.stack(
        [c[..., 0] - half + 1, c[..., 1] - (2 * half - down) + 1, c[..., 0] + half, c[..., 1] + down], axis=-1)

    pts = lm[..., MOUTH_POINTS, :]
    c = pts.mean(axis=-2)
    extent = (pts.max(axis=-2) - pts.min(axis=-2)).max(axis=-1) / 2
    half = 1.1 * np.maximum(extent, 16.0)[..., None]
    out[..., MOUTH, 0:2] = c - half + 1
    out[..., MOUTH, 2:4] = np.minimum(c + half, MOUTH_MAX_512)
    return out


def component_boxes_512(landmarks_512) -> np.ndarray:
    """Integer boxes (..., 4, 4) int64 in the 512 frame (the authors' ``astype(int)``: truncation toward zero)."""
    return np.trunc(component_boxes_float(landmarks_512)).astype(np.int64)


def component_boxes(landmarks, size: int = REFERENCE_SIZE) -> np.ndarray:
    """Integer 512-frame boxes (..., 4, 4) from landmarks (..., 68, 2) given in pixels of a ``size`` image."""
    lm = _as_landmarks(landmarks) * (REFERENCE_SIZE / float(size))
    return component_boxes_512(lm)


def scale_boxes(boxes_512, size: int) -> np.ndarray:
    """512-frame boxes mapped to a ``size`` image (float; multiply by size/512)."""
    return np.asarray(boxes_512, dtype=np.float64) * (float(size) / REFERENCE_SIZE)


def feature_boxes(boxes_512, size: int, stride: int) -> np.ndarray:
    """Boxes (..., 4) on the feature map of ``stride`` of a ``size`` image: floor(b * size / (512 * stride)).

    At size 512 this equals the authors' ``box // stride``. Boxes are then made valid slices of the
    (size/stride)-sided map: x1, y1 in [0, n-1], x2 in [x1+1, n], y2 in [y1+1, n] (a no-op for sane landmarks;
    the authors' code crashes on the degenerate boxes this repairs)."""
    b = np.asarray(boxes_512, dtype=np.int64)
    n = size // stride
    fb = (b * size) // (REFERENCE_SIZE * stride)
    fb = fb.copy()
    fb[..., 0:2] = np.clip(fb[..., 0:2], 0, n - 1)
    fb[..., 2] = np.clip(fb[..., 2], fb[..., 0] + 1, n)
    fb[..., 3] = np.clip(fb[..., 3], fb[..., 1] + 1, n)
    return fb
