"""Identity metrics: dlib distances separate same / different CelebRef-HQ identities; the metric's numbers equal
plain NumPy on the same embeddings; the arcface_resnet18 recipe loads released-style checkpoints; ArcFace (the
reporting default) is unavailable with its fix when its pack is missing."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch

from bfrcore.faces import get_embedder
from bfrcore.faces.arcface18 import (
    ArcFace18Embedder,
    ResNetArcFace18,
    arcface18_preprocess,
    strip_module_prefix,
)
from bfrcore.imageio import read_image
from evaluation.identity import IdentityMetric, angle_degrees, cosine_similarity
from evaluation.metrics import Batch, resolve_metrics

IDENTITIES = ("00075", "00089", "00146")


@pytest.fixture(scope="module")
def faces_by_identity(celebref_examples):
    out = {}
    for ident in IDENTITIES:
        files = sorted((celebref_examples / "RefsImg" / ident).glob("*.png"), key=lambda p: int(p.stem))[:3]
        out[ident] = [read_image(f) for f in files]
    return out


def test_dlib_separates_same_and_different_identities(faces_by_identity):
    emb = get_embedder("dlib")
    vecs = {k: emb.embed(v) for k, v in faces_by_identity.items()}
    same_l2, diff_l2, same_cos, diff_cos = [], [], [], []
    for k, v in vecs.items():
        for i, j in itertools.combinations(range(len(v)), 2):
            same_l2.append(np.linalg.norm(v[i] - v[j]))
            same_cos.append(cosine_similarity(v[i:i + 1], v[j:j + 1])[0])
    for a, b in itertools.combinations(vecs, 2):
        for x in vecs[a]:
            for y in vecs[b]:
                diff_l2.append(np.linalg.norm(x - y))
                diff_cos.append(cosine_similarity(x[None], y[None])[0])
    # dlib's published operating point: same person < 0.6
    assert max(same_l2) < 0.6 < min(diff_l2)
    assert min(same_cos) > max(diff_cos)


def test_identity_metric_equals_numpy_on_the_same_embeddings(faces_by_identity):
    a = faces_by_identity["00075"]
    b = faces_by_identity["00146"]
    pred = [a[0], b[0]]
    gt = [a[1], a[2]]  # sample 0: same person; sample 1: different person
    refs = [[a[1], a[2]], []]
    m = IdentityMetric(backend="dlib").setup("cpu")
    out = m.compute(Batch(["x", "y"], pred, gt, refs, [["00075_1", "00075_2"], []]))
    emb = get_embedder("dlib")
    ep, eg = emb.embed(pred).astype(np.float64), emb.embed(gt).astype(np.float64)
    cos = (ep * eg).sum(1) / (np.linalg.norm(ep, axis=1) * np.linalg.norm(eg, axis=1))
    np.testing.assert_allclose(out["ids_dlib"], cos, atol=1e-12)
    np.testing.assert_allclose(out["deg_dlib"], np.degrees(np.arccos(cos)), atol=1e-9)
    np.testing.assert_allclose(out["l2_dlib"], np.linalg.norm(ep - eg, axis=1), atol=1e-9)
    er = emb.embed(refs[0]).astype(np.float64)
    ref_cos = (er @ ep[0]) / (np.linalg.norm(er, axis=1) * np.linalg.norm(ep[0]))
    assert out["ids_ref_dlib"][0] == pytest.approx(ref_cos.mean(), abs=1e-12)
    assert np.isnan(out["ids_ref_dlib"][1])  # no references
    assert out["ids_dlib"][0] > out["ids_dlib"][1]
    assert out["l2_dlib"][0] < 0.6 < out["l2_dlib"][1]


def test_angle_of_cosine():
    np.testing.assert_allclose(angle_degrees(np.array([1.0, 0.0, -1.0, 1.0 + 1e-9])), [0, 90, 180, 0], atol=1e-6)


def test_ids_defaults_to_arcface_and_reports_it_missing(isolated_weights):
    r = resolve_metrics(["ids"])
    assert [m.name for m in r.metrics] == ["ids_dlib"]  # dlib models ship in a package: offline fallback
    assert "bench weights fetch insightface-buffalo_l" in r.unavailable["ids_arcface"]
    assert "ids_dlib" in r.notes["ids"]
    r = resolve_metrics(["ids_arcface18"])
    assert not r.metrics and "bench weights fetch arcface-resnet18" in r.unavailable["ids_arcface18"]


def test_arcface18_architecture_matches_the_released_checkpoints():
    net = ResNetArcFace18()
    sd = net.state_dict()
    # names and shapes of GFPGAN ResNetArcFace('IRBlock', [2, 2, 2, 2], use_se=False) / resnet_face18
    expected = {
        "conv1.weight": (64, 1, 3, 3),
        "layer1.0.bn0.weight": (64,),
        "layer1.0.conv1.weight": (64, 64, 3, 3),
        "layer1.0.prelu.weight": (1,),
        "layer2.0.conv2.weight": (128, 64, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer2.0.downsample.1.running_var": (128,),
        "layer4.1.bn2.bias": (512,),
        "bn4.weight": (512,),
        "fc5.weight": (512, 32768),
        "bn5.running_mean": (512,),
    }
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k
    assert not any(".se." in k for k in sd)  # use_se=False
    assert "layer1.0.downsample.0.weight" not in sd  # 64 -> 64, stride 1: no projection
    x = torch.zeros(2, 1, 128, 128)
    assert net.eval()(x).shape == (2, 512)


def test_arcface18_embedder_loads_dataparallel_checkpoints(faces_by_identity):
    torch.manual_seed(0)
    sd = {f"module.{k}": v for k, v in ResNetArcFace18().state_dict().items()}
    assert set(strip_module_prefix(sd)) == set(ResNetArcFace18().state_dict())
    emb = ArcFace18Embedder(state_dict=sd)
    imgs = faces_by_identity["00075"][:2]
    e = emb.embed(imgs)
    assert e.shape == (2, 512) and np.isfinite(e).all()
    np.testing.assert_allclose(e[1], emb.embed(imgs[1:])[0], atol=1e-5)  # eval mode: batch-independent


def test_arcface18_preprocessing_is_the_vqfr_recipe(faces_by_identity):
    img = faces_by_identity["00089"][0]
    x = arcface18_preprocess([img])
    grey = cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (128, 128), interpolation=cv2.INTER_LINEAR)
    ref = (grey.astype(np.float32) - 127.5) / 127.5
    assert x.shape == (1, 1, 128, 128)
    np.testing.assert_allclose(x[0, 0].numpy(), ref, atol=0)
