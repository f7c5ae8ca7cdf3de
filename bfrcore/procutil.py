"""Worker processes that die with the process that started them (pure stdlib).

A ``kill -9`` of a CLI gives it no chance to stop its worker pool. Without help the workers live on (a
``concurrent.futures`` worker waits forever on its call queue) and keep writing files nobody records. Call
:func:`die_with_parent` first thing in every worker process (pool initializer, fork-server preload):

- Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker the moment its parent dies. The
  signal is tied to the parent *thread* that forked the worker, so it is only requested where that thread lives
  as long as the worker (the caller says so with ``pdeathsig``).
- Everywhere: a daemon watchdog thread polls, every ``interval`` seconds, whether the parent changed
  (``os.getppid()``: re-parenting happens the moment the parent exits, even before it is reaped) and, when given,
  whether the *main* process is still alive. Forkserver workers need the latter: their parent is the fork server,
  not the process that owns the pool (chain ``main -> forkserver -> workers``). The watchdog calls
  :func:`os._exit` with :data:`ORPHAN_EXIT_CODE`: no cleanup handlers run, no file is half-finished by Python code
  that is not ours.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

#: exit status of a worker that stopped because its parent or main process died
ORPHAN_EXIT_CODE = 3
#: seconds between two watchdog checks (a dead parent is noticed within this time; each check costs ~10 us)
WATCH_INTERVAL_S = 0.2
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_watchdog: threading.Thread | None = None


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Linux: ask the kernel to send ``sig`` to this process when the thread that forked it exits.
    Returns False (and does nothing) elsewhere or when prctl is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a killed process stays a zombie until reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return not os.path.isdir("/proc/self")  # no /proc at all (macOS): trust os.kill
    except OSError:  # pragma: no cover
        return True
    # "pid (comm) S ...": comm may contain spaces and parentheses, the state follows the last ')'
    state = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def _orphaned(parent_pid: int, main_pid: int | None) -> bool:
    return os.getppid() != parent_pid or (main_pid is not None and not pid_alive(main_pid))


def die_with_parent(main_pid: int | None = None, *, pdeathsig: bool = True,
                    interval: float = WATCH_INTERVAL_S) -> None:
    """Make this (worker) process exit when its parent, or the process ``main_pid``, dies. See the module doc.

    ``pdeathsig``: also use Linux's PR_SET_PDEATHSIG; pass False when the parent thread that forked us may end
    before the parent process does. Idempotent: a second call in the same process does nothing."""
    global _watchdog
    if _watchdog is not None and _watchdog.is_alive():
        return
    if pdeathsig:
        set_parent_death_signal(signal.SIGKILL)
    parent_pid = os.getppid()
    if main_pid == os.getpid():
        main_pid = None
    # the parent may have died before prctl took effect (then no signal ever comes)
    if main_pid is not None and not pid_alive(main_pid):
        os._exit(ORPHAN_EXIT_CODE)

    def watch() -> None:
        while True:
            time.sleep(interval)
            if _orphaned(parent_pid, main_pid):
                os._exit(ORPHAN_EXIT_CODE)

    _watchdog = threading.Thread(target=watch, name="celebref-parent-watchdog", daemon=True)
    _watchdog.start()


def init_worker(main_pid: int, setup: str | None = None) -> None:
    """A process-pool ``initializer``: :func:`die_with_parent` (with PDEATHSIG), then ``setup`` (``"module:func"``,
    imported only now). Naming ``setup`` by string keeps the pool's start-up light: a spawned worker unpickles its
    initializer before anything else, so a function object from a heavy module would import that module (seconds)
    before the worker is guarded."""
    die_with_parent(main_pid)
    if setup:
        import importlib

        mod, _, func = setup.partition(":")
        getattr(importlib.import_module(mod), func)()


def _after_fork_in_child() -> None:
    global _watchdog
    _watchdog = None  # threads are not copied by fork(): a forked child installs its own watchdog


os.register_at_fork(after_in_child=_after_fork_in_child)
