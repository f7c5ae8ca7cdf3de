"""Imported once by the local executor's fork server (``multiprocessing`` forkserver preload), so that every worker
process it forks starts with the heavy modules imported and the models loaded (torch alone takes 5-16 s to import
on a loaded 2-core machine; each worker used to pay it again, per build). Never raises: a missing optional backend
simply stays unloaded and the worker loads what it needs itself.

In the fork server it first arranges for the server to exit when the process that started it dies (a watchdog
thread, :func:`bfrcore.procutil.die_with_parent`): the server holds no work, but it would otherwise outlive a
``kill -9`` of the build for as long as any worker lives, and each worker it forked gets PR_SET_PDEATHSIG, so the
server's exit kills them at once. No PDEATHSIG for the server itself: it is started by whichever thread first
submits work, which may end long before the process does."""

from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _in_fork_server() -> bool:
    """True in the ``multiprocessing`` fork server (this module is also a Dask worker preload)."""
    return any("multiprocessing.forkserver" in a for a in getattr(sys, "orig_argv", sys.argv))


def _guard() -> None:
    if _in_fork_server():
        from bfrcore.procutil import die_with_parent

        die_with_parent(os.getppid(), pdeathsig=False)  # the server is spawned directly by the main process


def _warm() -> None:
    try:
        import cv2  # noqa: F401
        import numpy  # noqa: F401
        from PIL import Image  # noqa: F401

        from bfrcore.faces import dlib_models
        from celebref.pipeline import embed_stage, faces_stage, runner  # noqa: F401

        dlib_models.hog_detector()
        dlib_models.shape_predictor_68()
        dlib_models.shape_predictor_5()
    except Exception:  # noqa: BLE001 - best effort
        pass
    try:
        from bfrcore import weights
        from bfrcore.faces import dlib_resnet

        # the build's default on the CPU: dlib's network run by onnxruntime
        dlib_resnet.onnx_session(weights.require("dlib-resnet-face-v1"))
    except Exception:  # noqa: BLE001
        pass
    try:
        from celebref.pipeline import quality

        quality.niqe_backend()  # the NIQE parameters (numpy; the first score builds its tables, ~0.15 s: measured
        # no faster when done here for every worker instead)
    except Exception:  # noqa: BLE001
        pass


_guard()
_warm()
