"""``bench score``: score the outputs of any external method (GFPGAN, CodeFormer, ...) against a test set.

Outputs are matched to test images by file name: ``<pred>/<image_id>.<ext>`` (png, jpg, jpeg, webp, bmp, tif)
or a ``--pattern`` such as ``{image_id}_00.png`` (GFPGAN/CodeFormer ``restored_faces``). A missing, unreadable or
wrongly sized output is a failure with its reason, never skipped silently. Outputs of another size than the GT are
failures unless ``resize=True`` (then resized to the GT size with bicubic, and the summary says so).

Writes ``<out>/<name>/<testset name>/<mode>/metrics.parquet`` and ``summary.json`` (same format as
``bench evaluate``; ``model`` is the given name, ``weights`` null, ``predictions`` the folder).

Code: one :class:`evaluation.context.EvalContext` whose source is :class:`PredictionFiles`, scored by the loop
that ``bench evaluate`` uses (:mod:`evaluation.scoring`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bfrcore.errors import InputError
from bfrcore.imageio import ImageReadError, file_sha256, read_image
from bfrcore.results import ResultRun
from bfrcore.safepath import safe_component
from bfrcore.tensor_images import resize_uint8
from evaluation.context import (
    EvalContext,
    PredictionSource,
    RunOptions,
    SetItem,
    dataset_image_key,
    metric_settings,
    open_testset,
    results_dir,
    testset_header,
)
from evaluation.metrics import MetricOptions
from evaluation.scorer import Scorer
from evaluation.scoring import run_scoring
from evaluation.summary import BootstrapSpec


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

    def run_options(self) -> RunOptions:
        return RunOptions(device=self.device, batch_size=self.batch_size, max_refs=self.max_refs,
                          bootstrap=BootstrapSpec(self.bootstrap_resamples, self.seed), quiet=self.quiet)


def find_prediction(pred_dir: Path, image_id: str, pattern: str | None) -> Path | None:
    """The output file of ``image_id``: ``pattern`` filled in, else ``<image_id>.<ext>`` for each of
    :data:`EXTENSIONS` (lower, then upper case); None when there is none."""
    if pattern:
        p = pred_dir / pattern.format(image_id=image_id)
        return p if p.is_file() else None
    for ext in EXTENSIONS:
        for e in (ext, ext.upper()):
            p = pred_dir / f"{image_id}.{e}"
            if p.is_file():
                return p
    return None


@dataclass
class PredictionFiles(PredictionSource):
    """``bench score``'s source: another method's output files, ``paths[image_id]`` (None: no file). An output of
    another size than the GT is a failure unless ``resize`` (then resized to the GT size, bicubic)."""

    paths: dict[str, Path | None]
    resize: bool = False
    desc: str = "score"

    def load(self, ctx: EvalContext, ids: list[str], rows: dict[str, dict]) -> dict[str, tuple]:
        pairs = {}
        for i in ids:
            p = self.paths[i]
            if p is None:
                rows[i].update(status="failed", reason="missing output (no file for this image id)")
                continue
            try:
                img = read_image(p)
            except ImageReadError as e:
                rows[i].update(status="failed", reason=f"unreadable output {p.name}: {e}")
                continue
            gt = ctx.testset.read_gt(i)
            if img.shape != gt.shape:
                if not self.resize:
                    rows[i].update(status="failed", reason=f"output size {img.shape[1]}x{img.shape[0]} != GT "
                                                           f"{gt.shape[1]}x{gt.shape[0]} (use --resize)")
                    continue
                img = resize_uint8(img, gt.shape[0])
            pairs[i] = (img, gt)
        return pairs

    def pred_item(self, ctx: EvalContext, image_id: str) -> SetItem:
        p = self.paths[image_id]
        if self.resize:
            return (f"{file_sha256(p)}@resize",
                    lambda p=p, iid=image_id: _load_resized(p, ctx.testset.read_gt(iid).shape[0]))
        return file_sha256(p), lambda p=p: read_image(p)

    def gt_item(self, ctx: EvalContext, image_id: str) -> SetItem:
        size = ctx.testset.read_gt(image_id).shape[0]
        return f"{dataset_image_key(ctx.dataset, image_id)}@{size}", lambda iid=image_id: ctx.images(iid)


def score(cfg: ScoreConfig) -> dict:
    """Run ``bench score``; returns the summary."""
    pred_dir = Path(cfg.pred)
    if not pred_dir.is_dir():
        raise InputError(f"--pred {pred_dir} is not a folder")
    if cfg.mode not in ("generic", "specific"):
        raise InputError("--mode must be generic or specific")
    if cfg.pattern is not None and "{image_id}" not in cfg.pattern:
        raise InputError("--pattern must contain {image_id}")
    ts, verified = open_testset(cfg.testset, dataset_root=cfg.dataset_root, verify=cfg.verify)
    image_ids = ts.image_ids[:cfg.limit] if cfg.limit else ts.image_ids
    name = cfg.name or pred_dir.resolve().name
    label = safe_component(name, "name")
    mode = safe_component(cfg.mode, "mode")
    started = time.time()
    scorer = Scorer(cfg.metrics, cfg.options, cfg.device, extra_unavailable=cfg.extra_unavailable)
    run_key = {"command": "score", "predictions": str(pred_dir.resolve()), "pattern": cfg.pattern,
               "testset_hash": ts.hash, "mode": mode, "max_refs": cfg.max_refs, "resize": cfg.resize,
               **metric_settings(cfg.options, cfg.protocol)}
    run = ResultRun(results_dir(cfg.out, label, ts.name, mode), run_key, overwrite=cfg.overwrite)
    source = PredictionFiles({i: find_prediction(pred_dir, i, cfg.pattern) for i in image_ids}, resize=cfg.resize)
    header = {"model": name, "model_config": None, "weights": None, "mode": mode, "testset": testset_header(ts),
              **verified, "predictions": str(pred_dir.resolve()), "pattern": cfg.pattern, "resized": cfg.resize,
              "max_refs": cfg.max_refs}
    if cfg.protocol:
        header["protocol"] = cfg.protocol
    ctx = EvalContext(testset=ts, image_ids=image_ids, mode=mode, scorer=scorer, run=run, source=source,
                      header=header, options=cfg.run_options(), started=started)
    return run_scoring(ctx)


def _load_resized(path: Path, size: int) -> np.ndarray:
    return resize_uint8(read_image(path), size)
