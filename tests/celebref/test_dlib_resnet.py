"""bfrcore.faces.dlib_resnet: dlib's face recognition ResNet read from its .dat file and run by torch or
onnxruntime agrees with dlib's own network code on real faces (the reference implementation,
``compute_face_descriptor``), any other file is refused with a clear error, the converted ONNX graph is cached and
checked, and a build with either port keeps what a build with dlib's engine keeps."""

from __future__ import annotations

import numpy as np
import pytest

from bfrcore import weights
from bfrcore.faces import dlib_models, dlib_resnet, get_embedder, pairwise_distance
from bfrcore.imageio import read_image

pytestmark = pytest.mark.shared_data

#: measured max |torch - dlib| over the faces below: 3.6e-7 (float32 summation order); the bound leaves 25x
TOL = 1e-5


@pytest.fixture(scope="module")
def model_path():
    return weights.require("dlib-resnet-face-v1")


@pytest.fixture(scope="module")
def aligned_faces(celebref_examples):
    """Two aligned 512 references of each of three CelebRef-HQ people, and each one's mirror image."""
    imgs = []
    for pid in ("00075", "00089", "00121"):
        for f in sorted((celebref_examples / "RefsImg" / pid).glob("*.png"))[:2]:
            img = read_image(f)
            imgs += [img, np.ascontiguousarray(img[:, ::-1])]
    return imgs


def test_reads_the_network_dlib_describes(model_path):
    w = dlib_resnet.read_weights(model_path)
    assert len(w.convs) == 29
    assert w.mean_rgb == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert [c.weight.shape for c in w.convs[:2]] == [(32, 3, 7, 7), (32, 32, 3, 3)]
    assert w.convs[-1].weight.shape == (256, 256, 3, 3) and w.fc.shape == (256, 128)
    # the first block of each later level halves the size: stride 2, no padding; the others pad 1
    assert [(c.stride, c.padding) for c in w.convs if c.stride == 2] == [(2, 0)] * 5
    assert all(c.padding == 1 for c in w.convs[1:] if c.stride == 1)
    n_params = sum(c.weight.size + c.bias.size + c.gamma.size + c.beta.size for c in w.convs) + w.fc.size
    assert n_params * 4 == pytest.approx(model_path.stat().st_size, rel=0.03)  # the file is the weights


@pytest.mark.parametrize("cut", ["truncated", "other_model", "garbage"])
def test_other_files_are_refused(model_path, tmp_path, cut):
    data = model_path.read_bytes()
    bad = tmp_path / "model.dat"
    if cut == "truncated":
        bad.write_bytes(data[:len(data) // 2])
    elif cut == "other_model":  # a real dlib file of another kind
        bad.write_bytes(weights.require("dlib-shape-predictor-5").read_bytes())
    else:
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(dlib_resnet.DlibModelFormatError):
        dlib_resnet.read_weights(bad)


def test_descriptors_match_dlib_on_real_faces(model_path, aligned_faces):
    import torch

    rec = dlib_models.face_recognizer()
    sp5 = dlib_models.shape_predictor_5()
    net = dlib_resnet.model(model_path)
    chips, ref = [], []
    for img in aligned_faces:
        shape = sp5(img, dlib_models.rectangle((96, 156, 406, 465)))
        chips += dlib_resnet.face_chips(img, dlib_models.full_object_detections([shape]))
        ref.append(np.asarray(rec.compute_face_descriptor(img, shape, 0), np.float32))
    ref = np.stack(ref)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the build's workers run one thread
        torch_out = dlib_resnet.descriptors(net, chips)
        one_by_one = np.concatenate([dlib_resnet.descriptors(net, [c]) for c in chips])
    finally:
        torch.set_num_threads(threads)
    onnx_out = dlib_resnet.onnx_descriptors(dlib_resnet.onnx_session(model_path), chips)
    assert np.abs(one_by_one - ref).max() < TOL  # batching does not matter beyond float rounding
    d_ref = pairwise_distance(ref, ref, "euclidean")
    assert d_ref.max() > 0.6  # real, different people: the comparison is not between near-identical vectors
    for ours in (torch_out, onnx_out):
        assert np.abs(ours - ref).max() < TOL
        assert np.abs(pairwise_distance(ours, ours, "euclidean") - d_ref).max() < 2 * TOL


def test_onnx_graph_is_cached_checked_and_rebuilt(model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("CELEBREF_WEIGHTS_DIR", str(tmp_path))
    first = dlib_resnet.onnx_model_bytes(model_path)
    cached = sorted((tmp_path / "derived").glob("dlib-resnet-face-v1.*.onnx"))
    assert len(cached) == 1 and cached[0].read_bytes() == first
    cached[0].write_bytes(first[:-100] + bytes(100))  # a damaged cache file is not used
    assert dlib_resnet.onnx_model_bytes(model_path) == first
    assert cached[0].read_bytes() == first


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_embedders_with_either_engine_agree(aligned_faces, engine):
    faces = aligned_faces[::2]
    for name in ("dlib", "dlib-flip"):
        a = get_embedder(name, engine="dlib").embed(faces)
        b = get_embedder(name, engine=engine).embed(faces)
        assert a.shape == b.shape == (len(faces), 128)
        assert np.abs(a - b).max() < TOL
    port = get_embedder("dlib-flip", engine=engine)
    assert port.engine == engine and port.name == "dlib-flip"
    assert {r["name"] for r in port.weights_records()} == {"dlib-shape-predictor-5", "dlib-resnet-face-v1"}


def test_engine_and_device_errors():
    from bfrcore.faces.embed import DlibEmbedder

    with pytest.raises(ValueError, match="unknown embedding engine"):
        DlibEmbedder(engine="tensorflow")
    with pytest.raises(ValueError, match="num_jitters needs the dlib engine"):
        DlibEmbedder(num_jitters=2, engine="torch")
    with pytest.raises(ValueError, match="CPU only"):
        DlibEmbedder(engine="dlib", device="cuda")
    with pytest.raises(ValueError, match="runs on the CPU only"):
        get_embedder("arcface18", device="cuda")


def test_a_build_keeps_the_same_faces_and_people_with_every_engine(celebref_examples, tmp_path):
    from celebref.pipeline import build_dataset, parse_config

    src = tmp_path / "src"
    for pid in ("00075", "00089", "00121"):
        for f in sorted((celebref_examples / "RefsImg" / pid).glob("*.png"))[:3]:
            (src / pid).mkdir(parents=True, exist_ok=True)
            (src / pid / f.name).symlink_to(f)
    results = {}
    for engine in ("dlib", "torch", "auto"):
        cfg = parse_config({"identity": {"engine": engine, "min_images": 1}, "splits": {"mode": "image"},
                            "output": {"report": False}, "ingest": {"name_from": "none"}})
        results[engine] = build_dataset([f"folder:{src}"], tmp_path / engine, cfg, workers=1)
    a = results["dlib"]
    assert a.info["counts"]["identities"] == 3
    assert [r.info["resolved"]["embed_engine"] for r in results.values()] == ["dlib", "torch", "onnx"]
    for b in (results["torch"], results["auto"]):
        assert a.info["stage_keys"]["embed"] != b.info["stage_keys"]["embed"]  # cached apart
        assert a.info["stage_keys"]["faces"] == b.info["stage_keys"]["faces"]
        assert a.info["dataset_hash"] == b.info["dataset_hash"]
        assert a.info["counts"] == b.info["counts"]
