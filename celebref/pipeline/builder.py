"""`build_dataset`: sources -> DATASET folder (bfrcore.dataset format), every stage cached and resumable.

The build is a pipeline of typed stages over per-face records (:mod:`celebref.pipeline.records`):

1. ingest (:mod:`celebref.ingest`) -> items; then the per-item stages, cached per item by the stage runner
   (:mod:`celebref.pipeline.runner`): faces (:mod:`~celebref.pipeline.faces_stage`), embeddings
   (:mod:`~celebref.pipeline.embed_stage`) and quality scores (:mod:`~celebref.pipeline.quality`);
2. the global stages, each in its own module, filling the records: identities (clusters + names, cached by the
   runner; then the review's curation, ``--curation``) -> quality decisions -> near-duplicates -> ``min_images``
   -> identity numbers, splits and references;
3. output (:mod:`~celebref.pipeline.output`): images, manifest (written from the records), tables, build.json,
   report.

A face's manifest row records the first stage that rejected it (its :class:`~celebref.pipeline.records.Rejection`:
``reject_stage``/``reject_reason``/``reject_detail``); faces rejected for quality keep their identity.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bfrcore.dataset import write_dataset
from bfrcore.devices import resolve_device_lazily
from bfrcore.progress import bar_factory
from bfrcore.versions import package_versions
from celebref.ingest import IngestResult, SourceSpec, ingest_sources, parse_source
from celebref.pipeline import dedup, embed_stage, faces_stage, identity, output, quality, splits
from celebref.pipeline.config import BuildConfig
from celebref.pipeline.executor import Executor, get_executor
from celebref.pipeline.records import BuildRecords, add_item_results, collect_faces, stage_items
from celebref.pipeline.runner import Followers, ItemStage, StageRun, run_item_stage

log = logging.getLogger("celebref.pipeline")

BUILD_FORMAT = "celebref.build/1"
STAGES = ("ingest", "faces", "identity", "curation", "quality", "dedup", "splits")
#: the distributions whose versions build.json records
VERSIONED = ("celebref-suite", "numpy", "scipy", "pandas", "pyarrow", "pillow", "opencv-python-headless", "dlib-bin",
             "face-recognition-models", "insightface", "onnxruntime", "onnx", "torch", "facenet-pytorch", "datasets")
_OUTPUTS = ("manifest.parquet", "identities.parquet", "references.parquet", "build.json", "report.html")


@dataclass
class BuildResult:
    out: Path
    manifest: pd.DataFrame
    identities: pd.DataFrame
    references: pd.DataFrame
    info: dict
    stage_runs: dict[str, StageRun] = field(default_factory=dict)

    @property
    def kept(self) -> pd.DataFrame:
        return self.manifest[self.manifest["kept"]]


def load_truth(path: str | os.PathLike | None) -> dict[str, str]:
    """Truth labels for scoring: a CSV with ``sha256`` (of the source file) and ``identity`` columns (the shared
    data's faces/manifest.csv has both). Empty identities are ignored."""
    if path is None:
        return {}
    out = {}
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        if not r.fieldnames or "sha256" not in r.fieldnames or "identity" not in r.fieldnames:
            raise ValueError(f"{path}: truth CSV needs 'sha256' and 'identity' columns")
        for row in r:
            if row["identity"]:
                out[row["sha256"]] = row["identity"]
    return out


def versions() -> dict:
    """Python and the versions of :data:`VERSIONED` (None when not installed), as build.json records them."""
    return package_versions(VERSIONED, python=True)


@dataclass
class ItemStages:
    """The outcome of the per-item part of a build: ingest, the faces/embed/quality stage runs, the records they
    make, the resolved embedder, the executor's description and the timings so far."""

    ingest: IngestResult
    runs: dict[str, StageRun]
    records: BuildRecords
    embedder: str
    executor: dict
    timings: dict[str, dict]
    #: the embed stage's parameters (embedder, engine, device) and the detector's device
    embed: embed_stage.EmbedParams | None = None
    detector_device: str = "cpu"


def build_dataset(sources: list[str | SourceSpec], out: str | os.PathLike, cfg: BuildConfig | None = None, *,
                  workers: int = 1, truth: str | os.PathLike | None = None, mode: str = "resume",
                  executor: Executor | str | None = None, address: str | None = None,
                  quiet: bool = True, curation: str | os.PathLike | None = None) -> BuildResult:
    """Build (or resume/refresh) a dataset in ``out`` from ``sources``. Deterministic for the same inputs, config
    and seed, whatever ``workers`` and executor. ``mode='overwrite'`` deletes ``out``'s cache and outputs first.

    ``executor``: None/``'local'`` (this machine, ``workers`` processes), ``'dask'`` (a Dask scheduler at
    ``address``, else a LocalCluster of ``workers`` processes), or an :class:`Executor` instance (left open).
    ``curation``: a curation file from ``celebref review`` (see :mod:`celebref.review.curation`), applied after
    clustering; a malformed file raises FormatError before any work."""
    cfg = cfg or BuildConfig()
    cur_doc = None
    if curation is not None:  # loaded first, so that a bad file fails before any work
        from celebref.review.curation import load_curation

        cur_doc = load_curation(curation)
    devices = stage_devices(cfg)  # cuda without a GPU (or without onnxruntime's CUDA provider): exit 2 before work
    out = _prepare_out(Path(out), mode)
    specs = [s if isinstance(s, SourceSpec) else parse_source(str(s)) for s in sources]
    if not specs:
        raise ValueError("no sources given")
    t_all = time.perf_counter()
    own_executor = not isinstance(executor, Executor)
    if own_executor:
        executor = get_executor(executor or "local", workers, address=address, retries=cfg.runner.retries)
    try:
        st = _run_item_stages(specs, out / "cache", cfg, devices, executor=executor, quiet=quiet)
    finally:
        if own_executor:
            executor.close()
    records, timings = st.records, st.timings

    t_global = time.perf_counter()  # the global stages, each filling the records
    with _timer(timings, "identity") as tm:
        ident = identity.identity_stage(records, embedder=st.embedder, cfg=cfg.identity, cache_root=out / "cache",
                                        embed_key=st.runs["embed"].key)
        groups = ident.result
        tm.update(cached=ident.cached, key=ident.key, threshold=groups.threshold, clustering=groups.stats)
    curated = identity.curate(records, groups, cur_doc)  # the review's decisions (celebref review), if any
    groups = curated.groups
    identity.apply_groups(records, groups)
    with _timer(timings, "quality_decisions"):
        quality.decide_stage(records, cfg.quality)
    with _timer(timings, "dedup_select"):
        survivors = dedup.dedup_stage(records, groups.groups, cfg.dedup)
        final = identity.apply_min_images(records, survivors, cfg.identity.min_images)
    layout = splits.splits_stage(records, groups.groups, final, seed=cfg.seed, cfg=cfg.splits)
    with _timer(timings, "write_images") as tm:
        tm["images"] = output.write_images(records, out)

    manifest = output.manifest(records)
    truth_map = load_truth(truth)
    info = _build_info(st, cfg, specs, groups=groups, identity_key=ident.key, counts=output.funnel(records, final),
                       reject_reasons=output.reason_counts(manifest),
                       cluster_quality=_score_clusters(truth_map, records, groups) if truth_map else None,
                       curation=curated.record)
    timings["global_s"] = round(time.perf_counter() - t_global, 3)
    timings["total_s"] = round(time.perf_counter() - t_all, 3)
    from celebref.publish.privacy import sanitize

    # build.json is shared with the dataset: every local absolute path left in it (e.g. in a recorded error
    # message) is reduced to <local>/<name>
    identities_df, references_df = output.identities(groups, final, layout), output.references(layout)
    write_dataset(out, manifest, identities=identities_df, references=references_df, build_info=sanitize(info))
    info = json.loads((out / "build.json").read_text())
    result = BuildResult(out, manifest, identities_df, references_df, info, dict(st.runs))
    if cfg.output.report:
        from celebref.pipeline.report import write_report

        write_report(result, cfg, faces_crop={f.face_id: f.crop for f in records.candidates()},
                     scores={f.face_id: f.measures for f in records.clustered()},
                     source_paths={p.item_id: p.item["path"] for p in records.photos})
    return result


@contextmanager
def _timer(timings: dict, name: str):
    """``timings[name] = {"wall_s": ...}`` for the block; yields that dict for more fields."""
    rec = {"wall_s": 0.0}
    timings[name] = rec
    t0 = time.perf_counter()
    yield rec
    rec["wall_s"] = round(time.perf_counter() - t0, 3)


def _prepare_out(out: Path, mode: str) -> Path:
    """Create ``out``; ``mode='overwrite'`` first deletes its cache and outputs."""
    if mode not in ("resume", "overwrite"):
        raise ValueError("mode must be 'resume' or 'overwrite'")
    if mode == "overwrite" and out.exists():
        for name in ("cache", "images", "report"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in _OUTPUTS:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _run_item_stages(specs: list[SourceSpec], cache_root: Path, cfg: BuildConfig, devices: tuple[str, str], *,
                     executor: Executor, quiet: bool) -> ItemStages:
    """Ingest, then the faces, embed and quality stages (cached per item, run on ``executor``); ``devices``:
    (detector, embedder) from :func:`stage_devices`."""
    events_before = len(executor.events)
    progress = bar_factory(quiet)
    timings: dict[str, dict] = {}
    cache_root.mkdir(parents=True, exist_ok=True)
    executor.prepare([cache_root, *_local_source_paths(specs)])
    t0 = time.perf_counter()
    ing = ingest_sources(specs, cache_root, cfg, quiet=quiet, executor=executor)
    timings["ingest"] = {"wall_s": round(time.perf_counter() - t0, 3), "items": len(ing.items)}
    executor.wait_ready()  # the rest of the pool's start (executor.startup_wait_s), outside the stage timings
    common = {"cache_root": cache_root, "executor": executor, "shard_size": cfg.runner.shard_size,
              "progress": progress}
    det_device, embed_device = devices
    fparams = faces_stage.FacesParams(cfg.faces, cfg.ingest.max_pixels, cfg.ingest.max_bytes,
                                      cfg.output.png_compress_level, det_device)
    embedder = embed_stage.resolve_embedder(cfg.identity.embedder)
    faces_st = ItemStage("faces", faces_stage.VERSION, faces_stage.process_item, fparams)
    embed_st = ItemStage("embed", embed_stage.VERSION, embed_stage.embed_item,
                         embed_stage.embed_params(embedder, cfg.identity.engine, embed_device))
    quality_st = ItemStage("quality", quality.VERSION, quality.score_item, quality.QualityParams(cfg.quality.niqe))
    # fused: embed and quality run in the faces pass on the crops in memory; their own runs below then find every
    # item cached (and compute only what the fused pass left, e.g. after a config change of one stage)
    followers = Followers((embed_st, quality_st), faces_stage.follower_item) if cfg.runner.fuse else None
    items = [{"item_id": i["item_id"], "path": i["path"], "aligned": i["aligned"]} for i in ing.items]
    faces_run = run_item_stage(faces_st, items, upstream=(), followers=followers, **common)
    records = collect_faces(ing, faces_run)
    sub_items = stage_items(records)
    emb_run = run_item_stage(embed_st, sub_items, upstream=(faces_run.key,), **common)
    q_run = run_item_stage(quality_st, sub_items, upstream=(faces_run.key,), **common)
    add_item_results(records, emb_run, q_run)
    timings.update(faces=faces_run.summary(), embed=emb_run.summary(), quality_scores=q_run.summary())
    return ItemStages(ing, {"faces": faces_run, "embed": emb_run, "quality": q_run}, records, embedder,
                      {**executor.describe(), "events": executor.events[events_before:]}, timings,
                      embed_st.params, fparams.device)


def stage_devices(cfg: BuildConfig) -> tuple[str, str]:
    """(detector device, embedder device) for ``cfg.runner.device`` (``auto`` resolved without importing torch on
    a machine without an NVIDIA driver). dlib's HOG/MMOD detectors and dlib's own network code stay on the CPU.
    Raises ConfigError (exit 2) for a GPU the ONNX models cannot use (no onnxruntime CUDA provider)."""
    from celebref.pipeline.config import ConfigError

    device = resolve_device_lazily(cfg.runner.device)
    detector = faces_stage.resolve_detector(cfg.faces.detector)
    embedder = embed_stage.resolve_embedder(cfg.identity.embedder)
    det_device = faces_stage.detector_device(detector, device)
    embed_device = "cpu" if (embedder in ("dlib", "dlib-flip") and cfg.identity.engine == "dlib") else device
    needs_onnx_gpu = [d for d, uses in ((det_device, detector == "insightface"),
                                        (embed_device, embedder == "arcface"
                                         or (embedder in ("dlib", "dlib-flip") and cfg.identity.engine == "onnx")))
                      if uses and d != "cpu"]
    if needs_onnx_gpu:
        from bfrcore.faces.embed import onnx_providers

        try:
            onnx_providers(needs_onnx_gpu[0])
        except ValueError as e:
            raise ConfigError(str(e)) from e
    return det_device, embed_device


def _build_info(st: ItemStages, cfg: BuildConfig, specs: list[SourceSpec], *, groups, identity_key: str,
                counts: dict, reject_reasons: dict, cluster_quality: dict | None, curation: dict | None) -> dict:
    """build.json (before the dataset writer adds ``format`` and ``dataset_hash``)."""
    detector = faces_stage.resolve_detector(cfg.faces.detector)
    scores = {f.face_id: f.scores for f in st.records.faces.values() if f.scores is not None}
    runs = st.runs
    return {
        "build_format": BUILD_FORMAT,
        "params": {**cfg.to_dict(), "size": cfg.faces.size},
        "sources": [_public_source(s) for s in specs],
        "resolved": {"detector": detector, "embedder": st.embedder, "metric": st.records.metric,
                     "embed_engine": st.embed.engine,
                     "device": {"detector": st.detector_device, "embedder": st.embed.device},
                     "cluster_threshold": groups.threshold, "niqe": _niqe_status(scores)},
        "versions": versions(),
        "weights": _weights_records(detector, st.embedder, scores),
        "counts": counts,
        "reject_reasons": reject_reasons,
        "stage_keys": {"faces": runs["faces"].key, "embed": runs["embed"].key, "quality": runs["quality"].key,
                       "identity": identity_key},
        "timings": st.timings,
        "executor": st.executor,
        "cluster_quality": cluster_quality,
        "curation": curation,
        "ingest_counts": dict(sorted(st.ingest.counts.items())),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": cfg.seed,
    }


def _local_source_paths(specs: list[SourceSpec]) -> list[str]:
    """Files and folders the workers read directly (folder/CelebRef-HQ trees; archives are extracted into the
    cache; HF rows and downloads are stored in the cache's blob store)."""
    out = []
    for s in specs:
        if s.kind in ("folder", "celebrefhq") and Path(s.location).exists():
            out.append(str(Path(s.location).resolve()))
    return out


def _niqe_status(scores: dict) -> str:
    st = Counter(s.get("niqe_status", "?") for s in scores.values())
    return st.most_common(1)[0][0] if st else "no faces"


def _weights_records(detector: str, embedder: str, scores: dict) -> list[dict]:
    from bfrcore import weights

    names = {"dlib-hog": ["dlib-shape-predictor-68"], "dlib-cnn": ["dlib-mmod-detector", "dlib-shape-predictor-68"],
             "mtcnn": ["mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet", "dlib-shape-predictor-68"],
             "insightface": ["insightface-buffalo_l", "dlib-shape-predictor-68"]}.get(detector, [])
    names += {"dlib": ["dlib-shape-predictor-5", "dlib-resnet-face-v1"], "arcface": ["insightface-buffalo_l"]}.get(
        "dlib" if embedder == "dlib-flip" else embedder, [])
    if any(s.get("niqe") is not None for s in scores.values()):
        names.append("niqe-basicsr")
    from celebref.publish.privacy import scrub_text

    out = []
    for n in dict.fromkeys(names):
        try:  # names, hashes, licences and URLs only: no local path goes into build.json
            out.append({k: v for k, v in weights.describe(n).items() if k != "path"})
        except Exception as e:  # describe never blocks a build
            out.append({"name": n, "error": scrub_text(str(e))})
    return out


def _public_source(spec: SourceSpec) -> str:
    """A source as build.json records it: its kind and, for local files and folders, the name only (no local
    absolute path); Hub ids and URL lists' names as given."""
    from celebref.publish.privacy import scrub_text

    loc = spec.location
    if Path(loc).is_absolute() or loc.startswith("~") or ".." in Path(loc).parts:
        loc = Path(loc.rstrip("/\\")).name or loc
    return f"{spec.kind}:{scrub_text(loc)}"


def _score_clusters(truth_map: dict[str, str], records: BuildRecords, groups) -> dict:
    """Pairwise and BCubed scores of the raw clusters and of the final identities, on the main (largest) face of
    every photo with a truth label."""
    from celebref.pipeline.cluster_metrics import cluster_scores

    sel = [f for f in records.clustered() if f.face_index == 0 and f.item_id in truth_map]
    if not sel:
        return {"n": 0}
    truth = [truth_map[f.item_id] for f in sel]
    out = {"clusters": cluster_scores([groups.clusters[f.face_id] for f in sel], truth)}
    # faces dropped by name reconciliation / min_images count as singletons (each its own cluster)
    pred = [f.identity if isinstance(f.identity, str) else f"_single_{f.face_id}" for f in sel]
    out["identities"] = cluster_scores(pred, truth)
    out["scored_faces"] = len(sel)
    return out
