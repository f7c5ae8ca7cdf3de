"""The RESULTS folder (docs/CONTRACTS.md): per-image ``metrics.parquet``, ``summary.json``, resumable writing.

``R/<model>/<testset name>/<mode>/``::

    restored/<image_id>.png     (bench evaluate only) the scored outputs, lossless
    metrics.parquet             image_id, status (ok|failed), reason, landmarks_source, n_refs, seconds, one
                                column per metric
    summary.json                format celebref.summary/1 (built by :func:`evaluation.summary.build_summary`; the contract is
                                bfrcore.formats.results, checked before writing)
    .partial.jsonl              rows written so far by an unfinished run (one JSON line per image)
    .run.json                   what the rows were computed with; a rerun with other settings is refused

A run appends each finished image to ``.partial.jsonl`` (flushed), so an interrupted run resumes from there; the
final ``metrics.parquet`` and ``summary.json`` are written atomically at the end.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from bfrcore import versions
from bfrcore.errors import InputError
from bfrcore.formats import parquet_schema
from bfrcore.formats.results import FORMAT as SUMMARY_FORMAT  # noqa: F401  (the RESULTS constants live here)
from bfrcore.formats.results import validate_metrics_table, validate_summary
from bfrcore.imageio import write_bytes_atomic

METRICS_FILE = "metrics.parquet"
SUMMARY_FILE = "summary.json"
PARTIAL_FILE = ".partial.jsonl"
RUN_FILE = ".run.json"
RESTORED_DIR = "restored"
BASE_COLUMNS = ("image_id", "status", "reason", "landmarks_source", "n_refs", "seconds")


class RunSettingsError(InputError):
    """A results folder that holds rows computed with other settings than the run asks for (exit 2): the caller
    picks another folder or replaces the rows (``overwrite``)."""


def package_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """The ``versions`` of a summary.json: installed distributions only (absent ones are left out)."""
    return versions.package_versions(
        ("celebref-suite", "torch", "numpy", "scipy", "scikit-image", "lpips", "pyiqa", "pytorch-fid", "dlib-bin",
         "insightface", "opencv-python-headless", "pillow", *extra), skip_missing=True)


def _plain(v):
    if v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else (None if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, np.integer):
        return int(v)
    return v


def _unplain(v):
    if v == "inf":
        return math.inf
    if v == "-inf":
        return -math.inf
    if v is None:
        return math.nan
    return v


class ResultRun:
    """Rows of one results folder, loaded from a previous (finished or interrupted) run and appended to."""

    def __init__(self, out_dir: Path, run_key: dict, *, overwrite: bool = False):
        self.dir = Path(out_dir)
        self.key = json.loads(json.dumps(run_key, sort_keys=True, default=str))
        run_file = self.dir / RUN_FILE
        if self.dir.exists() and overwrite:
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if run_file.is_file():
            old = json.loads(run_file.read_text())
            if old != self.key:
                diff = sorted(k for k in set(old) | set(self.key) if old.get(k) != self.key.get(k))
                raise RunSettingsError(
                    f"{self.dir} holds results computed with other settings ({', '.join(diff)} differ); "
                    "use another --out/--name, or --overwrite to replace them")
        else:
            write_bytes_atomic(run_file, json.dumps(self.key, indent=2, sort_keys=True).encode())
        self.rows: dict[str, dict] = {}
        mp = self.dir / METRICS_FILE
        if mp.is_file():
            prev = pd.read_parquet(mp)
            validate_metrics_table(prev, mp, schema=parquet_schema(mp))
            for r in prev.to_dict("records"):
                self.rows[str(r["image_id"])] = {k: (None if isinstance(v, float) and math.isnan(v) and
                                                     k in ("reason", "landmarks_source") else v)
                                                 for k, v in r.items()}
        pp = self.dir / PARTIAL_FILE
        if pp.is_file():
            for line in pp.read_text().splitlines():
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:  # a line cut by the interruption
                    continue
                self.rows[str(r["image_id"])] = {k: _unplain(v) if k not in ("image_id", "status", "reason",
                                                                             "landmarks_source") else v
                                                 for k, v in r.items()}
        self._partial = None

    def is_complete(self, image_id: str, columns: Iterable[str]) -> bool:
        """True when the image has an ok row with every requested column present (NaN counts as computed)."""
        r = self.rows.get(image_id)
        return bool(r) and r.get("status") == "ok" and all(c in r for c in columns)

    def record(self, row: dict) -> None:
        row = {k: _plain(v) for k, v in row.items()}
        old = self.rows.get(row["image_id"], {})
        merged = {**old, **row} if old.get("status") == "ok" and row.get("status") == "ok" else row
        self.rows[row["image_id"]] = {k: _unplain(v) if k not in ("image_id", "status", "reason",
                                                                  "landmarks_source") else v
                                      for k, v in merged.items()}
        if self._partial is None:
            self._partial = open(self.dir / PARTIAL_FILE, "a", encoding="utf-8")
        self._partial.write(json.dumps(merged, sort_keys=True) + "\n")
        self._partial.flush()
        os.fsync(self._partial.fileno())

    def close(self) -> None:
        if self._partial is not None:
            self._partial.close()
            self._partial = None

    def table(self, image_ids: Iterable[str], metric_columns: list[str]) -> pd.DataFrame:
        """The per-image table for ``image_ids`` (in that order): base columns then metric columns."""
        recs = []
        for iid in image_ids:
            r = self.rows.get(iid)
            if r is None:
                continue
            rec = {c: r.get(c) for c in BASE_COLUMNS}
            for c in metric_columns:
                v = r.get(c)
                rec[c] = np.nan if v is None else float(v)
            recs.append(rec)
        df = pd.DataFrame(recs, columns=list(BASE_COLUMNS) + list(metric_columns))
        df["n_refs"] = pd.array(df["n_refs"], dtype="Int64")
        df["seconds"] = pd.to_numeric(df["seconds"], errors="coerce").astype("float64")
        for c in ("image_id", "status", "reason", "landmarks_source"):
            df[c] = df[c].astype("object")
        return df

    def finalize(self, df: pd.DataFrame, summary: dict) -> None:
        """Write metrics.parquet and summary.json, both validated first (bfrcore.formats.results)."""
        self.close()
        text = json.dumps(summary, indent=2, sort_keys=False, default=_plain)
        validate_metrics_table(df, self.dir / METRICS_FILE, writing=True,
                               metric_columns=[c for c in df.columns if c not in BASE_COLUMNS])
        validate_summary(json.loads(text), self.dir / SUMMARY_FILE, writing=True)
        tmp = self.dir / f".{METRICS_FILE}.tmp"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, self.dir / METRICS_FILE)
        write_bytes_atomic(self.dir / SUMMARY_FILE, text.encode())
        (self.dir / PARTIAL_FILE).unlink(missing_ok=True)
