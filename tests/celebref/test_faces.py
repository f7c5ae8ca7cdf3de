"""Face analysis on real photos: detection, 68 landmarks, FFHQ alignment geometry, identity embeddings."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from bfrcore.faces import align_face, detect_faces, detect_landmarks68, ffhq_quad, get_embedder, realign
from bfrcore.faces.embed import pairwise_distance
from bfrcore.imageio import read_image
from tests.helpers import read_landmark_txt

pytestmark = pytest.mark.shared_data


def _dlib_examples(shared_faces):
    """dlib's examples/faces photos with their 68-landmark XML truth (training_with_face_landmarks.xml)."""
    xmls = sorted(shared_faces.glob("dlib/**/*.xml"))
    for x in xmls:
        root = ET.parse(x).getroot()
        for img in root.iter("image"):
            for box in img.iter("box"):
                parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in box.iter("part")}
                if len(parts) == 68:
                    yield x.parent / img.get("file"), np.array([parts[i] for i in range(68)], np.float32)


def test_landmarks_match_dlib_annotations(shared_faces):
    """Our detector + 68-point regressor agree with the hand-annotated truth to a few percent of the face size."""
    cases = list(_dlib_examples(shared_faces))
    if not cases:
        pytest.skip("dlib example annotations not found under faces/dlib")
    errs = []
    for path, truth in cases[:6]:
        img = read_image(path)
        faces = detect_faces(img)
        assert faces, path
        # the detected face nearest to the annotated one
        centre = truth.mean(0)
        face = min(faces, key=lambda f: np.hypot(*(f.landmarks68.mean(0) - centre)))
        iod = np.hypot(*(truth[36:42].mean(0) - truth[42:48].mean(0)))
        errs.append(np.linalg.norm(face.landmarks68 - truth, axis=1).mean() / iod)
    assert np.mean(errs) < 0.1, errs


def test_alignment_geometry_is_ffhq(shared_faces):
    """Eye centres and mouth land where the FFHQ recipe puts them, and the crop is reproducible exactly."""
    cases = list(_dlib_examples(shared_faces))
    if not cases:
        pytest.skip("dlib example annotations not found")
    path, truth = cases[0]
    img = read_image(path)
    aligned, tf = align_face(img, truth, 256)
    assert aligned.shape == (256, 256, 3)
    lm = tf.to_aligned(truth)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    mouth = (lm[48] + lm[54]) / 2
    # FFHQ: the x axis is eye_to_eye - rot90(eye_to_mouth), so it is horizontal in the crop; the centre
    # eye_avg + 0.1*eye_to_mouth is the image centre; the square side is 2*max(2*iod, 1.8*|eye_to_mouth|)
    e2m = mouth - (eye_l + eye_r) / 2
    x_axis = (eye_r - eye_l) - np.array([-e2m[1], e2m[0]])
    assert abs(x_axis[1]) < 0.01 * abs(x_axis[0])
    centre = (eye_l + eye_r) / 2 + 0.1 * e2m
    np.testing.assert_allclose(centre, [127.5, 127.5], atol=0.6)
    side = 2 * max(2 * np.hypot(*(eye_r - eye_l)), 1.8 * np.hypot(*(mouth - (eye_l + eye_r) / 2)))
    assert abs(side - 256) < 1.0
    quad, qside, iod = ffhq_quad(truth)
    assert abs(tf.quad_side - qside) < 1e-6 and tf.eye_distance == pytest.approx(iod)
    np.testing.assert_array_equal(realign(img, tf), aligned)
    np.testing.assert_allclose(tf.to_source(lm), truth, atol=1e-3)


def test_aligned_crop_redetects_consistently(celebref_examples):
    """Landmarks re-detected on our aligned crop agree with the mapped source landmarks (~1 px at 512)."""
    img = read_image(celebref_examples / "RefsImg" / "00121" / "2.png")
    lm = detect_landmarks68(img)
    assert lm is not None
    aligned, tf = align_face(img, lm, 512)
    again = detect_landmarks68(aligned)
    assert np.abs(again - tf.to_aligned(lm)).mean() < 3.0
    assert tf.padded_fraction < 0.2
    # an already-aligned CelebRef-HQ face hardly moves: the authors used the same recipe
    authors = read_landmark_txt(celebref_examples / "RefsLandmark" / "00121" / "2.png.txt")
    assert np.abs(lm - authors).mean() < 6.0


def test_no_face_on_flat_image():
    assert detect_landmarks68(np.full((120, 120, 3), 127, np.uint8)) is None
    with pytest.raises(ValueError):
        detect_faces(np.zeros((10, 10), np.uint8))


def test_group_photo_finds_several_faces():
    from pathlib import Path

    import insightface

    t1 = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    faces = detect_faces(read_image(t1))
    assert len(faces) >= 5
    heights = [f.height for f in faces]
    assert heights == sorted(heights, reverse=True)
    assert all(f.eye_distance > 10 for f in faces)


def test_dlib_identity_separates_people(celebref_examples):
    emb = get_embedder("dlib")
    ids = ["00075", "00089", "00121"]
    imgs, labels = [], []
    for i in ids:
        for f in sorted((celebref_examples / "RefsImg" / i).glob("*.png"))[:4]:
            imgs.append(read_image(f))
            labels.append(i)
    e = emb.embed(imgs)
    assert e.shape == (12, 128)
    d = pairwise_distance(e, e, emb.metric)
    lab = np.array(labels)
    same = d[(lab[:, None] == lab[None]) & ~np.eye(len(lab), dtype=bool)]
    diff = d[lab[:, None] != lab[None]]
    assert same.max() < 0.6 < diff.min()
    rec = emb.weights_records()
    assert {r["name"] for r in rec} == {"dlib-shape-predictor-5", "dlib-resnet-face-v1"}


def test_arcface_unavailable_says_how_to_fix(isolated_weights):
    from bfrcore.faces import embed as embed_mod
    from bfrcore.weights import MissingWeightsError

    embed_mod._CACHE.pop("arcface|dlib|cpu", None)
    with pytest.raises(MissingWeightsError, match="bench weights fetch insightface-buffalo_l"):
        get_embedder("arcface")
