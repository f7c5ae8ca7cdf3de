"""Helpers for the `celebref build` tests: subsets of the shared photos (symlinked into a temp folder, never
copied into the repository), a local HTTP server for the crawler, XML landmark truth."""

from __future__ import annotations

import csv
import http.server
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np


def shared_rows(faces_root: Path, kinds=None, sources=None) -> list[dict]:
    rows = list(csv.DictReader(open(faces_root / "manifest.csv", newline="")))
    return [r for r in rows if (kinds is None or r["kind"] in kinds) and (sources is None or r["source"] in sources)]


def link_tree(rows: list[dict], faces_root: Path, dest: Path, *, by: str | None = None, per_group: int | None = None,
              prefix_source: bool = True) -> Path:
    """Symlink shared files into ``dest/<group>/<name>`` (group = row[by], or flat); ``per_group`` caps each."""
    counts: Counter = Counter()
    dest.mkdir(parents=True, exist_ok=True)
    for r in sorted(rows, key=lambda r: (r["source"], r["path"])):
        g = r[by] if by else ""
        if per_group is not None and counts[g] >= per_group:
            continue
        counts[g] += 1
        name = (f"{r['source']}__" if prefix_source else "") + r["path"].replace("/", "__")
        target = dest / g / name if g else dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(faces_root / r["source"] / r["path"])
    return dest


def dlib_xml_faces(faces_root: Path):
    """(image path, box (x1,y1,x2,y2), (68,2) truth) from dlib's *_with_face_landmarks.xml."""
    out = []
    for x in sorted((faces_root / "dlib").glob("**/*_with_face_landmarks.xml")):
        root = ET.parse(x).getroot()
        for img in root.iter("image"):
            for box in img.iter("box"):
                parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in box.iter("part")}
                if len(parts) != 68:
                    continue
                b = [float(box.get(k)) for k in ("left", "top", "width", "height")]
                out.append((x.parent / img.get("file"), (b[0], b[1], b[0] + b[2], b[1] + b[3]),
                            np.array([parts[i] for i in range(68)], np.float64)))
    return out


def reference_ffhq_quad(lm: np.ndarray) -> np.ndarray:
    """The FFHQ quad written out from NVlabs/ffhq-dataset recreate_aligned_images (independent of celebref)."""
    lm = np.asarray(lm, np.float64)
    lm_eye_left, lm_eye_right, lm_mouth_outer = lm[36:42], lm[42:48], lm[48:60]
    eye_left = np.mean(lm_eye_left, axis=0)
    eye_right = np.mean(lm_eye_right, axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_left = lm_mouth_outer[0]
    mouth_right = lm_mouth_outer[6]
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


# ------------------------------------------------------------------------------------------ HTTP test server
class Site:
    """A local test site for the crawler (loopback only). Routes are set per test; every request is counted."""

    def __init__(self):
        self.routes: dict[str, dict] = {}
        self.hits: Counter = Counter()
        self.lock = threading.Lock()
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                with site.lock:
                    site.hits[path] += 1
                    n = site.hits[path]
                route = site.routes.get(path)
                if route is None:
                    self.send_error(404)
                    return
                if route.get("delay"):
                    time.sleep(route["delay"])
                statuses = route.get("statuses")
                status = statuses[min(n - 1, len(statuses) - 1)] if statuses else route.get("status", 200)
                body = route.get("body", b"")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", route.get("type", "image/jpeg"))
                    if route.get("length", True):
                        self.send_header("Content-Length", str(route.get("declared", len(body))))
                    self.end_headers()
                    if status < 400:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------------------ shared builds
_BUILDS: dict = {}


def memo_build(key: str, make):
    """Build once per test session and share (tests in several modules reuse the same dataset; read-only)."""
    if key not in _BUILDS:
        _BUILDS[key] = make()
    return _BUILDS[key]


def reencoded_copy(src: Path, dst: Path) -> Path:
    """The same pixels under different bytes (another sha256), so a copy is not collapsed as an exact duplicate."""
    from bfrcore.imageio import encode_png, read_image

    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(encode_png(read_image(src), 9))
    return dst


# ------------------------------------------------------------------------------------------ fault injection
class FaultyTask:
    """Wraps an executor task so that chosen shards fail: ``faults`` = [{"stage", "item_id", "kind": "die" |
    "raise", "times"}]. A shard containing ``item_id`` of ``stage`` fails on its first ``times`` attempts (attempts
    are counted in marker files under ``marker_dir``, so they survive the worker process being killed): ``die``
    kills the worker process (``os._exit``), ``raise`` raises in the task. Runs on the real workers."""

    def __init__(self, task, marker_dir: Path, faults: list[dict]):
        self.task = task
        self.marker_dir = str(marker_dir)
        self.faults = faults

    def __call__(self, payload):
        import os

        from celebref.pipeline.runner import ItemStage

        # a stage runner's shard: (ItemStage, cache_root, key, items, followers)
        if isinstance(payload, tuple) and len(payload) == 5 and isinstance(payload[0], ItemStage):
            stage, items = payload[0].name, payload[3]
            ids = {i["item_id"] for i in items}
            for f in self.faults:
                if f["stage"] == stage and f["item_id"] in ids:
                    marker = Path(self.marker_dir) / f"{stage}-{f['item_id'][:16]}.attempts"
                    marker.parent.mkdir(parents=True, exist_ok=True)
                    with open(marker, "a") as fh:
                        fh.write(f"{os.getpid()}\n")
                    n = len(marker.read_text().splitlines())
                    if n <= f["times"]:
                        if f["kind"] == "die":
                            os._exit(17)
                        raise RuntimeError(f"injected failure {n}/{f['times']} ({stage})")
        return self.task(payload)


def attempts_of(marker_dir: Path, stage: str, item_id: str) -> int:
    m = Path(marker_dir) / f"{stage}-{item_id[:16]}.attempts"
    return len(m.read_text().splitlines()) if m.is_file() else 0


def fault_injecting(inner, marker_dir: Path, faults: list[dict]):
    """An executor that runs every task of the real ``inner`` executor through :class:`FaultyTask`."""
    from celebref.pipeline.executor import Executor

    class FaultInjectingExecutor(Executor):
        def __init__(self):  # state lives in the inner executor
            pass

        name = property(lambda self: inner.name)
        workers = property(lambda self: inner.workers)
        retries = property(lambda self: inner.retries)
        events = property(lambda self: inner.events)

        def run(self, task, payloads, labels=None):
            return inner.run(FaultyTask(task, Path(marker_dir), faults), payloads, labels)

        def prepare(self, paths):
            inner.prepare(paths)

        def wait_ready(self):
            inner.wait_ready()

        def describe(self):
            return inner.describe()

    return FaultInjectingExecutor()


def flaky_square(x):
    """A trivial executor task for executor tests: raises for negative inputs (``x < 0``)."""
    if x < 0:
        raise ValueError(f"bad {x}")
    return x * x


# ------------------------------------------------------------------------------------------ the small build
#: the small mixed build shared by the determinism, resume, threshold, CLI and Dask tests
SMALL_CFG = {"runner": {"shard_size": 2}, "identity": {"min_images": 2}, "output": {"report": False},
             "quality": {"niqe": False}}


def small_sources(celebref_examples: Path, shared_faces: Path, tmp_path_factory) -> list[str]:
    """8 aligned CelebRef-HQ images (00075, 00089: 4 each) + the face_recognition Obama/Biden photos."""
    def make():
        root = tmp_path_factory.mktemp("small")
        refs = celebref_examples / "RefsImg"
        for ident in ("00075", "00089"):
            (root / "chq" / ident).mkdir(parents=True)
            for f in sorted((refs / ident).glob("*.png"))[:4]:
                (root / "chq" / ident / f.name).symlink_to(f)
        rows = shared_rows(shared_faces, sources={"face_recognition"}, kinds={"whole_photo"})
        link_tree([r for r in rows if r["identity"] in ("obama", "biden")], shared_faces, root / "photos",
                  by="identity")
        return [f"celebrefhq:{root / 'chq'}", f"folder:{root / 'photos'}"]

    return memo_build("small_sources", make)


def small_local_build(sources: list[str], tmp_path_factory):
    """The small build with the local executor, 2 worker processes (the reference the other executors match)."""
    from celebref.pipeline import build_dataset, parse_config

    return memo_build("small_local", lambda: build_dataset(
        sources, tmp_path_factory.mktemp("small_built") / "ds", parse_config(SMALL_CFG), workers=2))


def image_hashes(out: Path) -> dict:
    from bfrcore.imageio import file_sha256

    return {str(p.relative_to(out)): file_sha256(p) for p in sorted((out / "images").rglob("*.png"))}


#: photos per labelled identity in the clustering build (celeba_in_the_wild 10, LFW 5, five_celebrity 3 people)
CLUSTERING_PER_IDENTITY = 6


def clustering_build(shared_faces: Path, tmp_path_factory):
    """celeba_in_the_wild + LFW + five_celebrity, CLUSTERING_PER_IDENTITY photos per person, no name labels, no
    quality/dedup filtering: scores the clustering against manifest.csv truth; its embeddings also feed the FAISS
    and subgroup-test checks."""
    import dataclasses

    from celebref.pipeline import build_dataset, parse_config

    def make():
        rows = shared_rows(shared_faces, kinds={"celeba_in_the_wild", "lfw_250", "face_crop_150"})
        tree = link_tree(rows, shared_faces, tmp_path_factory.mktemp("clu"), by="identity",
                         per_group=CLUSTERING_PER_IDENTITY)
        # embedder dlib (one pass): the opt-in subgroup test is calibrated on it (the build's default is dlib-flip)
        cfg = parse_config({"ingest": {"name_from": "none"}, "identity": {"min_images": 1, "embedder": "dlib"},
                            "quality": {k: None for k in ("min_eye_distance", "min_sharpness", "max_noise_ratio",
                                                          "max_tone_r2", "min_chroma", "max_blockiness")},
                            "dedup": {"enabled": False}, "output": {"report": False}})
        cfg = cfg.replace(quality=dataclasses.replace(cfg.quality, niqe=False))
        return build_dataset([f"folder:{tree}"], tmp_path_factory.mktemp("clu_out"), cfg, workers=2,
                             truth=shared_faces / "manifest.csv")

    return memo_build("clustering", make)


def main_face_embeddings(result, truth_csv: Path):
    """(face ids, (N, D) embeddings, truth identity) of the main face of every labelled photo of a build."""
    import numpy as np

    from celebref.pipeline import load_truth

    truth = load_truth(truth_csv)
    m = result.manifest
    main = m[(m["face_index"] == 0) & m["source_sha256"].isin(list(truth))]
    emb = {}
    for rec in result.stage_runs["embed"].records.values():
        emb.update((rec.get("result") or {}).get("embeddings") or {})
    main = main[main["face_id"].isin(list(emb))].sort_values("face_id")
    x = np.asarray([emb[f] for f in main["face_id"]], dtype=np.float64)
    return list(main["face_id"]), x, [truth[s] for s in main["source_sha256"]]
