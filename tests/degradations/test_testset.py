"""Test-set generation: the format, subset/order/worker invariance, resume, skip-and-record, verify, the CLI."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bfrcore.dataset import FaceDataset
from bfrcore.testset import (
    PARAMS_BASE_COLUMNS,
    TestSet,
    TestSetError,
    compute_testset_hash,
    parse_checksums,
)
from degradations import testset as T
from degradations.sampling import param_dtype
from tests.degradations.conftest import TINY_SIZE, tiny_dataset

TEST_IDS = [f"a_{i}" for i in range(6)]


@pytest.fixture(scope="module")
def full(tiny_ds, tmp_path_factory):
    out = tmp_path_factory.mktemp("ts") / "gfpgan-s0"
    res = T.generate_testset(tiny_ds, "gfpgan", 0, out)
    return out, res


def _sums(root):
    return parse_checksums((root / "checksums.sha256").read_text())


def test_format(full, tiny_ds):
    out, res = full
    assert res.n_images == 6 and res.generated == 6 and res.reused == 0 and not res.skipped
    assert sorted(p.stem for p in (out / "lq").glob("*.png")) == TEST_IDS
    # checksums.sha256: sha256sum -c format
    lines = (out / "checksums.sha256").read_text().splitlines()
    assert len(lines) == 6
    for line in lines:
        digest, rel = line.split("  ")
        assert rel.startswith("lq/") and hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    df = pd.read_parquet(out / "params.parquet")
    assert list(df.columns[:5]) == list(PARAMS_BASE_COLUMNS)
    for col in ("kernel_type", "sigma_x", "sigma_y", "theta", "scale", "noise_sigma", "noise_seed", "jpeg_quality",
                "up_mode", "color_shift_r", "jitter_order", "gray", "lq_height"):
        assert col in df.columns, col
        assert str(df[col].dtype) == str(pd.array([], dtype=param_dtype(col)).dtype), col
    assert df["noise_seed"].dropna().map(lambda v: 0 <= int(v) < 2 ** 63).all()
    info = json.loads((out / "testset.json").read_text())
    for key in ("format", "name", "preset", "preset_name", "preset_version", "seed", "split", "dataset",
                "n_images", "testset_hash", "severity", "versions", "created", "skipped", "seed_scheme",
                "jpeg_rounding"):
        assert key in info, key
    assert info["preset_name"] == "gfpgan" and info["preset_version"] == "1" and info["severity"] == 4.4
    assert info["name"] == "gfpgan-s0" and info["split"] == "test" and info["seed"] == 0
    ds = FaceDataset.load(tiny_ds)
    assert info["dataset"]["hash"] == ds.hash
    assert {"numpy", "opencv", "degradations", "celebref-suite"} <= set(info["versions"])
    assert info["testset_hash"] == compute_testset_hash(ds.hash, _sums(out))
    assert not (out / ".partial").exists()


def test_loader_api(full, tiny_ds):
    out, _ = full
    ts = TestSet.load(out)
    assert ts.image_ids == TEST_IDS and len(ts) == 6 and ts.name == "gfpgan-s0"
    assert ts.hash == ts.info["testset_hash"] and ts.severity == 4.4 and ts.preset_name == "gfpgan"
    lq = ts.read_lq("a_1")
    assert lq.shape == (TINY_SIZE, TINY_SIZE, 3) and lq.dtype == np.uint8
    assert ts.lq_path("a_1") == (out / "lq" / "a_1.png").resolve()
    np.testing.assert_array_equal(ts.read_gt("a_1"), FaceDataset.load(tiny_ds).read("a_1"))
    assert isinstance(ts.dataset, FaceDataset)
    assert ts.params_of("a_1")["seed"] == T.item_seed(0, "a_1")
    with pytest.raises(KeyError):
        ts.lq_path("b_0")  # a train image is not in the test set
    with pytest.raises(TestSetError, match="not a test set"):
        TestSet.load(out / "lq")


def test_dataset_hash_is_checked(full, tiny_ds, tmp_path):
    out, _ = full
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    info = json.loads((copy / "testset.json").read_text())
    info["dataset"]["hash"] = "0" * 64
    (copy / "testset.json").write_text(json.dumps(info))
    ts = TestSet.load(copy)
    with pytest.raises(TestSetError, match="was made from"):
        ts.read_gt("a_0")
    assert TestSet.load(copy, check_dataset=False).read_gt("a_0").shape == (TINY_SIZE, TINY_SIZE, 3)
    info["dataset"] = {"root": str(tmp_path / "nowhere"), "root_relative": None, "hash": "0" * 64}
    (copy / "testset.json").write_text(json.dumps(info))
    with pytest.raises(TestSetError, match="was not found"):
        _ = TestSet.load(copy).dataset
    # an explicit dataset_root is used (and still hash-checked)
    with pytest.raises(TestSetError, match="was made from"):
        _ = TestSet.load(copy, dataset_root=tiny_ds).dataset


def test_subset_and_order_invariance(full, tiny_ds, tmp_path):
    out, _ = full
    ref = _sums(out)
    sub = T.generate_testset(tiny_ds, "gfpgan", 0, tmp_path / "sub", ids=["a_4", "a_1", "a_4"])
    assert sub.n_images == 2 and _sums(tmp_path / "sub") == {k: ref[k] for k in ("a_1", "a_4")}
    T.generate_testset(tiny_ds, "gfpgan", 0, tmp_path / "lim", limit=3)
    assert _sums(tmp_path / "lim") == {k: ref[k] for k in TEST_IDS[:3]}
    other = T.generate_testset(tiny_ds, "gfpgan", 1, tmp_path / "seed1")
    assert all(_sums(tmp_path / "seed1")[k] != ref[k] for k in TEST_IDS) and other.testset_hash != full[1].testset_hash


def test_worker_invariance(full, tiny_ds, tmp_path):
    out, res = full
    par = T.generate_testset(tiny_ds, "gfpgan", 0, tmp_path / "w2", workers=2)
    assert _sums(tmp_path / "w2") == _sums(out) and par.testset_hash == res.testset_hash
    a = pd.read_parquet(out / "params.parquet")
    b = pd.read_parquet(tmp_path / "w2" / "params.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_resume_after_interruption(full, tiny_ds, tmp_path, monkeypatch):
    out_ref, _ = full
    out = tmp_path / "resume"
    real = T._run_tasks

    def interrupted(tasks, workers, on_result):
        real(tasks[:3], workers, on_result)
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "_run_tasks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        T.generate_testset(tiny_ds, "gfpgan", 0, out)
    assert len((out / ".partial" / "records.jsonl").read_text().splitlines()) == 3
    assert not (out / "testset.json").exists()
    monkeypatch.setattr(T, "_run_tasks", real)
    # a half-written record line (the interruption hit mid-write) is ignored
    with open(out / ".partial" / "records.jsonl", "a") as f:
        f.write('{"image_id": "a_5", "lq_sha')
    res = T.generate_testset(tiny_ds, "gfpgan", 0, out)
    assert (res.reused, res.generated) == (3, 3)
    assert _sums(out) == _sums(out_ref)
    # a complete set reruns as a no-op; a damaged file is redone
    again = T.generate_testset(tiny_ds, "gfpgan", 0, out)
    assert (again.reused, again.generated) == (6, 0)
    (out / "lq" / "a_2.png").write_bytes(b"broken")
    fixed = T.generate_testset(tiny_ds, "gfpgan", 0, out)
    assert (fixed.reused, fixed.generated) == (5, 1) and _sums(out) == _sums(out_ref)
    # a subset into the same folder drops the other images
    T.generate_testset(tiny_ds, "gfpgan", 0, out, ids=["a_0", "a_3"])
    assert sorted(p.stem for p in (out / "lq").glob("*.png")) == ["a_0", "a_3"]


def test_other_settings_into_the_same_folder_is_an_error(full, tiny_ds):
    out, _ = full
    with pytest.raises(T.TestSetConfigError, match="other settings"):
        T.generate_testset(tiny_ds, "gfpgan", 1, out)
    with pytest.raises(T.TestSetConfigError):
        T.generate_testset(tiny_ds, "celebref-x4", 0, out)


def test_unreadable_image_is_skipped_and_recorded(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", corrupt="a_2")
    res = T.generate_testset(ds, "celebref-x4", 0, tmp_path / "ts")
    assert res.n_images == 5 and [s["image_id"] for s in res.skipped] == ["a_2"]
    info = json.loads((tmp_path / "ts" / "testset.json").read_text())
    assert info["skipped"][0]["image_id"] == "a_2" and info["skipped"][0]["reason"].startswith("unreadable")
    assert "a_2" not in TestSet.load(tmp_path / "ts").image_ids


def test_bad_inputs(tmp_path, tiny_ds):
    empty = tiny_dataset(tmp_path / "empty", n_test=0)
    with pytest.raises(TestSetError, match="no kept images in split 'test'"):
        T.generate_testset(empty, "gfpgan", 0, tmp_path / "t1")
    with pytest.raises(TestSetError, match="not in the dataset split"):
        T.generate_testset(tiny_ds, "gfpgan", 0, tmp_path / "t2", ids=["a_0", "zzz_9"])
    with pytest.raises(TestSetError, match="seed"):
        T.generate_testset(tiny_ds, "gfpgan", "0", tmp_path / "t3")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        T.generate_testset(tmp_path / "nodata", "gfpgan", 0, tmp_path / "t4")


def test_verify(full, tmp_path):
    out, _ = full
    rep = T.verify_testset(out)
    assert rep.passed and rep.ok == 6 and rep.encoding_only == 0
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    lq = (copy / "lq" / "a_3.png")
    from bfrcore.imageio import read_image, write_png

    arr = read_image(lq).copy()
    arr[0, 0, 0] ^= 1
    write_png(lq, arr)
    rep = T.verify_testset(copy)
    assert not rep.passed and rep.file_changed == ["a_3"] and rep.ok == 6
    info = json.loads((copy / "testset.json").read_text())
    info["seed"] = 1  # regeneration now disagrees with every recorded image
    (copy / "testset.json").write_text(json.dumps(info))
    rep = T.verify_testset(copy)
    assert not rep.passed and len(rep.mismatched) == 6
    assert rep.mismatched[0]["reason"] == "recorded seed is not item_seed(seed, image_id)"
    df = pd.read_parquet(copy / "params.parquet")
    df["seed"] = [T.item_seed(1, i) for i in df["image_id"]]
    df.to_parquet(copy / "params.parquet", index=False)
    rep = T.verify_testset(copy)
    assert not rep.passed and len(rep.mismatched) == 6 and rep.mismatched[0]["max_abs_diff"] > 0


# ----------------------------------------------------------------------------------------------- CLI
def _bench(argv):
    from bfrcli.bench import main

    return main(argv)


def test_cli(tiny_ds, tmp_path, capsys):
    assert _bench(["degrade", "--list"]) == 0
    out = capsys.readouterr().out
    assert "gfpgan" in out and "refldm-severe" in out and "celebref-x16" in out
    assert _bench(["degrade", "--show", "celebref-x8"]) == 0
    yaml_text = capsys.readouterr().out
    assert "name: celebref-x8" in yaml_text
    assert _bench(["-q", "degrade", "--dataset", str(tiny_ds), "--preset", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nversion: '1'\nnoise: {sigma: [9, 1]}\n")
    assert _bench(["-q", "degrade", "--dataset", str(tiny_ds), "--preset", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "noise.sigma: lo 9.0 > hi 1.0" in capsys.readouterr().err
    assert _bench(["-q", "degrade", "--preset", "gfpgan"]) == 2
    assert "needs --dataset, --out" in capsys.readouterr().err
    custom = tmp_path / "custom.yaml"
    custom.write_text(yaml_text.replace("name: celebref-x8", "name: my-x8"))
    t = tmp_path / "t"
    ids = tmp_path / "ids.txt"
    ids.write_text("a_0\n# comment\na_5\n")
    rc = _bench(["-q", "degrade", "--dataset", str(tiny_ds), "--preset", str(custom), "--seed", "7",
                 "--out", str(t), "--ids", f"@{ids}"])
    assert rc == 0
    assert "2 done" in capsys.readouterr().out
    assert TestSet.load(t).preset_name == "my-x8" and TestSet.load(t).image_ids == ["a_0", "a_5"]
    assert _bench(["-q", "degrade", "--verify", str(t)]) == 0
    assert "2/2 images regenerate identically" in capsys.readouterr().out
    (t / "lq" / "a_5.png").unlink()
    assert _bench(["-q", "degrade", "--verify", str(t)]) == 1
    assert "VERIFY FAILED" in capsys.readouterr().out
    assert _bench(["-q", "degrade", "--verify", str(tmp_path)]) == 2


@pytest.mark.shared_data
def test_real_faces_and_training_path(mini_dataset, tmp_path):
    """512x512 CelebRef-HQ faces: a ladder test set, and the training degrader reproduces it (epoch=None)."""
    from degradations.training import OnTheFlyDegrader

    res = T.generate_testset(mini_dataset, "celebref-x8", 3, tmp_path / "x8", limit=2)
    ts = TestSet.load(tmp_path / "x8")
    assert res.n_images == 2 and ts.read_lq(ts.image_ids[0]).shape == (512, 512, 3)
    row = ts.params_of(ts.image_ids[0])
    assert (row["lq_height"], row["lq_width"]) == (64, 64) and row["jpeg_quality"] == 60
    deg = OnTheFlyDegrader("celebref-x8", 3)
    for iid in ts.image_ids:
        lq, _ = deg(ts.read_gt(iid), iid, epoch=None)
        np.testing.assert_array_equal(lq, ts.read_lq(iid))
