"""Executors: how shards of per-item work are run. The stages never see them.

An executor takes a picklable top-level ``task(payload) -> result`` and a list of payloads and yields
``(payload_index, result)`` as tasks finish (any order). A task that fails (raises, or its worker process dies)
is retried up to ``retries`` more times; when every attempt failed the executor yields a :class:`ShardFailure`
instead of a result, so a run always completes. Every failed attempt is appended to ``executor.events``
(recorded in build.json). Since every per-item output is a pure function of (item, config) keyed by content, the
manifest is identical whichever executor ran it, in whatever order, after however many retries.

- :class:`LocalExecutor`: inline (``workers <= 1``) or a ``concurrent.futures`` process pool on this machine.
- :class:`DaskExecutor`: Dask distributed, on an existing cluster (``address='tcp://scheduler:8786'``) or a
  ``LocalCluster`` of ``workers`` single-threaded worker processes started for the run. Workers must see the
  output folder and the sources at the same paths (a shared filesystem): item results are written by the
  workers; :meth:`Executor.prepare` checks this before any work is sent.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import uuid
from abc import ABC, abstractmethod
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

log = logging.getLogger("celebref.pipeline")

EXECUTORS = ("local", "dask")
#: the environment as the user started us (before any Dask nanny wrote into it)
_USER_ENV = dict(os.environ)


@dataclass(frozen=True)
class ShardFailure:
    """What an executor yields for a task whose every attempt failed."""

    reason: str  # short machine-readable cause: worker_lost, error_<Type>
    detail: str
    attempts: int

    def to_dict(self) -> dict:
        return asdict(self)


class ExecutorError(RuntimeError):
    """The executor cannot run at all (no scheduler at the address, workers that cannot see the files)."""


def _failure_reason(exc: BaseException) -> str:
    name = type(exc).__name__
    if name in ("KilledWorker", "BrokenProcessPool") or isinstance(exc, BrokenProcessPool):
        return "worker_lost"
    return f"error_{name}"


class Executor(ABC):
    name = "abstract"
    workers = 1

    def __init__(self, retries: int = 2):
        self.retries = max(0, int(retries))
        #: one record per failed attempt: {"label", "attempt", "reason", "detail", "final"}
        self.events: list[dict] = []

    @abstractmethod
    def run(self, task: Callable[[Any], Any], payloads: Sequence[Any],
            labels: Sequence[str] | None = None) -> Iterator[tuple[int, Any]]:
        """Run ``task`` on every payload; yield (index, result or ShardFailure) as each finishes.
        ``labels`` (optional, one per payload) name the payloads in ``events``."""

    def prepare(self, paths: Sequence[str | os.PathLike]) -> None:
        """Check that the workers can read/write ``paths`` (nothing to do on this machine)."""

    def wait_ready(self) -> None:
        """Wait until the workers started by :meth:`prepare` are ready (nothing to wait for by default)."""

    def close(self) -> None:  # pragma: no cover - nothing to release for the inline executor
        pass

    def describe(self) -> dict:
        return {"kind": self.name, "workers": self.workers, "retries": self.retries}

    def _record(self, label: str, attempt: int, exc: BaseException, final: bool) -> ShardFailure:
        reason = _failure_reason(exc)
        detail = f"{type(exc).__name__}: {str(exc)[:300]}"
        self.events.append({"label": label, "attempt": attempt, "reason": reason, "detail": detail, "final": final})
        if final:
            log.error("%s failed %d time(s), giving up: %s", label, attempt, detail)
        else:
            log.warning("%s failed (attempt %d, %s), retrying", label, attempt, detail)
        return ShardFailure(reason, detail, attempt)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _init_worker(main_pid: int | None = None) -> None:
    """Per-process setup. ``main_pid`` (local pool): the process that owns the pool; the worker exits when it dies
    (its parent is the fork server, which dies with it too: see :mod:`bfrcore.procutil`)."""
    if main_pid is not None:
        from bfrcore.procutil import die_with_parent

        die_with_parent(main_pid)  # PDEATHSIG is safe: forked by the fork server's main thread
    # one BLAS/OpenMP thread per worker process: the pool provides the parallelism
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # pragma: no cover
        pass


@contextmanager
def one_thread():
    """BLAS/OpenMP pools and OpenCV limited to one thread while an inline task runs (``--workers 1``), as in the
    pool's workers: one worker uses one core (measured: without it, 200 photos took 0.30 CPU-s each in 0.20 s of
    wall time, the second thread mostly spinning). Restored afterwards."""
    from threadpoolctl import threadpool_limits

    try:
        import cv2

        cv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
    except Exception:  # noqa: BLE001 - no OpenCV: nothing to limit
        cv2, cv_threads = None, None
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        if cv2 is not None:
            cv2.setNumThreads(cv_threads)


_WORKER_READY = False


def _noop() -> None:
    return None


def _worker_call(task: Callable, payload: Any) -> Any:
    """Runs on a Dask worker: per-process setup once, then the task."""
    global _WORKER_READY
    if not _WORKER_READY:
        _init_worker()
        _WORKER_READY = True
    return task(payload)


class LocalExecutor(Executor):
    """Inline for ``workers <= 1``; otherwise a process pool with at most ``workers`` processes."""

    name = "local"

    def __init__(self, workers: int = 1, retries: int = 2):
        super().__init__(retries)
        self.workers = max(1, int(workers))
        self._pool: ProcessPoolExecutor | None = None
        self.startup_s = 0.0  # from launching the pool to every worker answering
        self.startup_wait_s = 0.0  # how long the build waited for that (the rest overlapped with its own work)
        self._starting: threading.Thread | None = None
        self._start_error: BaseException | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver, not fork: forking a process that already runs threads (pyarrow/datasets pools, OpenMP,
            # HTTP servers, tqdm) can leave a lock held in the child, which then hangs forever (seen in the test
            # suite after the Hugging Face tests). The fork server is a clean single-threaded process.
            # The server imports celebref.pipeline._preload once (torch, dlib models, NIQE parameters), so workers
            # start warm instead of each importing torch again.
            import multiprocessing

            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["celebref.pipeline._preload"])  # no effect once the server runs
            # Workers (and the fork server, see _preload) exit when this process dies, even by kill -9.
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
                                             initargs=(os.getpid(),))
        return self._pool

    def prepare(self, paths):
        """Start the worker processes in the background: the fork server's imports (torch, the dlib models; seconds)
        overlap with what the build does meanwhile (ingest: listing and hashing the sources); the first
        :meth:`run` that needs the pool waits for the rest. Timed as ``startup_s`` (launch to ready) and
        ``startup_wait_s`` (the part the build waited for), so stage timings measure the work only."""
        if self.workers <= 1 or self._pool is not None or self._starting is not None:
            return
        t0 = time.perf_counter()

        def start() -> None:
            try:
                pool = self._get_pool()
                for f in [pool.submit(_noop) for _ in range(self.workers)]:
                    f.result()
            except BaseException as e:  # noqa: BLE001 - raised in the build's thread by wait_ready
                self._start_error = e
            self.startup_s = time.perf_counter() - t0

        self._starting = threading.Thread(target=start, name="celebref-pool-start", daemon=True)
        self._starting.start()

    def wait_ready(self) -> None:
        """Wait for a start begun by :meth:`prepare` (re-raising its error)."""
        if self._starting is None:
            return
        t0 = time.perf_counter()
        self._starting.join()
        self._starting = None
        self.startup_wait_s += time.perf_counter() - t0
        if self._start_error is not None:
            err, self._start_error = self._start_error, None
            raise err

    def describe(self) -> dict:
        return {**super().describe(), "startup_s": round(self.startup_s, 3),
                "startup_wait_s": round(self.startup_wait_s, 3)}

    def run(self, task, payloads, labels=None):
        labels = list(labels) if labels is not None else [f"task {i}" for i in range(len(payloads))]
        if self.workers <= 1 or len(payloads) <= 1:
            for i, p in enumerate(payloads):
                attempt = 0
                while True:
                    attempt += 1
                    try:
                        with one_thread():
                            res = task(p)
                    except Exception as e:  # noqa: BLE001 - recorded, retried, never fatal
                        fail = self._record(labels[i], attempt, e, attempt > self.retries)
                        if attempt > self.retries:
                            res = fail
                        else:
                            continue
                    break
                yield i, res
            return
        self.wait_ready()
        # bounded in-flight submissions keep memory flat for large builds
        pending: dict = {}
        attempts = [0] * len(payloads)
        queue = list(range(len(payloads)))[::-1]  # pop() from the end = submission order
        limit = self.workers * 2
        while pending or queue:
            while queue and len(pending) < limit:
                i = queue.pop()
                attempts[i] += 1
                pending[self._get_pool().submit(task, payloads[i])] = i
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                i = pending.pop(fut)
                try:
                    res = fut.result()
                except Exception as e:  # noqa: BLE001
                    broken = broken or isinstance(e, BrokenProcessPool)
                    final = attempts[i] > self.retries
                    fail = self._record(labels[i], attempts[i], e, final)
                    if final:
                        yield i, fail
                    else:
                        queue.append(i)
                    continue
                yield i, res
            if broken:  # a dead worker breaks the whole pool: start a new one, resubmit what was in flight
                for fut, i in list(pending.items()):
                    final = attempts[i] > self.retries
                    fail = self._record(labels[i], attempts[i], BrokenProcessPool("pool restarted"), final)
                    if final:
                        yield i, fail
                    else:
                        queue.append(i)
                pending.clear()
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def close(self) -> None:
        try:
            self.wait_ready()
        except BaseException:  # noqa: BLE001 - a pool that failed to start has nothing to close
            pass
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _probe_paths(paths: list[str]) -> dict:
    """Runs on every Dask worker: which paths it cannot see (or write, for the first one)."""
    missing = [p for p in paths if not os.path.exists(p)]
    writable = bool(paths) and os.access(paths[0], os.W_OK)
    return {"missing": missing, "writable": writable, "pid": os.getpid()}


class DaskExecutor(Executor):
    """Dask distributed. ``address`` = an existing scheduler (``tcp://host:8786``); without it a ``LocalCluster``
    of ``workers`` single-threaded worker processes is started for this run (and closed by :meth:`close`).

    Retries are done here, on the client: a task that raises, or whose worker dies (``KilledWorker``), is
    resubmitted up to ``retries`` times, then yielded as a :class:`ShardFailure`. On the LocalCluster the
    scheduler's own rescheduling of a dead worker's tasks is switched off (``allowed_failures=0``) so that every
    failure reaches the client and is recorded; an external scheduler may additionally reschedule tasks itself
    (``distributed.scheduler.allowed-failures``) before a ``KilledWorker`` reaches us.
    """

    name = "dask"

    def __init__(self, address: str | None = None, workers: int = 2, retries: int = 2, *,
                 connect_timeout: float = 30.0, max_in_flight: int | None = None):
        super().__init__(retries)
        try:
            from distributed import Client, LocalCluster
        except ImportError as e:  # pragma: no cover - pinned in requirements
            raise ExecutorError("the dask executor needs `dask[distributed]` (pip install 'dask[distributed]')") from e
        self.address = address
        self._cluster = None
        t0 = time.perf_counter()
        if address:
            try:
                self.client = Client(address, timeout=connect_timeout, set_as_default=False)
            except (OSError, TimeoutError) as e:
                raise ExecutorError(f"cannot reach the Dask scheduler at {address}: {e}") from e
            self.client.wait_for_workers(1, timeout=connect_timeout)
        else:
            import dask

            env = dict(os.environ)
            # Dask's nannies export MALLOC_TRIM_THRESHOLD_=65536 to workers by default. Fixing the trim threshold
            # switches off glibc's dynamic mmap threshold, so every large temporary array is a fresh mmap: NIQE ran
            # 4x slower (500k page faults for 10 faces vs 14k) and the whole build took 2x the CPU per photo.
            # The nanny also writes these variables into this process's environment: restored below.
            with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
                if "MALLOC_TRIM_THRESHOLD_" not in _USER_ENV:
                    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
                self._cluster = LocalCluster(
                    n_workers=max(1, int(workers)), threads_per_worker=1, processes=True, dashboard_address=None,
                    silence_logs=logging.ERROR, scheduler_kwargs={"allowed_failures": 0},
                    preload=["celebref.pipeline._preload"])  # torch, dlib models, NIQE params once per worker
                self.client = Client(self._cluster, set_as_default=False)
                self.client.wait_for_workers(max(1, int(workers)), timeout=connect_timeout * 4)
            os.environ.clear()
            os.environ.update(env)
        self.startup_s = time.perf_counter() - t0
        self.workers = len(self.client.scheduler_info(n_workers=-1)["workers"]) or max(1, int(workers))
        self._max_in_flight = max_in_flight

    def prepare(self, paths):
        paths = [os.path.abspath(os.fspath(p)) for p in paths]
        if not paths:
            return
        res = self.client.run(_probe_paths, paths)
        bad = {w: r for w, r in res.items() if r["missing"] or not r["writable"]}
        if bad:
            w, r = next(iter(sorted(bad.items())))
            raise ExecutorError(
                f"{len(bad)}/{len(res)} Dask worker(s) cannot use the build's files (e.g. {w}: missing "
                f"{r['missing'][:3]}, output writable: {r['writable']}); the output folder and the sources must be "
                "on a filesystem shared by every worker, at the same path")

    def run(self, task, payloads, labels=None):
        from distributed import as_completed

        n = len(payloads)
        if n == 0:
            return
        labels = list(labels) if labels is not None else [f"task {i}" for i in range(n)]
        tag = uuid.uuid4().hex[:8]
        attempts = [0] * n
        index_of: dict[str, int] = {}
        queue = list(range(n))[::-1]
        limit = self._max_in_flight or max(4, self.workers * 4)
        ac = as_completed(loop=self.client.loop)

        def submit(i: int) -> None:
            attempts[i] += 1
            fut = self.client.submit(_worker_call, task, payloads[i], key=f"celebref-{tag}-{i}-a{attempts[i]}",
                                     pure=False)
            index_of[fut.key] = i
            ac.add(fut)

        in_flight = 0
        while queue and in_flight < limit:
            submit(queue.pop())
            in_flight += 1
        for fut in ac:
            i = index_of.pop(fut.key)
            in_flight -= 1
            try:
                res = fut.result()
            except Exception as e:  # noqa: BLE001 - raised in the task, or KilledWorker
                detail = traceback.format_exception_only(type(e), e)[-1].strip()
                log.debug("dask task %s failed: %s", fut.key, detail)
                final = attempts[i] > self.retries
                fail = self._record(labels[i], attempts[i], e, final)
                fut.release()
                if final:
                    yield i, fail
                else:
                    queue.append(i)
            else:
                fut.release()
                yield i, res
            while queue and in_flight < limit:
                submit(queue.pop())
                in_flight += 1

    def describe(self) -> dict:
        return {**super().describe(), "address": self.address or "LocalCluster",
                "startup_s": round(self.startup_s, 3)}

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None


def get_executor(kind: str = "local", workers: int = 1, *, address: str | None = None,
                 retries: int = 2) -> Executor:
    """``local`` (this machine) or ``dask`` (a Dask scheduler at ``address``, else a LocalCluster of ``workers``)."""
    if kind == "local":
        if address:
            raise ValueError("--address needs --executor dask")
        return LocalExecutor(workers, retries=retries)
    if kind == "dask":
        return DaskExecutor(address, workers=max(1, workers), retries=retries)
    if kind == "ray":
        raise ValueError("executor 'ray' is not provided (see docs/build.md, 'Distributed builds': Dask was chosen)")
    raise ValueError(f"unknown executor {kind!r} (available: {', '.join(EXECUTORS)})")
