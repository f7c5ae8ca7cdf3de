"""The whole chain on real photos, run the way a user types it: the installed console scripts (`celebref`, `bench`)
as subprocesses, so argument parsing and exit codes are part of the test.

A flat folder of whole photos (no person folders: people are found by clustering) + a CelebRef-HQ-layout source
-> ``celebref build`` -> ``bench degrade`` -> ``bench train`` (tiny DMDNet, 3 steps) -> ``bench evaluate``
(generic and specific, the trained checkpoint) -> ``bench score`` (the evaluate outputs as an external method)
-> ``bench leaderboard`` -> ``celebref publish --dry-run --include-pixels`` -> ``datasets.load_dataset`` on the
folder, compared config by config, row by row and hash by hash with the dataset and the test set
(:func:`celebref.publish.verify.verify_published_folder`). About a minute on 2 CPU cores.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: people with several whole photos in faces/manifest.csv (so references exist), 3 photos each
PEOPLE = ("kit_harington", "deepface_g11", "deepface_g12")
PHOTOS_PER_PERSON = 3
#: CelebRef-HQ identities (RefsImg/<id>/<n>.png) and images per identity
CHQ_IDS = ("00075", "00089", "00146")
CHQ_PER_ID = 4


def _flat_folder(faces: Path, dest: Path) -> dict[str, str]:
    """Symlink the chosen photos into one flat folder; returns {file name: person}."""
    with open(faces / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "whole_photo" and r["identity"] in PEOPLE]
    by_person = defaultdict(list)
    for r in sorted(rows, key=lambda r: (r["source"], r["path"])):
        by_person[r["identity"]].append(r)
    dest.mkdir(parents=True)
    truth = {}
    for person in PEOPLE:
        assert len(by_person[person]) >= PHOTOS_PER_PERSON, person
        for r in by_person[person][:PHOTOS_PER_PERSON]:
            name = f"{r['source']}__{r['path'].replace('/', '__')}"
            (dest / name).symlink_to(faces / r["source"] / r["path"])
            truth[name] = person
    return truth


def _chq_source(examples: Path, dest: Path) -> Path:
    for ident in CHQ_IDS:
        (dest / ident).mkdir(parents=True)
        for f in sorted((examples / "RefsImg" / ident).glob("*.png"))[:CHQ_PER_ID]:
            (dest / ident / f.name).symlink_to(f)
    return dest


def _run(tool: str, *args: str, cwd: Path) -> str:
    """Run an installed console script; fail with its output unless it exits 0."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "CELEBREF_PROGRESS": "0",
           "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("OMP_NUM_THREADS", "1")
    exe = BIN / tool
    assert exe.is_file(), f"{exe} not installed (pip install -e .)"
    p = subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
                       check=False)
    assert p.returncode == 0, (f"`{tool} {' '.join(args)}` exited {p.returncode}\n--- stdout\n{p.stdout[-3000:]}"
                               f"\n--- stderr\n{p.stderr[-5000:]}")
    return p.stdout


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_chain_build_to_published_dataset(shared_faces, celebref_examples, tmp_path):
    from bfrcore.dataset import FaceDataset
    from bfrcore.testset import TestSet
    from celebref.publish.verify import verify_published_folder

    flat = tmp_path / "photos"
    truth = _flat_folder(shared_faces, flat)
    chq = _chq_source(celebref_examples, tmp_path / "chq")

    # ---- build
    dataset = tmp_path / "dataset"
    _run("celebref", "build", "-q", "--source", f"folder:{flat}", "--source", f"celebrefhq:{chq}",
         "--out", str(dataset), "--config", str(REPO / "bfrcli" / "demo_build.yaml"),
         "--set", "output.report=false", "--workers", "2", "--seed", "0", cwd=tmp_path)
    ds = FaceDataset.load(dataset)
    m = pd.read_parquet(dataset / "manifest.parquet")
    kept = m[m["kept"]]
    sources = set(kept["source_kind"])
    assert sources == {"folder", "celebrefhq"}, sources
    assert kept["source_path"].map(lambda p: Path(p).name in truth).sum() >= len(PEOPLE) * 2
    test_ids = ds.image_ids("test")
    assert test_ids and ds.image_ids("train")
    assert any(ds.references_of(i) for i in test_ids), "no test image has a reference"
    info = json.loads((dataset / "build.json").read_text())
    assert info["params"]["size"] == 256 and ds.image_size == 256
    assert all("path" not in w for w in info["weights"])

    # ---- degrade
    testset = tmp_path / "testsets" / "celebref-x4"
    _run("bench", "degrade", "-q", "--dataset", str(dataset), "--preset", "celebref-x4", "--seed", "0",
         "--out", str(testset), cwd=tmp_path)
    ts = TestSet.load(testset)
    assert ts.image_ids == sorted(test_ids) and ts.dataset_hash == ds.hash

    # ---- train (tiny DMDNet, a few steps: the point is that the chain connects, not the quality)
    run = tmp_path / "train" / "dmdnet"
    _run("bench", "train", "-q", "--config", str(REPO / "configs" / "train" / "dmdnet_tiny.yaml"),
         "--dataset", str(dataset), "--out", str(run), "--steps", "3", "--device", "cpu", "--seed", "0",
         "--set", "batch_size=2", "--set", "schedule.warmup_steps=0", "--set", "val_every=0",
         "--set", "ckpt_every=0", "--set", "data.val_max_images=2", "--set", "init.generic_dictionary_images=0",
         cwd=tmp_path)
    ckpt = run / "checkpoints" / "last.pt"
    assert ckpt.is_file()

    # ---- evaluate, both modes, with the trained checkpoint
    results = tmp_path / "results"
    metrics = ["--metrics", "psnr", "ssim", "--bootstrap", "50"]
    for mode in ("generic", "specific"):
        _run("bench", "evaluate", "-q", "--model", "dmdnet", "--weights", str(ckpt), "--testset", str(testset),
             "--out", str(results), "--device", "cpu", "--mode", mode, "--eval-size", "testset", *metrics,
             cwd=tmp_path)
    ev = {mode: _summary(results / "dmdnet" / "celebref-x4" / mode) for mode in ("generic", "specific")}
    for mode, s in ev.items():
        assert s["mode"] == mode and s["n_scored"] == len(test_ids) and not s["failures"], s
        assert s["testset"]["hash"] == ts.hash and s["weights"]["name"] == "last.pt"
    restored = results / "dmdnet" / "celebref-x4" / "generic" / "restored"
    assert sorted(p.stem for p in restored.glob("*.png")) == sorted(test_ids)

    # ---- score the saved outputs as an external method: same files, same metric values
    _run("bench", "score", "-q", "--pred", str(restored), "--testset", str(testset), "--name", "external-dmdnet",
         "--out", str(results), "--device", "cpu", *metrics, cwd=tmp_path)
    sc = _summary(results / "external-dmdnet" / "celebref-x4" / "generic")
    assert sc["n_scored"] == len(test_ids)
    for k in ("psnr", "ssim"):
        assert sc["metrics"][k]["mean"] == pytest.approx(ev["generic"]["metrics"][k]["mean"], rel=1e-9), k

    # ---- leaderboard
    board = tmp_path / "leaderboard"
    _run("bench", "leaderboard", "-q", "--results", str(results), "--out", str(board), "--testsets",
         str(tmp_path / "testsets"), "--title", "chain", cwd=tmp_path)
    store = pd.read_parquet(board / "results.parquet")
    runs = set(zip(store["model"], store["mode"]))
    assert {("dmdnet", "generic"), ("dmdnet", "specific"), ("external-dmdnet", "generic")} <= runs, runs
    assert (board / "index.html").is_file() and (board / "leaderboard.md").is_file()

    # ---- publish (dry run, pixels) and load it back with datasets
    folder = tmp_path / "hf"
    _run("celebref", "publish", "-q", "--dataset", str(dataset), "--repo-id", "tester/chain", "--testset",
         str(testset), "--dry-run", "--include-pixels", "--license", "cc-by-nc-4.0", "--out", str(folder),
         cwd=tmp_path)
    report = verify_published_folder(folder, dataset, [testset], cache_dir=tmp_path / "hf_cache")
    assert report.rows == {"hq": {"train": len(ds.image_ids("train")), "test": len(test_ids)},
                           "train": {"train": len(ds.image_ids("train"))}, "test": {"test": len(test_ids)},
                           "references": {"test": report.references}, "celebref-x4": {"test": len(test_ids)}}
    assert report.hq_hashes == len(ds.images) and report.lq_hashes == len(test_ids) and report.references > 0
    assert report.identities == sorted(ds.images["identity"].unique())
    # nothing local in what would be uploaded
    marks = [os.path.expanduser("~"), str(REPO), str(tmp_path), "/root", "/home/", "site-packages"]
    for p in folder.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert not [mk for mk in marks if mk and mk != "/" and mk.encode() in data], p
