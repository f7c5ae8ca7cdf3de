"""`build_dataset`: sources -> DATASET folder (bfrcore.dataset format), every stage cached and resumable.

Order: ingest -> faces (per item) -> embeddings and quality scores (per item) -> identities (clusters + names) ->
curation (``--curation``, from ``celebref review``) -> quality decisions -> near-duplicates -> min_images ->
splits/references -> images + tables + build.json + report.
A face's manifest row records the first stage that rejected it (``reject_stage``/``reject_reason``/
``reject_detail``); faces rejected for quality keep their identity.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import platform
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from bfrcore.dataset import image_id_for, relpath_for, write_dataset
from bfrcore.imageio import file_sha256
from bfrcore.progress import bar_factory
from celebref.ingest import SourceSpec, ingest_sources, parse_source
from celebref.pipeline import dedup as dedup_mod
from celebref.pipeline import embed_stage, faces_stage, splits
from celebref.pipeline import identity as identity_mod
from celebref.pipeline import quality as quality_mod
from celebref.pipeline.cache import StageCache, read_json, stage_key, write_json_atomic
from celebref.pipeline.config import BuildConfig
from celebref.pipeline.executor import Executor, get_executor
from celebref.pipeline.runner import StageRun, run_item_stage

log = logging.getLogger("celebref.pipeline")

BUILD_FORMAT = "celebref.build/1"
STAGES = ("ingest", "faces", "identity", "curation", "quality", "dedup", "splits")


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
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("celebref-suite", "numpy", "scipy", "pandas", "pyarrow", "pillow", "opencv-python-headless",
                "dlib-bin", "face-recognition-models", "insightface", "onnxruntime", "datasets"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out




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
    # --- curation (celebref review): loaded first so that a bad file fails before any work
    cur_doc = None
    if curation is not None:
        from celebref.review.curation import load_curation

        cur_doc = load_curation(curation)
    # --- end curation
    out = Path(out)
    if mode not in ("resume", "overwrite"):
        raise ValueError("mode must be 'resume' or 'overwrite'")
    if mode == "overwrite" and out.exists():
        for name in ("cache", "images", "report"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("manifest.parquet", "identities.parquet", "references.parquet", "build.json", "report.html"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    cache_root = out / "cache"
    specs = [s if isinstance(s, SourceSpec) else parse_source(str(s)) for s in sources]
    if not specs:
        raise ValueError("no sources given")
    own_executor = not isinstance(executor, Executor)
    if own_executor:
        executor = get_executor(executor or "local", workers, address=address, retries=cfg.runner.retries)
    events_before = len(executor.events)
    progress = bar_factory(quiet)
    timings: dict[str, dict] = {}
    t_all = time.perf_counter()
    try:
        # ------------------------------------------------------------------ 1. ingest
        cache_root.mkdir(parents=True, exist_ok=True)
        executor.prepare([cache_root, *_local_source_paths(specs)])
        t0 = time.perf_counter()
        ing = ingest_sources(specs, cache_root, cfg, quiet=quiet, executor=executor)
        timings["ingest"] = {"wall_s": round(time.perf_counter() - t0, 3), "items": len(ing.items)}
        items = {it["item_id"]: it for it in ing.items}

        # ------------------------------------------------------------------ 2. faces

        fparams = faces_stage.FacesParams(cfg.faces, cfg.ingest.max_pixels, cfg.ingest.max_bytes,
                                          cfg.output.png_compress_level)
        stage_items = [{"item_id": i["item_id"], "path": i["path"], "aligned": i["aligned"]} for i in ing.items]
        faces_run = run_item_stage("faces", faces_stage.VERSION, faces_stage.process_item, fparams, stage_items,
                                   cache_root=cache_root, upstream=(), executor=executor,
                                   shard_size=cfg.runner.shard_size, progress=progress)
        timings["faces"] = faces_run.summary()
        faces_cache = faces_run.cache

        faces: dict[str, dict] = {}  # face_id -> face record (+ item_id)
        for iid, rec in faces_run.records.items():
            for f in ((rec.get("result") or {}).get("faces") or []):
                if f.get("skipped"):
                    continue
                faces[f["face_id"]] = {**f, "item_id": iid, "crop": str(faces_cache.file_path(f["crop_file"]))}
        per_item_faces = defaultdict(list)
        for fid in sorted(faces):
            per_item_faces[faces[fid]["item_id"]].append(faces[fid])
        sub_items = [{"item_id": iid, "faces": [{"face_id": f["face_id"], "crop": f["crop"],
                                                 "aligned_input": f.get("aligned_input", False)} for f in fl]}
                     for iid, fl in per_item_faces.items()]

        # ------------------------------------------------------------------ 3a. embeddings, 4a. quality scores
        embedder = embed_stage.resolve_embedder(cfg.identity.embedder)
        emb_run = run_item_stage("embed", embed_stage.VERSION, embed_stage.embed_item,
                                 embed_stage.EmbedParams(embedder), sub_items, cache_root=cache_root,
                                 upstream=(faces_run.key,), executor=executor, shard_size=cfg.runner.shard_size,
                                 progress=progress)
        timings["embed"] = emb_run.summary()
        q_run = run_item_stage("quality", quality_mod.VERSION, quality_mod.score_item,
                               quality_mod.QualityParams(cfg.quality.niqe), sub_items, cache_root=cache_root,
                               upstream=(faces_run.key,), executor=executor, shard_size=cfg.runner.shard_size,
                               progress=progress)
        timings["quality_scores"] = q_run.summary()
        executor_info = {**executor.describe(), "events": executor.events[events_before:]}
    finally:
        if own_executor:
            executor.close()

    t_global = time.perf_counter()
    emb: dict[str, np.ndarray] = {}
    metric = "euclidean"
    for iid, rec in emb_run.records.items():
        r = rec.get("result") or {}
        metric = r.get("metric", metric)
        for fid, v in (r.get("embeddings") or {}).items():
            emb[fid] = np.asarray(v, dtype=np.float32)
    scores: dict[str, dict] = {}
    for iid, rec in q_run.records.items():
        for fid, s in ((rec.get("result") or {}).get("scores") or {}).items():
            scores[fid] = s

    # a face failing embedding or scoring is rejected at the faces stage with that reason
    stage_fail: dict[str, tuple[str, str, str]] = {}
    for fid, f in faces.items():
        er = emb_run.records.get(f["item_id"], {})
        qr = q_run.records.get(f["item_id"], {})
        if fid not in emb:
            stage_fail[fid] = ("faces", er.get("reason") or "embedding_failed", er.get("detail", ""))
        elif fid not in scores:
            stage_fail[fid] = ("faces", qr.get("reason") or "quality_scoring_failed", qr.get("detail", ""))

    # ------------------------------------------------------------------ 3b. identities
    t0 = time.perf_counter()
    cand = sorted(fid for fid in faces if fid not in stage_fail)
    names = [items[faces[f]["item_id"]]["name"] for f in cand]
    ident_params = {"identity": cfg.identity, "embedder": embedder, "metric": metric}
    face_key = hashlib.sha256("\n".join(f"{f}\t{n}" for f, n in zip(cand, names)).encode()).hexdigest()
    ikey = stage_key("identity", identity_mod.VERSION, ident_params, (emb_run.key, face_key))
    icache = StageCache(cache_root, "identity", ikey)
    ipath = icache.result_path("groups.json")
    if ipath.is_file():
        groups = identity_mod.IdentityGroups.from_json(read_json(ipath))
        identity_cached = True
    else:
        x = np.stack([emb[f] for f in cand]) if cand else np.zeros((0, 128), np.float32)
        groups = identity_mod.assign_identities(cand, x, names, metric=metric, embedder=embedder, cfg=cfg.identity)
        icache.write_meta({"stage": "identity", "params": ident_params, "upstream": [emb_run.key, face_key]})
        write_json_atomic(ipath, groups.to_json())
        identity_cached = False
    timings["identity"] = {"wall_s": round(time.perf_counter() - t0, 3), "cached": identity_cached, "key": ikey,
                           "threshold": groups.threshold, "clustering": groups.stats}

    # ------------------------------------------------------------------ 3c. curation (celebref review)
    curated: dict[str, str] = {}
    curation_rejects: dict[str, tuple[str, str]] = {}
    curation_record = None
    if cur_doc is not None:
        from celebref.review.curation import apply_curation

        cres = apply_curation(groups, cur_doc[0])
        groups, curated, curation_rejects = cres.groups, cres.curated, cres.rejects
        curation_record = cres.record(*cur_doc)
        for w in cres.warnings:
            log.warning("curation: %s", w)
    # ------------------------------------------------------------------ end curation

    # ------------------------------------------------------------------ 4b. quality decisions
    t0 = time.perf_counter()
    fscore: dict[str, dict] = {}
    for fid in cand:
        f = faces[fid]
        s = dict(scores[fid])
        tf = f["transform"]
        s["eye_distance"] = f["eye_distance"]
        s["yaw"], s["pitch"], s["roll"] = f["yaw"], f["pitch"], f["roll"]
        s["upsample_factor"] = tf.get("upsample_factor")
        s["padded_fraction"] = None if f.get("aligned_input") else tf.get("padded_fraction")
        img = faces_run.records[f["item_id"]]["result"]["image"]
        s["jpeg_quality"] = img.get("jpeg_quality")
        s["blockiness"] = f.get("blockiness")
        fscore[fid] = s
    qdec: dict[str, tuple] = {fid: quality_mod.decide(fscore[fid], cfg.quality) for fid in cand}
    timings["quality_decisions"] = {"wall_s": round(time.perf_counter() - t0, 3)}

    # ------------------------------------------------------------------ 4c. near-duplicates, min_images
    t0 = time.perf_counter()
    reject: dict[str, tuple[str, str, str]] = dict(stage_fail)
    duplicate_of: dict[str, str] = {}
    for fid, (reason, detail) in groups.rejects.items():
        reject[fid] = ("identity", reason, detail)
    for fid, (reason, detail) in curation_rejects.items():  # curation (celebref review)
        reject[fid] = ("curation", reason, detail)
    for fid in cand:
        if fid not in reject and qdec[fid][0]:
            reject[fid] = ("quality", qdec[fid][0], qdec[fid][1])
    survivors: dict[str, list[str]] = {}
    for gkey, g in groups.groups.items():
        members = [f for f in g["faces"] if f not in reject]
        dups = dedup_mod.near_duplicates(
            [{"face_id": f, "phash": fscore[f].get("phash"), "eye_distance": fscore[f]["eye_distance"],
              "sharpness": fscore[f].get("sharpness")} for f in members], emb, metric, cfg.dedup)
        for f, (kept_f, detail) in dups.items():
            reject[f] = ("dedup", "near_duplicate", detail)
            duplicate_of[f] = kept_f
        survivors[gkey] = [f for f in members if f not in dups]
    final_groups = {}
    for gkey, fl in survivors.items():
        if len(fl) < cfg.identity.min_images:
            for f in fl:
                reject[f] = ("identity", "too_few_images",
                             f"{len(fl)} image(s) left after filtering < identity.min_images={cfg.identity.min_images}")
        else:
            final_groups[gkey] = sorted(fl)
    timings["dedup_select"] = {"wall_s": round(time.perf_counter() - t0, 3)}

    # ------------------------------------------------------------------ 5. identity ids, splits, references
    order = sorted(final_groups, key=lambda g: min(groups.groups[g]["faces"]))
    ident_of_group = {g: f"{i:05d}" for i, g in enumerate(order)}
    group_stable_key = {g: min(groups.groups[g]["faces"]) for g in groups.groups}
    image_of: dict[str, tuple[str, int]] = {}
    for g in order:
        for n, f in enumerate(final_groups[g]):
            image_of[f] = (ident_of_group[g], n)
    members_of = {ident_of_group[g]: [(image_id_for(ident_of_group[g], image_of[f][1]), f) for f in final_groups[g]]
                  for g in order}
    if cfg.splits.mode == "image":
        image_split = {iid: sp for ident in members_of
                       for iid, sp in splits.split_images(members_of[ident], cfg.seed, cfg.splits).items()}
        split_of = {ident: ("mixed" if len({image_split[i] for i, _ in m}) > 1 else image_split[m[0][0]])
                    for ident, m in members_of.items()}
    else:
        split_of = splits.split_identities({ident_of_group[g]: group_stable_key[g] for g in order}, cfg.seed,
                                           cfg.splits)
        image_split = {iid: split_of[ident] for ident, m in members_of.items() for iid, _ in m}
    ref_rows, generic = [], set()
    for ident, members in members_of.items():
        test_ids = {iid for iid, _ in members if image_split[iid] == "test"}
        if not test_ids:
            continue
        ref_rows += splits.references(members, emb, metric, cfg.splits.max_refs, targets=test_ids)
        generic.update(splits.generic_subset([m for m in members if m[0] in test_ids], cfg.seed,
                                             cfg.splits.generic_per_identity))

    # ------------------------------------------------------------------ 6. images
    t0 = time.perf_counter()
    images_root = out / "images"
    wanted: dict[Path, tuple[str, str]] = {}
    for f, (ident, n) in image_of.items():
        wanted[out / relpath_for(ident, n)] = (faces[f]["crop"], f)
    sha_of: dict[str, str] = {}
    for dst, (src, f) in sorted(wanted.items()):
        src_sha = file_sha256(src)
        if not (dst.is_file() and file_sha256(dst) == src_sha):
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        sha_of[f] = src_sha
    if images_root.is_dir():  # drop images of an earlier build that are no longer kept
        for p in sorted(images_root.rglob("*")):
            if p.is_file() and p not in wanted:
                p.unlink()
        for d in sorted((p for p in images_root.iterdir() if p.is_dir()), reverse=True):
            if not any(d.iterdir()):
                d.rmdir()
    timings["write_images"] = {"wall_s": round(time.perf_counter() - t0, 3), "images": len(wanted)}

    # ------------------------------------------------------------------ manifest
    manifest = _manifest(ing, items, faces_run, faces, fscore, qdec, reject, duplicate_of, groups, ident_of_group,
                         image_of, image_split, sha_of, generic)
    manifest["curated"] = [curated.get(f) for f in manifest["face_id"]]  # curation (celebref review)
    identities = pd.DataFrame([{
        "identity": ident_of_group[g], "name": groups.groups[g]["name"],
        "aliases": list(groups.groups[g]["aliases"]), "n_images": len(final_groups[g]),
        "split": split_of[ident_of_group[g]], "cluster": int(groups.groups[g]["cluster"]),
    } for g in order], columns=["identity", "name", "aliases", "n_images", "split", "cluster"])
    references = pd.DataFrame(ref_rows, columns=["image_id", "ref_image_id", "rank", "distance"])
    references["rank"] = references["rank"].astype("int64")

    # ------------------------------------------------------------------ cluster quality vs truth
    truth_map = load_truth(truth)
    cluster_quality = _score_clusters(truth_map, cand, faces, groups, manifest) if truth_map else None

    counts = _funnel(ing, faces_run, faces, cand, reject, image_of, final_groups)
    timings["global_s"] = round(time.perf_counter() - t_global, 3)
    timings["total_s"] = round(time.perf_counter() - t_all, 3)
    info = {
        "build_format": BUILD_FORMAT,
        "params": {**cfg.to_dict(), "size": cfg.faces.size},
        "sources": [_public_source(s) for s in specs],
        "resolved": {"detector": faces_stage.resolve_detector(cfg.faces.detector), "embedder": embedder,
                     "metric": metric, "cluster_threshold": groups.threshold,
                     "niqe": _niqe_status(scores)},
        "versions": versions(),
        "weights": _weights_records(faces_stage.resolve_detector(cfg.faces.detector), embedder, scores),
        "counts": counts,
        "reject_reasons": _reason_counts(manifest),
        "stage_keys": {"faces": faces_run.key, "embed": emb_run.key, "quality": q_run.key, "identity": ikey},
        "timings": timings,
        "executor": executor_info,
        "cluster_quality": cluster_quality,
        "curation": curation_record,
        "ingest_counts": dict(sorted(ing.counts.items())),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": cfg.seed,
    }
    from celebref.publish.privacy import sanitize

    # build.json is shared with the dataset: every local absolute path left in it (e.g. in a recorded error
    # message) is reduced to <local>/<name>
    write_dataset(out, manifest, identities=identities, references=references, build_info=sanitize(info))
    info = json.loads((out / "build.json").read_text())
    result = BuildResult(out, manifest, identities, references, info,
                         {"faces": faces_run, "embed": emb_run, "quality": q_run})
    if cfg.output.report:
        from celebref.pipeline.report import write_report

        write_report(result, cfg, faces_crop={f: faces[f]["crop"] for f in faces}, scores=fscore)
    return result


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


def _reason_counts(manifest: pd.DataFrame) -> dict:
    rej = manifest[~manifest["kept"]]
    out: dict = {}
    for (stage, reason), n in rej.groupby(["reject_stage", "reject_reason"]).size().items():
        out.setdefault(stage, {})[reason] = int(n)
    return out


def _funnel(ing, faces_run, faces, cand, reject, image_of, final_groups) -> dict:
    decoded = sum(1 for r in faces_run.records.values() if (r.get("result") or {}).get("image"))
    with_face = sum(1 for r in faces_run.records.values() if (r.get("result") or {}).get("faces"))
    stage_lost = Counter(v[0] for v in reject.values())
    after_identity = (len(cand) - stage_lost["identity"] - stage_lost["curation"]
                      + sum(1 for v in reject.values() if v[1] == "too_few_images"))
    return {
        "ingest_entries": len(ing.items) + len(ing.rejects),
        "ingest_items": len(ing.items),
        "decoded": decoded,
        "photos_with_faces": with_face,
        "candidate_faces": len(faces),
        "faces_embedded": len(cand),
        "after_identity": after_identity,
        "after_quality": after_identity - stage_lost["quality"],
        "after_dedup": after_identity - stage_lost["quality"] - stage_lost["dedup"],
        "kept_images": len(image_of),
        "identities": len(final_groups),
        "rejected_by_stage": dict(sorted(stage_lost.items())),
    }


def _score_clusters(truth_map, cand, faces, groups, manifest) -> dict:
    """Pairwise and BCubed scores of the raw clusters and of the final identities, on the main (largest) face of
    every photo with a truth label."""
    from celebref.pipeline.cluster_metrics import cluster_scores

    sel = [f for f in cand if faces[f]["face_index"] == 0 and faces[f]["item_id"] in truth_map]
    if not sel:
        return {"n": 0}
    truth = [truth_map[faces[f]["item_id"]] for f in sel]
    out = {"clusters": cluster_scores([groups.clusters[f] for f in sel], truth)}
    ident = manifest.set_index("face_id")["identity"]
    # faces dropped by name reconciliation / min_images count as singletons (each its own cluster)
    pred = [ident.get(f) if isinstance(ident.get(f), str) else f"_single_{f}" for f in sel]
    out["identities"] = cluster_scores(pred, truth)
    out["scored_faces"] = len(sel)
    return out


def _manifest(ing, items, faces_run, faces, fscore, qdec, reject, duplicate_of, groups, ident_of_group, image_of,
              image_split, sha_of, generic) -> pd.DataFrame:
    rows = []

    def prov_cols(prov: dict) -> dict:
        return {"url": prov.get("url"), "license": prov.get("license"), "author": prov.get("author"),
                "fetched_at": prov.get("fetched_at"), "provenance": json.dumps(prov, sort_keys=True)}

    for rj in ing.rejects:
        key = rj.get("source_sha256") or ""
        fid = f"src-{hashlib.sha256((str(rj.get('source')) + '|' + str(rj.get('source_path'))).encode()).hexdigest()[:16]}"
        rows.append({"face_id": fid, "kept": False, "reject_stage": "ingest", "reject_reason": rj["reject_reason"],
                     "reject_detail": rj.get("reject_detail"), "source_path": rj.get("source_path"),
                     "source_sha256": key or None, "source_kind": rj.get("source_kind"), "source": rj.get("source"),
                     "name": rj.get("name"), "duplicate_of": rj.get("duplicate_of"), "face_index": -1,
                     "_order": tuple(rj.get("order") or (1 << 30, 0)), **prov_cols(rj.get("provenance") or {})})
    for iid, rec in faces_run.records.items():
        it = items[iid]
        res = rec.get("result") or {}
        img = res.get("image") or {}
        base = {"source_path": it["source_path"], "source_sha256": iid, "source_kind": it["source_kind"],
                "source": it["source"], "name": it["name"], "_order": tuple(it["order"]),
                "source_width": img.get("width"), "source_height": img.get("height"),
                "source_format": img.get("format"), **prov_cols(it["provenance"])}
        if rec["reason"] is not None or not res.get("faces"):
            rows.append({"face_id": f"{iid[:16]}-img", "kept": False, "reject_stage": "faces",
                         "reject_reason": rec["reason"] or "no_face",
                         "reject_detail": rec.get("detail") or res.get("detail"), "face_index": -1, **base})
            continue
        n_faces = len(res["faces"])
        for fr in res["faces"]:
            fid = fr["face_id"]
            row = {"face_id": fid, "face_index": fr["face_index"], "n_faces_in_photo": n_faces, **base,
                   "box": fr.get("box")}
            if fr.get("skipped"):
                row.update(kept=False, reject_stage="faces", reject_reason=fr["skipped"],
                           reject_detail="more faces than faces.max_faces")
                rows.append(row)
                continue
            f = faces[fid]
            s = fscore.get(fid, {})
            tf = f["transform"]
            row.update({
                "det_score": f.get("det_score"), "detector": f.get("detector"),
                "landmarks": f.get("landmarks68_aligned"), "landmarks68_source": f.get("landmarks68_source"),
                "landmarks5_source": f.get("landmarks5_source"), "landmarks_method": f.get("landmarks_source"),
                "aligned_input": bool(f.get("aligned_input")), "transform": json.dumps(tf, sort_keys=True),
                "eye_distance": f.get("eye_distance"), "upsample_factor": tf.get("upsample_factor"),
                "upsampled": bool((tf.get("upsample_factor") or 0) > 1.0),
                "padded_fraction": s.get("padded_fraction"), "yaw": f.get("yaw"), "pitch": f.get("pitch"),
                "roll": f.get("roll"), "sharpness": s.get("sharpness"), "niqe": s.get("niqe"),
                "niqe_status": s.get("niqe_status"), "brightness": s.get("brightness"), "clipped": s.get("clipped"),
                "chroma": s.get("chroma"), "tone_r2": s.get("tone_r2"), "noise_ratio": s.get("noise_ratio"),
                "jpeg_quality": s.get("jpeg_quality"), "blockiness": s.get("blockiness"), "phash": s.get("phash"),
                "cluster": groups.clusters.get(fid),
            })
            gk = groups.group_of.get(fid)
            if gk is not None and gk in ident_of_group:
                row["identity"] = ident_of_group[gk]
            qd = qdec.get(fid)
            row["quality_flags"] = list(qd[2]) if qd else []
            if fid in reject:
                st, reason, detail = reject[fid]
                row.update(kept=False, reject_stage=st, reject_reason=reason, reject_detail=detail)
                if reason == "name_outlier":
                    row["name_outlier"] = True
                if fid in duplicate_of:
                    row["duplicate_of"] = duplicate_of[fid]
            else:
                ident, n = image_of[fid]
                iid_ = image_id_for(ident, n)
                row.update(kept=True, identity=ident, image_id=iid_, path=relpath_for(ident, n), n=n,
                           sha256=sha_of[fid], split=image_split[iid_], generic_test=iid_ in generic)
            rows.append(row)
    # duplicate_of: face id -> the kept image id when there is one
    fid_to_image = {f: image_id_for(*image_of[f]) for f in image_of}
    for r in rows:
        d = r.get("duplicate_of")
        if d and d in fid_to_image:
            r["duplicate_of"] = fid_to_image[d]
    rows.sort(key=lambda r: (r["_order"], r.get("face_index", -1), r["face_id"]))
    df = pd.DataFrame(rows)
    df = df.drop(columns=["_order"])
    for col, default in (("kept", False), ("name_outlier", False), ("generic_test", False), ("aligned_input", False),
                         ("upsampled", False)):
        if col not in df.columns:
            df[col] = default
        df[col] = df[col].fillna(default).astype(bool)
    for col in ("reject_stage", "reject_reason", "reject_detail", "identity", "image_id", "path", "sha256", "split",
                "landmarks", "duplicate_of", "name", "phash", "niqe_status", "detector", "transform",
                "landmarks_method", "source_format", "url", "license", "author", "fetched_at"):
        if col not in df.columns:
            df[col] = None
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    for col in ("n", "cluster", "face_index", "n_faces_in_photo", "source_width", "source_height"):
        if col not in df.columns:
            df[col] = pd.NA
        df[col] = df[col].astype("Int64")
    if "quality_flags" not in df.columns:
        df["quality_flags"] = None
    df["quality_flags"] = [list(v) if isinstance(v, (list, tuple, np.ndarray)) else [] for v in df["quality_flags"]]
    lead = ["face_id", "kept", "reject_stage", "reject_reason", "reject_detail", "identity", "image_id", "n", "path",
            "sha256", "split", "generic_test", "landmarks", "source_path", "source_sha256", "source_kind", "source",
            "name", "name_outlier", "cluster", "face_index", "n_faces_in_photo"]
    return df[lead + [c for c in df.columns if c not in lead]].reset_index(drop=True)
