"""Landmark distance (LMD): mean Euclidean distance between the landmarks of the restored face and of the GT.

Backends:

- ``lmd`` — dlib's 68-point regressor (``bfrcore.faces.landmarks68``) inside the fixed FFHQ-aligned face box
  (``ALIGNED_FACE_BOX_512`` scaled to the image), so a degraded or hallucinated face never depends on a detector
  succeeding; works offline;
- ``lmd_awing`` — VQFR's ``metric_paper/calculate_landmark_distance.py`` recipe: facexlib AWing FAN (4 hourglass,
  WFLW, 98 points) on the whole aligned image resized to 256 (BGR input, as VQFR feeds ``cv2.imread``), when
  ``facexlib-awing-wflw`` is present.

Normalisation: distances are in pixels of a 512x512 aligned face (coordinates scaled by 512 / width), the scale
VQFR reports for CelebA-Test; mean over points, then over images. Lower is better.
"""

from __future__ import annotations

import numpy as np
import torch

from bfrcore.faces import ALIGNED_FACE_BOX_512, landmarks68
from evaluation.metrics import Batch, Column, Metric, register_metric

REFERENCE_SIZE = 512


def landmark_distance(p: np.ndarray, q: np.ndarray, width: int) -> float:
    """Mean over points of ||p_k - q_k||, scaled to a 512-pixel-wide face."""
    d = np.linalg.norm(np.asarray(p, np.float64) - np.asarray(q, np.float64), axis=1)
    return float(d.mean() * REFERENCE_SIZE / width)


def dlib_landmarks(img: np.ndarray) -> np.ndarray:
    s = img.shape[1] / 512.0
    return landmarks68(np.ascontiguousarray(img), [v * s for v in ALIGNED_FACE_BOX_512])


class LMD(Metric):
    name = "lmd"
    kind = "full_reference"
    version = "1"
    needs = ("dlib-shape-predictor-68",)
    columns = (Column("lmd", False, "mean 68-point landmark distance (px at 512)"),)
    reference = "dlib shape_predictor_68 (NumPy distance on the same points)"

    @property
    def convention(self) -> str:
        return "dlib 68 points in the fixed aligned-face box, mean L2 per point, pixels at 512x512"

    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        vals = [landmark_distance(dlib_landmarks(p), dlib_landmarks(g), p.shape[1])
                for p, g in zip(batch.pred, batch.gt)]
        return {self.name: np.asarray(vals, np.float64)}


class AWingLMD(Metric):
    name = "lmd_awing"
    kind = "full_reference"
    version = "1"
    needs = ("facexlib-awing-wflw",)
    columns = (Column("lmd_awing", False, "mean 98-point AWing landmark distance (px at 512)"),)
    reference = "VQFR metric_paper/calculate_landmark_distance.py (facexlib FAN.get_landmarks)"

    @property
    def convention(self) -> str:
        return "facexlib AWing FAN 4HG WFLW 98 points on the image resized to 256 (BGR), mean L2, pixels at 512"

    def _setup(self, device: str) -> None:
        from facexlib.alignment import FAN

        from bfrcore import weights as wreg

        state = torch.load(wreg.require("facexlib-awing-wflw"), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model = FAN(num_modules=4, num_landmarks=98, device=device)
        model.load_state_dict(state, strict=True)
        self._model = model.eval().to(device)

    @torch.no_grad()
    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        vals = []
        for p, g in zip(batch.pred, batch.gt):
            lp = self._model.get_landmarks(np.ascontiguousarray(p[:, :, ::-1]))
            lg = self._model.get_landmarks(np.ascontiguousarray(g[:, :, ::-1]))
            vals.append(landmark_distance(lp, lg, p.shape[1]))
        return {self.name: np.asarray(vals, np.float64)}


register_metric("lmd", lambda o: LMD(o))
register_metric("lmd_awing", lambda o: AWingLMD(o))
