"""Fixtures for the leaderboard tests: real RESULTS folders built from the mini_dataset's test images.

Two TESTSET folders (x4 and x8 bicubic down/up-sampling of real CelebRef-HQ test faces, written per the TESTSET
contract) and, for three "models" (identity = LQ copy, and two blends of GT and LQ) in both modes, the files
`bench evaluate` writes per the RESULTS contract: restored/<id>.png, metrics.parquet and summary.json. PSNR and
SSIM are computed from the real images (skimage); LPIPS and IDS values are deterministic stand-ins (the leaderboard
never computes metrics, it only reads them), each declared with its own higher_is_better.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

N_IMAGES = 3
MODELS = {  # name -> weight of GT in the "restoration" (0 = the LQ input itself)
    "bicubic": 0.0,
    "asffnet": 0.5,
    "dmdnet": 0.8,
}
SEVERITIES = {"celebref-x4": 4, "celebref-x8": 8}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse)) if mse > 0 else 99.0


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of the grey images at 1/4 size (cheap; a real SSIM value, declared as such in 'convention')."""
    from skimage.metrics import structural_similarity

    def grey(x):
        return np.asarray(Image.fromarray(x).convert("L").reduce(4), dtype=np.float64)

    return float(structural_similarity(grey(a), grey(b), data_range=255))


def _ci(v: np.ndarray) -> list[float]:
    half = 1.96 * float(np.std(v, ddof=1)) / np.sqrt(len(v)) if len(v) > 1 else 0.0
    return [float(np.mean(v) - half), float(np.mean(v) + half)]


def make_testset(dataset_root: Path, out: Path, name: str, scale: int, ids: list[str]) -> Path:
    """A TESTSET folder (bfrcore.testset format) made by x`scale` bicubic down/up-sampling."""
    from bfrcore.dataset import FaceDataset
    from bfrcore.imageio import file_sha256, pixel_sha256, read_image, write_png
    from bfrcore.testset import compute_testset_hash, format_checksums, lq_relpath

    ds = FaceDataset.load(dataset_root)
    rows, shas = [], {}
    for iid in ids:
        hq = ds.read(iid)
        small = Image.fromarray(hq).resize((hq.shape[1] // scale, hq.shape[0] // scale), Image.Resampling.BICUBIC)
        lq = np.asarray(small.resize((hq.shape[1], hq.shape[0]), Image.Resampling.BICUBIC))
        p = write_png(out / lq_relpath(iid), lq)
        shas[iid] = file_sha256(p)
        rows.append({"image_id": iid, "seed": 0, "scale": scale, "kernel_sha256": "", "lq_sha256": shas[iid],
                     "lq_pixel_sha256": pixel_sha256(read_image(p))})
    pd.DataFrame(rows).to_parquet(out / "params.parquet", index=False)
    (out / "checksums.sha256").write_text(format_checksums(shas))
    info = {"format": "celebref.testset/1", "name": name, "preset": {"name": name, "scale": scale},
            "preset_name": name, "preset_version": "1", "seed": 0, "split": "test",
            "dataset": {"root": str(dataset_root), "hash": ds.hash}, "n_images": len(ids),
            "testset_hash": compute_testset_hash(ds.hash, shas), "severity": float(scale), "versions": {},
            "created": "2026-01-01T00:00:00Z"}
    (out / "testset.json").write_text(json.dumps(info, indent=2))
    return out


def _stand_in(iid: str, model: str, base: float, spread: float) -> float:
    h = int(hashlib.sha256(f"{iid}|{model}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return base + spread * (h - 0.5)


def make_run(results: Path, testset: Path, model: str, alpha: float, mode: str) -> Path:
    """One RESULTS run folder R/<model>/<testset>/<mode>/ (restored PNGs, metrics.parquet, summary.json)."""
    from bfrcore.imageio import write_png
    from bfrcore.testset import TestSet

    ts = TestSet.load(testset)
    run = results / model / ts.name / mode
    rows = []
    for iid in ts.image_ids:
        lq, gt = ts.read_lq(iid), ts.read_gt(iid)
        out = np.clip(np.round(alpha * gt.astype(np.float64) + (1 - alpha) * lq), 0, 255).astype(np.uint8)
        write_png(run / "restored" / f"{iid}.png", out)
        rows.append({"image_id": iid, "status": "ok", "reason": None, "landmarks_source": "dataset",
                     "n_refs": 3 if mode == "specific" else 0, "seconds": 0.1,
                     "psnr": _psnr(out, gt), "ssim": _ssim(out, gt),
                     "lpips": _stand_in(iid, model, 0.5 - 0.4 * alpha, 0.05),
                     "ids": _stand_in(iid, model + ts.name, 0.9 - 0.6 * alpha, 0.1)})
    m = pd.DataFrame(rows)
    m.to_parquet(run / "metrics.parquet", index=False)
    metrics = {}
    for k, hib, conv in (("psnr", True, "RGB, uint8"), ("ssim", True, "grey, 1/4 size"), ("lpips", False, "stand-in"),
                         ("ids", False, "stand-in")):
        v = m[k].to_numpy(float)
        metrics[k] = {"mean": float(v.mean()), "ci95": _ci(v), "n": len(v), "higher_is_better": hib,
                      "convention": conv}
    summary = {
        "format": "celebref.summary/1", "model": model, "model_config": "tiny",
        "weights": None if model == "bicubic" else {"name": f"{model}-test",
                                                    "sha256": hashlib.sha256(model.encode()).hexdigest()},
        "mode": mode,
        "testset": {"name": ts.name, "hash": ts.hash, "path": str(testset), "preset": ts.preset_name,
                    "preset_version": ts.preset_version, "severity": ts.severity, "dataset_hash": ts.dataset_hash},
        "n_images": len(ts.image_ids), "n_scored": len(ts.image_ids), "metrics": metrics,
        "unavailable": {"fid": "missing pretrained file pt_inception; Fix: `bench weights fetch pytorch-fid-inception`"},
        "failures": [], "created": "2026-01-01T00:00:00Z", "versions": {"celebref-suite": "0.1.0"},
        "device": "cpu", "seconds": 1.0,
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    return run


@pytest.fixture(scope="session")
def lb_inputs(mini_dataset, tmp_path_factory) -> dict:
    """{'results': R, 'testsets': T, 'ids': [...], 'runs': [...]} built once per session (read-only for tests)."""
    from bfrcore.dataset import FaceDataset

    root = tmp_path_factory.mktemp("lb_inputs")
    ids = FaceDataset.load(mini_dataset).image_ids("test")[:N_IMAGES]
    testsets = {name: make_testset(mini_dataset, root / "testsets" / name, name, s, ids)
                for name, s in SEVERITIES.items()}
    runs = []
    for ts in testsets.values():
        for model, alpha in MODELS.items():
            for mode in ("generic", "specific"):
                runs.append(make_run(root / "results", ts, model, alpha, mode))
    return {"results": root / "results", "testsets": root / "testsets", "ids": ids, "runs": runs,
            "root": root}


@pytest.fixture(scope="session")
def lb_out(lb_inputs, tmp_path_factory) -> dict:
    """`bench leaderboard` run once on lb_inputs (all outputs, SVG included); {'out', 'rc', 'stdout', ...}."""
    import contextlib
    import io

    from bfrcli.bench import main

    out = tmp_path_factory.mktemp("lb_out") / "board"
    ids = lb_inputs["ids"][:2]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["leaderboard", "--results", str(lb_inputs["results"]), "--out", str(out),
                   "--images", ",".join(ids), "--max-refs", "2", "--tile", "96", "--svg"])
    return {"out": out, "rc": rc, "stdout": buf.getvalue(), "ids": ids}
