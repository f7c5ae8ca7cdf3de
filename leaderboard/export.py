"""Exports of the leaderboard tables: Markdown, an NTIRE-style CSV and an aggregator (PwC-style) CSV.

* ``leaderboard.md``: one table per (test set, mode); best value per column in bold; 95% CI in brackets;
  ↑/↓ from each metric's recorded ``higher_is_better``.
* ``leaderboard.csv`` (NTIRE style, as in NTIRE 2025 ``*_total.csv``: ``Dataset,<METRIC>...``): one row per run
  with ``Dataset,Mode,Model,Model_config,Weights,Weights_sha256,Testset_hash,N_images,N_scored,<METRIC>...``
  followed by ``<METRIC>_ci95_low,<METRIC>_ci95_high`` for every metric. Full hashes.
* ``aggregator.csv``: ``Task,Dataset,Model,Weights_sha256,Testset_hash,Metric,Result,Higher_is_better,Rank``,
  one row per (run, available metric); Rank 1 is the best within (test set, mode, metric).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from leaderboard.store import Skipped
from leaderboard.tables import Table, display_name, fmt_value, order_metrics, rank_values, short_hash

TASKS = {"generic": "Blind face restoration (generic)",
         "specific": "Reference-based face restoration (specific)"}


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def markdown_table(t: Table) -> str:
    head = ["Model", "Weights", "Test-set hash", "Scored"] + [t.header(m) for m in t.metrics]
    lines = ["| " + " | ".join(_md_escape(h) for h in head) + " |",
             "|" + "|".join(["---"] * 4 + ["---:"] * len(t.metrics)) + "|"]
    for r in t.rows:
        w = f"{r.weights_name} `{short_hash(r.weights_sha256)}`" if r.weights_sha256 else (r.weights_name or "—")
        scored = f"{r.n_scored}/{r.n_images}" if r.n_images is not None else ""
        cells = [_md_escape(r.label), _md_escape(w), f"`{short_hash(r.testset_hash)}`", scored]
        for m in t.metrics:
            c = r.cells.get(m)
            if c is None:
                cells.append("—")
            elif c.mean is None:
                cells.append("n/a")
            else:
                v = f"**{c.text}**" if c.best else c.text
                cells.append(f"{v} {c.ci_text}".strip())
        lines.append("| " + " | ".join(cells) + " |")
    lines += published_markdown_rows(t)
    return "\n".join(lines)


def published_markdown_rows(t: Table) -> list[str]:
    """Rows of the cited table ("published", with the table's name) and Δ rows (ours − published)."""
    from leaderboard.published import fmt_diff

    b = t.published
    if b is None:
        return []
    out = []
    for ln in b.lines:
        cells = [f"{_md_escape(ln.method)} *(published)*", _md_escape(b.table), "—", ""]
        cells += [ln.texts.get(m, "—") for m in t.metrics]
        out.append("| " + " | ".join(cells) + " |")
    for d in b.diffs:
        cells = [f"Δ {_md_escape(d.run_label)} − {_md_escape(d.method)} (published)", "", "", ""]
        cells += [fmt_diff(d.diffs[m]) if m in d.diffs else "—" for m in t.metrics]
        out.append("| " + " | ".join(cells) + " |")
    return out


def to_markdown(tables: list[Table], skipped: list[Skipped] | None = None, title: str = "Leaderboard") -> str:
    out = [f"# {title}", "",
           "One table per test set and mode. ↑ higher is better, ↓ lower is better (as recorded by each metric); "
           "the best value per column is in **bold**; brackets give the 95% confidence interval of the mean. "
           "Hashes are shortened to 12 hex digits (full values in leaderboard.csv).", ""]
    for t in tables:
        sev = f", severity {t.severity:g}" if t.severity is not None else ""
        out += [f"## {_md_escape(t.title)}", "",
                f"Test set `{_md_escape(t.testset_name)}` (hash `{t.testset_hash}`), preset "
                f"`{_md_escape(t.preset or '?')}` {_md_escape(t.preset_version)}{sev}, dataset "
                f"`{short_hash(t.dataset_hash)}`.", "", markdown_table(t), ""]
        unavailable = sorted({(display_name(m), c.unavailable) for r in t.rows for m, c in r.cells.items()
                              if c.unavailable})
        for name, why in unavailable:
            out.append(f"- {name} n/a: {_md_escape(why)}")
        for n in t.notes:
            out.append(f"- note: {_md_escape(n)}")
        if t.published is not None:
            out.append(f"- {_md_escape(t.published.caption)}")
            out += [f"- {_md_escape(n)}" for n in t.published.notes]
        if unavailable or t.notes or t.published is not None:
            out.append("")
    if skipped:
        out += ["## Skipped result files", ""]
        out += [f"- `{_md_escape(s.path)}`" + (f" (metric `{s.metric}`)" if s.metric else "") + f": {_md_escape(s.reason)}"
                for s in skipped]
        out.append("")
    return "\n".join(out)


def ntire_rows(tables: list[Table]) -> tuple[list[str], list[list]]:
    metrics = order_metrics([m for t in tables for m in t.metrics])
    names = [display_name(m) for m in metrics]
    header = (["Dataset", "Mode", "Model", "Model_config", "Weights", "Weights_sha256", "Testset_hash",
               "N_images", "N_scored"] + names
              + [f"{n}_ci95_{side}" for n in names for side in ("low", "high")])
    rows = []
    for t in tables:
        for r in t.rows:
            vals, cis = [], []
            for m in metrics:
                c = r.cells.get(m)
                vals.append("" if c is None or c.mean is None else repr(float(c.mean)))
                cis += ["" if c is None or c.ci_low is None else repr(float(c.ci_low)),
                        "" if c is None or c.ci_high is None else repr(float(c.ci_high))]
            rows.append([t.testset_name, t.mode, r.model, r.model_config, r.weights_name, r.weights_sha256,
                         r.testset_hash, "" if r.n_images is None else r.n_images,
                         "" if r.n_scored is None else r.n_scored] + vals + cis)
    return header, rows


def aggregator_rows(tables: list[Table]) -> tuple[list[str], list[list]]:
    header = ["Task", "Dataset", "Model", "Weights_sha256", "Testset_hash", "Metric", "Result",
              "Higher_is_better", "Rank"]
    rows = []
    for t in tables:
        for m in t.metrics:
            hib = t.higher_is_better.get(m)
            vals = [r.cells[m].mean if m in r.cells else None for r in t.rows]
            ranks = rank_values(vals, hib) if hib is not None else [None] * len(vals)
            for r, v, rk in zip(t.rows, vals, ranks):
                if v is None:
                    continue
                rows.append([TASKS.get(t.mode, t.mode), t.testset_name, r.label, r.weights_sha256, r.testset_hash,
                             display_name(m), fmt_value(v), "" if hib is None else str(bool(hib)).lower(),
                             "" if rk is None else rk])
    return header, rows


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_markdown(tables, path, skipped=None) -> Path:
    return _write_text(Path(path), to_markdown(tables, skipped))


def write_ntire_csv(tables, path) -> Path:
    return _write_text(Path(path), _csv_text(*ntire_rows(tables)))


def write_aggregator_csv(tables, path) -> Path:
    return _write_text(Path(path), _csv_text(*aggregator_rows(tables)))
