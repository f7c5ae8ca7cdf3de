"""Format contracts (bfrcore.formats): each schema accepts what the real producer writes and rejects a corrupted
copy with a FormatError naming the file and the field; the CLIs turn a malformed input into exit code 2 with one
line ``<file>: field '<field>': expected <...>, got <...>``."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from bfrcore import cliutil
from bfrcore.formats import FormatError
from bfrcore.formats import dataset as fds
from bfrcore.formats import hub as fhub
from bfrcore.formats import results as fres
from bfrcore.formats import run as frun
from bfrcore.formats import testset as fts

pytestmark = pytest.mark.shared_data

DATASET_FILES = ("manifest.parquet", "identities.parquet", "references.parquet", "build.json")


def _bench(argv) -> tuple[int, str, str]:
    from bfrcli.bench import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _raises(fn, path, field) -> FormatError:
    with pytest.raises(FormatError) as ei:
        fn()
    e = ei.value
    assert Path(e.path) == Path(path) and e.field == field, str(e)
    assert str(e) == f"{e.path}: field '{field}': expected {e.expected}, got {e.got}"
    return e


def _copy_dataset(src: Path, dst: Path) -> Path:
    """The dataset's tables and build.json (the images are linked: readers of the tables never open them)."""
    dst.mkdir(parents=True)
    for name in DATASET_FILES:
        shutil.copy2(src / name, dst / name)
    (dst / "images").symlink_to(src / "images")
    return dst


def _edit_json(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def real_testset(mini_dataset, tmp_path_factory) -> Path:
    """A real TESTSET (degradations.testset.generate_testset) of two mini_dataset test images."""
    from degradations.testset import generate_testset

    out = tmp_path_factory.mktemp("fmt_testset") / "x4"
    generate_testset(mini_dataset, "celebref-x4", 5, out, limit=2)
    return out


@pytest.fixture(scope="module")
def real_results(real_testset, tmp_path_factory) -> Path:
    """A real RESULTS run folder written by `bench score` (PSNR of the LQ inputs themselves)."""
    out = tmp_path_factory.mktemp("fmt_results")
    rc, stdout, err = _bench(["score", "--pred", str(real_testset / "lq"), "--testset", str(real_testset),
                              "--out", str(out), "--name", "identity", "--metrics", "psnr", "--bootstrap", "50",
                              "--quiet"])
    assert rc == 0, err
    run = out / "identity" / "x4" / "generic"
    assert (run / "summary.json").is_file()
    return run


@pytest.fixture(scope="module")
def real_run(mini_dataset, tmp_path_factory) -> Path:
    """A real RUN folder: two training steps of the trainer's test model (checkpoint, summary, config.yaml)."""
    from baselines.training.config import parse_config
    from baselines.training.trainer import Trainer
    from tests.baselines.test_training import base_raw

    out = tmp_path_factory.mktemp("fmt_run") / "run"
    raw = base_raw(mini_dataset, out, schedule={"total_steps": 2, "warmup_steps": 1},
                   loss={"l1": 1.0, "perceptual": 0.0, "adversarial": 0.0, "component_adversarial": 0.0})
    Trainer(parse_config(raw), resume=None).fit()
    return out


@pytest.fixture(scope="module")
def real_hub(mini_dataset, real_testset, tmp_path_factory) -> Path:
    """A real Hub upload folder (metadata only) of mini_dataset and the test set."""
    from celebref.publish import build_folder

    out = tmp_path_factory.mktemp("fmt_hub") / "hub"
    build_folder(mini_dataset, out, repo_id="someone/celebref-mini", testsets=[real_testset])
    return out


# ----------------------------------------------------------------------------------------------- errors, CLI
def test_format_error_line_and_cli_exit_codes(capsys):
    e = FormatError("/d/manifest.parquet", "kept", "a bool column", "type string")
    assert str(e) == "/d/manifest.parquet: field 'kept': expected a bool column, got type string"
    assert isinstance(e, ValueError) and e.path == "/d/manifest.parquet" and e.field == "kept"
    args = argparse.Namespace(verbose=0, command="x")

    def bad_input(_):
        raise e

    def bad_writer(_):
        raise FormatError("/o/summary.json", "n_images", "an integer", "'3'", writing=True)

    assert cliutil.run_guarded(bad_input, args) == cliutil.EXIT_USAGE
    assert capsys.readouterr().err.strip() == f"error: {e}"
    assert cliutil.run_guarded(bad_writer, args) == cliutil.EXIT_FAILURE  # our own bug, not bad input
    back = pickle.loads(pickle.dumps(FormatError("/p", "f", "x", "y", writing=True)))  # from worker processes
    assert (back.path, back.field, back.expected, back.got, back.writing) == ("/p", "f", "x", "y", True)


def test_format_versions_match_the_producers():
    from baselines.registry import CHECKPOINT_FORMAT
    from baselines.training.config import CONFIG_FORMAT
    from bfrcore.dataset import FORMAT_VERSION
    from bfrcore.results import SUMMARY_FORMAT
    from bfrcore.testset import FORMAT_VERSION as TS_FORMAT

    assert FORMAT_VERSION == fds.FORMAT == "celebref.dataset/1"
    assert TS_FORMAT == fts.FORMAT == "celebref.testset/1"
    assert SUMMARY_FORMAT == fres.FORMAT == "celebref.summary/1"
    assert CHECKPOINT_FORMAT == frun.FORMAT and CONFIG_FORMAT == frun.TRAIN_CONFIG_FORMAT
    assert fhub.FORMAT == "celebref.hub/1"


# ----------------------------------------------------------------------------------------------- DATASET
def test_dataset_accepts_the_real_fixture(mini_dataset):
    from bfrcore.dataset import FaceDataset
    from bfrcore.formats import parquet_schema

    ds = FaceDataset.load(mini_dataset)  # validates every file
    fds.validate_manifest(ds.manifest, "m", schema=parquet_schema(mini_dataset / "manifest.parquet"))
    fds.validate_identities(ds.identities, "i")
    fds.validate_references(ds.references, "r")
    info = fds.validate_build_info(ds.info, "b")
    assert info.params.size == 512 and info.counts.kept_images == 49 and info.dataset_hash == ds.hash


@pytest.mark.parametrize("name, mutate, field", [
    ("manifest.parquet", lambda df: df.drop(columns=["split"]), "split"),
    ("manifest.parquet", lambda df: df.assign(kept=df["kept"].map({True: "yes", False: "no"})), "kept"),
    ("manifest.parquet", lambda df: df.assign(split=df["split"].where(df.index > 0, "val")), "split"),
    ("manifest.parquet", lambda df: df.assign(sha256=df["sha256"].where(df.index > 2, "abc")), "sha256"),
    ("manifest.parquet", lambda df: df.assign(landmarks=[None if v is None else list(v[:134]) for v in df["landmarks"]]), "landmarks"),
    ("identities.parquet", lambda df: df.assign(n_images=df["n_images"].astype("float64")), "n_images"),
    ("references.parquet", lambda df: df.assign(ref_image_id=df["image_id"]), "ref_image_id"),
])
def test_dataset_rejects_corrupted_tables(mini_dataset, tmp_path, name, mutate, field):
    from bfrcore.dataset import FaceDataset

    root = _copy_dataset(mini_dataset, tmp_path / "ds")
    mutate(pd.read_parquet(root / name)).to_parquet(root / name, index=False)
    _raises(lambda: FaceDataset.load(root), root / name, field)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("dataset_hash"), "dataset_hash"),
    (lambda d: d["counts"].update(kept_images="49"), "counts.kept_images"),
    (lambda d: d["params"].update(size=512.0), "params.size"),
    (lambda d: d.update(format="celebref.dataset/0"), "format"),
])
def test_dataset_rejects_corrupted_build_json(mini_dataset, tmp_path, mutate, field):
    from bfrcore.dataset import FaceDataset

    root = _copy_dataset(mini_dataset, tmp_path / "ds")
    _edit_json(root / "build.json", mutate)
    _raises(lambda: FaceDataset.load(root), root / "build.json", field)


def test_dataset_writer_validates_before_writing(mini_dataset, tmp_path):
    from bfrcore.dataset import FaceDataset, write_dataset

    ds = FaceDataset.load(mini_dataset)
    man = ds.manifest.copy()
    man.loc[0, "split"] = "validation"
    out = tmp_path / "new"
    e = _raises(lambda: write_dataset(out, man, build_info=ds.info), out / "manifest.parquet", "split")
    assert e.writing and not out.exists()  # validated before anything is written


def test_dataset_without_kept_images_is_valid(mini_dataset, tmp_path):
    """What the builder writes when every face is rejected: empty identities/references tables, whose columns
    parquet stores with arrow type null."""
    from bfrcore.dataset import FaceDataset, write_dataset

    man = FaceDataset.load(mini_dataset).manifest.assign(kept=False, reject_stage="quality", reject_reason="blurry")
    write_dataset(tmp_path / "none", man, build_info={"params": {"size": 512}})  # typed empty identities
    assert FaceDataset.load(tmp_path / "none").image_ids() == []
    # as celebref.pipeline writes it: pd.DataFrame([], columns=[...]) -> object columns -> arrow null
    ident = pd.DataFrame([], columns=["identity", "name", "aliases", "n_images", "split", "cluster"])
    write_dataset(tmp_path / "built", man, identities=ident, build_info={"params": {"size": 512}})
    ds = FaceDataset.load(tmp_path / "built")
    assert ds.image_ids() == [] and len(ds.identities) == 0
    assert pq.read_schema(tmp_path / "built" / "identities.parquet").field("identity").type == pa.null()


def test_cli_maps_a_corrupted_dataset_to_exit_2(mini_dataset, tmp_path):
    root = _copy_dataset(mini_dataset, tmp_path / "ds")
    df = pd.read_parquet(root / "manifest.parquet")
    df.assign(kept=df["kept"].astype(str)).to_parquet(root / "manifest.parquet", index=False)
    rc, _, err = _bench(["degrade", "--dataset", str(root), "--preset", "celebref-x4", "--out",
                         str(tmp_path / "t"), "--limit", "1", "--quiet"])
    assert rc == 2
    assert err.strip().splitlines()[-1] == (f"error: {root / 'manifest.parquet'}: field 'kept': expected a bool "
                                            "column without nulls, got type large_string")
    assert not (tmp_path / "t" / "testset.json").exists()


# ----------------------------------------------------------------------------------------------- TESTSET
def test_testset_accepts_the_real_producer(real_testset):
    from bfrcore.testset import TestSet

    ts = TestSet.load(real_testset)
    assert len(ts.image_ids) == 2
    info = fts.validate_info(json.loads((real_testset / "testset.json").read_text()), "t")
    assert info.n_images == 2 and info.testset_hash == ts.hash
    fts.validate_params(pd.read_parquet(real_testset / "params.parquet"), "p", n_images=2)


def _copy_testset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(seed="5"), "seed"),
    (lambda d: d.pop("testset_hash"), "testset_hash"),
    (lambda d: d["dataset"].update(hash="not-a-hash"), "dataset.hash"),
    (lambda d: d.update(n_images=0), "n_images"),
    (lambda d: d.update(skipped=[{"image_id": "x"}]), "skipped[0].reason"),
])
def test_testset_rejects_corrupted_info(real_testset, tmp_path, mutate, field):
    from bfrcore.testset import TestSet

    root = _copy_testset(real_testset, tmp_path / "t")
    _edit_json(root / "testset.json", mutate)
    _raises(lambda: TestSet.load(root), root / "testset.json", field)


@pytest.mark.parametrize("mutate, field", [
    (lambda df: df.drop(columns=["lq_sha256"]), "lq_sha256"),
    (lambda df: df.assign(seed=df["seed"].astype(str)), "seed"),
    (lambda df: df.iloc[:1], "image_id"),  # testset.json says 2 images
    (lambda df: pd.concat([df.iloc[:1], df.iloc[:1]]), "image_id"),  # 2 rows, one id twice
    (lambda df: df.assign(scale=[[1.0, 2.0]] * len(df)), "scale"),  # parameters are scalars
])
def test_testset_rejects_corrupted_params(real_testset, tmp_path, mutate, field):
    from bfrcore.testset import TestSet

    root = _copy_testset(real_testset, tmp_path / "t")
    mutate(pd.read_parquet(root / "params.parquet")).to_parquet(root / "params.parquet", index=False)
    _raises(lambda: TestSet.load(root), root / "params.parquet", field)


def test_cli_maps_a_corrupted_testset_to_exit_2(real_testset, tmp_path):
    root = _copy_testset(real_testset, tmp_path / "t")
    _edit_json(root / "testset.json", lambda d: d.update(severity="high"))
    rc, _, err = _bench(["degrade", "--verify", str(root), "--quiet"])
    assert rc == 2
    assert err.strip().splitlines()[-1] == (f"error: {root / 'testset.json'}: field 'severity': expected a valid "
                                            "number, got 'high'")


# ----------------------------------------------------------------------------------------------- RESULTS
def test_results_accept_the_real_producer(real_results):
    from leaderboard import store

    doc = json.loads((real_results / "summary.json").read_text())
    assert fres.validate_summary(doc, "s") == []
    fres.validate_metrics_table(pd.read_parquet(real_results / "metrics.parquet"), "m", metric_columns=["psnr"])
    df, skipped = store.collect([real_results])
    assert skipped == [] and set(df["metric"]) == {"psnr"}


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(n_images="2"), "n_images"),
    (lambda d: d.update(mode="blind"), "mode"),
    (lambda d: d["testset"].pop("hash"), "testset.hash"),
    (lambda d: d.update(failures=[{"reason": "x"}]), "failures[0].image_id"),
])
def test_results_reject_corrupted_summaries(real_results, tmp_path, mutate, field):
    from leaderboard import store

    run = tmp_path / "r"
    shutil.copytree(real_results, run)
    _edit_json(run / "summary.json", mutate)
    _raises(lambda: fres.validate_summary(json.loads((run / "summary.json").read_text()), run / "summary.json"),
            run / "summary.json", field)
    df, skipped = store.collect([run])  # a batch reader: skipped with the reason, nothing else lost
    assert df.empty and len(skipped) == 1 and skipped[0].reason.startswith(f"field '{field}': expected ")


def test_results_metric_entries_are_dropped_one_by_one(real_results):
    doc = json.loads((real_results / "summary.json").read_text())
    doc["metrics"]["ssim"] = {"mean": 0.5, "higher_is_better": "yes"}
    bad = fres.validate_summary(doc, "s.json")
    assert [e.field for e in bad] == ["metrics.ssim.higher_is_better"]
    with pytest.raises(FormatError):  # but our writer never writes such an entry
        fres.validate_summary(doc, "s.json", writing=True)


def test_results_writer_validates_before_writing(real_results, tmp_path):
    from bfrcore.results import ResultRun

    doc = json.loads((real_results / "summary.json").read_text())
    doc["metrics"]["psnr"].pop("higher_is_better")
    df = pd.read_parquet(real_results / "metrics.parquet")
    run = ResultRun(tmp_path / "r", {"command": "test"})
    e = _raises(lambda: run.finalize(df, doc), tmp_path / "r" / "summary.json", "metrics.psnr.higher_is_better")
    assert e.writing
    assert not (tmp_path / "r" / "summary.json").exists() and not (tmp_path / "r" / "metrics.parquet").exists()
    e = _raises(lambda: run.finalize(df.drop(columns=["status"]), json.loads((real_results / "summary.json")
                                                                            .read_text())),
                tmp_path / "r" / "metrics.parquet", "status")
    assert not (tmp_path / "r" / "metrics.parquet").exists()


def test_cli_leaderboard_maps_a_corrupted_summary_to_exit_2(real_results, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(real_results, run)
    _edit_json(run / "summary.json", lambda d: d.update(n_scored=-1))
    rc, _, err = _bench(["leaderboard", "--results", str(run), "--out", str(tmp_path / "lb"), "--quiet"])
    assert rc == 2
    assert f"{(run / 'summary.json').resolve()}: field 'n_scored': expected greater than or equal to 0, got -1" \
        in err


def test_cli_score_maps_a_corrupted_metrics_table_to_exit_2(real_results, real_testset, tmp_path):
    """A rerun resumes from the folder's metrics.parquet: a corrupted one is refused, never half-read."""
    out = tmp_path / "res"
    shutil.copytree(real_results, out / "identity" / "x4" / "generic")
    mp = out / "identity" / "x4" / "generic" / "metrics.parquet"
    pd.read_parquet(mp).assign(n_refs="none").to_parquet(mp, index=False)
    rc, _, err = _bench(["score", "--pred", str(real_testset / "lq"), "--testset", str(real_testset), "--out",
                         str(out), "--name", "identity", "--metrics", "psnr", "--bootstrap", "50", "--quiet"])
    assert rc == 2
    assert err.strip().splitlines()[-1] == (f"error: {mp}: field 'n_refs': expected an integer column, got type "
                                            "large_string")


# ----------------------------------------------------------------------------------------------- RUN
def test_run_accepts_the_real_producer(real_run):
    from baselines.training import checkpoint as ckpt

    ck = ckpt.load_checkpoint(ckpt.last_path(real_run))  # validates
    assert ck["step"] == 2
    frun.validate_train_summary(json.loads((real_run / "summary.json").read_text()), "s")
    frun.validate_train_config(yaml.safe_load((real_run / "config.yaml").read_text()), "c")


@pytest.mark.parametrize("mutate, field", [
    (lambda ck: ck.update(step="2"), "step"),
    (lambda ck: ck.pop("state_dict"), "state_dict"),
    (lambda ck: ck["state_dict"].update(extra=[1.0]), "state_dict.extra"),
    (lambda ck: ck.pop("optimizers"), "optimizers"),
    (lambda ck: ck.update(model=""), "model"),
])
def test_run_rejects_corrupted_checkpoints(real_run, tmp_path, mutate, field):
    import torch

    from baselines.training import checkpoint as ckpt

    ck = torch.load(ckpt.last_path(real_run), map_location="cpu", weights_only=True)
    mutate(ck)
    p = tmp_path / "bad.pt"
    torch.save(ck, p)
    _raises(lambda: ckpt.load_checkpoint(p), p, field)
    e = _raises(lambda: ckpt.save_checkpoint(tmp_path / "out", 3, ck), ckpt.step_path(tmp_path / "out", 3), field)
    assert e.writing and not ckpt.checkpoint_dir(tmp_path / "out").exists()


def test_cli_train_maps_a_corrupted_resume_checkpoint_to_exit_2(real_run, tmp_path):
    import torch

    from baselines.training import checkpoint as ckpt

    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    last = ckpt.last_path(run)
    ck = torch.load(last, map_location="cpu", weights_only=True)
    ck["ema_updates"] = -1
    last.unlink()  # a hard link to the step file
    torch.save(ck, last)
    rc, _, err = _bench(["train", "--config", str(run / "config.yaml"), "--out", str(run), "--resume", "auto",
                         "--quiet"])
    assert rc == 2
    assert err.strip().splitlines()[-1] == (f"error: {last}: field 'ema_updates': expected greater than or equal "
                                            "to 0, got -1")


def test_run_rejects_a_truncated_checkpoint(real_run, tmp_path):
    from baselines.training import checkpoint as ckpt

    p = tmp_path / "cut.pt"
    p.write_bytes(ckpt.last_path(real_run).read_bytes()[:1000])
    _raises(lambda: ckpt.load_checkpoint(p), p, "(file)")


@pytest.mark.parametrize("which, mutate, field", [
    ("summary.json", lambda d: d.pop("dataset"), "dataset"),
    ("summary.json", lambda d: d["batch_size"].update({"global": "2"}), "batch_size.global"),
    ("config.yaml", lambda d: d.update(batch_size="two"), "batch_size"),
    ("config.yaml", lambda d: d["schedule"].pop("total_steps"), "schedule.total_steps"),
])
def test_run_rejects_corrupted_documents(real_run, which, mutate, field):
    path = real_run / which
    doc = yaml.safe_load(path.read_text())  # JSON is YAML
    mutate(doc)
    fn = frun.validate_train_summary if which == "summary.json" else frun.validate_train_config
    _raises(lambda: fn(doc, path), path, field)


# ----------------------------------------------------------------------------------------------- Hub folder
def test_hub_accepts_the_real_producer(real_hub):
    card = fhub.validate_hub_folder(real_hub)
    assert {c.config_name for c in card.configs} >= {"hq", "train", "test", "references", "x4"}


def _copy_hub(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_hub_rejects_corrupted_front_matter(real_hub, tmp_path):
    hub = _copy_hub(real_hub, tmp_path / "h")
    readme = hub / "README.md"
    text = readme.read_text()
    _, fm, body = text.split("---\n", 2)
    doc = yaml.safe_load(fm)
    info = next(i for i in doc["dataset_info"] if i["config_name"] == "hq")
    info["splits"][0]["num_examples"] += 1
    readme.write_text("---\n" + yaml.safe_dump(doc, sort_keys=False) + "---\n" + body)
    split = info["splits"][0]["name"]
    _raises(lambda: fhub.validate_hub_folder(hub), readme, f"dataset_info.hq.splits.{split}.num_examples")
    for c in doc["configs"]:
        c.pop("default", None)
    readme.write_text("---\n" + yaml.safe_dump(doc, sort_keys=False) + "---\n" + body)
    _raises(lambda: fhub.validate_hub_folder(hub), readme, "configs")
    doc.pop("configs")
    readme.write_text("---\n" + yaml.safe_dump(doc, sort_keys=False) + "---\n" + body)
    _raises(lambda: fhub.validate_hub_folder(hub), readme, "configs")


def test_hub_rejects_corrupted_shards_and_documents(real_hub, tmp_path):
    hub = _copy_hub(real_hub, tmp_path / "h")
    shard = sorted((hub / "data" / "hq").glob("test-*.parquet"))[0]
    t = pq.read_table(shard)
    pq.write_table(t.drop_columns(["sha256"]), shard)
    _raises(lambda: fhub.validate_hub_folder(hub), shard, "sha256")
    pq.write_table(t.set_column(t.schema.get_field_index("identity"), "identity",
                                pa.array([str(v) for v in t.column("identity").to_pylist()])), shard)
    _raises(lambda: fhub.validate_hub_folder(hub), shard, "identity")
    pq.write_table(t, shard)
    fhub.validate_hub_folder(hub)  # restored
    _edit_json(hub / "testsets" / "x4.json", lambda d: d.update(n_images="2"))
    _raises(lambda: fhub.validate_hub_folder(hub), hub / "testsets" / "x4.json", "n_images")
