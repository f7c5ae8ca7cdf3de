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

Resume: an image whose restored PNG exists and whose row has every requested column is skipped; one whose PNG
exists with an ok row that lacks a requested column is scored again from the PNG without restoring; failed and
unrecorded images are restored again. See :mod:`bfrcore.results` for the files.

Code: :func:`evaluate` sets the model up once (:class:`Restorer`), then builds one
:class:`evaluation.context.EvalContext` per mode whose source is :class:`RestoredImages`, and runs the shared
scoring loop (:mod:`evaluation.scoring`) over it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bfrcore.cpu_allocator import reuse_freed_memory
from bfrcore.errors import InputError
from bfrcore.formats.results import MODES
from bfrcore.imageio import ImageReadError, file_sha256, read_image, write_png
from bfrcore.results import RESTORED_DIR, ResultRun
from bfrcore.safepath import safe_component, safe_join
from bfrcore.tensor_images import resize_uint8, to_tensor, to_uint8
from evaluation.context import (
    EvalContext,
    PredictionSource,
    RunOptions,
    SetItem,
    dataset_image_key,
    metric_settings,
    open_testset,
    references_for,
    results_dir,
    testset_header,
)
from evaluation.metrics import MetricOptions
from evaluation.scorer import Scorer
from evaluation.scoring import finish, pending, score_images
from evaluation.summary import BootstrapSpec

log = logging.getLogger("celebref.evaluate")


# ----------------------------------------------------------------------------------------------- config
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

    def run_options(self) -> RunOptions:
        return RunOptions(device=self.device, batch_size=self.batch_size, max_refs=self.max_refs,
                          bootstrap=BootstrapSpec(self.bootstrap_resamples, self.seed), quiet=self.quiet,
                          on_image=self.on_image)


def _default_config(model_name: str) -> str:
    from baselines import get_model_info

    return str(get_model_info(model_name).default_config)


def choose_modes(model, requested: str, has_refs: bool) -> list[str]:
    """The modes to run (``requested``: auto | generic | specific | both); :class:`InputError` for a mode the
    model or the test set cannot do."""
    uses = bool(getattr(model, "uses_references", False)) or bool(getattr(model, "needs_references", False))
    needs = bool(getattr(model, "needs_references", False))
    if requested == "auto":
        if needs:
            if not has_refs:
                raise InputError(f"{model.model_name} needs references, but the test set's dataset has none")
            return ["specific"]
        return ["generic", "specific"] if (uses and has_refs) else ["generic"]
    modes = list(MODES) if requested == "both" else [requested]
    for m in modes:
        if m not in MODES:
            raise InputError(f"unknown mode {m!r}; use auto, generic, specific or both")
        if m == "generic" and needs:
            raise InputError(f"{model.model_name} needs references; it has no generic mode")
        if m == "specific" and not has_refs:
            raise InputError("specific mode needs references, but the test set's dataset has none")
    return modes


# ----------------------------------------------------------------------------------------------- the model side
@dataclass
class Restorer:
    """A model set up for one test set, shared by its modes. ``wants_landmarks``: the model takes landmarks (then
    ``provider`` gives them); ``lq_landmarks``: 'manifest' (dataset landmarks first) or 'detect'; sizes in px:
    ``model_size`` the model's input, ``eval_size`` where metrics are computed."""

    model: object
    wants_landmarks: bool
    provider: object | None
    lq_landmarks: str
    model_size: int
    eval_size: int
    device: str


@dataclass
class _ModelInput:
    lq: np.ndarray
    landmarks: np.ndarray | None
    refs: list[np.ndarray] | None
    ref_landmarks: list[np.ndarray] | None


@dataclass
class RestoredImages(PredictionSource):
    """``bench evaluate``'s source: the model restores each LQ input (in batches; a failing batch is retried image
    by image), the output at ``eval_size`` is saved as ``folder/<image_id>.png`` and scored. An image whose PNG
    exists from an earlier run with an ok row is read back instead of restored again."""

    restorer: Restorer
    folder: Path
    desc: str = "evaluate"
    initial_n_refs: int | None = 0

    @property
    def ref_size(self) -> int:  # type: ignore[override]
        return self.restorer.eval_size

    def _png(self, image_id: str) -> Path:
        return safe_join(self.folder, f"{image_id}.png")

    def pending(self, ctx: EvalContext, image_id: str) -> bool:
        return not (ctx.run.is_complete(image_id, ctx.scorer.columns) and self._png(image_id).is_file())

    def load(self, ctx: EvalContext, ids: list[str], rows: dict[str, dict]) -> dict[str, tuple]:
        outputs: dict[str, np.ndarray] = {}
        need_restore = []
        for i in ids:
            p = self._png(i)
            prev = ctx.run.rows.get(i, {})
            if p.is_file() and prev.get("status") == "ok":
                try:
                    outputs[i] = read_image(p)
                    rows[i]["landmarks_source"] = prev.get("landmarks_source")
                    rows[i]["n_refs"] = prev.get("n_refs", 0)
                    continue
                except ImageReadError:
                    pass
            need_restore.append(i)
        if need_restore:
            size = self.restorer.eval_size
            for i, img in self._restore_ids(ctx, need_restore, rows).items():
                if size != img.shape[0]:
                    img = resize_uint8(img, size)
                write_png(self._png(i), img)
                outputs[i] = img
        pairs = {}
        for i in ids:
            if i not in outputs:
                continue
            gt = resize_uint8(ctx.testset.read_gt(i), self.restorer.eval_size)
            if gt.shape != outputs[i].shape:
                rows[i].update(status="failed", reason=f"output {outputs[i].shape} != GT {gt.shape}")
                continue
            pairs[i] = (outputs[i], gt)
        return pairs

    def _model_input(self, ctx: EvalContext, image_id: str, row: dict) -> _ModelInput | None:
        """The model's inputs for one image at the model size; None (row marked failed) when they cannot be made."""
        r, ds = self.restorer, ctx.dataset
        try:
            lq = ctx.testset.read_lq(image_id)
        except (ImageReadError, OSError, KeyError) as e:
            row.update(status="failed", reason=f"cannot read LQ: {e}")
            return None
        lq = resize_uint8(lq, r.model_size)
        lm = None
        if r.provider is not None:
            manifest = ds.landmarks(image_id) if r.lq_landmarks == "manifest" else None
            res = r.provider(lq, manifest, landmarks_size=ds.image_size if manifest is not None else None)
            lm = res.points
            row["landmarks_source"] = res.source
        r_imgs, r_lms = None, None
        if ctx.mode == "specific":
            rid = ctx.references(image_id)
            if not rid:
                row.update(status="failed", reason="no references for this image (specific mode)")
                return None
            r_imgs = [resize_uint8(ctx.images(x), r.model_size) for x in rid]
            if r.provider is not None:
                r_lms = [r.provider(img, ds.landmarks(x), landmarks_size=ds.image_size).points
                         for x, img in zip(rid, r_imgs)]
            row["n_refs"] = len(rid)
        return _ModelInput(lq, lm, r_imgs, r_lms)

    def _run_group(self, inputs: list[_ModelInput]) -> list[np.ndarray]:
        r = self.restorer
        lq = to_tensor([x.lq for x in inputs], r.device)
        lm = None
        if r.provider is not None:
            lm = torch.from_numpy(np.stack([x.landmarks for x in inputs])).to(r.device)
        refs = ref_lm = None
        if inputs[0].refs is not None:  # specific mode
            refs = [to_tensor(x.refs, r.device) for x in inputs]
            if r.provider is not None:
                ref_lm = [torch.from_numpy(np.stack(x.ref_landmarks)).to(r.device) for x in inputs]
        out = _restore(r.model, lq, lm, refs, ref_lm)
        return [to_uint8(out[k]) for k in range(len(inputs))]

    def _restore_ids(self, ctx: EvalContext, ids: list[str], rows: dict[str, dict]) -> dict[str, np.ndarray]:
        """Restore ``ids`` (one batch; on failure each image alone); returns {id: uint8 output at the model size}."""
        inputs = {}
        for i in ids:
            x = self._model_input(ctx, i, rows[i])
            if x is not None:
                inputs[i] = x
        if not inputs:
            return {}
        group = list(inputs)
        try:
            return dict(zip(group, self._run_group([inputs[i] for i in group])))
        except Exception as e:  # noqa: BLE001 - isolate the failing image(s)
            if len(group) == 1:
                rows[group[0]].update(status="failed", reason=f"restore failed: {type(e).__name__}: {e}")
                return {}
        out = {}
        for i in group:
            try:
                out[i] = self._run_group([inputs[i]])[0]
            except Exception as e:  # noqa: BLE001
                rows[i].update(status="failed", reason=f"restore failed: {type(e).__name__}: {e}")
        return out

    def pred_item(self, ctx: EvalContext, image_id: str) -> SetItem:
        p = self._png(image_id)
        return file_sha256(p), lambda p=p: read_image(p)

    def gt_item(self, ctx: EvalContext, image_id: str) -> SetItem:
        size = self.restorer.eval_size
        return (f"{dataset_image_key(ctx.dataset, image_id)}@{size}",
                lambda iid=image_id: resize_uint8(ctx.images(iid), size))


def _restore(model, lq: torch.Tensor, landmarks, refs, ref_landmarks) -> torch.Tensor:
    with torch.no_grad():
        out = model.restore(lq, landmarks=landmarks, refs=refs, ref_landmarks=ref_landmarks)
    if out.shape[0] != lq.shape[0] or out.shape[1] != 3:
        raise ValueError(f"model returned shape {tuple(out.shape)} for input {tuple(lq.shape)}")
    if not torch.isfinite(out).all():
        raise ValueError("model output contains NaN or inf")
    return out


# ----------------------------------------------------------------------------------------------- evaluate
@dataclass
class _ModelRun:
    """What :func:`evaluate` sets up once for all modes."""

    testset: object
    image_ids: list[str]
    label: str
    restorer: Restorer
    header: dict  # the summary header shared by the modes


def evaluate(cfg: EvaluateConfig) -> list[dict]:
    """Run ``bench evaluate``; returns the summary of each mode."""
    from baselines import create_model, get_model_info
    from baselines.landmarks import LandmarkProvider
    from baselines.registry import UNTRAINED_NOTE, is_untrained, untrained_error

    if cfg.lq_landmarks not in ("manifest", "detect"):
        raise InputError("--lq-landmarks must be 'manifest' or 'detect'")
    if cfg.eval_size not in ("testset", "model"):
        raise InputError("--eval-size must be 'testset' or 'model'")
    if cfg.batch_size < 1:
        raise InputError("--batch-size must be >= 1")
    ts, verified = open_testset(cfg.testset, dataset_root=cfg.dataset_root, verify=cfg.verify)
    allocator = reuse_freed_memory() if torch.device(cfg.device).type == "cpu" else None
    try:
        model = create_model(cfg.model, config=cfg.config, weights=cfg.weights, device=cfg.device,
                             channels_last=True)  # NHWC convolutions, as bench restore
    except KeyError as e:
        raise InputError(str(e.args[0] if e.args else e)) from e
    untrained = is_untrained(model)
    if untrained and not cfg.allow_untrained:
        raise InputError(untrained_error(cfg.model, get_model_info(cfg.model).pretrained))
    image_ids = ts.image_ids[:cfg.limit] if cfg.limit else ts.image_ids
    if not image_ids:
        raise InputError(f"test set {ts.name!r} has no images")
    has_refs = any(references_for(ts.dataset, i, cfg.max_refs) for i in image_ids)
    modes = choose_modes(model, cfg.modes, has_refs)
    label = safe_component(cfg.name or cfg.model, "name")
    s_model = int(model.input_size)
    s_test = int(ts.read_lq(image_ids[0]).shape[0])
    wants_landmarks = bool(model.needs_landmarks or model.uses_landmarks)
    restorer = Restorer(model=model, wants_landmarks=wants_landmarks,
                        provider=LandmarkProvider(on_detector_error="mean_face") if wants_landmarks else None,
                        lq_landmarks=cfg.lq_landmarks, model_size=s_model,
                        eval_size=s_test if cfg.eval_size == "testset" else s_model, device=cfg.device)
    weights = model.weights_record or {}
    header = {
        "model": cfg.model,
        "model_config": cfg.config if cfg.config is not None else _default_config(cfg.model),
        "weights": {"name": weights.get("name"), "sha256": weights.get("sha256")},
        "testset": testset_header(ts),
        **verified,
        "sizes": {"testset": s_test, "model_input": s_model, "scored": restorer.eval_size},
    }
    if allocator:
        header["cpu_allocator"] = allocator
    if cfg.name and cfg.name != cfg.model:
        header["label"] = cfg.name
    if untrained:
        header["weights"].update(untrained=True, note=UNTRAINED_NOTE)
    setup = _ModelRun(testset=ts, image_ids=image_ids, label=label, restorer=restorer, header=header)
    return [_evaluate_mode(cfg, setup, mode) for mode in modes]


#: the order of the keys that open summary.json (those present)
_HEADER_KEYS = ("model", "model_config", "weights", "mode", "testset", "testset_verified", "label", "sizes",
                "landmarks", "max_refs", "cpu_allocator", "protocol")


def _evaluate_mode(cfg: EvaluateConfig, setup: _ModelRun, mode: str) -> dict:
    started = time.time()
    ts = setup.testset
    out_dir = results_dir(cfg.out, setup.label, ts.name, mode)
    scorer = Scorer(cfg.metrics, cfg.options, cfg.device, extra_unavailable=cfg.extra_unavailable)
    run_key = {
        "command": "evaluate", "model": cfg.model, "model_config": setup.header["model_config"],
        "weights_sha256": setup.header["weights"].get("sha256"), "testset_hash": ts.hash, "mode": mode,
        "max_refs": cfg.max_refs, "lq_landmarks": cfg.lq_landmarks, "eval_size": cfg.eval_size,
        **metric_settings(cfg.options, cfg.protocol),
    }
    run = ResultRun(out_dir, run_key, overwrite=cfg.overwrite)
    restored_dir = out_dir / RESTORED_DIR
    restored_dir.mkdir(exist_ok=True)
    header = {**setup.header, "mode": mode,
              "landmarks": cfg.lq_landmarks if setup.restorer.wants_landmarks else None, "max_refs": cfg.max_refs}
    if cfg.protocol:
        header["protocol"] = cfg.protocol
    ctx = EvalContext(testset=ts, image_ids=setup.image_ids, mode=mode, scorer=scorer, run=run,
                      source=RestoredImages(setup.restorer, restored_dir, desc=f"evaluate {mode}"),
                      header={k: header[k] for k in _HEADER_KEYS if k in header}, options=cfg.run_options(),
                      started=started)
    todo = pending(ctx)
    log.info("%s/%s/%s: %d of %d images to do", setup.label, ts.name, mode, len(todo), len(setup.image_ids))
    score_images(ctx, todo)
    return finish(ctx)
