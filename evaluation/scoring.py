"""The one scoring loop of ``bench evaluate`` and ``bench score``, over an :class:`~evaluation.context.EvalContext`.

For each batch of images still to do (:func:`pending`): the context's source gives the (restored, GT) pairs (a
model restoring the LQ inputs, or another method's files) and marks the images it cannot give as failed with the
reason; the per-image metrics score the pairs (with the person's references for identity metrics) and each image's
row is appended to the results folder at once, so an interrupted run resumes. :func:`finish` then runs the
distribution metrics over the scored images and writes metrics.parquet and summary.json.
"""

from __future__ import annotations

import math
import time

from bfrcore.progress import progress
from bfrcore.results import BASE_COLUMNS
from bfrcore.tensor_images import resize_uint8
from evaluation.context import EvalContext
from evaluation.metrics import Batch
from evaluation.summary import build_summary


def pending(ctx: EvalContext) -> list[str]:
    """The images of the run that still need work, in test-set order."""
    return [i for i in ctx.image_ids if ctx.source.pending(ctx, i)]


def run_scoring(ctx: EvalContext) -> dict:
    """Score every pending image, then :func:`finish`; returns the summary."""
    score_images(ctx, pending(ctx))
    return finish(ctx)


def score_images(ctx: EvalContext, ids: list[str]) -> None:
    """Score ``ids`` in batches of ``ctx.options.batch_size``, recording each image's row as it is done."""
    step = ctx.options.batch_size
    try:
        for start in progress(range(0, len(ids), step), total=math.ceil(len(ids) / step), desc=ctx.source.desc,
                              quiet=ctx.options.quiet):
            score_batch(ctx, ids[start:start + step])
    finally:
        ctx.run.close()


def new_row(image_id: str, n_refs: int | None) -> dict:
    """A row before its image is loaded: ok until something fails."""
    return {"image_id": image_id, "status": "ok", "reason": None, "landmarks_source": None, "n_refs": n_refs}


def score_batch(ctx: EvalContext, ids: list[str]) -> None:
    """Load, score and record one batch. ``seconds`` of each row: the batch's wall time / its size."""
    t0 = time.time()
    rows = {i: new_row(i, ctx.source.initial_n_refs) for i in ids}
    pairs = ctx.source.load(ctx, ids, rows)
    ok = [i for i in ids if i in pairs]
    if ok:
        refs = ref_ids = None
        if ctx.scorer.needs_refs:
            refs, ref_ids = references_of(ctx, ok)
        batch = Batch(ok, [pairs[i][0] for i in ok], [pairs[i][1] for i in ok], refs, ref_ids,
                      device=ctx.options.device)
        values = ctx.scorer.score(batch)
        for k, i in enumerate(ok):
            rows[i].update({c: float(v[k]) for c, v in values.items()})
    per = (time.time() - t0) / max(len(ids), 1)
    for i in ids:
        row = rows[i]
        row["seconds"] = round(per, 4)
        if row["status"] != "ok":
            row = {k: row[k] for k in BASE_COLUMNS}
        ctx.run.record(row)
        if ctx.options.on_image is not None:
            ctx.options.on_image(ctx.mode, i, row)


def references_of(ctx: EvalContext, ids: list[str]) -> tuple[list[list], list[list[str]]]:
    """(reference images, their cache ids) of each image in ``ids``: resized to ``ctx.source.ref_size`` (ids
    ``<id>@<size>``), or as stored when the source has no ``ref_size``."""
    size = ctx.source.ref_size
    ref_ids = [ctx.references(i) for i in ids]
    if size is None:
        return [[ctx.images(r) for r in rl] for rl in ref_ids], ref_ids
    refs = [[resize_uint8(ctx.images(r), size) for r in rl] for rl in ref_ids]
    return refs, [[f"{r}@{size}" for r in rl] for rl in ref_ids]


def finish(ctx: EvalContext) -> dict:
    """Distribution metrics over the ok images, then metrics.parquet + summary.json; returns the summary."""
    scorer = ctx.scorer
    df = ctx.run.table(ctx.image_ids, scorer.columns)
    ok_ids = [r for r in df.loc[df["status"] == "ok", "image_id"]]
    set_results: dict[str, dict] = {}
    if scorer.distribution:
        if len(ok_ids) < 2:
            for m in scorer.distribution:
                scorer.errors[m.name] = f"needs at least 2 scored images, got {len(ok_ids)}"
        else:
            set_results = scorer.run_distribution([ctx.source.pred_item(ctx, i) for i in ok_ids],
                                                  [ctx.source.gt_item(ctx, i) for i in ok_ids],
                                                  quiet=ctx.options.quiet)
    summary = build_summary(header=ctx.header, df=df, outcome=scorer.outcome(set_results),
                            bootstrap=ctx.options.bootstrap, seconds=time.time() - ctx.started,
                            device=ctx.options.device)
    ctx.run.finalize(df, summary)
    return summary
