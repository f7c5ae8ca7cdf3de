"""The build's device switch (issue 19's GPU path, exercised on the CPU: no GPU here or in CI): which parts move
to ``runner.device`` (the embedder's torch/onnx engine, the MTCNN / InsightFace detectors), which stay on the CPU
(dlib's HOG detector and dlib's own network code), and a build through the torch detector and the torch engine
(the code a GPU build runs, on the CPU) keeps the people the default build keeps."""

from __future__ import annotations

import pytest

from celebref.pipeline import build_dataset, parse_config
from celebref.pipeline.embed_stage import embed_params
from celebref.pipeline.faces_stage import detector_device


def test_what_moves_to_the_device():
    assert detector_device("dlib-hog", "cuda") == "cpu"
    assert detector_device("dlib-cnn", "cuda") == "cpu"
    assert detector_device("mtcnn", "cuda:1") == "cuda:1"
    assert detector_device("insightface", "cuda") == "cuda"
    assert embed_params("dlib-flip", "auto", "cpu") == embed_params("dlib-flip", "onnx", "cpu")
    assert embed_params("dlib-flip", "auto", "cuda").engine == "torch"
    assert embed_params("dlib", "dlib", "cpu").engine == "dlib"
    p = embed_params("arcface", "auto", "cuda")  # ArcFace: onnxruntime's CUDA provider, no engine choice
    assert (p.engine, p.device) == ("-", "cuda")


@pytest.mark.shared_data
def test_torch_detector_and_engine_build_keeps_the_same_people(celebref_examples, tmp_path):
    src = tmp_path / "src"  # a flat folder of 512 photos: both builds detect (HOG / MTCNN) and re-align
    for pid in ("00075", "00089", "00121"):
        for f in sorted((celebref_examples / "RefsImg" / pid).glob("*.png"))[:2]:
            src.mkdir(exist_ok=True)
            (src / f"{pid}_{f.name}").symlink_to(f)
    base = {"identity": {"min_images": 1}, "splits": {"mode": "image"}, "output": {"report": False},
            "ingest": {"name_from": "none"}}
    default = build_dataset([f"folder:{src}"], tmp_path / "default", parse_config(base), workers=1)
    gpu_path = build_dataset([f"folder:{src}"], tmp_path / "gpu_path", parse_config(
        {**base, "faces": {"detector": "mtcnn"}, "identity": {**base["identity"], "engine": "torch"},
         "runner": {"device": "cpu"}}), workers=1)
    r = gpu_path.info["resolved"]
    assert (r["detector"], r["embed_engine"], r["device"]) == ("mtcnn", "torch",
                                                               {"detector": "cpu", "embedder": "cpu"})
    assert default.info["resolved"]["detector"] == "dlib-hog"
    for key in ("candidate_faces", "identities"):
        assert gpu_path.info["counts"][key] == default.info["counts"][key]
    assert default.info["counts"]["identities"] == 3


def test_stage_devices_on_a_gpu_machine(monkeypatch):
    """With a GPU (simulated: runner.device resolves to cuda), what each stage is given; a GPU the ONNX models
    cannot use (this onnxruntime has no CUDA provider) is a config error before any work."""
    import onnxruntime

    from celebref.pipeline import ConfigError
    from celebref.pipeline import builder

    monkeypatch.setattr(builder, "resolve_device_lazily", lambda name: "cuda" if name != "cpu" else "cpu")
    devices = lambda **cfg: builder.stage_devices(parse_config(cfg))  # noqa: E731
    assert devices() == ("cpu", "cuda")  # HOG on the CPU; dlib-flip's network by torch on the GPU
    assert devices(faces={"detector": "mtcnn"}) == ("cuda", "cuda")
    assert devices(identity={"engine": "dlib"}, runner={"device": "cpu"}) == ("cpu", "cpu")
    assert devices(runner={"device": "cpu"}, faces={"detector": "mtcnn"}) == ("cpu", "cpu")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ConfigError, match="onnxruntime has no CUDA provider"):
            devices(identity={"engine": "onnx"})
