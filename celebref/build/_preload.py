"""Imported once by the local executor's fork server (``multiprocessing`` forkserver preload), so that every worker
process it forks starts with the heavy modules imported and the models loaded (torch alone takes 5-16 s to import
on a loaded 2-core machine; each worker used to pay it again, per build). Never raises: a missing optional backend
simply stays unloaded and the worker loads what it needs itself."""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _warm() -> None:
    try:
        import cv2  # noqa: F401
        import numpy  # noqa: F401
        from PIL import Image  # noqa: F401

        from celebref.build import embed_stage, faces_stage, runner  # noqa: F401
        from celebref.faces import dlib_models

        dlib_models.hog_detector()
        dlib_models.shape_predictor_68()
        dlib_models.shape_predictor_5()
        dlib_models.face_recognizer()
    except Exception:  # noqa: BLE001 - best effort
        pass
    try:
        from celebref.build import quality

        quality.niqe_backend()  # imports torch + evaluation.niqe and loads the NIQE parameters (cached)
    except Exception:  # noqa: BLE001
        pass


_warm()
