"""End-to-end `celebref build` on real photos: the CelebRef-HQ examples rebuild their identity groupings; the output
meets the DATASET contract; quality filters reject the known-bad real_lq photos; the build is deterministic across
worker counts, resumes after being killed, and a changed threshold reuses every cached stage; the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bfrcli.celebref import main as celebref_main
from bfrcore.dataset import MANIFEST_COLUMNS, FaceDataset
from bfrcore.imageio import file_sha256, read_image
from celebref.pipeline import build_dataset, parse_config
from tests.celebref.build_support import SMALL_CFG, link_tree, reencoded_copy, shared_rows
from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def examples_build(celebref_examples, tmp_path_factory):
    """The CelebRef-HQ examples (49 aligned references of 5 people) plus injected label noise: 00121/2.png
    (re-encoded, so it is not an exact duplicate) slipped into 00075. Built with the opt-in within-name subgroup
    test (identity.name_subgroups). Shared by the grouping, contract, label-noise and 00086/11 tests."""
    tree = tmp_path_factory.mktemp("chq_tree")
    refs = celebref_examples / "RefsImg"
    for d in sorted(refs.iterdir()):
        (tree / d.name).mkdir()
        for f in sorted(d.glob("*.png")):
            (tree / d.name / f.name).symlink_to(f)
    reencoded_copy(refs / "00121" / "2.png", tree / "00075" / "99.png")  # label noise
    out = tmp_path_factory.mktemp("celebref_build")
    cfg = parse_config({"quality": {"niqe": False}, "identity": {"name_subgroups": True}})
    return build_dataset([f"celebrefhq:{tree}"], out, cfg, workers=2)


def test_celebref_examples_reproduce_identity_groupings(examples_build):
    r = examples_build
    kept = r.manifest[r.manifest["kept"]]
    assert len(r.identities) == 5
    # every output identity is exactly one source folder, named after it
    folder = kept["source_path"].map(lambda p: Path(p).parent.name)
    for ident, grp in kept.groupby("identity"):
        assert folder[grp.index].nunique() == 1, ident
        assert r.identities.set_index("identity").at[ident, "name"] == folder[grp.index].iloc[0]
    assert folder.nunique() == 5
    assert len(kept) >= 44, r.info["reject_reasons"]  # FFHQ-aligned HQ references: (almost) all kept
    # aligned inputs are kept pixel for pixel
    row = kept.iloc[0]
    np.testing.assert_array_equal(read_image(r.out / row["path"]), read_image(row["source_path"]))


def test_output_meets_dataset_contract(examples_build):
    r = examples_build
    ds = FaceDataset.load(r.out)
    assert set(MANIFEST_COLUMNS) <= set(ds.manifest.columns)
    assert ds.image_size == 512 and ds.hash == r.info["dataset_hash"]
    ids = ds.image_ids()
    assert len(ids) == r.info["counts"]["kept_images"]
    for iid in ids[:3]:
        assert ds.read(iid).shape == (512, 512, 3)
        assert ds.landmarks(iid).shape == (68, 2)
        assert file_sha256(ds.image_path(iid)) == ds.images.at[iid, "sha256"]
    test_ids, train_ids = set(ds.image_ids("test")), set(ds.image_ids("train"))
    assert test_ids and train_ids
    test_people = {ds.identity_of(i) for i in test_ids}
    assert test_people.isdisjoint({ds.identity_of(i) for i in train_ids})  # identity-disjoint
    for iid in test_ids:
        refs = ds.references_of(iid)
        assert refs and iid not in refs and all(ds.identity_of(x) == ds.identity_of(iid) for x in refs)
        assert set(refs) == set(ds.same_identity(iid))
    assert set(ds.images.index[ds.images["generic_test"]]) <= test_ids
    assert ds.images["generic_test"].sum() == len(test_people)
    # every candidate has a row; rejected rows say why
    rej = ds.manifest[~ds.manifest["kept"]]
    assert rej["reject_stage"].notna().all() and rej["reject_reason"].notna().all()
    info = json.loads((r.out / "build.json").read_text())
    assert info["params"]["faces"]["size"] == 512 and info["versions"]["numpy"]
    assert any(w.get("sha256") for w in info["weights"])
    assert info["counts"]["ingest_items"] == 50 and info["stage_keys"]["faces"]
    html = (r.out / "report.html").read_text()
    assert "Funnel" in html and "Identities" in html and "data:image/jpeg;base64," in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    assert "<script" not in html


def test_injected_label_noise_is_flagged(examples_build):
    """Another person's photo slipped into a CelebRef-HQ identity folder is flagged name_outlier and dropped."""
    m = examples_build.manifest
    row = m[m["source_path"].str.endswith("00075/99.png")].iloc[0]
    assert not row["kept"] and row["reject_reason"] == "name_outlier" and row["name_outlier"]
    assert "clustered apart" in row["reject_detail"]


def test_celebrefhq_00086_11_flagged_offline_by_subgroup_test(examples_build):
    """00086/11.png is another woman. dlib puts it inside the folder's spread (median distance 0.49; the genuine
    00086/2.png is at 0.54), so clustering keeps it; the opt-in within-name subgroup test flags the tight pair
    {11, 14} (14 is, on inspection, the same person blonde: a documented false positive, docs/build.md) and
    nothing else in the five folders."""
    m = examples_build.manifest
    flagged = m[m["name_outlier"]]
    sub = flagged[flagged["reject_detail"].str.contains("subgroup", na=False)]
    names = sorted(Path(p).parent.name + "/" + Path(p).name for p in sub["source_path"])
    assert names == ["00086/11.png", "00086/14.png"], names
    assert (~sub["kept"]).all() and (sub["reject_stage"] == "identity").all()
    assert set(flagged["source_path"].map(lambda p: Path(p).parent.name + "/" + Path(p).name)) == {
        "00075/99.png", "00086/11.png", "00086/14.png"}


def test_quality_filters_reject_known_bad_photos(shared_faces, tmp_path):
    rows = shared_rows(shared_faces, kinds={"real_lq_aligned", "real_lq_raw", "real_lq_whole",
                                            "real_old_gray_aligned", "real_old_whole"})
    hq = shared_rows(shared_faces, kinds={"hq_aligned_512"}, sources={"asffnet512_obama"})[:4]
    tree = link_tree(rows + hq, shared_faces, tmp_path / "tree", by="kind")
    cfg = parse_config({"identity": {"min_images": 1, "name_policy": "ignore"}, "dedup": {"enabled": False},
                        "output": {"report": False}})
    r = build_dataset([f"folder:{tree}"], tmp_path / "out", cfg, workers=2)
    m = r.manifest[r.manifest["face_index"].fillna(-1) >= 0].copy()
    m["kind"] = m["source_path"].map(lambda p: Path(p).parent.name)
    print(m.groupby(["kind", "reject_reason"], dropna=False).size())
    strict = m[m["kind"].isin(["real_lq_aligned", "real_lq_raw", "real_old_gray_aligned", "real_old_whole"])]
    assert len(strict) >= 25
    assert not strict["kept"].any(), strict[strict["kept"]][["source_path", "sharpness", "noise_ratio"]]
    assert (strict["reject_stage"] == "quality").all()
    whole = m[m["kind"] == "real_lq_whole"]
    assert (~whole["kept"]).mean() >= 0.9  # one decent face (eye distance 83 px) in gfpgan's Blake_Lively.jpg
    good = m[m["kind"] == "hq_aligned_512"]
    assert len(good) == 4 and good["kept"].all(), good[["reject_reason", "reject_detail"]]
    reasons = set(strict["reject_reason"])
    assert {"low_face_resolution", "greyscale", "blurry"} <= reasons
    # each rejection names the threshold that rejected it
    assert strict["reject_detail"].str.contains("=").all()
    # NIQE is recorded when bfrcore.metrics.niqe and its parameters are present, else marked unavailable
    assert m["niqe_status"].notna().all()
    assert (m["niqe"].notna() == (m["niqe_status"] == "ok")).all()


_CHILD = r"""
import sys, json
from celebref.pipeline import build_dataset, parse_config
build_dataset(json.loads(sys.argv[1]), sys.argv[2], parse_config(json.loads(sys.argv[3])), workers=1)
"""


def test_deterministic_across_workers_and_resumes_after_kill(small_sources, small_built, tmp_path):
    cfg = parse_config(SMALL_CFG)
    a = small_built  # workers 2, local executor
    assert a.info["counts"]["kept_images"] >= 8
    # an interrupted build (killed while computing faces), then resumed with another worker count
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "CELEBREF_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(small_sources), str(tmp_path / "b"),
                             json.dumps(SMALL_CFG)], env=env)
    deadline = time.monotonic() + 120
    shards = []
    while time.monotonic() < deadline and proc.poll() is None:
        shards = list((tmp_path / "b" / "cache" / "faces").glob("*/shards/*_stats.json"))
        if len(shards) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(shards) >= 2 and not (tmp_path / "b" / "manifest.parquet").exists(), "not interrupted mid-way"
    done_items = {p: p.stat().st_mtime_ns for p in (tmp_path / "b" / "cache" / "faces").glob("*/items/*/*.json")}
    b = build_dataset(small_sources, tmp_path / "b", cfg, workers=1)
    assert b.stage_runs["faces"].cached >= len(done_items) > 0
    for p, t in done_items.items():  # finished work is not redone
        assert p.stat().st_mtime_ns == t
    pd.testing.assert_frame_equal(a.manifest, b.manifest)
    pd.testing.assert_frame_equal(a.identities, b.identities)
    pd.testing.assert_frame_equal(a.references, b.references)
    assert a.info["dataset_hash"] == b.info["dataset_hash"]
    ha = {p.relative_to(a.out): file_sha256(p) for p in (a.out / "images").rglob("*.png")}
    hb = {p.relative_to(b.out): file_sha256(p) for p in (b.out / "images").rglob("*.png")}
    assert ha == hb and len(ha) == a.info["counts"]["kept_images"]
    on_disk = pd.read_parquet(a.out / "manifest.parquet")
    pd.testing.assert_frame_equal(on_disk, pd.read_parquet(b.out / "manifest.parquet"))


def test_changed_threshold_reuses_cached_stages(small_sources, small_built, tmp_path):
    import shutil

    out = tmp_path / "c"
    shutil.copytree(small_built.out, out, symlinks=True)
    strict = parse_config({**SMALL_CFG, "quality": {**SMALL_CFG["quality"], "min_sharpness": 1e9}})
    t0 = time.perf_counter()
    r = build_dataset(small_sources, out, strict, workers=1)
    assert time.perf_counter() - t0 < 30
    for st in ("faces", "embed", "quality"):
        assert r.stage_runs[st].computed == 0, st
    assert r.info["timings"]["identity"]["cached"] is True
    faces = r.manifest[r.manifest["face_index"].fillna(-1) >= 0]
    assert not r.manifest["kept"].any()
    assert set(faces["reject_stage"]) <= {"quality", "identity"}
    assert (faces["reject_reason"] == "blurry").sum() >= len(faces) - 3
    assert not any((out / "images").rglob("*.png"))  # images of the earlier build removed


def test_cli_build_and_errors(small_sources, small_built, tmp_path, capsys):
    import shutil

    out = tmp_path / "cli"
    shutil.copytree(small_built.out, out, symlinks=True)
    rc = celebref_main(["build", *sum((["--source", s] for s in small_sources), []), "--out", str(out),
                        "--workers", "1", "--set", "runner.shard_size=2", "--set", "identity.min_images=2",
                        "--set", "output.report=false", "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "celebref build" in text and "done" in text
    assert FaceDataset.load(out).image_ids()
    assert celebref_main(["build", "--source", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert celebref_main(["build", "--source", small_sources[0], "--out", str(out),
                          "--set", "quality.min_sharpnes=3"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("faces: {size: big}\n")
    assert celebref_main(["build", "--source", small_sources[0], "--out", str(out), "--config", str(bad)]) == 2
    assert celebref_main(["build", "--print-config"]) == 0
    assert celebref_main(["build", "--source", small_sources[0], "--out", str(out),
                          "--address", "tcp://127.0.0.1:8786"]) == 2  # --address needs --executor dask
