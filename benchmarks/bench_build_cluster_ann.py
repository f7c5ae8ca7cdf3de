"""Accuracy and cost of clustering through a FAISS k-nearest-neighbour graph (``identity.neighbors: faiss``) against
exact all-pairs clustering (``exact``), on real dlib embeddings of the labelled shared faces and on a synthetic set
of N faces made from them.

    .venv/bin/python benchmarks/bench_build_cluster_ann.py [--n 20000] [--faces ../shared/data/faces]
                                                           [--work /tmp/celebref_ann] [--json out.json]

1. Embeddings: the main face of every labelled photo of celeba_in_the_wild, LFW, five_celebrity, the CelebRef-HQ
   examples and ASFFNet's Obama, through `celebref build` (faces + dlib embeddings; cached under --work).
2. Labelled set: exact average linkage (cut 0.65) vs the kNN-graph path (HNSW and flat index, k = 16 and 48, and
   the sparse-graph linkage alone), adjusted Rand index / BCubed agreement with the exact clustering, and both
   against the truth labels.
3. Synthetic scale: every labelled person is copied into new synthetic people until N faces: each copy adds one
   random identity offset (Gaussian, |offset| ~ 0.6, so copies are as far apart as different real people) to all
   of that person's faces, plus independent per-face noise (|n| ~ 0.03). Exact vs kNN-graph paths, with timings
   and peak memory of the exact path (n^2/2 float64 distances).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def labelled_embeddings(faces: Path, work: Path):
    from celebref.pipeline import build_dataset, parse_config

    rows = list(csv.DictReader(open(faces / "manifest.csv", newline="")))
    sel = [r for r in rows if r["kind"] in ("celeba_in_the_wild", "lfw_250", "face_crop_150")
           or (r["source"] in ("dmdnet_celebrefhq", "asffnet512_obama") and r["kind"] == "hq_aligned_512")]
    tree = work / "tree"
    for r in sel:
        dst = tree / r["identity"] / (r["source"] + "__" + r["path"].replace("/", "__"))
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.symlink_to(faces / r["source"] / r["path"])
    cfg = parse_config({"ingest": {"name_from": "none"}, "identity": {"min_images": 1},
                        "quality": {"niqe": False}, "dedup": {"enabled": False}, "output": {"report": False}})
    res = build_dataset([f"folder:{tree}"], work / "out", cfg, workers=2)
    truth = {r["sha256"]: r["identity"] for r in sel}
    m = res.manifest
    main = m[(m["face_index"] == 0) & m["source_sha256"].isin(list(truth))].sort_values("face_id")
    emb = {}
    for rec in res.stage_runs["embed"].records.values():
        emb.update((rec.get("result") or {}).get("embeddings") or {})
    main = main[main["face_id"].isin(list(emb))]
    return np.asarray([emb[f] for f in main["face_id"]], np.float64), [truth[s] for s in main["source_sha256"]]


def synthetic(x: np.ndarray, truth: list[str], n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = sorted(set(truth))
    li = np.array([labels.index(t) for t in truth])
    d = x.shape[1]
    parts = [x + rng.normal(0, 0.03 / np.sqrt(d), size=x.shape)]
    while sum(len(p) for p in parts) < n:
        off = rng.normal(0, 0.6 / np.sqrt(d), size=(len(labels), d))
        parts.append(x + off[li] + rng.normal(0, 0.03 / np.sqrt(d), size=x.shape))
    return np.concatenate(parts)[:n]


def compare(x: np.ndarray, exact: np.ndarray, truth=None, ks=(16, 48)) -> list[dict]:
    from celebref.pipeline.cluster_metrics import agreement, cluster_scores
    from celebref.pipeline.clustering import cluster

    out = []
    variants = [(idx, k, None) for idx in ("hnsw", "flat") for k in ks] + [("hnsw", ks[0], 1)]
    for idx, k, mec in variants:
        stats: dict = {}
        t0 = time.perf_counter()
        kw = {"max_exact_component": mec} if mec else {}
        lab = cluster(x, metric="euclidean", threshold=0.65, neighbors="faiss", knn_k=k, faiss_index=idx,
                      stats=stats, **kw)
        row = {"variant": f"{idx} k={k}" + (" sparse-only" if mec else ""), "seconds": round(time.perf_counter() - t0, 2),
               **{f"vs_exact_{a}": round(v, 4) for a, v in agreement(lab, exact).items() if a != "n"},
               "largest_component": stats.get("largest_component"), "edges": stats.get("edges")}
        if truth is not None:
            row["vs_truth_bcubed_f1"] = round(cluster_scores(lab, truth)["bcubed_f1"], 4)
        out.append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/celebref_ann"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("CELEBREF_PROGRESS", "0")
    from celebref.pipeline.cluster_metrics import cluster_scores
    from celebref.pipeline.clustering import cluster

    args.work.mkdir(parents=True, exist_ok=True)
    x, truth = labelled_embeddings(args.faces, args.work)
    report = {"labelled": {}, "synthetic": {}}
    exact = cluster(x, metric="euclidean", threshold=0.65)
    report["labelled"] = {"n": len(x), "people": len(set(truth)),
                          "exact_vs_truth_bcubed_f1": round(cluster_scores(exact, truth)["bcubed_f1"], 4),
                          "variants": compare(x, exact, truth)}
    print(json.dumps(report["labelled"], indent=1))
    s = synthetic(x, truth, args.n)
    t0 = time.perf_counter()
    exact_s = cluster(s, metric="euclidean", threshold=0.65)
    t_exact = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["synthetic"] = {"n": len(s), "exact_seconds": round(t_exact, 2), "exact_clusters": int(exact_s.max() + 1),
                           "peak_rss_mb_after_exact": round(rss), "variants": compare(s, exact_s)}
    print(json.dumps(report["synthetic"], indent=1))
    print(f"load average {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
