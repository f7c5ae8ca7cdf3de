"""The results store: every ``summary.json`` under some folders, validated, in one long table (``results.parquet``).

One row per (run, metric), where a run is (model, model_config, weights sha256, test-set hash, mode). Metrics a
run could not compute (``summary["unavailable"]``) get a row with ``mean = NaN`` and the reason in
``unavailable``, so tables can show "n/a" and why. Files that are not valid ``celebref.summary/1`` documents
(:mod:`bfrcore.formats.results`) are skipped and reported with a reason naming the field (:class:`Skipped`); nothing
is guessed. Only result files are read here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bfrcore.formats import FormatError
from bfrcore.formats import results as results_format
from bfrcore.results import SUMMARY_FILE

STORE_FORMAT = "celebref.results-store/1"

#: Columns of results.parquet, in order.
STORE_COLUMNS = (
    "run_id", "model", "model_config", "weights_name", "weights_sha256", "mode",
    "testset_name", "testset_hash", "testset_path", "preset", "preset_version", "severity", "dataset_hash",
    "n_images", "n_scored", "n_failed",
    "metric", "mean", "ci_low", "ci_high", "n", "higher_is_better", "convention", "unavailable",
    "created", "device", "seconds", "versions", "summary_path", "run_dir",
    "protocol", "protocol_deviations",
)
#: What identifies a run (two summaries with the same key are duplicates; the newest is kept).
RUN_KEY = ("model", "model_config", "weights_sha256", "testset_hash", "mode")


#: A summary.json (or results store) that does not follow the RESULTS contract; the contract itself is
#: :mod:`bfrcore.formats.results` (one message names the file, the field and what was expected).
SummaryFormatError = FormatError


@dataclass(frozen=True)
class Skipped:
    """A file (or one metric of a file) left out of the store, and why."""

    path: str
    reason: str
    metric: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "metric": self.metric, "reason": self.reason}


def find_summaries(roots: Iterable[str | os.PathLike]) -> list[Path]:
    """Every ``summary.json`` under the given folders (recursive; a file path is taken as is), sorted, unique."""
    out: set[Path] = set()
    for r in roots:
        r = Path(r)
        if r.is_file():
            out.add(r.resolve())
        elif r.is_dir():
            out.update(p.resolve() for p in r.rglob(SUMMARY_FILE) if p.is_file())
        else:
            raise FileNotFoundError(f"no such results folder: {r}")
    return sorted(out)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite_or_none(v) -> float | None:
    if v is None:
        return None
    if not _is_number(v):  # validated documents only reach here
        raise ValueError(f"expected a number or null, got {v!r}")
    f = float(v)
    return f if math.isfinite(f) else None


def validate_summary(doc, path: str | os.PathLike = SUMMARY_FILE) -> list[tuple[str, str]]:
    """Check a parsed summary.json against :mod:`bfrcore.formats.results`. Raises :class:`FormatError` for
    file-level problems; returns ``[(metric, reason)]`` for metric entries that must be dropped (the rest of the
    file is usable)."""
    out = []
    for e in results_format.validate_summary(doc, path):
        name = next(n for n in doc["metrics"] if e.field.startswith(f"metrics.{n}."))
        out.append((name, f"field '{e.field[len(f'metrics.{name}.'):]}': expected {e.expected}, got {e.got}"))
    return out


def _protocol_fields(rec) -> dict:
    """``protocol`` (name@version, '' without) and ``protocol_deviations`` (JSON list) of a summary's record."""
    if not isinstance(rec, dict) or not isinstance(rec.get("name"), str):
        return {"protocol": "", "protocol_deviations": "[]"}
    dev = rec.get("deviations")
    dev = [str(d) for d in dev] if isinstance(dev, list) else []
    return {"protocol": f"{rec['name']}@{rec.get('version', '')}", "protocol_deviations": json.dumps(dev)}


def summary_rows(doc: dict, summary_path: Path) -> list[dict]:
    """The store rows of one (validated) summary."""
    ts = doc["testset"]
    w = doc.get("weights") or {}
    failures = doc.get("failures") or []
    run_dir = summary_path.parent
    base = {
        "model": doc["model"],
        "model_config": str(doc.get("model_config") or ""),
        "weights_name": "UNTRAINED (random init)" if w.get("untrained") else str(w.get("name") or ""),
        "weights_sha256": str(w.get("sha256") or ""),
        "mode": doc["mode"],
        "testset_name": ts["name"],
        "testset_hash": ts["hash"],
        "testset_path": str(ts.get("path") or ""),
        "preset": str(ts.get("preset") or ""),
        "preset_version": str(ts.get("preset_version") or ""),
        "severity": _finite_or_none(ts.get("severity")),
        "dataset_hash": str(ts.get("dataset_hash") or ""),
        "n_images": doc.get("n_images"),
        "n_scored": doc.get("n_scored"),
        "n_failed": len(failures) if isinstance(failures, list) else None,
        "created": str(doc.get("created") or ""),
        "device": str(doc.get("device") or ""),
        "seconds": _finite_or_none(doc.get("seconds")) if _is_number(doc.get("seconds")) else None,
        "versions": json.dumps(doc.get("versions") or {}, sort_keys=True),
        "summary_path": str(summary_path),
        "run_dir": str(run_dir),
        **_protocol_fields(doc.get("protocol")),
    }
    base["run_id"] = "|".join(str(base[k]) for k in RUN_KEY)
    dropped = {name for name, _ in validate_summary(doc, summary_path)}
    rows = []
    for name, m in doc["metrics"].items():
        if name in dropped:
            continue
        ci = m.get("ci95") or [None, None]
        rows.append({**base, "metric": str(name), "mean": _finite_or_none(m.get("mean")),
                     "ci_low": _finite_or_none(ci[0]), "ci_high": _finite_or_none(ci[1]),
                     "n": m.get("n") if isinstance(m.get("n"), int) else None,
                     "higher_is_better": bool(m["higher_is_better"]),
                     "convention": str(m.get("convention") or ""), "unavailable": None})
    for name, reason in (doc.get("unavailable") or {}).items():
        if name in doc["metrics"]:
            continue
        rows.append({**base, "metric": str(name), "mean": None, "ci_low": None, "ci_high": None, "n": None,
                     "higher_is_better": None, "convention": "", "unavailable": str(reason)})
    return rows


def collect(roots: Iterable[str | os.PathLike]) -> tuple[pd.DataFrame, list[Skipped]]:
    """Read every summary.json under ``roots`` into the long results table; returns (table, skipped)."""
    skipped: list[Skipped] = []
    runs: dict[str, tuple[str, Path, list[dict]]] = {}
    for path in find_summaries(roots):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            skipped.append(Skipped(str(path), f"not readable JSON: {e}"))
            continue
        try:
            dropped = validate_summary(doc, path)
            rows = summary_rows(doc, path)
        except FormatError as e:
            skipped.append(Skipped(str(path), e.detail))
            continue
        skipped += [Skipped(str(path), reason, metric) for metric, reason in dropped]
        if not rows:
            skipped.append(Skipped(str(path), "no usable metrics"))
            continue
        run_id = rows[0]["run_id"]
        created = rows[0]["created"]
        if run_id in runs:
            prev_created, prev_path, _ = runs[run_id]
            # keep the newest (ISO-8601 strings sort by time); ties: the later path
            if (created, str(path)) > (prev_created, str(prev_path)):
                skipped.append(Skipped(str(prev_path), f"duplicate run (same model, weights, test set, mode); "
                                                       f"newer summary kept: {path}"))
                runs[run_id] = (created, path, rows)
            else:
                skipped.append(Skipped(str(path), f"duplicate run (same model, weights, test set, mode); "
                                                  f"newer summary kept: {prev_path}"))
            continue
        runs[run_id] = (created, path, rows)
    all_rows = [r for _, _, rows in runs.values() for r in rows]
    df = pd.DataFrame(all_rows, columns=list(STORE_COLUMNS))
    df = df.astype({"mean": "float64", "ci_low": "float64", "ci_high": "float64", "severity": "float64"})
    for col in ("n_images", "n_scored", "n_failed", "n"):
        df[col] = df[col].astype("Int64")
    df["higher_is_better"] = df["higher_is_better"].astype("boolean")
    df = df.sort_values(["testset_name", "testset_hash", "mode", "model", "model_config", "weights_sha256",
                         "metric"], kind="stable").reset_index(drop=True)
    return df, skipped


def write_store(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write results.parquet (atomic) with the store format recorded in the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"celebref"] = json.dumps({"format": STORE_FORMAT}).encode()
    table = table.replace_schema_metadata(meta)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def read_store(path: str | os.PathLike) -> pd.DataFrame:
    df = pd.read_parquet(path)
    missing = [c for c in STORE_COLUMNS if c not in df.columns]
    if missing:
        raise FormatError(path, missing[0], f"a results store ({STORE_FORMAT}) column", "no such column")
    return df
