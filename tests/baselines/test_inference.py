"""`bench restore` / baselines.inference on real photos with a tiny random-init DMDNet: aligned faces and whole
photos, paste-back, references, the manifest, skip-and-record of bad inputs, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines import create_model
from baselines.inference import face_mask, find_faces, paste_back, restore_folder
from bfrcli.bench import main as bench
from bfrcore.cpu_allocator import reuse_freed_memory
from bfrcore.imageio import file_sha256, read_image, write_png
from tests import helpers

ALIGNED_LQ = "SynLQ/00075_14.png"
PHOTO = "dlib/examples/faces/2008_001009.jpg"  # 360x480, two faces


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Many small ops: one thread avoids OpenMP stalls on a shared 2-core machine (see test_dmdnet.py)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("dmdnet", config="tiny")


@pytest.fixture(scope="module")
def inputs(shared_faces, celebref_examples, tmp_path_factory) -> Path:
    """An aligned degraded face, a two-face photo, a corrupt file, a face-less picture and a text file."""
    d = tmp_path_factory.mktemp("restore_in")
    photo = shared_faces / PHOTO
    if not photo.is_file():
        pytest.skip(f"{photo} missing")
    shutil.copy(celebref_examples / ALIGNED_LQ, d / "aligned.png")
    shutil.copy(photo, d / "photo.jpg")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    write_png(d / "noface.png", helpers.tiny_image(64, 96))
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def refs(celebref_examples, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("refs")
    for f in sorted((celebref_examples / "RefsImg" / "00075").glob("*.png"))[:3]:
        shutil.copy(f, d / f.name)
    return d


@pytest.fixture(scope="module")
def run(tiny, inputs, refs, tmp_path_factory):
    out = tmp_path_factory.mktemp("restore_out")
    manifest = restore_folder(tiny, inputs, out, refs=refs, quiet=True, allow_untrained=True)
    return out, manifest


def _rows(manifest) -> dict:
    return {r["file"]: r for r in manifest["images"]}


def test_manifest_records_everything(run):
    out, m = run
    assert json.loads((out / "manifest.json").read_text()) == m
    assert m["model"] == "dmdnet" and m["mode"] == "specific" and m["refs"]["used"] == 3
    assert m["weights"]["status"] == "random init" and m["weights"]["untrained"] and "UNTRAINED" in m["weights"]["warning"]
    assert m["counts"] == {"images": 4, "ok": 2, "skipped": 2, "failed": 0, "faces_restored": 3}
    assert m["ignored_files"] == ["notes.txt"]
    assert m["device"] == "cpu" and m["cpu_allocator"] == reuse_freed_memory()
    rows = _rows(m)
    assert rows["aligned.png"]["kind"] == "aligned" and rows["aligned.png"]["landmarks_source"] in ("detected",
                                                                                                      "mean_face")
    assert rows["photo.jpg"]["kind"] == "photo" and rows["photo.jpg"]["faces_found"] == 2
    assert all(f["landmarks_source"] == "detected" for f in rows["photo.jpg"]["faces"])
    assert rows["corrupt.jpg"]["status"] == "skipped" and "unreadable" in rows["corrupt.jpg"]["reason"]
    assert rows["noface.png"]["status"] == "skipped" and rows["noface.png"]["reason"] == "no face found"
    assert all(r["status"] == "ok" for r in m["refs"]["files"])


def test_output_files_and_sizes(run, inputs):
    out, m = run
    assert read_image(out / "aligned.png").shape == (128, 128, 3)  # aligned: the model's size
    photo_in = read_image(inputs / "photo.jpg")
    assert read_image(out / "photo.png").shape == photo_in.shape  # photo: its own size
    for f in _rows(m)["photo.jpg"]["faces"]:
        assert read_image(out / f["crop"]).shape == (128, 128, 3)
        assert read_image(out / f["input_crop"]).shape == (128, 128, 3)
    assert not (out / "corrupt.png").exists() and not (out / "noface.png").exists()


def test_paste_back_changes_faces_only(run, inputs):
    out, m = run
    before = read_image(inputs / "photo.jpg").astype(np.int16)
    after = read_image(out / "photo.png").astype(np.int16)
    touched = np.zeros(before.shape[:2], bool)
    for f in _rows(m)["photo.jpg"]["faces"]:
        x0, y0, x1, y1 = f["pasted_box"]
        touched[y0:y1, x0:x1] = True
        # the face centre (the quad's centre) is replaced by the (untrained) model's output
        q = np.asarray(f["quad"])
        cx, cy = q.mean(0).astype(int)
        r = int(np.hypot(*(q[3] - q[0])) * 0.2)
        assert np.abs(after[cy - r:cy + r, cx - r:cx + r] - before[cy - r:cy + r, cx - r:cx + r]).mean() > 10
    assert touched.any() and not touched.all()
    assert np.array_equal(after[~touched], before[~touched])  # far from the faces: bit-identical


def test_paste_back_unit():
    """A grey face pasted through a real alignment transform: exact outside, blended border, full inside."""
    from baselines.landmarks import mean_face_landmarks
    from bfrcore.faces import align_face

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    lm = mean_face_landmarks(512) * 0.25 + np.array([150, 100], np.float32)  # a 128-px face at (150, 100)
    _, tf = align_face(photo, lm, 64)
    face = np.full((64, 64, 3), 7, np.uint8)
    out, (x0, y0, x1, y1) = paste_back(photo, face, tf)
    assert out.shape == photo.shape
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], photo[outside])
    cx, cy = np.asarray(tf.quad).mean(0).astype(int)
    assert np.all(out[cy - 10:cy + 10, cx - 10:cx + 10] == 7)
    m = face_mask(64)
    assert m[32, 32] == 1.0 and 0 < m[0, 0] < 0.05 and m.shape == (64, 64)


def test_find_faces_on_real_photo(shared_faces):
    faces = find_faces(read_image(shared_faces / PHOTO))
    assert len(faces) == 2 and faces[0].height >= faces[1].height
    assert all(f.landmarks68.shape == (68, 2) for f in faces)


# ------------------------------------------------------------------------------------------------ CLI
def _cli(*args) -> int:
    return bench(["-q", "restore", *map(str, args), "--device", "cpu"])


def test_cli_ok_and_weights_recorded(tiny, inputs, refs, tmp_path, capsys):
    w = tmp_path / "tiny.pt"
    torch.save(tiny.state_dict(), w)
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(inputs / "aligned.png", src / "face.png")
    out = tmp_path / "out"
    rc = _cli("--model", "dmdnet", "--config", "tiny", "--weights", w, "--input", src, "--refs", refs,
              "--aligned", "yes", "--out", out)
    assert rc == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["weights"]["status"] == "loaded" and m["weights"]["sha256"] == file_sha256(w)
    assert m["images"][0]["aligned_decision"] == "--aligned yes"
    assert read_image(out / "face.png").shape == (128, 128, 3)
    assert "bench restore: 1 done" in capsys.readouterr().out


def test_cli_everything_failed_exits_1(inputs, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(inputs / "corrupt.jpg", bad / "corrupt.jpg")
    assert _cli("--model", "dmdnet", "--allow-untrained", "--input", bad, "--out", tmp_path / "o1") == 1
    assert json.loads((tmp_path / "o1" / "manifest.json").read_text())["counts"]["skipped"] == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    # an input without images is bad input
    assert _cli("--model", "dmdnet", "--allow-untrained", "--input", empty, "--out", tmp_path / "o2") == 2
    m = json.loads((tmp_path / "o2" / "manifest.json").read_text())
    assert m["counts"]["images"] == 0 and "no image files" in m["note"]
    assert "WARNING" in capsys.readouterr().out  # untrained weights, said in the summary too


def test_cli_usage_errors_exit_2(inputs, tmp_path, capsys):
    empty = tmp_path / "empty_refs"
    empty.mkdir()
    assert _cli("--model", "dmdnet", "--input", tmp_path / "missing", "--out", tmp_path / "o") == 2
    assert _cli("--model", "nosuchmodel", "--input", inputs, "--out", tmp_path / "o") == 2
    assert _cli("--model", "dmdnet", "--config", "huge", "--input", inputs, "--out", tmp_path / "o") == 2
    assert _cli("--model", "ref_colormatch", "--input", inputs, "--out", tmp_path / "o") == 2  # needs references
    assert _cli("--model", "dmdnet", "--allow-untrained", "--input", inputs, "--refs", empty, "--out",
                tmp_path / "o") == 2
    assert _cli("--model", "dmdnet", "--input", inputs, "--out", inputs) == 2  # would overwrite the inputs
    err = capsys.readouterr().err
    assert "needs reference" in err and "no usable reference" in err and "does not exist" in err
    # a trainable model without trained weights is refused unless asked for, with the fixes
    assert _cli("--model", "dmdnet", "--input", inputs, "--out", tmp_path / "o3") == 2
    err = capsys.readouterr().err
    assert "no trained weights" in err and "dmdnet-official" in err and "--allow-untrained" in err
    assert not (tmp_path / "o3").exists()


def test_dmdnet_reference_cache_is_exact(tiny):
    """Inference memoises the specific dictionary per reference tensors: same outputs as an uncached call, and
    an in-place change of the references (or of the weights) invalidates it."""
    from baselines.landmarks import mean_face_landmarks

    g = torch.Generator().manual_seed(3)
    lq = torch.rand(1, 3, 128, 128, generator=g)
    lm = torch.from_numpy(mean_face_landmarks(128))[None]
    refs = [torch.rand(2, 3, 128, 128, generator=g)]
    rlm = [lm.repeat(2, 1, 1)]
    with torch.no_grad():
        a = tiny.restore(lq, lm, refs, rlm)
        b = tiny.restore(lq, lm, refs, rlm)  # cached
        c = tiny.restore(lq, lm, [refs[0].clone()], [rlm[0].clone()])  # other tensors: recomputed
        assert torch.equal(a, b) and torch.equal(a, c)
        refs[0].mul_(0.5)
        d = tiny.restore(lq, lm, refs, rlm)
        e = tiny.restore(lq, lm, [refs[0].clone()], [rlm[0].clone()])
        assert torch.equal(d, e) and not torch.equal(a, d)
    tiny.clear_reference_cache()
