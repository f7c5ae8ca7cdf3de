"""Tables and exports: best per column from each metric's recorded higher_is_better, CIs, hashes, CSV/Markdown."""

from __future__ import annotations

import csv
import io

import pandas as pd

from leaderboard import export, store, tables


def _row(model, metric, mean, hib, ts="t1", mode="generic", weights="w" * 64, ci=None):
    base = {c: None for c in store.STORE_COLUMNS}
    base.update(model=model, model_config="", weights_name="wn", weights_sha256=weights, mode=mode,
                testset_name=ts, testset_hash=("a" if ts == "t1" else "b") * 64, testset_path="", preset="p",
                preset_version="1", severity=4.0, dataset_hash="d" * 64, n_images=10, n_scored=10, n_failed=0,
                metric=metric, mean=mean, ci_low=None if ci is None else ci[0], ci_high=None if ci is None else ci[1],
                n=10, higher_is_better=hib, convention="", unavailable=None, created="", device="", seconds=None,
                versions="{}", summary_path="", run_dir="")
    base["run_id"] = "|".join(str(base[k]) for k in store.RUN_KEY)
    return base


def _df(rows):
    return pd.DataFrame(rows, columns=list(store.STORE_COLUMNS))


def test_best_follows_recorded_direction_not_the_metric_name():
    # 'psnr' deliberately declared lower-is-better here: the table must obey the summary, not the name
    df = _df([_row("a", "psnr", 30.0, False), _row("b", "psnr", 20.0, False),
              _row("a", "weird", 1.0, True), _row("b", "weird", 2.0, True)])
    (t,) = tables.build_tables(df)
    assert t.best_models("psnr") == ["b"]
    assert t.best_models("weird") == ["b"]
    assert t.header("psnr") == "PSNR ↓" and t.header("weird") == "WEIRD ↑"
    df2 = _df([_row("a", "psnr", 30.0, True), _row("b", "psnr", 20.0, True)])
    assert tables.build_tables(df2)[0].best_models("psnr") == ["a"]


def test_ties_conflicts_and_missing_values():
    df = _df([_row("a", "m", 1.0, True), _row("b", "m", 1.0, True), _row("c", "m", 0.5, True),
              _row("a", "x", 1.0, True), _row("b", "x", 2.0, False),
              _row("a", "y", None, True), _row("b", "y", 3.0, True)])
    (t,) = tables.build_tables(df)
    assert t.best_models("m") == ["a", "b"]
    assert t.best_models("x") == [] and any("disagree" in n for n in t.notes)
    assert t.higher_is_better["x"] is None and t.header("x") == "X"
    assert t.best_models("y") == ["b"]
    assert tables.rank_values([1.0, 1.0, 0.5, None], True) == [1, 1, 3, None]
    assert tables.rank_values([1.0, 1.0, 0.5], False) == [2, 2, 1]


def test_tables_per_testset_and_mode_from_real_runs(lb_inputs):
    df, _ = store.collect([lb_inputs["results"]])
    ts = tables.build_tables(df)
    assert [(t.testset_name, t.mode) for t in ts] == [("celebref-x4", "generic"), ("celebref-x4", "specific"),
                                                      ("celebref-x8", "generic"), ("celebref-x8", "specific")]
    for t in ts:
        assert [r.model for r in t.rows] == ["asffnet", "bicubic", "dmdnet"]
        assert all(r.testset_hash == t.testset_hash for r in t.rows)
        # best per column computed independently from the raw values and the recorded direction
        for m in ("psnr", "ssim", "lpips", "ids"):
            sub = df[(df["testset_hash"] == t.testset_hash) & (df["mode"] == t.mode) & (df["metric"] == m)]
            hib = bool(sub["higher_is_better"].iloc[0])
            best = sub.loc[sub["mean"].idxmax() if hib else sub["mean"].idxmin(), "model"]
            assert t.best_models(m) == [f"{best} (tiny)"]
        assert t.best_models("fid") == []


def test_markdown_and_csv_exports(lb_inputs):
    df, _ = store.collect([lb_inputs["results"]])
    ts = tables.build_tables(df)
    md = export.to_markdown(ts, [store.Skipped("/x/summary.json", "format is None")])
    assert md.count("## celebref-") == 4
    assert "| Model | Weights | Test-set hash | Scored | PSNR ↑ | SSIM ↑ | LPIPS ↓ | FID | IDS ↓ |" in md
    t = ts[0]
    dm = next(r for r in t.rows if r.model == "dmdnet")
    c = dm.cells["psnr"]
    # bold best value followed by its CI
    assert f"**{c.text}** [{tables.fmt_value(c.ci_low, c.mean)}, {tables.fmt_value(c.ci_high, c.mean)}]" in md
    assert dm.weights_sha256[:12] in md and t.testset_hash[:12] in md
    assert "FID n/a: missing pretrained file" in md
    assert "/x/summary.json`: format is None" in md

    header, rows = export.ntire_rows(ts)
    assert header[:9] == ["Dataset", "Mode", "Model", "Model_config", "Weights", "Weights_sha256", "Testset_hash",
                          "N_images", "N_scored"]
    assert header[9:14] == ["PSNR", "SSIM", "LPIPS", "FID", "IDS"]
    assert "PSNR_ci95_low" in header and "IDS_ci95_high" in header
    recs = list(csv.DictReader(io.StringIO(export._csv_text(header, rows))))
    assert len(recs) == df["run_id"].nunique()
    r = next(x for x in recs if x["Model"] == "dmdnet" and x["Dataset"] == "celebref-x4" and x["Mode"] == "generic")
    assert float(r["PSNR"]) == c.mean and r["FID"] == "" and len(r["Weights_sha256"]) == 64
    assert float(r["PSNR_ci95_low"]) == c.ci_low

    ah, arows = export.aggregator_rows(ts)
    assert ah == ["Task", "Dataset", "Model", "Weights_sha256", "Testset_hash", "Metric", "Result",
                  "Higher_is_better", "Rank"]
    lp = [x for x in arows if x[1] == "celebref-x4" and x[5] == "LPIPS" and x[0].endswith("(generic)")]
    assert {x[2]: x[8] for x in lp} == {"dmdnet (tiny)": 1, "asffnet (tiny)": 2, "bicubic (tiny)": 3}
    assert all(x[7] == "false" for x in lp)
    assert not any(x[5] == "FID" for x in arows)
