"""Benchmark `celebref build` against the plain sequential script most users write (face_recognition-style dlib
calls: HOG detect with upsample 1, 68-point shape, compute_face_descriptor, one photo after another).

    .venv/bin/python benchmarks/bench_build.py [--n 40] [--workers 2] [--faces ../shared/data/faces]
        [--set identity.embedder=dlib] [--set runner.fuse=false] [--device cuda] ...

``--device cuda`` builds on the GPU (runner.device=cuda, the MTCNN detector, dlib's network run by torch) and then
the same photos with the same config on the CPU, and prints how far the two builds agree: kept faces and
identities, the largest landmark and embedding differences. ``--compare-device cpu`` runs that comparison for a CPU
build too (the two must then agree exactly: a check of the comparison itself).

Prints images/s per stage (from a cold cache) and end to end for ours, images/s for the peer script, measured in
the same run on the same photos, and the ratio. ``--set key=value`` changes the build config (as `celebref build
--set`); by default the embed and quality stages run fused into the faces pass (``runner.fuse``), so their own
rows show only what was left to them. Our pipeline does more per face (FFHQ alignment at 512 with a 1024
quad render, quality scores, clustering, output), so the ratio is "throughput for a complete dataset build" vs "the
embedding loop alone". The photos are symlinked into a temporary folder (nothing is copied into the repository).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pick_photos(faces: Path, n: int) -> list[Path]:
    rows = list(csv.DictReader(open(faces / "manifest.csv", newline="")))
    kinds = ("celeba_in_the_wild", "lfw_250", "face_crop_150", "whole_photo")
    rows = [r for r in rows if r["kind"] in kinds]
    rows.sort(key=lambda r: (r["sha256"]))  # a fixed mixed sample
    return [faces / r["source"] / r["path"] for r in rows[:n]]


def peer_script(paths: list[Path]) -> tuple[float, int, float]:
    """What a face_recognition user writes: load, detect (HOG, upsample 1), landmarks, descriptor, sequentially.
    Returns (seconds of the photo loop, faces found, seconds its model loading took before the loop)."""
    import dlib
    import numpy as np
    from PIL import Image

    from bfrcore import weights

    t_load = time.perf_counter()  # fresh models, as the script loads them (not the build's cached ones)
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(weights.require("dlib-shape-predictor-68")))
    rec = dlib.face_recognition_model_v1(str(weights.require("dlib-resnet-face-v1")))
    load_s = time.perf_counter() - t_load  # its model loading, outside its timed loop
    n_faces = 0
    t0 = time.perf_counter()
    for p in paths:
        img = np.asarray(Image.open(p).convert("RGB"))
        for r in det(img, 1):
            shape = sp(img, r)
            np.asarray(rec.compute_face_descriptor(img, shape, 0))
            n_faces += 1
    return time.perf_counter() - t0, n_faces, load_s


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process, its live descendants (the pool's fork server and workers) and
    the descendants they have reaped (pool workers that exited count through the fork server that reaped them)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def config_data(overrides: list[str]) -> dict:
    """The benchmark's build config (no name labels, no report) with ``section.key=value`` overrides."""
    import yaml

    from bfrcore.typed_config import set_dotted
    from celebref.pipeline import ConfigError

    data: dict = {"ingest": {"name_from": "none"}, "output": {"report": False}}
    for ov in overrides:
        key, _, raw = ov.partition("=")
        set_dotted(data, key, yaml.safe_load(raw), ConfigError)
    return data


def photo_parser(doc: str) -> argparse.ArgumentParser:
    """The flags every build benchmark takes: --faces (the shared photos) and --n (how many)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    ap.add_argument("--n", type=int, default=40, help="photos (default 40)")
    return ap


def shared_photos_found(faces: Path) -> bool:
    """True when ``faces`` holds the shared photos (manifest.csv); says so on stderr otherwise."""
    os.environ.setdefault("CELEBREF_PROGRESS", "0")
    if (faces / "manifest.csv").is_file():
        return True
    print(f"shared photos not found at {faces}", file=sys.stderr)
    return False


def embeddings(result) -> dict[str, np.ndarray]:
    """face_id -> embedding, read from a build's embed-stage cache."""
    import json

    key = result.info["stage_keys"]["embed"]
    out = {}
    for f in (result.out / "cache" / "embed" / key / "items").glob("*/*.json"):
        for face_id, vec in ((json.loads(f.read_text()).get("result") or {}).get("embeddings") or {}).items():
            out[face_id] = np.asarray(vec, np.float32)
    return out


def compare_builds(a, b) -> dict:
    """How far two builds of the same photos agree: kept faces, identity grouping (as sets of face ids, whatever
    the labels), the largest source-landmark difference (px) and embedding difference (L2) over the shared faces."""
    import pandas as pd

    ma = pd.read_parquet(a.out / "manifest.parquet").set_index("face_id")
    mb = pd.read_parquet(b.out / "manifest.parquet").set_index("face_id")
    shared = ma.index.intersection(mb.index)

    def groups(m):
        kept = m[m["kept"]]
        return sorted(sorted(g.index) for _, g in kept.groupby("identity"))

    lm = [np.abs(np.asarray(ma.at[f, "landmarks68_source"], float) - np.asarray(mb.at[f, "landmarks68_source"],
                                                                                   float)).max()
          for f in shared if ma.at[f, "landmarks68_source"] is not None and mb.at[f, "landmarks68_source"] is not None]
    ea, eb = embeddings(a), embeddings(b)
    emb = [float(np.linalg.norm(ea[f] - eb[f])) for f in ea.keys() & eb.keys()]
    return {"faces": (len(ma), len(mb)), "same_kept": set(ma.index[ma["kept"]]) == set(mb.index[mb["kept"]]),
            "same_identities": groups(ma) == groups(mb), "dataset_hash_equal":
            a.info["dataset_hash"] == b.info["dataset_hash"], "max_landmark_px": max(lm, default=float("nan")),
            "max_embedding_l2": max(emb, default=float("nan")), "n_compared": len(emb)}


def main(argv=None) -> int:
    ap = photo_parser(__doc__)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda (also builds on the CPU and compares)")
    ap.add_argument("--compare-device", default=None, help="build again on this device and compare (cuda: cpu)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="build config override (repeatable), e.g. identity.embedder=dlib")
    args = ap.parse_args(argv)
    if not shared_photos_found(args.faces):
        return 2
    if args.device != "cpu":
        from bfrcore.devices import resolve_device_lazily
        from bfrcore.errors import InputError

        try:
            resolve_device_lazily(args.device)
        except InputError as e:
            print(f"{e}: nothing measured", file=sys.stderr)
            return 2
        args.overrides = [f"runner.device={args.device}", "faces.detector=mtcnn", *args.overrides]
        args.compare_device = args.compare_device or "cpu"
    else:
        args.overrides = ["runner.device=cpu", *args.overrides]
    from celebref.pipeline import build_dataset, parse_config

    paths = pick_photos(args.faces, args.n)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photos"
        src.mkdir()
        for i, p in enumerate(paths):
            (src / f"{i:04d}{p.suffix.lower()}").symlink_to(p)
        cfg = parse_config(config_data(args.overrides))
        cpu0 = tree_cpu_seconds()
        t0 = time.perf_counter()
        r = build_dataset([f"folder:{src}"], Path(tmp) / "out", cfg, workers=args.workers)
        ours = time.perf_counter() - t0
        time.sleep(0.5)  # the pool's workers have exited; let the fork server reap them (their CPU counts then)
        ours_cpu = tree_cpu_seconds() - cpu0
        pcpu0 = time.process_time()
        peer, peer_faces, peer_load = peer_script(paths)
        peer_cpu = time.process_time() - pcpu0
        t1 = time.perf_counter()
        build_dataset([f"folder:{src}"], Path(tmp) / "out", cfg, workers=args.workers)  # all stages cached
        rerun = time.perf_counter() - t1
        agreement = None
        if args.compare_device:
            other = parse_config(config_data([*args.overrides, f"runner.device={args.compare_device}"]))
            t2 = time.perf_counter()
            r2 = build_dataset([f"folder:{src}"], Path(tmp) / "out_other", other, workers=args.workers)
            other_s = time.perf_counter() - t2
            agreement = compare_builds(r, r2)
    n = len(paths)
    tm = r.info["timings"]
    faces = r.info["counts"]["candidate_faces"]
    fused = tm["faces"].get("fused")
    res = r.info["resolved"]
    print(f"{n} photos, {faces} faces (peer found {peer_faces}); ours with --workers {args.workers}, embedder "
          f"{res['embedder']} ({res.get('embed_engine')} engine), detector {res['detector']}, devices "
          f"{res.get('device')}, {'fused' if fused else 'separate'} per-item stages"
          f"{' (' + ' '.join(args.overrides) + ')' if args.overrides else ''}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'step':58s} {'seconds':>8s} {'images/s':>9s}")
    rows = [
        ("worker start-up (once per process; in the background)", r.info["executor"].get("startup_s", 0.0), n),
        ("  of which the build waited for", r.info["executor"].get("startup_wait_s", 0.0), n),
        ("ingest (hash, list)", tm["ingest"]["wall_s"], n),
        ("faces (decode, detect, 68 pt, align 512)" + (" + embed + quality, one pass" if fused else ""),
         tm["faces"]["wall_s"], n),
        ("embeddings (dlib ResNet)" + (" left after the pass" if fused else ""), tm["embed"]["wall_s"], n),
        ("quality scores" + (" left after the pass" if fused else ""), tm["quality_scores"]["wall_s"], n),
        ("global (cluster, filter, split, write)", tm["global_s"], n),
        ("ours end to end", ours, n),
        ("ours rerun (all stages cached)", rerun, n),
        ("peer: sequential face_recognition-style", peer, n),
    ]
    for name, s, k in rows:
        print(f"{name:58s} {s:8.2f} {k / s if s > 0 else float('inf'):9.2f}")
    print(f"ratio ours/peer (images/s, end to end): {peer / ours:.2f}x")
    print(f"(the peer's model loading, {peer_load:.2f} s, is outside its time; ours is in the start-up "
          f"row; counting both: {(peer + peer_load) / ours:.2f}x)")
    # CPU per photo: what each costs a core, whatever else the machine runs (the wall-clock ratio above depends on
    # how many cores other jobs leave us)
    print(f"CPU s per photo: ours {ours_cpu / n:.3f} (every process, start-up included), peer {peer_cpu / n:.3f}; "
          f"per core ours/peer {peer_cpu / ours_cpu:.2f}x; on {args.workers} free core(s) ours would do "
          f"{args.workers * n / ours_cpu:.2f} img/s vs the peer's {n / peer_cpu:.2f} "
          f"({args.workers * peer_cpu / ours_cpu:.2f}x)")
    if agreement is not None:
        print(f"{args.device} build vs the same config on {args.compare_device} ({other_s:.2f} s there, "
              f"{n / other_s:.2f} img/s): {agreement}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
