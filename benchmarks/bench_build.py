"""Benchmark `celebref build` against the plain sequential script most users write (face_recognition-style dlib
calls: HOG detect with upsample 1, 68-point shape, compute_face_descriptor, one photo after another).

    .venv/bin/python benchmarks/bench_build.py [--n 40] [--workers 2] [--faces ../shared/data/faces]

Prints images/s per stage (from a cold cache) and end to end for ours, images/s for the peer script, measured in
the same run on the same photos, and the ratio. Our pipeline does more per face (FFHQ alignment at 512 with a 1024
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pick_photos(faces: Path, n: int) -> list[Path]:
    rows = list(csv.DictReader(open(faces / "manifest.csv", newline="")))
    kinds = ("celeba_in_the_wild", "lfw_250", "face_crop_150", "whole_photo")
    rows = [r for r in rows if r["kind"] in kinds]
    rows.sort(key=lambda r: (r["sha256"]))  # a fixed mixed sample
    return [faces / r["source"] / r["path"] for r in rows[:n]]


def peer_script(paths: list[Path]) -> tuple[float, int]:
    """What a face_recognition user writes: load, detect (HOG, upsample 1), landmarks, descriptor, sequentially."""
    import dlib
    import numpy as np
    from PIL import Image

    from bfrcore.faces import dlib_models

    det = dlib.get_frontal_face_detector()
    sp = dlib_models.shape_predictor_68()
    rec = dlib_models.face_recognizer()
    n_faces = 0
    t0 = time.perf_counter()
    for p in paths:
        img = np.asarray(Image.open(p).convert("RGB"))
        for r in det(img, 1):
            shape = sp(img, r)
            np.asarray(rec.compute_face_descriptor(img, shape, 0))
            n_faces += 1
    return time.perf_counter() - t0, n_faces


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


def main(argv=None) -> int:
    ap = photo_parser(__doc__)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    if not shared_photos_found(args.faces):
        return 2
    from celebref.pipeline import build_dataset, parse_config

    paths = pick_photos(args.faces, args.n)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photos"
        src.mkdir()
        for i, p in enumerate(paths):
            (src / f"{i:04d}{p.suffix.lower()}").symlink_to(p)
        cfg = parse_config({"ingest": {"name_from": "none"}, "output": {"report": False}})
        t0 = time.perf_counter()
        r = build_dataset([f"folder:{src}"], Path(tmp) / "out", cfg, workers=args.workers)
        ours = time.perf_counter() - t0
        peer, peer_faces = peer_script(paths)
        t1 = time.perf_counter()
        build_dataset([f"folder:{src}"], Path(tmp) / "out", cfg, workers=args.workers)  # all stages cached
        rerun = time.perf_counter() - t1
    n = len(paths)
    tm = r.info["timings"]
    faces = r.info["counts"]["candidate_faces"]
    print(f"{n} photos, {faces} faces (peer found {peer_faces}); ours with --workers {args.workers}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'step':34s} {'seconds':>8s} {'images/s':>9s}")
    rows = [
        ("worker start-up (once per process)", r.info["executor"].get("startup_s", 0.0), n),
        ("ingest (hash, list)", tm["ingest"]["wall_s"], n),
        ("faces (decode, detect, 68 pt, align 512)", tm["faces"]["wall_s"], n),
        ("embeddings (dlib ResNet)", tm["embed"]["wall_s"], n),
        ("quality scores", tm["quality_scores"]["wall_s"], n),
        ("global (cluster, filter, split, write)", tm["global_s"], n),
        ("ours end to end", ours, n),
        ("ours rerun (all stages cached)", rerun, n),
        ("peer: sequential face_recognition-style", peer, n),
    ]
    for name, s, k in rows:
        print(f"{name:34s} {s:8.2f} {k / s if s > 0 else float('inf'):9.2f}")
    print(f"ratio ours/peer (images/s, end to end): {peer / ours:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
