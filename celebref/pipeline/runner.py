"""Orchestration of `celebref build`: per-item stages over shards (cached, resumable), then global steps.

Per-item stages are plain functions ``fn(item, params) -> (result | None, reason | None)`` (an :class:`ItemStage`).
``run_item_stage`` keys them (see :mod:`celebref.pipeline.cache`), cuts the items (sorted by id) into shards of
``runner.shard_size``, skips shards whose stats file exists and items whose result file exists, hands the rest to
an :class:`~celebref.pipeline.executor.Executor`, and writes each shard's ``<hash>_stats.json`` (counts by
outcome) last, as its commit marker. A stage function that raises records ``error_<Type>`` for that item; the run
goes on.

Fused pass (``followers``): stages that read what the lead stage made (the embed and quality stages read the
faces stage's aligned crops) can run in the same worker call, right after the lead stage's item, on the pixels
still in memory. The lead's result hands them over under ``_pixels`` (never stored); ``handoff`` turns it into
the follower's item, and each follower's record is saved in that follower's own cache at the key its own run
will compute (:func:`item_stage_key` with the lead's key upstream), so the follower's run later finds every item
cached: the same records as three separate passes, without decoding each crop again or waiting at a barrier
between stages. A follower that raises is simply left to its own run (which records the error as usual).

Global stages (one computation over every face, e.g. the identity clustering) are cached the same way by
:func:`run_global_stage`: one result file under ``<cache>/<stage>/<key>/``, keyed like the per-item stages.
"""

from __future__ import annotations

import logging
import os
import math
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from bfrcore.imageio import write_bytes_atomic
from celebref.pipeline.cache import StageCache, read_json, shard_hash, stage_key, write_json_atomic
from celebref.pipeline.executor import Executor, ShardFailure

log = logging.getLogger("celebref.pipeline")


@dataclass(frozen=True)
class ItemStage:
    """A per-item stage: ``fn(item, params) -> (result | None, reason | None)``, keyed by name, version and
    params (plus the upstream keys of its run)."""

    name: str
    version: str
    fn: Callable[[dict, Any], tuple]
    params: Any


@dataclass(frozen=True)
class Followers:
    """Stages run in the lead stage's worker pass (see the module docstring). ``handoff(item_id, result,
    pixels, file_path) -> item | None`` makes their item from the lead's result, the ``_pixels`` it handed over
    and its cache's ``file_path``; None: nothing to follow (e.g. no face)."""

    stages: tuple[ItemStage, ...]
    handoff: Callable[[str, dict, dict, Callable[[str], Path]], Optional[dict]]


#: ``runner.shard_size: auto``: at most this many items a shard, and at least this many shards a worker
AUTO_SHARD_MAX = 8
SHARDS_PER_WORKER = 8


def shard_size_for(n_items: int, workers: int, shard_size: int | str) -> int:
    """Items per shard: ``shard_size`` when it is a number; for ``'auto'`` :data:`AUTO_SHARD_MAX`, or fewer so that
    each of ``workers`` gets :data:`SHARDS_PER_WORKER` shards (40 photos on 2 workers: 3 a shard, 14 shards, instead
    of 5 shards of 8 of which the last keeps one worker busy while the other idles; shards are handed out largest
    first). Only the shard boundaries
    (commit markers) depend on it; every item's result is cached on its own, so a rerun with other workers
    reuses them."""
    if shard_size != "auto":
        return int(shard_size)
    return max(1, min(AUTO_SHARD_MAX, math.ceil(n_items / (max(1, int(workers)) * SHARDS_PER_WORKER))))


def _shard_cost(items: list[dict]) -> float:
    """A shard's expected work: the bytes of its photos (faces stage; decode and detection grow with the photo),
    else its number of faces (embed and quality stages)."""
    cost = 0.0
    for it in items:
        path = it.get("path")
        if path:
            try:
                cost += os.path.getsize(path)
                continue
            except OSError:
                pass
        cost += 100_000.0 * max(1, len(it.get("faces") or ()))
    return cost


def item_stage_key(stage: ItemStage, upstream: tuple[str, ...]) -> str:
    """The cache key of ``stage``'s run with these upstream keys."""
    return stage_key(stage.name, stage.version, stage.params, upstream)


@dataclass
class StageRun:
    name: str
    key: str
    cache: StageCache
    records: dict[str, dict]
    counts: Counter = field(default_factory=Counter)
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0  # wall time of this run's computation
    compute_seconds: float = 0.0  # summed per-shard compute time (all workers)
    failed_shards: list[dict] = field(default_factory=list)  # shards whose every attempt failed (not cached)
    fused: Counter = field(default_factory=Counter)  # follower stage -> items it computed in this run's pass

    def summary(self) -> dict:
        n = self.computed
        out = {"key": self.key, "items": len(self.records), "computed": n, "cached": self.cached,
               "counts": dict(sorted(self.counts.items())), "wall_s": round(self.seconds, 3),
               "compute_s": round(self.compute_seconds, 3),
               "items_per_s": round(n / self.seconds, 3) if self.seconds > 0 and n else None}
        if self.failed_shards:
            out["failed_shards"] = self.failed_shards
        if self.fused:
            out["fused"] = dict(sorted(self.fused.items()))
        return out


def _shard_task(payload: tuple) -> dict:
    """Runs in a worker: one shard of one stage (and its followers). Writes each item's result file, returns
    counts."""
    stage, cache_root, key, items, follow = payload
    cache = StageCache(Path(cache_root), stage.name, key)
    counts: Counter = Counter()
    fused: Counter = Counter()
    t0 = time.perf_counter()
    for item in items:
        iid = item["item_id"]
        if cache.has(iid):
            counts["cached"] += 1
            continue
        detail = None
        try:
            result, reason = stage.fn(item, stage.params)
        except Exception as e:  # a bad item never stops the run
            result, reason = None, f"error_{type(e).__name__}"
            detail = f"{e}"[:300]
            log.debug("stage %s item %s failed:\n%s", stage.name, iid, traceback.format_exc())
        files = (result or {}).pop("_files", {}) if isinstance(result, dict) else {}
        pixels = (result or {}).pop("_pixels", {}) if isinstance(result, dict) else {}
        for name, data in files.items():
            write_bytes_atomic(cache.file_path(name), data)
        if follow is not None and isinstance(result, dict):
            fused.update(_run_followers(follow, Path(cache_root), iid, result, pixels, cache.file_path))
        rec = {"item_id": iid, "reason": reason, "result": result}
        if detail:
            rec["detail"] = detail
        cache.save(iid, rec)  # last: the followers' records exist before the lead's
        counts[reason or "ok"] += 1
    return {"counts": dict(counts), "seconds": time.perf_counter() - t0, "n": len(items), "fused": dict(fused)}


def _run_followers(follow: tuple, cache_root: Path, iid: str, result: dict, pixels: dict,
                   file_path: Callable[[str], Path]) -> Counter:
    """Compute and save the followers' records of one item (see the module docstring); returns how many."""
    stages, handoff = follow
    done: Counter = Counter()
    item = handoff(iid, result, pixels, file_path)
    if item is None:
        return done
    for stage, key in stages:
        fcache = StageCache(cache_root, stage.name, key)
        if fcache.has(iid):
            continue
        try:
            res, reason = stage.fn(item, stage.params)
        except Exception:  # noqa: BLE001 - left to the follower's own run, which records it as usual
            log.debug("fused stage %s item %s failed:\n%s", stage.name, iid, traceback.format_exc())
            continue
        if isinstance(res, dict) and (res.get("_files") or res.get("_pixels")):
            continue  # followers that make files run in their own pass
        fcache.save(iid, {"item_id": iid, "reason": reason, "result": res})
        done[stage.name] += 1
    return done


def run_item_stage(stage: ItemStage, items: list[dict], *, cache_root: Path, upstream: tuple[str, ...],
                   executor: Executor, shard_size: int | str, progress=None,
                   followers: Followers | None = None) -> StageRun:
    """Run ``stage`` on every item not cached yet (see the module docstring); ``progress(total, desc)`` makes a
    bar that counts items (photos for the faces stage). ``followers`` run in the same pass (fused)."""
    name = stage.name
    key = item_stage_key(stage, upstream)
    cache = StageCache(cache_root, name, key)
    cache.write_meta({"stage": name, "version": stage.version, "params": stage.params, "upstream": list(upstream)})
    follow = None
    if followers is not None and followers.stages:
        follow = (tuple((f, item_stage_key(f, (key,))) for f in followers.stages), followers.handoff)
    items = sorted(items, key=lambda i: i["item_id"])
    size = shard_size_for(len(items), executor.workers, shard_size)
    shards = [items[i:i + size] for i in range(0, len(items), size)]
    done = cache.done_shards()
    payloads, hashes = [], []
    cached = 0
    for sh in shards:
        h = shard_hash([key] + [i["item_id"] for i in sh])
        if h in done:
            cached += len(sh)
            continue
        pending = [i for i in sh if not cache.has(i["item_id"])]
        cached += len(sh) - len(pending)
        ids = [i["item_id"] for i in sh]
        if not pending:  # every item cached (e.g. computed by a fused pass): commit without a worker round trip
            write_json_atomic(cache.shard_stats_path(h), {"stage": name, "key": key, "items": ids, "counts": {},
                                                          "seconds": 0.0})
            continue
        payloads.append((stage, str(cache_root), key, pending, follow))
        hashes.append((h, ids))
    # largest shards first (longest-processing-time order): the last shards handed out are the quick ones, so the
    # workers finish together; the results do not depend on the order
    order = sorted(range(len(payloads)), key=lambda k: (-_shard_cost(payloads[k][3]), hashes[k][0]))
    payloads, hashes = [payloads[k] for k in order], [hashes[k] for k in order]
    run = StageRun(name, key, cache, {}, cached=cached)
    t0 = time.perf_counter()
    n_pending = sum(len(p[3]) for p in payloads)
    bar = progress(total=n_pending, desc=name) if progress and payloads else None
    failed: dict[str, ShardFailure] = {}
    for idx, stats in executor.run(_shard_task, payloads, labels=[f"{name} shard {h}" for h, _ in hashes]):
        h, ids = hashes[idx]
        if bar is not None:
            bar.update(len(payloads[idx][3]))
        if isinstance(stats, ShardFailure):
            # every attempt failed (a worker kept dying, or the shard itself raised): no commit marker, so a rerun
            # tries again; the items without a result are recorded with the reason below
            run.failed_shards.append({"shard": h, "items": len(ids), **stats.to_dict()})
            for iid in ids:
                failed[iid] = stats
            continue
        run.compute_seconds += stats["seconds"]
        run.fused.update(stats.get("fused") or {})
        # commit marker, written after every item file of the shard exists
        write_json_atomic(cache.shard_stats_path(h), {"stage": name, "key": key, "items": ids,
                                                      "counts": stats["counts"], "seconds": stats["seconds"]})
    if bar is not None:
        bar.close()
    run.seconds = time.perf_counter() - t0
    run.computed = n_pending
    for it in items:
        iid = it["item_id"]
        if iid in failed and not cache.has(iid):
            f = failed[iid]
            rec = {"item_id": iid, "reason": f.reason, "result": None,
                   "detail": f"{name} shard failed {f.attempts} time(s): {f.detail}"[:300]}
        else:
            rec = cache.load(iid)
        run.records[iid] = rec
        run.counts[rec["reason"] or "ok"] += 1
    return run


@dataclass(frozen=True)
class GlobalStage:
    """A stage computed once over the whole build. Its result is stored as JSON in ``result_file`` of its cache
    folder: ``encode`` turns the result into plain JSON data, ``decode`` back."""

    name: str
    version: str
    result_file: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


@dataclass
class GlobalRun:
    """The outcome of :func:`run_global_stage`: the stage's key, its result, whether it came from the cache."""

    name: str
    key: str
    result: Any
    cached: bool
    seconds: float


def run_global_stage(stage: GlobalStage, compute: Callable[[], Any], params: Any, *, cache_root: Path,
                     upstream: tuple[str, ...]) -> GlobalRun:
    """The cached result of ``stage`` at the key of (``params``, ``upstream``), else ``compute()`` (stored, the
    result file written last as the commit marker)."""
    key = stage_key(stage.name, stage.version, params, upstream)
    cache = StageCache(cache_root, stage.name, key)
    path = cache.result_path(stage.result_file)
    t0 = time.perf_counter()
    if path.is_file():
        return GlobalRun(stage.name, key, stage.decode(read_json(path)), True, time.perf_counter() - t0)
    result = compute()
    cache.write_meta({"stage": stage.name, "version": stage.version, "params": params, "upstream": list(upstream)})
    write_json_atomic(path, stage.encode(result))
    return GlobalRun(stage.name, key, result, False, time.perf_counter() - t0)
