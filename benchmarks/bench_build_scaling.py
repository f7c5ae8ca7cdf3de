"""Scaling of `celebref build`: throughput of the local executor and of Dask distributed at 1 and 2 workers on the
same photos, each from a cold cache, plus an Amdahl projection for N nodes from the measured serial share.

    .venv/bin/python benchmarks/bench_build_scaling.py [--n 40] [--faces ../shared/data/faces] [--json out.json]

Per configuration it prints the wall time of the per-image stages (ingest excluded: faces, embeddings, quality),
the serial part (ingest + global: clustering, quality decisions, dedup, splits, images, manifest), end-to-end
images/s, the CPU seconds of all our processes during the build (on a machine shared with other jobs, wall-clock
speed-up is bounded by the CPU we get; CPU seconds per photo show the engine's own overhead), and the worker
start-up (not counted in the build time; a long-running cluster or pool pays it once).

Projection (Amdahl): with a serial share s of the 1-worker wall time, W workers give at most
S(W) = 1 / (s + (1 - s) / W). s is measured here; the global steps grow with the number of faces (clustering with
FAISS ~ n log n, the rest linear), so s is re-measured on the target data before trusting a large-N figure.
The photos are symlinked into a temporary folder (nothing is copied into the repository).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_build import photo_parser, pick_photos, shared_photos_found


def run_one(src: Path, out: Path, kind: str, workers: int, shard_size: int) -> dict:
    from celebref.pipeline import build_dataset, parse_config
    from celebref.pipeline.executor import DaskExecutor

    cfg = parse_config({"ingest": {"name_from": "none"}, "output": {"report": False},
                        "runner": {"shard_size": shard_size}})
    from celebref.pipeline.executor import LocalExecutor

    t0 = time.perf_counter()
    ex = DaskExecutor(workers=workers) if kind == "dask" else LocalExecutor(workers)
    ex.prepare([])  # start the worker processes (the local pool's fork server imports torch etc. once)
    if isinstance(ex, LocalExecutor):
        ex.wait_ready()  # the local pool starts in the background: measure it here, apart from the build
    startup = time.perf_counter() - t0
    try:
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        r = build_dataset([f"folder:{src}"], out, cfg, workers=workers, executor=ex)
        total = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
    finally:
        ex.close()
    tm = r.info["timings"]
    per_image = tm["faces"]["wall_s"] + tm["embed"]["wall_s"] + tm["quality_scores"]["wall_s"]
    serial = tm["ingest"]["wall_s"] + tm["global_s"]
    return {"executor": kind, "workers": workers, "total_s": round(total, 2), "per_image_stages_s": round(per_image, 2),
            "serial_s": round(serial, 2), "startup_s": round(startup, 2), "cpu_s": round(cpu, 2),
            "compute_s": round(tm["faces"]["compute_s"] + tm["embed"]["compute_s"] + tm["quality_scores"]["compute_s"], 2),
            "faces": r.info["counts"]["candidate_faces"], "kept": r.info["counts"]["kept_images"],
            "dataset_hash": r.info["dataset_hash"], "load": round(os.getloadavg()[0], 1)}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and every live descendant (pool workers, fork server, Dask
    nannies, workers and scheduler threads)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def amdahl(s: float, w: int) -> float:
    return 1.0 / (s + (1.0 - s) / w)


def main(argv=None) -> int:
    ap = photo_parser(__doc__)
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    ap.add_argument("--shard-size", type=int, default=2, help="runner.shard_size (default 2: enough tasks to balance)")
    args = ap.parse_args(argv)
    if not shared_photos_found(args.faces):
        return 2
    import celebref.pipeline._preload  # noqa: F401 - warm this process too (the inline 1-worker run), 1 BLAS thread

    paths = pick_photos(args.faces, args.n)
    n = len(paths)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photos"
        src.mkdir()
        for i, p in enumerate(paths):
            (src / f"{i:04d}{p.suffix.lower()}").symlink_to(p)
        for kind, workers in (("local", 1), ("local", 2), ("dask", 1), ("dask", 2)):
            rows.append(run_one(src, Path(tmp) / f"out_{kind}_{workers}", kind, workers, args.shard_size))
            print(f"  done {kind} x{workers}: {rows[-1]['total_s']} s", file=sys.stderr)
    hashes = {r["dataset_hash"] for r in rows}
    print(f"{n} photos, {rows[0]['faces']} faces, {rows[0]['kept']} kept; identical dataset across all runs: "
          f"{len(hashes) == 1}")
    print("(total excludes worker start-up, shown apart: a long-running cluster or pool pays it once; compute = summed "
          "per-shard busy time of all workers)")
    print(f"{'executor':8s} {'workers':>7s} {'per-image s':>11s} {'compute s':>9s} {'serial s':>8s} {'total s':>8s} "
          f"{'images/s':>8s} {'speed-up':>8s} {'CPU s':>7s} {'CPU s/photo':>11s} {'startup s':>9s} {'load':>5s}")
    base = {r["executor"]: r["total_s"] for r in rows if r["workers"] == 1}
    for r in rows:
        print(f"{r['executor']:8s} {r['workers']:7d} {r['per_image_stages_s']:11.2f} {r['compute_s']:9.2f} "
              f"{r['serial_s']:8.2f} {r['total_s']:8.2f} {n / r['total_s']:8.2f} "
              f"{base[r['executor']] / r['total_s']:8.2f} {r['cpu_s']:7.1f} {r['cpu_s'] / n:11.3f} "
              f"{r['startup_s']:9.2f} {r['load']:5.1f}")
    one = next(r for r in rows if r["executor"] == "dask" and r["workers"] == 1)
    s = one["serial_s"] / one["total_s"]
    print(f"\nper photo: {one['compute_s'] / n:.3f} s of per-image compute (1 Dask worker); global steps "
          f"{one['serial_s'] / max(one['faces'], 1) * 1000:.2f} ms a face")
    print(f"serial share s (Dask, 1 worker) = {one['serial_s']:.2f} / {one['total_s']:.2f} = {s:.4f}")
    print("Amdahl projection, per-image stages spread over W worker processes (e.g. nodes x cores):")
    for w in (1, 2, 8, 32, 128, 512):
        print(f"  W={w:4d}: speed-up <= {amdahl(s, w):7.1f}, images/s <= {n / one['total_s'] * amdahl(s, w):8.1f}")
    if args.json:
        args.json.write_text(json.dumps({"n": n, "runs": rows, "serial_share": s}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
