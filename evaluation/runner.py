"""``bench evaluate``: restore every LQ image of a test set with a model, save the outputs, score them, summarise.

Modes: ``generic`` (no references given to the model) and ``specific`` (the person's references from the dataset's
``references.parquet``, per sample, up to ``max_refs``). ``auto`` runs generic, plus specific when the model uses
references and the test set's dataset has them (only specific for models that need references).

Landmarks for models that need them come from :class:`baselines.landmarks.LandmarkProvider` (manifest, else dlib
on the LQ input, else the mean face); the source goes into the ``landmarks_source`` column. With
``lq_landmarks='detect'`` the manifest is not used for the LQ input.

Sizes: the LQ (and references) are resized to the model's ``input_size`` when it differs (bicubic, antialiased);
metrics are computed at the test set's size (``eval_size='testset'``: outputs of another size are resized back)
or at the model's (``'model'``: GT and references resized instead). The saved PNG is the scored image.

Resume: an image whose restored PNG exists and whose row has every requested column is skipped; a PNG without a
row is scored again without restoring; failed images are retried. See :mod:`bfrcore.results` for the files.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from bfrcore.cliutil import UsageError, progress
from bfrcore.cpu_allocator import reuse_freed_memory
from bfrcore.imageio import ImageReadError, file_sha256, read_image, write_png
from bfrcore.results import RESTORED_DIR, ResultRun
from bfrcore.safepath import safe_component, safe_join
from bfrcore.tensor_images import resize_uint8, to_tensor, to_uint8
from evaluation.metrics import Batch, Metric, MetricOptions, MetricUnavailable, resolve_metrics
from evaluation.summary import build_summary

log = logging.getLogger("celebref.evaluate")

MODES = ("generic", "specific")


# ----------------------------------------------------------------------------------------------- helpers
class _ImageCache:
    """A small LRU of decoded dataset images (references repeat across the test images of a person)."""

    def __init__(self, loader: Callable[[str], np.ndarray], capacity: int = 64):
        self.loader = loader
        self.capacity = capacity
        self._d: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, key: str) -> np.ndarray:
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        v = self.loader(key)
        self._d[key] = v
        if len(self._d) > self.capacity:
            self._d.popitem(last=False)
        return v


class Scorer:
    """The metrics of one run: per-image metrics on batches, distribution metrics at the end."""

    def __init__(self, names, options: MetricOptions, device: str):
        resolved = resolve_metrics(names, options)
        self.options = options
        self.device = device
        self.unavailable: dict[str, str] = dict(resolved.unavailable)
        self.notes: dict[str, str] = dict(resolved.notes)
        self.errors: dict[str, str] = {}
        self.metrics: list[Metric] = []
        for m in resolved.metrics:
            try:
                if m.kind != "distribution":
                    m.setup(device)
                self.metrics.append(m)
            except MetricUnavailable as e:
                self.unavailable[m.name] = str(e)
            except Exception as e:  # noqa: BLE001 - a metric that cannot start is reported, never dropped
                from bfrcore.weights import WeightsError

                if isinstance(e, WeightsError):
                    self.unavailable[m.name] = str(e)
                else:
                    self.unavailable[m.name] = f"could not start: {type(e).__name__}: {e}"
        self.per_image = [m for m in self.metrics if m.kind != "distribution"]
        self.distribution = [m for m in self.metrics if m.kind == "distribution"]

    @property
    def columns(self) -> list[str]:
        return [c.name for m in self.per_image for c in m.columns]

    @property
    def needs_refs(self) -> bool:
        return any(m.kind == "identity" for m in self.per_image)

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for m in self.per_image:
            try:
                vals = m.compute(batch)
            except Exception as e:  # noqa: BLE001 - recorded per metric, the other metrics still run
                log.warning("metric %s failed on %s: %s", m.name, batch.image_ids, e)
                self.errors.setdefault(m.name, f"{type(e).__name__}: {e}")
                vals = {c.name: np.full(len(batch), np.nan) for c in m.columns}
            out.update({k: np.asarray(v, np.float64).reshape(-1) for k, v in vals.items()})
        return out

    def run_distribution(self, pred_items, real_items, *, quiet: bool = True) -> dict[str, dict]:
        """FID/KID over (content hash, loader) pairs of the restored and reference sets."""
        from evaluation import fid as fidmod

        results: dict[str, dict] = {}
        cache = fidmod.FeatureCache(self.options.cache_dir)
        for m in self.distribution:
            try:
                m.setup(self.device)
                m.reset()
                m.add_features(fidmod.compute_set_features(m, pred_items, cache, self.options.batch_size), False)
                if isinstance(m, fidmod.FID) and self.options.fid_stats:
                    mu, sigma, _ = fidmod.load_statistics(self.options.fid_stats)
                    m.set_reference_statistics(mu, sigma)
                else:
                    m.add_features(fidmod.compute_set_features(m, real_items, cache, self.options.batch_size), True)
                results[m.name] = m.compute_set()
            except MetricUnavailable as e:
                self.unavailable[m.name] = str(e)
            except Exception as e:  # noqa: BLE001
                from bfrcore.weights import WeightsError

                if isinstance(e, WeightsError):
                    self.unavailable[m.name] = str(e)
                else:
                    self.errors[m.name] = f"{type(e).__name__}: {e}"
        return results


def references_for(ds, image_id: str, max_refs: int | None) -> list[str]:
    return [r for r in ds.references_of(image_id, max_refs) if r in ds.images.index]


def finish(run: ResultRun, *, scorer: Scorer, image_ids: list[str], header: dict, pred_loader, gt_items,
           started: float, device: str, bootstrap_resamples: int, seed: int, quiet: bool) -> dict:
    """Distribution metrics over the ok images, then metrics.parquet + summary.json."""
    df = run.table(image_ids, scorer.columns)
    ok_ids = [r for r in df.loc[df["status"] == "ok", "image_id"]]
    set_results: dict[str, dict] = {}
    if scorer.distribution:
        if len(ok_ids) < 2:
            for m in scorer.distribution:
                scorer.errors[m.name] = f"needs at least 2 scored images, got {len(ok_ids)}"
        else:
            set_results = scorer.run_distribution([pred_loader(i) for i in ok_ids],
                                                  [gt_items(i) for i in ok_ids], quiet=quiet)
    summary = build_summary(header=header, df=df, metrics=scorer.metrics, set_results=set_results,
                            unavailable=scorer.unavailable, notes=scorer.notes, metric_errors=scorer.errors,
                            seconds=time.time() - started, device=device,
                            bootstrap_resamples=bootstrap_resamples, seed=seed)
    run.finalize(df, summary)
    return summary


def testset_header(ts) -> dict:
    return {
        "name": ts.name, "hash": ts.hash, "path": str(Path(ts.root).resolve()), "preset": ts.preset_name,
        "preset_version": ts.preset_version, "severity": ts.severity, "dataset_hash": ts.dataset_hash,
    }


# ----------------------------------------------------------------------------------------------- evaluate
@dataclass
class EvaluateConfig:
    model: str
    testset: Path
    out: Path = Path("results")
    config: str | None = None
    weights: str | None = None
    name: str | None = None  # results folder label (default: the model name)
    metrics: Sequence[str] | str | None = None
    modes: str = "auto"  # auto | generic | specific | both
    batch_size: int = 1
    device: str = "cpu"
    max_refs: int | None = None
    limit: int | None = None
    lq_landmarks: str = "manifest"  # manifest | detect
    eval_size: str = "testset"  # testset | model
    dataset_root: Path | None = None
    options: MetricOptions = field(default_factory=MetricOptions)
    bootstrap_resamples: int = 2000
    seed: int = 0
    overwrite: bool = False
    quiet: bool = False
    #: score a trainable model that has no trained weights (its random initialisation; marked in the summary)
    allow_untrained: bool = False
    #: hash the LQ files against checksums.sha256 first (bfrcore.testset_verify); False: --no-verify
    verify: bool = True
    #: called after each finished image with (mode, image_id, row) — used by tests to interrupt a run
    on_image: Callable[[str, str, dict], None] | None = None
    #: the protocol record (evaluation.protocols.apply.ProtocolRun.record) written into summary.json
    protocol: dict | None = None
    #: metrics that cannot run for a reason known before scoring (e.g. not installed): {name: reason}
    extra_unavailable: dict[str, str] = field(default_factory=dict)


def _default_config(model_name: str) -> str:
    from baselines import get_model_info

    return str(get_model_info(model_name).default_config)


def choose_modes(model, requested: str, has_refs: bool) -> list[str]:
    uses = bool(getattr(model, "uses_references", False)) or bool(getattr(model, "needs_references", False))
    needs = bool(getattr(model, "needs_references", False))
    if requested == "auto":
        if needs:
            if not has_refs:
                raise UsageError(f"{model.model_name} needs references, but the test set's dataset has none")
            return ["specific"]
        return ["generic", "specific"] if (uses and has_refs) else ["generic"]
    modes = list(MODES) if requested == "both" else [requested]
    for m in modes:
        if m not in MODES:
            raise UsageError(f"unknown mode {m!r}; use auto, generic, specific or both")
        if m == "generic" and needs:
            raise UsageError(f"{model.model_name} needs references; it has no generic mode")
        if m == "specific" and not has_refs:
            raise UsageError("specific mode needs references, but the test set's dataset has none")
    return modes


def evaluate(cfg: EvaluateConfig) -> list[dict]:
    """Run ``bench evaluate``; returns the summary of each mode."""
    from baselines import create_model, get_model_info
    from baselines.landmarks import LandmarkProvider
    from baselines.registry import UNTRAINED_NOTE, is_untrained, untrained_error
    from bfrcore.testset import TestSet, TestSetError

    if cfg.lq_landmarks not in ("manifest", "detect"):
        raise UsageError("--lq-landmarks must be 'manifest' or 'detect'")
    if cfg.eval_size not in ("testset", "model"):
        raise UsageError("--eval-size must be 'testset' or 'model'")
    if cfg.batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    try:
        ts = TestSet.load(cfg.testset, dataset_root=cfg.dataset_root)
        ds = ts.dataset
    except TestSetError as e:
        raise UsageError(str(e)) from e
    from bfrcore.testset_verify import require_verified

    verified = require_verified(ts.root, verify=cfg.verify)  # {"testset_verified": bool}; UsageError naming files
    allocator = reuse_freed_memory() if torch.device(cfg.device).type == "cpu" else None
    try:
        model = create_model(cfg.model, config=cfg.config, weights=cfg.weights, device=cfg.device,
                             channels_last=True)  # NHWC convolutions, as bench restore
    except KeyError as e:
        raise UsageError(str(e.args[0] if e.args else e)) from e
    untrained = is_untrained(model)
    if untrained and not cfg.allow_untrained:
        raise UsageError(untrained_error(cfg.model, get_model_info(cfg.model).pretrained))
    image_ids = ts.image_ids[:cfg.limit] if cfg.limit else ts.image_ids
    if not image_ids:
        raise UsageError(f"test set {ts.name!r} has no images")
    has_refs = any(references_for(ds, i, cfg.max_refs) for i in image_ids)
    modes = choose_modes(model, cfg.modes, has_refs)
    label = safe_component(cfg.name or cfg.model, "name")
    s_model = int(model.input_size)
    s_test = int(ts.read_lq(image_ids[0]).shape[0])
    s_eval = s_test if cfg.eval_size == "testset" else s_model
    wants_landmarks = model.needs_landmarks or model.uses_landmarks
    provider = LandmarkProvider(on_detector_error="mean_face") if wants_landmarks else None
    weights = model.weights_record or {}
    header_common = {
        "model": cfg.model,
        "model_config": cfg.config if cfg.config is not None else _default_config(cfg.model),
        "weights": {"name": weights.get("name"), "sha256": weights.get("sha256")},
        "testset": testset_header(ts),
        **verified,
        "sizes": {"testset": s_test, "model_input": s_model, "scored": s_eval},
    }
    if allocator:
        header_common["cpu_allocator"] = allocator
    if cfg.name and cfg.name != cfg.model:
        header_common["label"] = cfg.name
    if untrained:
        header_common["weights"].update(untrained=True, note=UNTRAINED_NOTE)
    summaries = []
    for mode in modes:
        summaries.append(_evaluate_mode(cfg, mode, ts, ds, model, provider, image_ids, label, s_model, s_eval,
                                        header_common))
    return summaries


def _evaluate_mode(cfg: EvaluateConfig, mode: str, ts, ds, model, provider, image_ids, label, s_model, s_eval,
                   header_common) -> dict:
    started = time.time()
    out_dir = Path(cfg.out) / label / safe_component(ts.name, "test set name") / mode
    scorer = Scorer(cfg.metrics, cfg.options, cfg.device)
    scorer.unavailable.update(cfg.extra_unavailable)
    run_key = {
        "command": "evaluate", "model": cfg.model, "model_config": header_common["model_config"],
        "weights_sha256": header_common["weights"].get("sha256"), "testset_hash": ts.hash, "mode": mode,
        "max_refs": cfg.max_refs, "lq_landmarks": cfg.lq_landmarks, "eval_size": cfg.eval_size,
        "metric_options": {k: v for k, v in vars(cfg.options).items() if k not in ("batch_size", "cache_dir")},
    }
    if cfg.protocol:
        run_key["protocol"] = cfg.protocol.get("sha256")
    run = ResultRun(out_dir, run_key, overwrite=cfg.overwrite)
    restored_dir = out_dir / RESTORED_DIR
    restored_dir.mkdir(exist_ok=True)
    columns = scorer.columns
    read_ds = _ImageCache(ds.read)
    todo = [i for i in image_ids if not (run.is_complete(i, columns) and
                                          safe_join(restored_dir, f"{i}.png").is_file())]
    log.info("%s/%s/%s: %d of %d images to do", label, ts.name, mode, len(todo), len(image_ids))
    try:
        for start in progress(range(0, len(todo), cfg.batch_size), total=math.ceil(len(todo) / cfg.batch_size),
                              desc=f"evaluate {mode}", quiet=cfg.quiet):
            ids = todo[start:start + cfg.batch_size]
            _process_batch(cfg, mode, ts, ds, model, provider, ids, run, scorer, restored_dir, read_ds,
                           s_model, s_eval)
    finally:
        run.close()

    def pred_item(iid):
        p = safe_join(restored_dir, f"{iid}.png")
        return file_sha256(p), lambda p=p: read_image(p)

    def gt_item(iid):
        sha = ds.images.at[iid, "sha256"] if "sha256" in ds.images.columns else None
        if not isinstance(sha, str) or not sha:
            sha = file_sha256(ds.image_path(iid))
        return f"{sha}@{s_eval}", lambda iid=iid: resize_uint8(read_ds(iid), s_eval)

    wants_landmarks = model.needs_landmarks or model.uses_landmarks
    header = {**header_common, "mode": mode, "landmarks": cfg.lq_landmarks if wants_landmarks else None,
              "max_refs": cfg.max_refs}
    if cfg.protocol:
        header["protocol"] = cfg.protocol
    header = {k: header[k] for k in ("model", "model_config", "weights", "mode", "testset", "testset_verified",
                                     "label", "sizes",
                                     "landmarks", "max_refs", "cpu_allocator", "protocol") if k in header}
    return finish(run, scorer=scorer, image_ids=image_ids, header=header, pred_loader=pred_item,
                  gt_items=gt_item, started=started, device=cfg.device,
                  bootstrap_resamples=cfg.bootstrap_resamples, seed=cfg.seed, quiet=cfg.quiet)


def _restore(model, lq: torch.Tensor, landmarks, refs, ref_landmarks) -> torch.Tensor:
    with torch.no_grad():
        out = model.restore(lq, landmarks=landmarks, refs=refs, ref_landmarks=ref_landmarks)
    if out.shape[0] != lq.shape[0] or out.shape[1] != 3:
        raise ValueError(f"model returned shape {tuple(out.shape)} for input {tuple(lq.shape)}")
    if not torch.isfinite(out).all():
        raise ValueError("model output contains NaN or inf")
    return out


def _process_batch(cfg, mode, ts, ds, model, provider, ids, run: ResultRun, scorer: Scorer, restored_dir,
                   read_ds, s_model, s_eval) -> None:
    t0 = time.time()
    rows: dict[str, dict] = {i: {"image_id": i, "status": "ok", "reason": None, "landmarks_source": None,
                                 "n_refs": 0} for i in ids}
    outputs: dict[str, np.ndarray] = {}
    need_restore = []
    for i in ids:
        p = safe_join(restored_dir, f"{i}.png")
        prev = run.rows.get(i, {})
        if p.is_file() and prev.get("status") == "ok":
            try:
                outputs[i] = read_image(p)
                rows[i]["landmarks_source"] = prev.get("landmarks_source")
                rows[i]["n_refs"] = prev.get("n_refs", 0)
                continue
            except ImageReadError:
                pass
        need_restore.append(i)
    refs_of = {i: references_for(ds, i, cfg.max_refs) for i in ids}
    if need_restore:
        restored = _restore_ids(cfg, mode, ts, ds, model, provider, need_restore, refs_of, read_ds, s_model, rows)
        for i, img in restored.items():
            if s_eval != img.shape[0]:
                img = resize_uint8(img, s_eval)
            write_png(safe_join(restored_dir, f"{i}.png"), img)
            outputs[i] = img
    t_restore = time.time() - t0
    ok_ids = [i for i in ids if i in outputs]
    if ok_ids:
        t1 = time.time()
        gts = []
        for i in ok_ids:
            gt = resize_uint8(ts.read_gt(i), s_eval)
            if gt.shape != outputs[i].shape:
                rows[i].update(status="failed", reason=f"output {outputs[i].shape} != GT {gt.shape}")
            gts.append(gt)
        keep = [k for k, i in enumerate(ok_ids) if rows[i]["status"] == "ok"]
        ok_ids = [ok_ids[k] for k in keep]
        gts = [gts[k] for k in keep]
        if ok_ids:
            refs = ref_ids = None
            if scorer.needs_refs:
                ref_ids = [refs_of[i] for i in ok_ids]
                refs = [[resize_uint8(read_ds(r), s_eval) for r in rl] for rl in ref_ids]
                ref_ids = [[f"{r}@{s_eval}" for r in rl] for rl in ref_ids]
            batch = Batch(ok_ids, [outputs[i] for i in ok_ids], gts, refs, ref_ids, device=cfg.device)
            values = scorer.score(batch)
            for k, i in enumerate(ok_ids):
                rows[i].update({c: float(v[k]) for c, v in values.items()})
        t_metrics = time.time() - t1
    else:
        t_metrics = 0.0
    per = (t_restore + t_metrics) / max(len(ids), 1)
    for i in ids:
        row = rows[i]
        row["seconds"] = round(per, 4)
        if row["status"] != "ok":
            row = {k: row[k] for k in ("image_id", "status", "reason", "landmarks_source", "n_refs", "seconds")}
        run.record(row)
        if cfg.on_image is not None:
            cfg.on_image(mode, i, row)


def _restore_ids(cfg, mode, ts, ds, model, provider, ids, refs_of, read_ds, s_model, rows) -> dict[str, np.ndarray]:
    """Restore ``ids`` (one batch; on failure each image alone); returns {id: uint8 output at the model size}."""
    inputs = {}
    for i in ids:
        try:
            lq = ts.read_lq(i)
        except (ImageReadError, OSError, KeyError) as e:
            rows[i].update(status="failed", reason=f"cannot read LQ: {e}")
            continue
        size0 = lq.shape[1]
        lq = resize_uint8(lq, s_model)
        lm = None
        if provider is not None:
            manifest = ds.landmarks(i) if cfg.lq_landmarks == "manifest" else None
            res = provider(lq, manifest, landmarks_size=ds.image_size if manifest is not None else None)
            lm = res.points
            rows[i]["landmarks_source"] = res.source
        r_imgs, r_lms = None, None
        if mode == "specific":
            rid = refs_of[i]
            if not rid:
                rows[i].update(status="failed", reason="no references for this image (specific mode)")
                continue
            r_imgs = [resize_uint8(read_ds(r), s_model) for r in rid]
            if provider is not None:
                r_lms = [provider(img, ds.landmarks(r), landmarks_size=ds.image_size).points
                         for r, img in zip(rid, r_imgs)]
            rows[i]["n_refs"] = len(rid)
        inputs[i] = (lq, lm, r_imgs, r_lms, size0)
    if not inputs:
        return {}

    def run_group(group: list[str]) -> dict[str, np.ndarray]:
        lq = to_tensor([inputs[i][0] for i in group], cfg.device)
        lm = None
        if provider is not None:
            lm = torch.from_numpy(np.stack([inputs[i][1] for i in group])).to(cfg.device)
        refs = ref_lm = None
        if mode == "specific":
            refs = [to_tensor(inputs[i][2], cfg.device) for i in group]
            if provider is not None:
                ref_lm = [torch.from_numpy(np.stack(inputs[i][3])).to(cfg.device) for i in group]
        out = _restore(model, lq, lm, refs, ref_lm)
        return {i: to_uint8(out[k]) for k, i in enumerate(group)}

    group = list(inputs)
    try:
        return run_group(group)
    except Exception as e:  # noqa: BLE001 - isolate the failing image(s)
        if len(group) == 1:
            rows[group[0]].update(status="failed", reason=f"restore failed: {type(e).__name__}: {e}")
            return {}
    out = {}
    for i in group:
        try:
            out.update(run_group([i]))
        except Exception as e:  # noqa: BLE001
            rows[i].update(status="failed", reason=f"restore failed: {type(e).__name__}: {e}")
    return out
