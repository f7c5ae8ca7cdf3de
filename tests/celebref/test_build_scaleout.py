"""Scale-out of `celebref build`: the per-image stages on a real Dask LocalCluster (2 worker processes) give the same
manifest, identities, references and image bytes as the local executor, also when a worker dies or a shard raises
on its first attempt (retried, recorded); a shard that keeps failing is recorded with its reason, the run completes
and a rerun finishes it; URL downloads are spread over the workers by host. Clustering through a FAISS k-nearest-
neighbour graph agrees with exact clustering on the labelled shared faces and on a synthetic 3,000-face set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celebref.pipeline import build_dataset, parse_config
from celebref.pipeline.cluster_metrics import adjusted_rand_index, agreement
from celebref.pipeline.clustering import cluster, resolve_neighbors
from celebref.pipeline.config import IdentityConfig
from celebref.pipeline.executor import DaskExecutor, LocalExecutor, ShardFailure
from celebref.pipeline.identity import assign_identities, name_subgroup_outliers, name_subgroups
from tests.celebref import build_support
from tests.celebref.build_support import SMALL_CFG, attempts_of, fault_injecting, flaky_square

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def dask_cluster():
    """A real Dask LocalCluster: 2 single-threaded worker processes (nanny-restarted when one dies)."""
    ex = DaskExecutor(workers=2, retries=2)
    yield ex
    ex.close()


def test_dask_build_identical_to_local_despite_worker_failures(dask_cluster, small_sources, small_built, tmp_path):
    m = small_built.manifest
    faces_item = sorted(m.loc[m["face_index"].fillna(-1) >= 0, "source_sha256"])[0]
    embed_item = sorted(m.loc[m["kept"], "source_sha256"])[-1]
    markers = tmp_path / "markers"
    ex = fault_injecting(dask_cluster, markers, [
        {"stage": "faces", "item_id": faces_item, "kind": "die", "times": 1},  # the worker process is killed
        {"stage": "embed", "item_id": embed_item, "kind": "raise", "times": 1},  # the task raises
    ])
    n_events = len(dask_cluster.events)
    # three separate passes (runner.fuse false), so that the embed stage runs shards of its own to inject into;
    # small_built is fused: the same dataset either way
    r = build_dataset(small_sources, tmp_path / "dask", parse_config({**SMALL_CFG, "runner": {
        **SMALL_CFG["runner"], "fuse": False}}), executor=ex)
    # the same dataset as the local executor: every row and value, the tables, the image bytes
    pd.testing.assert_frame_equal(r.manifest, small_built.manifest)
    pd.testing.assert_frame_equal(r.identities, small_built.identities)
    pd.testing.assert_frame_equal(r.references, small_built.references)
    assert r.info["dataset_hash"] == small_built.info["dataset_hash"]
    assert build_support.image_hashes(r.out) == build_support.image_hashes(small_built.out)
    pd.testing.assert_frame_equal(pd.read_parquet(r.out / "manifest.parquet"),
                                  pd.read_parquet(small_built.out / "manifest.parquet"))
    # both failures happened on the workers, were retried once and are recorded in build.json
    assert attempts_of(markers, "faces", faces_item) == 2 and attempts_of(markers, "embed", embed_item) == 2
    events = r.info["executor"]["events"]
    assert r.info["executor"]["kind"] == "dask" and r.info["executor"]["workers"] == 2
    got = [(e["label"].split()[0], e["reason"], e["final"]) for e in events]
    # a dead worker fails every task it held (the one running and one queued behind it), and the LocalCluster's
    # restart of it can take a task or two down with it: each such task is retried and recorded, none is final
    assert ("faces", "worker_lost", False) in got and not any(final for _, _, final in got), events
    assert {reason for _, reason, _ in got} <= {"worker_lost", "error_RuntimeError"}, events
    assert [g for g in got if g[1] == "error_RuntimeError"] == [("embed", "error_RuntimeError", False)], events
    assert len(dask_cluster.events) == n_events + len(events)
    assert not any(run.failed_shards for run in r.stage_runs.values())


def test_dask_persistent_failure_recorded_then_rerun_completes(dask_cluster, celebref_examples, tmp_path):
    refs = celebref_examples / "RefsImg"
    tree = tmp_path / "tree"
    for ident in ("00121", "00146"):
        (tree / ident).mkdir(parents=True)
        for f in sorted((refs / ident).glob("*.png"))[:4]:
            (tree / ident / f.name).symlink_to(f)
    # small enough that the FAISS path is chosen automatically (identity.faiss_min_faces)
    cfg = parse_config({**SMALL_CFG, "identity": {"min_images": 2, "faiss_min_faces": 4}})
    from bfrcore.imageio import file_sha256

    bad = file_sha256(sorted((tree / "00146").glob("*.png"))[0])
    ex = fault_injecting(dask_cluster, tmp_path / "markers", [
        {"stage": "faces", "item_id": bad, "kind": "raise", "times": 99}])
    r = build_dataset([f"celebrefhq:{tree}"], tmp_path / "out", cfg, executor=ex)
    m = r.manifest
    failed = m[m["reject_reason"] == "error_RuntimeError"]
    assert bad in set(failed["source_sha256"]) and len(failed) == 2  # the failing item and its shard-mate
    assert (failed["reject_stage"] == "faces").all()
    assert failed["reject_detail"].str.contains("failed 3 time").all()
    (shard,) = r.stage_runs["faces"].failed_shards
    assert shard["attempts"] == 3 and shard["reason"] == "error_RuntimeError"
    assert [e["final"] for e in r.info["executor"]["events"]] == [False, False, True]
    assert m["kept"].sum() == 6  # the rest of the run completed
    assert r.info["timings"]["identity"]["clustering"]["neighbors"] == "faiss"
    # a rerun (the worker problem gone) computes only the failed shard and completes the dataset
    r2 = build_dataset([f"celebrefhq:{tree}"], tmp_path / "out", cfg, executor=dask_cluster)
    assert r2.stage_runs["faces"].computed == 2 and not r2.stage_runs["faces"].failed_shards
    assert r2.manifest["kept"].sum() == 8 and len(r2.identities) == 2


def test_local_executor_retries_and_records():
    ex = LocalExecutor(1, retries=1)
    out = dict(ex.run(flaky_square, [3, -1, 4], labels=["a", "b", "c"]))
    assert out[0] == 9 and out[2] == 16 and isinstance(out[1], ShardFailure)
    assert out[1].attempts == 2 and out[1].reason == "error_ValueError"
    assert [(e["label"], e["final"]) for e in ex.events] == [("b", False), ("b", True)]


def test_dask_crawl_partitions_urls_by_host(dask_cluster, tmp_path):
    import io
    import urllib.parse

    from PIL import Image

    from celebref.ingest.urls import UrlRow, crawl, host_partitions
    from celebref.ingest.config import CrawlConfig
    from tests.celebref.build_support import Site
    from tests.helpers import tiny_image

    sites = [Site(), Site()]
    try:
        rows = []
        for s_i, site in enumerate(sites):
            site.routes["/robots.txt"] = {"body": b"User-agent: *\nDisallow: /private/\n", "type": "text/plain"}
            for k in range(5):
                buf = io.BytesIO()
                Image.fromarray(tiny_image(32, 32, seed=10 * s_i + k)).save(buf, format="JPEG")
                site.routes[f"/img/{k}.jpg"] = {"body": buf.getvalue()}
                rows.append(UrlRow(site.url(f"/img/{k}.jpg"), f"p{k}", line=len(rows) + 1))
            rows.append(UrlRow(site.url("/private/x.jpg"), None, line=len(rows) + 1))
            rows.append(UrlRow(site.url("/missing.jpg"), None, line=len(rows) + 1))
        # every URL of a host in one partition (two hosts may share one: their ports are random, the buckets a hash)
        parts = host_partitions(rows, 8)
        hosts = [{urllib.parse.urlsplit(r.url).netloc for r in part} for part in parts]
        for site in sites:
            assert sum(urllib.parse.urlsplit(site.url("/")).netloc in h for h in hosts) == 1
        assert sorted(r.line for part in parts for r in part) == [r.line for r in rows]
        cfg = CrawlConfig(timeout_s=2, retries=0, per_host_rate=500.0)
        local = crawl(rows, tmp_path / "local", cfg)
        dist = crawl(rows, tmp_path / "dask", cfg, executor=dask_cluster)

        def key(out):
            return [(r["url"], r["status"], r["reason"], r["sha256"]) for r in out]

        assert key(dist) == key(local)
        assert sorted(r["reason"] or "ok" for r in dist).count("ok") == 10
        # one state file per partition that holds URLs: 2, or 1 when both hosts' random ports hash together
        assert len(list((tmp_path / "dask" / "crawl").glob("*.part-*.jsonl"))) == len(parts)
        for site in sites:  # robots.txt once per host per crawl; disallowed paths never requested
            assert site.hits["/robots.txt"] == 2 and site.hits["/private/x.jpg"] == 0
        hits = [dict(s.hits) for s in sites]
        again = crawl(rows, tmp_path / "dask", cfg, executor=dask_cluster)  # resumes from the part files
        assert key(again) == key(local) and [dict(s.hits) for s in sites] == hits
    finally:
        for s in sites:
            s.close()


# ------------------------------------------------------------------------------------------------ FAISS
@pytest.fixture(scope="module")
def labelled_embeddings(shared_faces, tmp_path_factory):
    build = build_support.clustering_build(shared_faces, tmp_path_factory)
    return build_support.main_face_embeddings(build, shared_faces / "manifest.csv")


def test_faiss_clustering_agrees_with_exact_on_labelled_faces(labelled_embeddings):
    fids, x, truth = labelled_embeddings
    assert len(x) >= 90
    exact = cluster(x, metric="euclidean", threshold=0.65)
    for index in ("hnsw", "flat"):
        stats: dict = {}
        approx = cluster(x, metric="euclidean", threshold=0.65, neighbors="faiss", knn_k=16, faiss_index=index,
                         stats=stats)
        assert stats["neighbors"] == "faiss" and stats["edges"] > 0
        assert adjusted_rand_index(approx, exact) == pytest.approx(1.0), agreement(approx, exact)
    # the sparse-graph average linkage (used for components above max_exact_component) on its own
    sparse = cluster(x, metric="euclidean", threshold=0.65, neighbors="faiss", knn_k=16, max_exact_component=1)
    assert adjusted_rand_index(sparse, exact) == pytest.approx(1.0), agreement(sparse, exact)
    # cosine metric (ArcFace's) through the same path
    ec = cluster(x, metric="cosine", threshold=0.07)
    ac = cluster(x, metric="cosine", threshold=0.07, neighbors="faiss", knn_k=16, max_exact_component=1)
    assert adjusted_rand_index(ac, ec) >= 0.99
    # the same clusters through the identity stage with the config switch
    ge = assign_identities(fids, x, truth, metric="euclidean", embedder="dlib", cfg=IdentityConfig())
    gf = assign_identities(fids, x, truth, metric="euclidean", embedder="dlib",
                           cfg=IdentityConfig(neighbors="faiss", knn_k=16))
    assert ge.clusters == gf.clusters and ge.rejects == gf.rejects
    assert gf.stats["neighbors"] == "faiss" and ge.stats["neighbors"] == "exact"
    assert resolve_neighbors("auto", 19999, 20000) == "exact" and resolve_neighbors("auto", 20000, 20000) == "faiss"


def test_faiss_clustering_at_synthetic_scale(labelled_embeddings):
    """3,000 faces: each labelled person copied into new synthetic people (a random identity offset per copy,
    |offset| ~ 0.6, plus per-face noise |n| ~ 0.03). Exact average linkage vs the HNSW kNN graph path, and the
    sparse-graph linkage alone; deterministic across runs. (docs/build.md: the same check at 20,000.)"""
    _, x, truth = labelled_embeddings
    rng = np.random.default_rng(0)
    labels = sorted(set(truth))
    li = np.array([labels.index(t) for t in truth])
    parts = []
    while sum(len(p) for p in parts) < 3000:
        off = rng.normal(0, 0.6 / np.sqrt(x.shape[1]), size=(len(labels), x.shape[1])) if parts else 0.0
        parts.append(x + (off[li] if parts else 0.0) + rng.normal(0, 0.03 / np.sqrt(x.shape[1]), size=x.shape))
    s = np.concatenate(parts)[:3000]
    exact = cluster(s, metric="euclidean", threshold=0.65)
    stats: dict = {}
    approx = cluster(s, metric="euclidean", threshold=0.65, neighbors="faiss", knn_k=16, stats=stats)
    a = agreement(approx, exact)
    print("exact vs faiss (3000):", a, stats)
    assert a["ari"] >= 0.99 and a["bcubed_f1"] >= 0.99
    sparse = cluster(s, metric="euclidean", threshold=0.65, neighbors="faiss", knn_k=16, max_exact_component=1)
    assert adjusted_rand_index(sparse, exact) >= 0.99, agreement(sparse, exact)
    again = cluster(s, metric="euclidean", threshold=0.65, neighbors="faiss", knn_k=16)
    np.testing.assert_array_equal(again, approx)


#: how far every genuine subgroup's margin must stay below identity.subgroup_margin. The margins do not move with
#: the BLAS / SIMD kernels (dlib has no run-time dispatch; measured under OpenBLAS SkylakeX/Haswell, MKL's Intel and
#: AMD paths, AVX2-only ATen/oneDNN/OpenCV: embeddings bit-identical, margins within 1.3e-15; docs/build.md), so
#: the clearance covers changes of the data or the dlib build, not kernels: 0.01 is the swing once seen when a
#: near-duplicate pair entered the sample (celeba_7222: two crops of one photo, margin 0.066 before they counted once)
SUBGROUP_CLEARANCE = 0.01


def test_subgroup_test_flags_nothing_in_genuine_folders(labelled_embeddings):
    """The opt-in within-name subgroup test on the 18 labelled people of the clustering build (their main faces):
    no genuine member is flagged, and no genuine subgroup comes within SUBGROUP_CLEARANCE of the margin threshold
    (the largest is celeba_7393's, 0.030)."""
    _, x, truth = labelled_embeddings
    truth = np.asarray(truth)
    cfg = IdentityConfig(name_subgroups=True)
    checked = 0
    margins = {}
    for person in sorted(set(truth)):
        xs = x[truth == person]
        checked += len(xs) >= cfg.subgroup_min_faces
        assert name_subgroup_outliers(xs, "euclidean", cfg) == {}, person
        margins.update({(person, s.rows): s.margin for s in name_subgroups(xs, "euclidean", cfg)})
    assert checked >= 15
    print("genuine subgroup margins:", margins)
    assert margins and max(margins.values()) <= cfg.subgroup_margin - SUBGROUP_CLEARANCE, margins


def test_subgroup_test_counts_near_duplicates_once(labelled_embeddings):
    """celeba_7222 holds two crops of one photo (043004.jpg, 006383.jpg: 0.109 apart, the closest distinct photos
    of one person in the shared faces are 0.236). Counted twice they form a tight pair whose margin (0.066) passes
    subgroup_margin (0.065): a genuine face flagged. Counted once (subgroup_dup_distance), the name has 5 distinct
    photos and is not tested; a third copy of a photo changes nothing."""
    _, x, truth = labelled_embeddings
    truth = np.asarray(truth)
    xs = x[truth == "celeba_7222"]
    d = np.linalg.norm(xs[:, None] - xs[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert d.min() < 0.15 and np.sort(d[np.isfinite(d)])[2] > 0.2  # exactly one near-duplicate pair
    cfg = IdentityConfig(name_subgroups=True)
    off = IdentityConfig(name_subgroups=True, subgroup_dup_distance=0.0)
    assert name_subgroup_outliers(xs, "euclidean", off) != {}  # the old behaviour: the pair is flagged
    assert name_subgroup_outliers(xs, "euclidean", cfg) == {}
    assert name_subgroups(xs, "euclidean", cfg) == []  # 5 distinct photos < subgroup_min_faces
    # the same photos plus a third copy of one of them: still one photo, same verdict
    i = int(np.argmin(d.min(axis=1)))
    xs3 = np.concatenate([xs, xs[i:i + 1] + 1e-4])
    assert name_subgroup_outliers(xs3, "euclidean", cfg) == {}
