"""Executors: how shards of per-item work are run. The stages never see them.

An executor takes a picklable top-level ``task(payload) -> result`` and a list of payloads and yields
``(payload_index, result)`` as tasks finish (any order). ``LocalExecutor`` runs them inline (workers <= 1) or in a
``concurrent.futures`` process pool. A later Ray/Dask executor implements the same two methods; since every
per-item output is a pure function of (item, config) and is keyed by content, the manifest is identical
whichever executor ran it and in whatever order.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterator, Sequence


class Executor(ABC):
    name = "abstract"
    workers = 1

    @abstractmethod
    def run(self, task: Callable[[Any], Any], payloads: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Run ``task`` on every payload; yield (index, result) as each finishes."""

    def close(self) -> None:  # pragma: no cover - nothing to release for the local executor
        pass

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers}


def _init_worker() -> None:
    # one BLAS/OpenMP thread per worker process: the pool provides the parallelism
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # pragma: no cover
        pass


class LocalExecutor(Executor):
    """Inline for ``workers <= 1``; otherwise a process pool with at most ``workers`` processes."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_init_worker)
        return self._pool

    def run(self, task, payloads):
        if self.workers <= 1 or len(payloads) <= 1:
            for i, p in enumerate(payloads):
                yield i, task(p)
            return
        pool = self._get_pool()
        # bounded in-flight submissions keep memory flat for large builds
        pending: dict = {}
        it = iter(enumerate(payloads))
        limit = self.workers * 2
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < limit:
                try:
                    i, p = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending[pool.submit(task, p)] = i
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                yield i, fut.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def get_executor(kind: str = "local", workers: int = 1) -> Executor:
    if kind == "local":
        return LocalExecutor(workers)
    raise ValueError(f"unknown executor {kind!r} (available: local)")
