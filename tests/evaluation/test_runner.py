"""`bench evaluate` / `bench score` end to end on a small real test set (3 CelebRef-HQ test faces, celebref-x8).

Models: ``bicubic`` (at the paper size 512 it is the identity, so its scores are those of the LQ input), ``dmdnet``
tiny (landmarks + references; randomly initialised, only the plumbing is under test) and ``ref_colormatch``
(needs references), plus a test-only model that fails on one image."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from bfrcore.cliutil import UsageError
from bfrcore.errors import InputError
from bfrcore.cpu_allocator import reuse_freed_memory
from bfrcore.imageio import read_image, write_png
from bfrcore.metrics import functional as fn
from bfrcore.results import BASE_COLUMNS
from evaluation.metrics import MetricOptions
from evaluation.runner import EvaluateConfig, evaluate
from evaluation.score import ScoreConfig, score

FAST = ["psnr", "ssim", "niqe", "ids", "lmd"]


@pytest.fixture(scope="module")
def testset(mini_dataset, tmp_path_factory):
    from degradations.testset import generate_testset

    out = tmp_path_factory.mktemp("ts") / "x8"
    generate_testset(mini_dataset, "celebref-x8", 0, out, limit=3)
    return out


def _cfg(testset, out, **kw):
    kw.setdefault("quiet", True)
    kw.setdefault("max_refs", 2)
    kw.setdefault("bootstrap_resamples", 200)
    return EvaluateConfig(testset=testset, out=out, **kw)


@pytest.fixture(scope="module")
def bicubic_run(testset, tmp_path_factory):
    out = tmp_path_factory.mktemp("res")
    s = evaluate(_cfg(testset, out, model="bicubic", config="paper", metrics=FAST + ["lpips_vgg", "fid"]))
    return out, s


def test_results_follow_the_contract(bicubic_run, testset):
    from bfrcore.testset import TestSet

    out, summaries = bicubic_run
    assert [s["mode"] for s in summaries] == ["generic"]  # bicubic does not use references
    d = out / "bicubic" / "x8" / "generic"
    s = json.loads((d / "summary.json").read_text())
    assert s == json.loads(json.dumps(summaries[0]))
    for k in ("format", "model", "model_config", "weights", "mode", "testset", "n_images", "n_scored", "metrics",
              "unavailable", "failures", "created", "versions", "device", "seconds"):
        assert k in s, k
    assert s["cpu_allocator"] == reuse_freed_memory()  # what the CPU run ran with
    ts = TestSet.load(testset)
    assert s["format"] == "celebref.summary/1" and s["model"] == "bicubic" and s["model_config"] == "paper"
    assert s["testset"]["hash"] == ts.hash and s["testset"]["dataset_hash"] == ts.dataset_hash
    assert s["testset"]["preset"] == "celebref-x8" and s["n_images"] == s["n_scored"] == 3
    assert {"celebref-suite", "torch"} <= set(s["versions"])
    for col in ("psnr", "ssim", "niqe", "ids_dlib", "deg_dlib", "l2_dlib", "ids_ref_dlib", "lmd"):
        e = s["metrics"][col]
        assert e["n"] == 3 and len(e["ci95"]) == 2 and e["ci95"][0] <= e["mean"] <= e["ci95"][1], col
        assert isinstance(e["higher_is_better"], bool) and e["convention"] and e["version"], col
    assert s["metrics"]["psnr"]["higher_is_better"] and not s["metrics"]["niqe"]["higher_is_better"]
    # honesty: the missing ones are listed with the fix, not dropped
    assert "bench weights fetch torchvision-vgg16" in s["unavailable"]["lpips_vgg"]
    assert "bench weights fetch pytorch-fid-inception" in s["unavailable"]["fid"]
    assert "bench weights fetch insightface-buffalo_l" in s["unavailable"]["ids_arcface"]
    df = pd.read_parquet(d / "metrics.parquet")
    assert list(df.columns[:len(BASE_COLUMNS)]) == list(BASE_COLUMNS)
    assert df["image_id"].tolist() == ts.image_ids and (df["status"] == "ok").all()
    assert (df["n_refs"] == 0).all() and df["landmarks_source"].isna().all()
    assert sorted(p.stem for p in (d / "restored").glob("*.png")) == ts.image_ids
    assert not (d / ".partial.jsonl").exists()
    from leaderboard.store import validate_summary

    assert validate_summary(s) == []  # the leaderboard reads it without dropping anything


def test_scores_are_those_of_the_saved_images(bicubic_run, testset):
    """bicubic at 512 is the identity: restored PNG == LQ, and the metrics equal a direct recomputation."""
    from bfrcore.testset import TestSet

    out, _ = bicubic_run
    ts = TestSet.load(testset)
    d = out / "bicubic" / "x8" / "generic"
    df = pd.read_parquet(d / "metrics.parquet").set_index("image_id")
    for iid in ts.image_ids:
        pred = read_image(d / "restored" / f"{iid}.png")
        assert np.array_equal(pred, ts.read_lq(iid))
        p = torch.tensor(pred).permute(2, 0, 1)[None]
        g = torch.tensor(ts.read_gt(iid)).permute(2, 0, 1)[None]
        assert df.at[iid, "psnr"] == float(fn.psnr(p, g)[0])
        assert df.at[iid, "ssim"] == float(fn.ssim(p, g)[0])


def test_resume_after_interruption_gives_identical_results(testset, tmp_path, bicubic_run):
    ref_out, _ = bicubic_run
    calls = []

    def stop_after_two(mode, iid, row):
        calls.append(iid)
        if len(calls) == 2:
            raise KeyboardInterrupt

    cfg = _cfg(testset, tmp_path, model="bicubic", config="paper", metrics=FAST + ["lpips_vgg", "fid"],
               on_image=stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg)
    d = tmp_path / "bicubic" / "x8" / "generic"
    assert (d / ".partial.jsonl").is_file() and not (d / "summary.json").exists()
    done = {p.name: p.stat().st_mtime_ns for p in (d / "restored").glob("*.png")}
    assert len(done) == 2
    calls.clear()
    cfg.on_image = lambda mode, iid, row: calls.append(iid)
    evaluate(cfg)
    assert len(calls) == 1  # only the missing image was processed
    assert {p.name: p.stat().st_mtime_ns for p in (d / "restored").glob("*.png") if p.name in done} == done
    a = pd.read_parquet(d / "metrics.parquet").drop(columns=["seconds"])
    b = pd.read_parquet(ref_out / "bicubic" / "x8" / "generic" / "metrics.parquet").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b)
    sa = json.loads((d / "summary.json").read_text())
    sb = json.loads((ref_out / "bicubic" / "x8" / "generic" / "summary.json").read_text())
    assert sa["metrics"] == sb["metrics"]
    # a finished run is not redone; other settings in the same folder are refused
    calls.clear()
    evaluate(cfg)
    assert calls == []
    with pytest.raises(InputError, match="other settings") as err:
        evaluate(_cfg(testset, tmp_path, model="bicubic", config="paper", metrics=["psnr"],
                      options=MetricOptions(crop_border=4)))
    assert not isinstance(err.value, UsageError)  # library code raises library errors, never the CLI's


def test_missing_weights_are_reported_with_the_fix(testset, tmp_path, isolated_weights):
    s = evaluate(_cfg(testset, tmp_path, model="bicubic", config="paper", metrics=None, limit=2))[0]
    assert {"psnr", "ssim", "ids_dlib", "lmd"} <= set(s["metrics"])
    for k in ("niqe", "fid", "lpips_vgg", "lpips_alex", "ids_arcface"):
        assert "Fix: `bench weights fetch" in s["unavailable"][k], k
    assert "niqe" not in s["metrics"] and "niqe" not in pd.read_parquet(
        tmp_path / "bicubic" / "x8" / "generic" / "metrics.parquet").columns


def test_untrained_model_is_refused_unless_asked_for(testset, tmp_path):
    with pytest.raises(InputError, match=r"dmdnet has no trained weights.*dmdnet-official.*--allow-untrained"):
        evaluate(_cfg(testset, tmp_path, model="dmdnet", config="tiny", metrics=["psnr"]))
    assert not (tmp_path / "dmdnet").exists()


def test_reference_model_runs_specific_mode_with_landmarks(testset, tmp_path):
    summaries = evaluate(_cfg(testset, tmp_path, model="dmdnet", config="tiny", metrics=["psnr", "ids"],
                              allow_untrained=True))
    assert [s["mode"] for s in summaries] == ["generic", "specific"]
    assert summaries[0]["sizes"] == {"testset": 512, "model_input": 128, "scored": 512}
    gen = pd.read_parquet(tmp_path / "dmdnet" / "x8" / "generic" / "metrics.parquet")
    spe = pd.read_parquet(tmp_path / "dmdnet" / "x8" / "specific" / "metrics.parquet")
    assert (gen["n_refs"] == 0).all() and (spe["n_refs"] == 2).all()
    assert (gen["landmarks_source"] == "manifest").all() and (spe["status"] == "ok").all()
    assert spe["ids_ref_dlib"].notna().all()
    assert summaries[1]["weights"]["name"] is None and summaries[1]["weights"]["untrained"] is True
    assert "UNTRAINED" in summaries[1]["weights"]["note"]
    # a model that needs references has no generic mode
    s = evaluate(_cfg(testset, tmp_path / "r", model="ref_colormatch", config="paper", metrics=["psnr"]))
    assert [x["mode"] for x in s] == ["specific"]
    with pytest.raises(InputError, match="no generic mode") as err:
        evaluate(_cfg(testset, tmp_path / "r2", model="ref_colormatch", config="paper", modes="generic"))
    assert not isinstance(err.value, UsageError)


@pytest.fixture(scope="module")
def failing_model():
    from dataclasses import dataclass

    from baselines.base import RestorationModel
    from baselines.registry import _MODELS, ModelInfo, register_model

    @dataclass(frozen=True)
    class Cfg:
        size: int = 512

    class FailsOnDark(RestorationModel):
        trainable = False
        threshold = -1.0  # set by the test

        def restore(self, lq, landmarks=None, refs=None, ref_landmarks=None):
            if bool((lq.mean(dim=(1, 2, 3)) < self.threshold).any()):
                raise RuntimeError("synthetic failure on a dark input")
            return lq.clone()

    name = "eval-test-fails"
    if name not in _MODELS:
        register_model(ModelInfo(name=name, model_cls=FailsOnDark, config_cls=Cfg, configs={"paper": Cfg(),
                                                                                            "tiny": Cfg()}))
    return name


def test_failures_are_recorded_with_reasons(testset, tmp_path, failing_model):
    from bfrcore.testset import TestSet

    ts = TestSet.load(testset)
    means = {i: ts.read_lq(i).mean() / 255 for i in ts.image_ids}
    darkest = min(means, key=means.get)
    threshold = (sorted(means.values())[0] + sorted(means.values())[1]) / 2
    from baselines.registry import get_model_info

    cls = get_model_info(failing_model).model_cls
    cls.threshold = threshold
    try:
        s = evaluate(_cfg(testset, tmp_path, model=failing_model, metrics=["psnr"], batch_size=3))[0]
    finally:
        cls.threshold = -1.0
    assert s["n_images"] == 3 and s["n_scored"] == 2
    assert s["failures"] == [{"image_id": darkest, "reason": "restore failed: RuntimeError: synthetic failure on a "
                                                             "dark input"}]
    df = pd.read_parquet(tmp_path / failing_model / "x8" / "generic" / "metrics.parquet").set_index("image_id")
    assert df.at[darkest, "status"] == "failed" and np.isnan(df.at[darkest, "psnr"])
    assert s["metrics"]["psnr"]["n"] == 2


def test_distribution_metrics_run_over_the_saved_outputs(testset, tmp_path, monkeypatch):
    """FID/KID plumbing with a stand-in feature network (the real Inception weights are not available here):
    features of the restored PNGs vs the HQ images, cached by content hash and reused on a rerun."""
    from evaluation import fid as fidmod

    class MeanNet(torch.nn.Module):  # 8-D stand-in features keep sqrtm cheap
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.linspace(-1, 1, 3 * 8).view(8, 3))

        def forward(self, x):
            return [(x.mean(dim=(2, 3)) @ self.w.t() + x.std(dim=(2, 3)).sum(1, keepdim=True))[..., None, None]]

    monkeypatch.setattr(fidmod, "build_inception", lambda device="cpu", state_dict=None: MeanNet())
    monkeypatch.setattr(fidmod._InceptionMetric, "available", lambda self: (True, ""))
    monkeypatch.setattr(fidmod._InceptionMetric, "weights_sha256", property(lambda self: "stand-in"))
    monkeypatch.setattr(fidmod._InceptionMetric, "weights_records", lambda self: [])
    opts = MetricOptions(cache_dir=str(tmp_path / "cache"), kid_subsets=4)
    s = evaluate(_cfg(testset, tmp_path / "r", model="bicubic", config="paper", metrics=["psnr", "fid", "kid"],
                      options=opts))[0]
    fid = s["metrics"]["fid"]
    assert fid["set_level"] and fid["n"] == 3 and fid["n_real"] == 3 and fid["ci95"] is None
    assert np.isfinite(fid["mean"]) and fid["mean"] > 0 and np.isfinite(s["metrics"]["kid"]["mean"])
    cached = sorted((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 2  # restored set and HQ set
    calls = []
    orig = fidmod.inception_features
    monkeypatch.setattr(fidmod, "inception_features", lambda *a, **k: calls.append(1) or orig(*a, **k))
    s2 = evaluate(_cfg(testset, tmp_path / "r2", model="bicubic", config="paper", metrics=["fid"], options=opts))[0]
    assert calls == [] and s2["metrics"]["fid"]["mean"] == pytest.approx(fid["mean"], rel=1e-12)


def test_image_cache_keeps_the_most_recently_used():
    from evaluation.image_cache import ImageCache

    loads = []
    cache = ImageCache(lambda k: loads.append(k) or np.full((2, 2, 3), ord(k[0]), np.uint8), capacity=2)
    a = cache("a")
    assert cache("a") is a and loads == ["a"]  # decoded once
    cache("b")
    cache("a")  # a is now the most recent: c evicts b
    cache("c")
    assert "a" in cache and "c" in cache and "b" not in cache and len(cache) == 2
    cache("b")
    assert loads == ["a", "b", "c", "b"] and int(cache("b")[0, 0, 0]) == ord("b")
    with pytest.raises(ValueError, match="capacity"):
        ImageCache(lambda k: a, capacity=0)


# ----------------------------------------------------------------------------------------------- bench score
def test_score_matches_evaluate_and_records_missing_outputs(bicubic_run, testset, tmp_path):
    out, _ = bicubic_run
    src = out / "bicubic" / "x8" / "generic" / "restored"
    ids = sorted(p.stem for p in src.glob("*.png"))
    pred = tmp_path / "gfpgan_out"
    pred.mkdir()
    shutil.copy(src / f"{ids[0]}.png", pred / f"{ids[0]}_00.png")
    shutil.copy(src / f"{ids[1]}.png", pred / f"{ids[1]}_00.png")
    write_png(pred / f"{ids[2]}_00.png", read_image(src / f"{ids[2]}.png")[::2, ::2])  # wrong size
    s = score(ScoreConfig(pred=pred, testset=testset, out=tmp_path / "res", name="gfpgan", pattern="{image_id}_00.png",
                          metrics=FAST, max_refs=2, quiet=True, bootstrap_resamples=200))
    assert s["model"] == "gfpgan" and s["weights"] is None and s["n_scored"] == 2
    assert s["failures"] == [{"image_id": ids[2], "reason": "output size 256x256 != GT 512x512 (use --resize)"}]
    a = pd.read_parquet(tmp_path / "res" / "gfpgan" / "x8" / "generic" / "metrics.parquet").set_index("image_id")
    b = pd.read_parquet(out / "bicubic" / "x8" / "generic" / "metrics.parquet").set_index("image_id")
    cols = ["psnr", "ssim", "niqe", "ids_dlib", "ids_ref_dlib", "lmd"]
    pd.testing.assert_frame_equal(a.loc[ids[:2], cols], b.loc[ids[:2], cols])
    (pred / f"{ids[1]}_00.png").unlink()
    s = score(ScoreConfig(pred=pred, testset=testset, out=tmp_path / "res2", name="gfpgan", pattern="{image_id}_00.png",
                          metrics=["psnr"], resize=True, quiet=True))
    reasons = {f["image_id"]: f["reason"] for f in s["failures"]}
    assert reasons == {ids[1]: "missing output (no file for this image id)"} and s["n_scored"] == 2
    assert s["resized"] is True


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_evaluate_and_score(testset, tmp_path, capsys):
    from bfrcli.bench import main

    rc = main(["evaluate", "--model", "bicubic", "--config", "paper", "--testset", str(testset), "--out",
               str(tmp_path), "--metrics", "psnr", "ssim", "--limit", "2", "--bootstrap", "100", "-q"])
    assert rc == 0
    s = json.loads((tmp_path / "bicubic" / "x8" / "generic" / "summary.json").read_text())
    assert s["n_scored"] == 2 and set(s["metrics"]) == {"psnr", "ssim"}
    rc = main(["score", "--pred", str(tmp_path / "bicubic" / "x8" / "generic" / "restored"), "--testset",
               str(testset), "--out", str(tmp_path), "--name", "copy", "--metrics", "psnr", "-q"])
    assert rc == 0
    s2 = json.loads((tmp_path / "copy" / "x8" / "generic" / "summary.json").read_text())
    assert len(s2["failures"]) == 1 and s2["n_scored"] == 2  # --limit 2 above: one output is missing
    assert s2["metrics"]["psnr"]["mean"] == pytest.approx(s["metrics"]["psnr"]["mean"], abs=1e-12)
    assert main(["evaluate", "--model", "no-such-model", "--testset", str(testset), "--out", str(tmp_path)]) == 2
    assert main(["evaluate", "--model", "bicubic", "--testset", str(tmp_path / "nope"), "--out",
                 str(tmp_path)]) == 2
    capsys.readouterr()
    assert main(["evaluate", "--list-metrics"]) == 0
    listing = capsys.readouterr().out
    assert "psnr" in listing and "UNAVAILABLE" in listing and "bench weights fetch" in listing
