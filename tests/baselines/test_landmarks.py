"""Landmark provider: manifest -> detector -> mean face, with the source recorded; the mean-face template."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.landmarks import (
    MEAN_FACE_FILE,
    LandmarkProvider,
    build_mean_face_template,
    mean_face_landmarks,
    read_landmark_txt,
    to_uint8_image,
)


def _dlib_available() -> bool:
    try:
        from bfrcore.faces import detect_landmarks68  # noqa: F401
        from bfrcore.weights import locate

        return locate("dlib-shape-predictor-68") is not None
    except Exception:  # noqa: BLE001 - any setup problem means: skip the real-detector tests
        return False


needs_dlib = pytest.mark.skipif(not _dlib_available(), reason="bfrcore.faces / dlib 68-point model unavailable")


def test_mean_face_template_is_a_plausible_aligned_face():
    lm = mean_face_landmarks()
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    assert (lm > 8).all() and (lm < 504).all()
    le, re = lm[36:42].mean(0), lm[42:48].mean(0)
    mouth, nose, chin = lm[48:68].mean(0), lm[30], lm[8]
    assert le[0] < 256 < re[0]
    assert le[1] < nose[1] < mouth[1] < chin[1]
    # FFHQ alignment puts the eyes near y = 0.47 * 512 and the eye centres ~ 0.25 * 512 apart
    assert 220 < (le[1] + re[1]) / 2 < 260 and 110 < re[0] - le[0] < 150
    np.testing.assert_allclose(mean_face_landmarks(128), lm / 4, rtol=1e-6)
    np.testing.assert_allclose(mean_face_landmarks((256, 512)), lm * [1, 0.5], rtol=1e-6)
    with np.load(MEAN_FACE_FILE, allow_pickle=False) as z:
        assert int(z["n_faces"]) == 70 and int(z["size"]) == 512


@pytest.mark.shared_data
def test_mean_face_matches_real_aligned_faces(celebref_examples, tmp_path):
    files = sorted((celebref_examples / "RefsLandmark").rglob("*.txt"))
    real = np.stack([read_landmark_txt(f) for f in files])
    err = np.abs(real - mean_face_landmarks()).mean(axis=(1, 2))
    assert err.max() < 30 and np.median(err) < 10
    rebuilt = build_mean_face_template(files, tmp_path / "t.npz")
    np.testing.assert_allclose(rebuilt, real.mean(0), rtol=1e-5)


def test_manifest_landmarks_win_and_are_clamped():
    img = np.zeros((128, 128, 3), np.uint8)
    pts = mean_face_landmarks(128).copy()
    pts[0] = [-5, 3]
    pts[8] = [64, 200]
    calls = []
    prov = LandmarkProvider(detect_fn=lambda im: calls.append(1))
    r = prov(img, pts)
    assert r.source == "manifest" and not calls
    assert r.points[0].tolist() == [8, 8] and r.points[8].tolist() == [64, 120]
    assert (r.points >= 8).all() and (r.points <= 120).all()
    # manifest landmarks of a 512 dataset used on a 128 image are rescaled
    r2 = prov(img, mean_face_landmarks(512), landmarks_size=512)
    np.testing.assert_allclose(r2.points, np.clip(mean_face_landmarks(128), 8, 120), rtol=1e-6)
    with pytest.raises(ValueError):
        prov(img, np.zeros((5, 2)))


def test_detected_and_failed_detection_with_injected_detector():
    img = np.full((128, 128, 3), 128, np.uint8)
    found = mean_face_landmarks(128) + 2
    r = LandmarkProvider(detect_fn=lambda im: found)(img)
    assert r.source == "detected"
    np.testing.assert_allclose(r.points, found)
    r = LandmarkProvider(detect_fn=lambda im: None)(img)
    assert r.source == "mean_face" and "no face" in r.detail
    np.testing.assert_allclose(r.points, mean_face_landmarks(128))


def test_detector_errors_raise_or_fall_back_by_policy():
    def broken(im):
        raise RuntimeError("model file missing")

    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(RuntimeError):
        LandmarkProvider(detect_fn=broken)(img)
    r = LandmarkProvider(detect_fn=broken, on_detector_error="mean_face")(img)
    assert r.source == "mean_face" and "model file missing" in r.detail


def test_batch_of_tensors_mixes_sources():
    imgs = torch.rand(3, 3, 128, 128)
    manifest = [mean_face_landmarks(128), None, None]
    answers = iter([mean_face_landmarks(128) + 1, None])
    pts, res = LandmarkProvider(detect_fn=lambda im: next(answers)).batch(imgs, manifest)
    assert pts.shape == (3, 68, 2) and pts.dtype == torch.float32
    assert [r.source for r in res] == ["manifest", "detected", "mean_face"]


def test_to_uint8_image_conversions():
    t = torch.zeros(3, 4, 5)
    t[0] = 1.0
    a = to_uint8_image(t)
    assert a.shape == (4, 5, 3) and a.dtype == np.uint8 and a[..., 0].min() == 255 and a[..., 1].max() == 0
    assert to_uint8_image(np.full((2, 2, 3), 0.5)).max() == 128
    with pytest.raises(ValueError):
        to_uint8_image(np.zeros((2, 2)))


@needs_dlib
def test_real_detector_fails_on_flat_grey_and_falls_back():
    r = LandmarkProvider()(np.full((256, 256, 3), 128, np.uint8))
    assert r.source == "mean_face"
    np.testing.assert_allclose(r.points, mean_face_landmarks(256))


@needs_dlib
@pytest.mark.shared_data
def test_real_detector_on_aligned_faces(celebref_examples):
    from bfrcore.imageio import read_image

    prov = LandmarkProvider()
    # HQ face: dlib agrees with the authors' (face-alignment) landmark file within a few pixels
    r = prov(read_image(celebref_examples / "RefsImg" / "00075" / "0.png"))
    assert r.source == "detected" and r.detail == "dlib-hog"
    truth = read_landmark_txt(celebref_examples / "RefsLandmark" / "00075" / "0.png.txt")
    assert np.abs(r.points - truth).mean() < 6
    # the authors' synthetic degraded input of the same identity is still detected
    r = prov(read_image(celebref_examples / "SynLQ" / "00075_14.png"))
    assert r.source == "detected"
    assert np.abs(r.points - mean_face_landmarks()).mean() < 30
