"""The results store: collecting summary.json files, validation, skip-and-report, duplicates, parquet round trip."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest

from leaderboard import store
from tests.leaderboard.conftest import MODELS, SEVERITIES


def test_collect_reads_every_run_with_hashes_and_directions(lb_inputs):
    df, skipped = store.collect([lb_inputs["results"]])
    assert skipped == []
    n_runs = len(MODELS) * len(SEVERITIES) * 2
    assert df["run_id"].nunique() == n_runs
    assert list(df.columns) == list(store.STORE_COLUMNS)
    # 4 computed metrics + FID declared unavailable, per run
    assert len(df) == n_runs * 5
    fid = df[df["metric"] == "fid"]
    assert fid["mean"].isna().all() and fid["unavailable"].str.contains("pytorch-fid-inception").all()
    hib = df.dropna(subset=["higher_is_better"]).groupby("metric")["higher_is_better"].unique()
    assert list(hib["psnr"]) == [True] and list(hib["lpips"]) == [False] and list(hib["ids"]) == [False]
    # every row carries model, weights hash (empty for the weight-less bicubic) and test-set hash
    dm = df[df["model"] == "dmdnet"]
    assert (dm["weights_sha256"].str.len() == 64).all()
    assert (df[df["model"] == "bicubic"]["weights_sha256"] == "").all()
    assert (df["testset_hash"].str.len() == 64).all()
    assert set(df["severity"]) == {4.0, 8.0}
    # values are exactly what the summaries say
    one = json.loads((lb_inputs["results"] / "dmdnet" / "celebref-x8" / "generic" / "summary.json").read_text())
    row = df[(df["model"] == "dmdnet") & (df["testset_name"] == "celebref-x8") & (df["mode"] == "generic")
             & (df["metric"] == "psnr")].iloc[0]
    assert row["mean"] == one["metrics"]["psnr"]["mean"]
    assert [row["ci_low"], row["ci_high"]] == one["metrics"]["psnr"]["ci95"]


def _copy_run(src, dst):
    shutil.copytree(src, dst)
    return dst / "summary.json"


def test_malformed_files_are_skipped_with_reasons(lb_inputs, tmp_path):
    good = lb_inputs["results"] / "dmdnet" / "celebref-x4" / "generic"
    res = tmp_path / "res"
    s_ok = _copy_run(good, res / "ok")
    (res / "badjson").mkdir(parents=True)
    (res / "badjson" / "summary.json").write_text("{not json")
    doc = json.loads(s_ok.read_text())

    def variant(name, mutate):
        d = json.loads(json.dumps(doc))
        mutate(d)
        p = res / name / "summary.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(d))

    variant("wrongformat", lambda d: d.update(format="celebref.summary/0"))
    variant("nomode", lambda d: d.update(mode="blind"))
    variant("nohash", lambda d: d["testset"].pop("hash"))
    variant("metrics_list", lambda d: d.update(metrics=[1, 2]))

    def no_direction(d):
        d["model"] = "other"
        del d["metrics"]["lpips"]["higher_is_better"]
        d["metrics"]["ssim"]["mean"] = "high"

    variant("nodirection", no_direction)
    df, skipped = store.collect([res])
    by_dir = {(s.path.split("/")[-2], s.metric): s.reason for s in skipped}
    assert "not readable JSON" in by_dir[("badjson", None)]
    assert "celebref.summary/0" in by_dir[("wrongformat", None)]
    assert "'mode'" in by_dir[("nomode", None)]
    assert "testset.hash" in by_dir[("nohash", None)]
    assert "'metrics'" in by_dir[("metrics_list", None)]
    assert "higher_is_better" in by_dir[("nodirection", "lpips")]
    assert "'mean'" in by_dir[("nodirection", "ssim")]
    # the valid file and the valid metrics of the partly-valid file are kept
    assert set(df["model"]) == {"dmdnet", "other"}
    other = set(df[df["model"] == "other"]["metric"])
    assert other == {"psnr", "ids", "fid"}


def test_duplicate_runs_keep_the_newest(lb_inputs, tmp_path):
    good = lb_inputs["results"] / "asffnet" / "celebref-x8" / "specific"
    old = _copy_run(good, tmp_path / "a_old")
    new = _copy_run(good, tmp_path / "b_new")
    d = json.loads(new.read_text())
    d["created"] = "2027-01-01T00:00:00Z"
    d["metrics"]["psnr"]["mean"] = 12.5
    new.write_text(json.dumps(d))
    df, skipped = store.collect([tmp_path])
    assert df["run_id"].nunique() == 1
    assert df[df["metric"] == "psnr"]["mean"].item() == 12.5
    assert len(skipped) == 1 and skipped[0].path == str(old.resolve()) and "duplicate" in skipped[0].reason


def test_store_round_trip_and_missing_folder(lb_inputs, tmp_path):
    df, _ = store.collect([lb_inputs["results"]])
    p = store.write_store(df, tmp_path / "results.parquet")
    back = store.read_store(p)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(p).metadata[b"celebref"])
    assert meta["format"] == store.STORE_FORMAT
    with pytest.raises(FileNotFoundError):
        store.collect([tmp_path / "nope"])
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(store.SummaryFormatError):
        store.read_store(tmp_path / "other.parquet")


def test_nonfinite_values_become_missing(lb_inputs, tmp_path):
    s = _copy_run(lb_inputs["results"] / "bicubic" / "celebref-x4" / "generic", tmp_path / "r")
    d = json.loads(s.read_text())
    d["metrics"]["psnr"]["mean"] = float("inf")  # json writes Infinity
    s.write_text(json.dumps(d))
    df, skipped = store.collect([tmp_path])
    assert skipped == []
    assert math.isnan(df[df["metric"] == "psnr"]["mean"].item())


def test_untrained_runs_are_labelled_in_the_weights_column(lb_inputs, tmp_path):
    s = _copy_run(lb_inputs["results"] / "dmdnet" / "celebref-x4" / "generic", tmp_path / "r")
    d = json.loads(s.read_text())
    d["weights"] = {"name": None, "sha256": None, "untrained": True, "note": "UNTRAINED (random-init) weights"}
    s.write_text(json.dumps(d))
    df, skipped = store.collect([tmp_path])
    assert skipped == [] and (df["weights_name"] == "UNTRAINED (random init)").all()
