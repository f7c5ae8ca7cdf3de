"""Component boxes (DMDNet / ASFFNet512 rules): a hand-computed case, clamping, real landmarks, feature scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.components import (
    LEFT_EYE,
    MOUTH,
    NOSE,
    RIGHT_EYE,
    component_boxes,
    component_boxes_512,
    component_boxes_float,
    feature_boxes,
    scale_boxes,
)
from baselines.landmarks import mean_face_landmarks, read_landmark_txt


def _hand_case() -> np.ndarray:
    """Landmarks with hand-picked eye / brow / nose / mouth points (the rest from the mean face)."""
    lm = mean_face_landmarks(512).astype(np.float64)
    # left eye: centre (100, 200); brow min y 180 -> L1 = 26, L2 = 26/1.9, side = L1 + L2
    lm[36:42] = [[90, 200], [95, 195], [105, 195], [110, 200], [100, 205], [100, 205]]
    lm[17:22] = [[80, 185], [90, 180], [100, 182], [110, 184], [115, 186]]
    # right eye: centre (300, 200); brow min y 170 -> L1 = 39
    lm[42:48] = [[290, 200], [295, 195], [305, 195], [310, 200], [300, 205], [300, 205]]
    lm[22:27] = [[285, 175], [295, 170], [300, 172], [310, 174], [320, 176]]
    # nose: centre (200, 300); x31 = 180, x35 = 220 -> a = 25; y33 = 315 -> b = 16.5
    lm[29:36] = [[200, 260], [200, 280], [180, 305], [190, 310], [200, 315], [210, 310], [220, 320]]
    # mouth: symmetric around (250, 380); extents 100 x 40 -> h = 1.1 * 50 = 55
    deltas = [(50, 0), (0, 20), (25, 10), (25, -10), (10, 15), (10, -15), (40, 5), (40, -5), (15, 0), (0, 10)]
    pts = []
    for dx, dy in deltas:
        pts += [(250 + dx, 380 + dy), (250 - dx, 380 - dy)]
    lm[48:68] = pts
    return lm


def test_hand_computed_boxes():
    lm = _hand_case()
    f = component_boxes_float(lm)
    l1, l2 = 26.0, 26.0 / 1.9
    s = l1 + l2
    np.testing.assert_allclose(f[LEFT_EYE], [100 - s / 2 + 1, 200 - l1 + 1, 100 + s / 2, 200 + l2])
    l1, l2 = 39.0, 39.0 / 1.9
    s = l1 + l2
    np.testing.assert_allclose(f[RIGHT_EYE], [300 - s / 2 + 1, 200 - l1 + 1, 300 + s / 2, 200 + l2])
    np.testing.assert_allclose(f[NOSE], [176, 267.5, 225, 316.5])
    np.testing.assert_allclose(f[MOUTH], [196, 326, 305, 435])
    # integer boxes truncate like the authors' astype(int)
    assert component_boxes_512(lm).tolist() == [
        [81, 175, 119, 213], [271, 162, 329, 220], [176, 267, 225, 316], [196, 326, 305, 435]]


def test_clamping_and_mouth_limit():
    lm = _hand_case()
    lm[48:68, 1] += 100  # mouth centre y 480: c + h = 535 -> clamped to 510; points stay below 504 except a few
    box = component_boxes_float(lm)[MOUTH]
    assert box[2] <= 510 and box[3] == 510
    lm2 = _hand_case()
    lm2[19] = [90, -50]  # a brow point above the image behaves as y = 8
    lm3 = _hand_case()
    lm3[19] = [90, 8]
    np.testing.assert_allclose(component_boxes_float(lm2), component_boxes_float(lm3))


def test_batched_and_torch_inputs_and_size_scaling():
    lm = _hand_case()
    batch = np.stack([lm, lm + 3])
    b = component_boxes_512(batch)
    assert b.shape == (2, 4, 4) and b.dtype == np.int64
    assert b[0].tolist() == component_boxes_512(lm).tolist()
    # the same face given at 128 pixels gives the same 512-frame boxes
    assert component_boxes(torch.from_numpy(lm / 4), size=128).tolist() == component_boxes_512(lm).tolist()
    np.testing.assert_allclose(scale_boxes(b, 128), b / 4)
    with pytest.raises(ValueError):
        component_boxes_512(np.zeros((67, 2)))
    with pytest.raises(ValueError):
        component_boxes_512(np.full((68, 2), np.nan))


def test_feature_boxes_match_authors_at_512_and_stay_valid():
    b = component_boxes_512(_hand_case())
    for stride in (2, 4, 8):
        assert (feature_boxes(b, 512, stride) == b // stride).all()
    fb = feature_boxes(b, 128, 8)  # 16x16 map
    assert (fb == (b * 128) // (512 * 8)).all()
    # degenerate boxes are repaired into valid, non-empty slices
    bad = np.array([[-40, -40, -30, -30], [600, 600, 700, 700], [100, 100, 100, 100]])
    fb = feature_boxes(bad, 512, 8)
    n = 64
    assert (fb[:, :2] >= 0).all() and (fb[:, :2] <= n - 1).all()
    assert (fb[:, 2] > fb[:, 0]).all() and (fb[:, 3] > fb[:, 1]).all() and (fb[:, 2:] <= n).all()


@pytest.mark.shared_data
def test_boxes_on_real_landmarks(celebref_examples):
    files = sorted((celebref_examples / "RefsLandmark").rglob("*.txt"))
    assert len(files) >= 40
    lms = np.stack([read_landmark_txt(f) for f in files])
    boxes = component_boxes_512(lms)
    assert boxes.shape == (len(files), 4, 4)
    assert (boxes >= 0).all() and (boxes <= 512).all()
    assert (boxes[..., 2] > boxes[..., 0]).all() and (boxes[..., 3] > boxes[..., 1]).all()
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    assert (centre[:, LEFT_EYE, 0] < centre[:, RIGHT_EYE, 0]).all()
    for eye in (LEFT_EYE, RIGHT_EYE):
        assert (centre[:, eye, 1] < centre[:, NOSE, 1]).all()
        assert (boxes[:, eye, 3] < boxes[:, MOUTH, 1]).all()  # eye box bottom above the mouth box top
    assert (centre[:, NOSE, 1] < centre[:, MOUTH, 1]).all()
    # eye boxes are square up to truncation; sizes are plausible for FFHQ-aligned 512 faces
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    assert (np.abs(w[:, :2] - h[:, :2]) <= 1).all()
    assert (w[:, MOUTH] >= 35).all() and (w[:, :2] > 30).all() and (w < 200).all()
