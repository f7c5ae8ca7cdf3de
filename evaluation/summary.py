"""summary.json content of a RESULTS folder (format celebref.summary/1, docs/CONTRACTS.md): per-metric means with
bootstrap confidence intervals, set-level results, failures, versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from bfrcore.formats.results import FORMAT as SUMMARY_FORMAT
from bfrcore.results import package_versions
from evaluation.bootstrap import summarize


@dataclass(frozen=True)
class BootstrapSpec:
    """The percentile bootstrap of the per-image means: ``resamples`` (>= 1) draws seeded with ``seed``."""

    resamples: int = 2000
    seed: int = 0


@dataclass
class MetricOutcome:
    """What a run's metrics gave: the metric objects that ran (:class:`evaluation.metrics.Metric`), the set-level
    results of the distribution metrics ``{name: {column: value, 'n': ..., ...}}``, and the metrics that could not
    run (``unavailable``), were substituted (``notes``) or failed while running (``errors``), each ``{name: why}``."""

    metrics: list
    set_results: dict = field(default_factory=dict)
    unavailable: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)


def build_summary(*, header: dict, df: pd.DataFrame, outcome: MetricOutcome, bootstrap: BootstrapSpec,
                  seconds: float, device: str) -> dict:
    """summary.json content (CONTRACTS.md RESULTS format). ``header``: the run's identity (model, mode, test set,
    ...), copied first; ``df``: the per-image table (metrics.parquet); ``seconds``: wall time of the run."""
    ok = df[df["status"] == "ok"]
    out_metrics: dict[str, dict] = {}
    for m in outcome.metrics:
        info = m.info()
        for col in m.columns:
            if m.kind == "distribution":
                res = outcome.set_results.get(m.name)
                if res is None:
                    continue
                entry = {"mean": res.get(col.name), "ci95": None, "n": res.get("n"),
                         "higher_is_better": col.higher_is_better, "set_level": True}
                entry.update({k: v for k, v in res.items() if k not in (col.name, "n")})
            else:
                if col.name not in ok.columns:
                    continue
                entry = summarize(ok[col.name].to_numpy(dtype=np.float64), higher_is_better=col.higher_is_better,
                                  seed=bootstrap.seed, n_resamples=bootstrap.resamples)
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
        "n_images": len(df),
        "n_scored": len(ok),
        "metrics": out_metrics,
        "unavailable": dict(sorted(outcome.unavailable.items())),
        "failures": failures,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "device": device,
        "seconds": round(float(seconds), 3),
        "bootstrap": {"resamples": bootstrap.resamples, "seed": bootstrap.seed, "level": 0.95,
                      "method": "percentile"},
    }
    if outcome.notes:
        summary["notes"] = outcome.notes
    if outcome.errors:
        summary["metric_errors"] = outcome.errors
    return summary
