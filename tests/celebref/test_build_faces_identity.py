"""Faces stage geometry against dlib's annotated examples (XML landmark truth) and the FFHQ reference recipe;
exact re-make of crops; aligned inputs kept as they are; cluster metrics against a reference implementation;
identity clustering of celeba_in_the_wild + LFW + five_celebrity scored against manifest.csv truth; label noise."""

from __future__ import annotations

import numpy as np
import pytest

from bfrcore.imageio import file_sha256, read_image
from celebref.pipeline import build_dataset, parse_config
from celebref.pipeline.cluster_metrics import cluster_scores, reference_bcubed
from celebref.pipeline.config import FacesConfig
from celebref.pipeline.faces_stage import FacesParams, process_item, remake_crop
from celebref.pipeline.identity import assign_identities
from tests.celebref import build_support
from tests.celebref.build_support import dlib_xml_faces, reference_ffhq_quad

pytestmark = pytest.mark.shared_data

PARAMS = FacesParams(FacesConfig(), 100_000_000, 50 << 20, 6)
#: dlib's annotated examples have faces down to ~20 px eye distance: detect them with upsampling (the default
#: 'auto' skips it above 400 px, since such faces fail quality.min_eye_distance anyway)
PARAMS_UP1 = FacesParams(FacesConfig(upsample=1), 100_000_000, 50 << 20, 6)


def test_alignment_matches_ffhq_reference_on_dlib_examples(shared_faces, tmp_path):
    truth = dlib_xml_faces(shared_faces)
    if not truth:
        pytest.skip("dlib examples XML not found")
    by_image: dict = {}
    for path, box, lm in truth:
        by_image.setdefault(path, []).append((box, lm))
    matched, errs, checked_remake = 0, [], 0
    for path, faces in sorted(by_image.items())[:6]:
        item = {"item_id": file_sha256(path), "path": str(path), "aligned": False}
        res, reason = process_item(item, PARAMS_UP1)
        assert reason is None, (path, reason)
        src = read_image(path)
        for box, lm in faces:
            ref = reference_ffhq_quad(lm)
            side = np.hypot(*(ref[3] - ref[0]))
            cands = [f for f in res["faces"] if "transform" in f]
            best = min(cands, key=lambda f: np.abs(np.asarray(f["transform"]["quad"]) - ref).max())
            err = np.abs(np.asarray(best["transform"]["quad"]) - ref).max() / side
            if err < 0.25:  # this annotated face was detected
                matched += 1
                errs.append(err)
                # the stored transform re-makes the stored crop exactly
                if checked_remake < 3:
                    crop = read_image(res["_files"][best["crop_file"]])
                    np.testing.assert_array_equal(remake_crop(src, best["transform"]), crop)
                    checked_remake += 1
                # the FFHQ geometry in the crop: centre (eye_avg + 0.1 eye_to_mouth) at the image centre
                al = np.asarray(best["landmarks68_aligned"]).reshape(68, 2)
                eye_avg = (al[36:42].mean(0) + al[42:48].mean(0)) / 2
                c = eye_avg + 0.1 * ((al[48] + al[54]) / 2 - eye_avg)
                assert np.abs(c - 255.5).max() < 1.0
                assert best["transform"]["size"] == 512
                # the real face size is recorded in source pixels (within 10% for faces of 20+ px)
                ed = np.hypot(*(lm[42:48].mean(0) - lm[36:42].mean(0)))
                if ed >= 20:
                    assert abs(best["eye_distance"] - ed) < 0.1 * ed
    n = sum(len(v) for _, v in sorted(by_image.items())[:6])
    assert matched >= 0.8 * n, (matched, n)
    # detected landmarks vs the annotation: quad corners within a few percent of the quad side
    assert float(np.median(errs)) < 0.03, errs
    assert float(np.quantile(errs, 0.8)) < 0.06, errs


def test_aligned_input_is_kept_and_pose_is_frontal(celebref_examples):
    f = celebref_examples / "RefsImg" / "00075" / "0.png"
    item = {"item_id": file_sha256(f), "path": str(f), "aligned": True}
    res, reason = process_item(item, PARAMS)
    assert reason is None
    face = res["faces"][0]
    assert face["aligned_input"] and face["transform"]["kind"] == "identity"
    np.testing.assert_array_equal(read_image(res["_files"][face["crop_file"]]), read_image(f))
    assert abs(face["yaw"]) < 20 and abs(face["roll"]) < 5
    assert face["eye_distance"] > 100


def test_no_face_photo_is_rejected_not_crashed(shared_faces, tmp_path):
    dogs = shared_faces / "dlib" / "examples" / "faces" / "dogs.jpg"
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(dogs.read_bytes()[:500])
    for p, want in ((dogs, "no_face"), (bad, "truncated")):
        res, reason = process_item({"item_id": file_sha256(p), "path": str(p), "aligned": False}, PARAMS)
        assert reason in (want, "corrupt") and res["faces"] == []


def test_cluster_metrics_match_reference():
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = rng.integers(0, 5, size=40)
        pred = np.where(rng.random(40) < 0.7, truth, rng.integers(0, 7, size=40))
        s = cluster_scores(pred, truth)
        p, r, f = reference_bcubed(pred, truth)
        assert s["bcubed_precision"] == pytest.approx(p) and s["bcubed_recall"] == pytest.approx(r)
        assert s["bcubed_f1"] == pytest.approx(f)
        iu = np.triu_indices(40, 1)
        sp = (pred[:, None] == pred[None, :])[iu]
        st = (truth[:, None] == truth[None, :])[iu]
        assert s["pairwise_precision"] == pytest.approx((sp & st).sum() / sp.sum())
        assert s["pairwise_recall"] == pytest.approx((sp & st).sum() / st.sum())
    perfect = cluster_scores(["a", "a", "b"], [1, 1, 2])
    assert perfect["bcubed_f1"] == 1.0 and perfect["pairwise_f1"] == 1.0


def test_name_reconciliation_flags_outliers():
    """Majority cluster = the person; a labelled face clustered elsewhere is flagged; shared clusters merge."""
    from celebref.pipeline.config import IdentityConfig

    a = np.array([[0.0, 0], [0.1, 0], [0, 0.1], [0.05, 0.05]])
    b = a + [5, 0]
    x = np.concatenate([a, b, [[10.0, 10.0]]])
    fids = [f"f{i:02d}" for i in range(len(x))]
    names = ["ann"] * 3 + ["bob"] + ["bob"] * 3 + [None] + ["ann"]
    g = assign_identities(fids, x, names, metric="euclidean", embedder="dlib", cfg=IdentityConfig(threshold=1.0))
    assert g.rejects["f03"][0] == "name_outlier"  # a 'bob' photo that is ann's face
    assert g.rejects["f08"][0] == "name_outlier"  # an 'ann' photo far from every ann
    assert {g.groups[g.group_of[f]]["name"] for f in ("f00", "f04", "f07")} == {"ann", "bob"}
    assert g.group_of["f07"] == g.group_of["f04"]  # unlabelled face joins bob's cluster
    names2 = ["ann"] * 4 + ["annie"] * 4 + [None]
    g2 = assign_identities(fids, np.concatenate([a, a + 0.01, [[10.0, 10.0]]]), names2, metric="euclidean",
                           embedder="dlib", cfg=IdentityConfig(threshold=1.0))
    grp = g2.groups[g2.group_of["f00"]]
    assert grp["name"] in ("ann", "annie") and len(grp["aliases"]) == 1 and len(grp["faces"]) == 8


@pytest.fixture(scope="module")
def clustering_build(shared_faces, tmp_path_factory):
    return build_support.clustering_build(shared_faces, tmp_path_factory)


def test_identity_clustering_bcubed(clustering_build):
    cq = clustering_build.info["cluster_quality"]
    c = cq["clusters"]
    print("clustering vs truth:", c)
    assert c["n_labels"] == 18 and c["n"] >= 0.9 * 18 * build_support.CLUSTERING_PER_IDENTITY
    assert c["bcubed_f1"] >= 0.9, c
    assert c["bcubed_precision"] >= 0.95, c
    assert c["pairwise_precision"] >= 0.95, c


def test_celebrefhq_00086_11_label_noise(celebref_examples, tmp_path):
    """The known label-noise case of the CelebRef-HQ examples with the default clustering and ArcFace. The offline
    dlib ResNet puts 00086/11 at median distance 0.49 from its folder (the folder's own members range 0.39-0.54):
    offline, only the opt-in subgroup test flags it (with 00086/14, test_build_pipeline)."""
    from bfrcore import weights

    if weights.locate("insightface-buffalo_l") is None:
        pytest.skip("needs ArcFace (insightface-buffalo_l): dlib's embedding does not separate 00086/11 "
                    "(measured, docs/build.md); fix: `bench weights fetch insightface-buffalo_l`")
    refs = celebref_examples / "RefsImg"
    cfg = parse_config({"identity": {"embedder": "arcface"}, "output": {"report": False}})
    r = build_dataset([f"celebrefhq:{refs}"], tmp_path / "out", cfg, workers=2)
    row = r.manifest[r.manifest["source_path"].str.endswith("00086/11.png")].iloc[0]
    assert row["name_outlier"] and not row["kept"]
