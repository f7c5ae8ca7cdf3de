"""DMDNet's landmark failures, handled both ways.

ReF-LDM ran DMDNet only where landmark detection succeeded and reported the metrics on the rest (214/857, 29/857
and 488/2,533 images left out). ``bench evaluate`` never leaves an image out: the LQ landmarks come from the
dataset, else dlib, else the mean face, and ``metrics.parquet`` records the source per image
(``landmarks_source``: manifest | detected | mean_face). :func:`landmark_subset` recomputes a run's per-image means
on the images whose landmarks were found (ReF-LDM's rule) and counts the fallbacks, so both numbers are available.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

FALLBACK = "mean_face"
BASE_COLUMNS = ("image_id", "status", "reason", "landmarks_source", "n_refs", "seconds")


def _mean(x: pd.Series) -> float | None:
    v = x.to_numpy(dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else None


def landmark_subset(run: str | os.PathLike) -> dict:
    """{n_ok, n_detected, n_fallback, metrics: {column: {all, detected_only}}} of a results folder."""
    run = Path(run)
    table = run / "metrics.parquet"
    summary = run / "summary.json"
    if not table.is_file() or not summary.is_file():
        raise FileNotFoundError(f"{run}: no metrics.parquet/summary.json (a `bench evaluate` results folder)")
    df = pd.read_parquet(table)
    doc = json.loads(summary.read_text())
    ok = df[df["status"] == "ok"]
    if "landmarks_source" not in ok.columns or ok["landmarks_source"].isna().all():
        raise ValueError(f"{run}: the model did not use landmarks (no landmarks_source recorded)")
    detected = ok[ok["landmarks_source"] != FALLBACK]
    per_image = [c for c in df.columns if c not in BASE_COLUMNS]
    metrics = {}
    for c in per_image:
        metrics[c] = {"all": _mean(ok[c]), "detected_only": _mean(detected[c])}
    for name, entry in (doc.get("metrics") or {}).items():
        if entry.get("set_level"):
            mean = entry.get("mean")
            metrics[name] = {"all": mean if isinstance(mean, (int, float)) and math.isfinite(mean) else None,
                             "detected_only": None}  # a set metric needs a rerun on the subset
    return {"n_ok": len(ok), "n_detected": len(detected), "n_fallback": int(len(ok) - len(detected)),
            "metrics": metrics,
            "note": "set-level metrics (FID) on the detected-only subset need a separate scoring run"}
