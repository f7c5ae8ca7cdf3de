"""summary.json content of a RESULTS folder (format celebref.summary/1, docs/CONTRACTS.md): per-metric means with
bootstrap confidence intervals, set-level results, failures, versions."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from bfrcore.formats.results import FORMAT as SUMMARY_FORMAT
from bfrcore.results import package_versions
from evaluation.bootstrap import summarize


def build_summary(*, header: dict, df: pd.DataFrame, metrics: list, set_results: dict, unavailable: dict,
                  notes: dict, metric_errors: dict, seconds: float, device: str, bootstrap_resamples: int,
                  seed: int) -> dict:
    """summary.json content (CONTRACTS.md RESULTS format)."""
    ok = df[df["status"] == "ok"]
    out_metrics: dict[str, dict] = {}
    for m in metrics:
        info = m.info()
        for col in m.columns:
            if m.kind == "distribution":
                res = set_results.get(m.name)
                if res is None:
                    continue
                entry = {"mean": res.get(col.name), "ci95": None, "n": res.get("n"),
                         "higher_is_better": col.higher_is_better, "set_level": True}
                entry.update({k: v for k, v in res.items() if k not in (col.name, "n")})
            else:
                if col.name not in ok.columns:
                    continue
                entry = summarize(ok[col.name].to_numpy(dtype=np.float64), higher_is_better=col.higher_is_better,
                                  seed=seed, n_resamples=bootstrap_resamples)
            entry.update({"convention": info["convention"], "version": info["version"], "metric": m.name,
                          "reference": info["reference"], "description": col.description})
            if info["weights"]:
                entry["weights"] = info["weights"]
            out_metrics[col.name] = entry
    failures = [{"image_id": r["image_id"], "reason": r["reason"]} for r in df.to_dict("records")
                if r["status"] != "ok"]
    summary = {
        "format": SUMMARY_FORMAT,
        **header,
        "n_images": int(len(df)),
        "n_scored": int(len(ok)),
        "metrics": out_metrics,
        "unavailable": dict(sorted(unavailable.items())),
        "failures": failures,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "device": device,
        "seconds": round(float(seconds), 3),
        "bootstrap": {"resamples": bootstrap_resamples, "seed": seed, "level": 0.95, "method": "percentile"},
    }
    if notes:
        summary["notes"] = notes
    if metric_errors:
        summary["metric_errors"] = metric_errors
    return summary
