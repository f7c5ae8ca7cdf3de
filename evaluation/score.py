"""``bench score``: score the outputs of any external method (GFPGAN, CodeFormer, ...) against a test set.

Outputs are matched to test images by file name: ``<pred>/<image_id>.<ext>`` (png, jpg, jpeg, webp, bmp, tif)
or a ``--pattern`` such as ``{image_id}_00.png`` (GFPGAN/CodeFormer ``restored_faces``). A missing, unreadable or
wrongly sized output is a failure with its reason, never skipped silently. Outputs of another size than the GT are
failures unless ``resize=True`` (then resized to the GT size with bicubic, and the summary says so).

Writes ``<out>/<name>/<testset name>/<mode>/metrics.parquet`` and ``summary.json`` (same format as
``bench evaluate``; ``model`` is the given name, ``weights`` null, ``predictions`` the folder).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from bfrcore.cliutil import UsageError, progress
from bfrcore.imageio import ImageReadError, file_sha256, read_image
from bfrcore.results import ResultRun
from bfrcore.safepath import safe_component
from evaluation.metrics import Batch, MetricOptions
from evaluation.runner import Scorer, _ImageCache, finish, references_for, resize_uint8, testset_header

log = logging.getLogger("celebref.score")

EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff")


@dataclass
class ScoreConfig:
    pred: Path
    testset: Path
    out: Path = Path("results")
    name: str | None = None
    mode: str = "generic"
    pattern: str | None = None
    metrics: Sequence[str] | str | None = None
    batch_size: int = 4
    device: str = "cpu"
    max_refs: int | None = None
    limit: int | None = None
    resize: bool = False
    dataset_root: Path | None = None
    options: MetricOptions = field(default_factory=MetricOptions)
    bootstrap_resamples: int = 2000
    seed: int = 0
    overwrite: bool = False
    quiet: bool = False
    #: hash the test set's LQ files against checksums.sha256 first (bfrcore.testset_verify); False: --no-verify
    verify: bool = True
    #: the protocol record (evaluation.protocols.apply.ProtocolRun.record) written into summary.json
    protocol: dict | None = None
    #: metrics that cannot run for a reason known before scoring (e.g. not installed): {name: reason}
    extra_unavailable: dict[str, str] = field(default_factory=dict)


def find_prediction(pred_dir: Path, image_id: str, pattern: str | None) -> Path | None:
    if pattern:
        p = pred_dir / pattern.format(image_id=image_id)
        return p if p.is_file() else None
    for ext in EXTENSIONS:
        for e in (ext, ext.upper()):
            p = pred_dir / f"{image_id}.{e}"
            if p.is_file():
                return p
    return None


def score(cfg: ScoreConfig) -> dict:
    """Run ``bench score``; returns the summary."""
    from bfrcore.testset import TestSet, TestSetError

    pred_dir = Path(cfg.pred)
    if not pred_dir.is_dir():
        raise UsageError(f"--pred {pred_dir} is not a folder")
    if cfg.mode not in ("generic", "specific"):
        raise UsageError("--mode must be generic or specific")
    if cfg.pattern is not None and "{image_id}" not in cfg.pattern:
        raise UsageError("--pattern must contain {image_id}")
    try:
        ts = TestSet.load(cfg.testset, dataset_root=cfg.dataset_root)
        ds = ts.dataset
    except TestSetError as e:
        raise UsageError(str(e)) from e
    from bfrcore.testset_verify import require_verified

    verified = require_verified(ts.root, verify=cfg.verify)  # {"testset_verified": bool}; UsageError naming files
    image_ids = ts.image_ids[:cfg.limit] if cfg.limit else ts.image_ids
    name = cfg.name or pred_dir.resolve().name
    label = safe_component(name, "name")
    mode = safe_component(cfg.mode, "mode")
    started = time.time()
    out_dir = Path(cfg.out) / label / safe_component(ts.name, "test set name") / mode
    scorer = Scorer(cfg.metrics, cfg.options, cfg.device)
    scorer.unavailable.update(cfg.extra_unavailable)
    run_key = {"command": "score", "predictions": str(pred_dir.resolve()), "pattern": cfg.pattern,
               "testset_hash": ts.hash, "mode": mode, "max_refs": cfg.max_refs, "resize": cfg.resize,
               "metric_options": {k: v for k, v in vars(cfg.options).items() if k not in ("batch_size", "cache_dir")}}
    if cfg.protocol:
        run_key["protocol"] = cfg.protocol.get("sha256")
    run = ResultRun(out_dir, run_key, overwrite=cfg.overwrite)
    columns = scorer.columns
    read_ds = _ImageCache(ds.read)
    paths = {i: find_prediction(pred_dir, i, cfg.pattern) for i in image_ids}
    todo = [i for i in image_ids if not run.is_complete(i, columns)]
    try:
        for start in progress(range(0, len(todo), cfg.batch_size), total=math.ceil(len(todo) / cfg.batch_size),
                              desc="score", quiet=cfg.quiet):
            ids = todo[start:start + cfg.batch_size]
            t0 = time.time()
            rows = {i: {"image_id": i, "status": "ok", "reason": None, "landmarks_source": None, "n_refs": None}
                    for i in ids}
            preds, gts = {}, {}
            for i in ids:
                p = paths[i]
                if p is None:
                    rows[i].update(status="failed", reason="missing output (no file for this image id)")
                    continue
                try:
                    img = read_image(p)
                except ImageReadError as e:
                    rows[i].update(status="failed", reason=f"unreadable output {p.name}: {e}")
                    continue
                gt = ts.read_gt(i)
                if img.shape != gt.shape:
                    if not cfg.resize:
                        rows[i].update(status="failed", reason=f"output size {img.shape[1]}x{img.shape[0]} != GT "
                                                               f"{gt.shape[1]}x{gt.shape[0]} (use --resize)")
                        continue
                    img = resize_uint8(img, gt.shape[0])
                preds[i], gts[i] = img, gt
            ok = [i for i in ids if i in preds]
            if ok:
                refs = ref_ids = None
                if scorer.needs_refs:
                    ref_ids = [references_for(ds, i, cfg.max_refs) for i in ok]
                    refs = [[read_ds(r) for r in rl] for rl in ref_ids]
                values = scorer.score(Batch(ok, [preds[i] for i in ok], [gts[i] for i in ok], refs, ref_ids,
                                            device=cfg.device))
                for k, i in enumerate(ok):
                    rows[i].update({c: float(v[k]) for c, v in values.items()})
            per = (time.time() - t0) / max(len(ids), 1)
            for i in ids:
                rows[i]["seconds"] = round(per, 4)
                run.record(rows[i])
    finally:
        run.close()

    def pred_item(iid):
        p = paths[iid]
        if cfg.resize:
            return f"{file_sha256(p)}@resize", lambda p=p, iid=iid: _load_resized(p, ts.read_gt(iid).shape[0])
        return file_sha256(p), lambda p=p: read_image(p)

    def gt_item(iid):
        sha = ds.images.at[iid, "sha256"] if "sha256" in ds.images.columns else None
        if not isinstance(sha, str) or not sha:
            sha = file_sha256(ds.image_path(iid))
        s = ts.read_gt(iid).shape[0]
        return f"{sha}@{s}", lambda iid=iid: read_ds(iid)

    header = {"model": name, "model_config": None, "weights": None, "mode": mode, "testset": testset_header(ts),
              **verified, "predictions": str(pred_dir.resolve()), "pattern": cfg.pattern, "resized": cfg.resize,
              "max_refs": cfg.max_refs}
    if cfg.protocol:
        header["protocol"] = cfg.protocol
    return finish(run, scorer=scorer, image_ids=image_ids, header=header, pred_loader=pred_item, gt_items=gt_item,
                  started=started, device=cfg.device, bootstrap_resamples=cfg.bootstrap_resamples, seed=cfg.seed,
                  quiet=cfg.quiet)


def _load_resized(path: Path, size: int) -> np.ndarray:
    return resize_uint8(read_image(path), size)
