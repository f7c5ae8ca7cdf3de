"""Leaderboard tables: one per (test set, mode), a row per run, a column per metric.

The best value of each column is marked using that metric's ``higher_is_better`` as recorded in the summaries
(never a built-in list). When runs disagree on a metric's direction, no best is marked and the table says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

#: Display names for common metric keys (presentation only: directions always come from the summaries).
DISPLAY_NAMES = {
    "psnr": "PSNR", "psnr_y": "PSNR-Y", "ssim": "SSIM", "ssim_y": "SSIM-Y", "ms_ssim": "MS-SSIM",
    "lpips": "LPIPS", "fid": "FID", "niqe": "NIQE", "musiq": "MUSIQ", "maniqa": "MANIQA", "clipiqa": "CLIP-IQA",
    "brisque": "BRISQUE", "ids": "IDS", "id_dist": "IDS", "identity_distance": "IDS", "id_sim": "ID_Sim",
    "lmd": "LMD", "landmark_distance": "LMD",
    "ids_arcface": "IDS-ArcFace", "ids_arcface18": "IDS-ArcFace18", "ids_dlib": "IDS-dlib", "deg_arcface": "Deg",
    "lpips_vgg": "LPIPS-VGG", "lpips_alex": "LPIPS-Alex", "flpips": "fLPIPS", "dists": "DISTS",
    "fid_ffhq": "FID(FFHQ)", "kid": "KID",
}
#: Column order for common metrics; others follow alphabetically.
PREFERRED_ORDER = ("psnr", "psnr_y", "ssim", "ssim_y", "ms_ssim", "lpips", "fid", "niqe", "musiq", "maniqa",
                   "clipiqa", "brisque", "ids", "id_dist", "identity_distance", "id_sim", "lmd",
                   "landmark_distance")


def display_name(metric: str) -> str:
    return DISPLAY_NAMES.get(metric, metric.upper())


def arrow(higher_is_better) -> str:
    """'↑' / '↓' from a metric's recorded direction; '' when unknown."""
    if higher_is_better is None or (isinstance(higher_is_better, float) and math.isnan(higher_is_better)):
        return ""
    try:
        if pd.isna(higher_is_better):
            return ""
    except (TypeError, ValueError):
        pass
    return "↑" if bool(higher_is_better) else "↓"


def order_metrics(metrics) -> list[str]:
    ms = list(dict.fromkeys(metrics))
    pref = {m: i for i, m in enumerate(PREFERRED_ORDER)}
    return sorted(ms, key=lambda m: (pref.get(m, len(pref)), m))


def fmt_value(v: float | None, ref: float | None = None) -> str:
    """Numbers with a precision that suits their magnitude (``ref`` sets it, e.g. the mean for its CI)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    r = abs(ref if ref is not None and math.isfinite(ref) else v)
    digits = 4 if r < 1 else (3 if r < 10 else 2)
    return f"{v:.{digits}f}"


def short_hash(h: str, n: int = 12) -> str:
    return h[:n] if h else "—"


@dataclass
class Cell:
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None
    best: bool = False
    unavailable: str | None = None

    @property
    def text(self) -> str:
        return fmt_value(self.mean)

    @property
    def ci_text(self) -> str:
        if self.ci_low is None or self.ci_high is None:
            return ""
        return f"[{fmt_value(self.ci_low, self.mean)}, {fmt_value(self.ci_high, self.mean)}]"


@dataclass
class Row:
    model: str
    model_config: str
    weights_name: str
    weights_sha256: str
    testset_hash: str
    n_images: int | None
    n_scored: int | None
    n_failed: int | None
    run_dir: str
    severity: float | None
    cells: dict[str, Cell] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.model} ({self.model_config})" if self.model_config else self.model


@dataclass
class Table:
    testset_name: str
    testset_hash: str
    mode: str
    severity: float | None
    preset: str
    preset_version: str
    dataset_hash: str
    metrics: list[str]
    higher_is_better: dict[str, bool | None]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    #: protocol label (name@version) the runs were made under ('' when none), and the published rows
    protocol: str = ""
    published: object | None = None  # leaderboard.published.PublishedBlock

    @property
    def key(self) -> str:
        return f"{self.testset_name}-{self.testset_hash[:8]}-{self.mode}"

    @property
    def title(self) -> str:
        return f"{self.testset_name} · {self.mode}"

    def header(self, metric: str) -> str:
        a = arrow(self.higher_is_better.get(metric))
        return f"{display_name(metric)} {a}".strip()

    def best_models(self, metric: str) -> list[str]:
        return [r.label for r in self.rows if r.cells.get(metric) is not None and r.cells[metric].best]


def _none(v):
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v


def _direction(values) -> tuple[bool | None, str | None]:
    vals = {bool(v) for v in values if _none(v) is not None}
    if not vals:
        return None, None
    if len(vals) > 1:
        return None, "runs disagree on whether higher is better"
    return vals.pop(), None


def build_tables(df: pd.DataFrame) -> list[Table]:
    """Tables per (test set name, test-set hash, mode), sorted by test set then mode; rows sorted by model."""
    tables: list[Table] = []
    if df.empty:
        return tables
    for (ts_name, ts_hash, mode), g in df.groupby(["testset_name", "testset_hash", "mode"], sort=True):
        metrics = order_metrics(g["metric"].unique())
        hib: dict[str, bool | None] = {}
        notes: list[str] = []
        for m in metrics:
            d, problem = _direction(g.loc[g["metric"] == m, "higher_is_better"])
            hib[m] = d
            if problem:
                notes.append(f"{display_name(m)}: {problem}; no best value marked")
        rows: list[Row] = []
        for run_id, rg in g.groupby("run_id", sort=False):
            first = rg.iloc[0]
            row = Row(model=first["model"], model_config=first["model_config"],
                      weights_name=first["weights_name"], weights_sha256=first["weights_sha256"],
                      testset_hash=first["testset_hash"], n_images=_none(first["n_images"]),
                      n_scored=_none(first["n_scored"]), n_failed=_none(first["n_failed"]),
                      run_dir=first["run_dir"], severity=_none(first["severity"]))
            for _, r in rg.iterrows():
                mean = _none(r["mean"])
                row.cells[r["metric"]] = Cell(
                    mean=float(mean) if mean is not None else None,
                    ci_low=_none(r["ci_low"]), ci_high=_none(r["ci_high"]), n=_none(r["n"]),
                    unavailable=_none(r["unavailable"]))
            rows.append(row)
        rows.sort(key=lambda r: (r.model, r.model_config, r.weights_sha256))
        for m in metrics:
            if hib[m] is None:
                continue
            vals = [r.cells[m].mean for r in rows if m in r.cells and r.cells[m].mean is not None]
            if not vals:
                continue
            best = max(vals) if hib[m] else min(vals)
            for r in rows:
                c = r.cells.get(m)
                if c is not None and c.mean is not None and math.isclose(c.mean, best, rel_tol=1e-12, abs_tol=0.0):
                    c.best = True
        first = g.iloc[0]
        sev = _none(first["severity"])
        protocol, block = _published(g, rows)
        if block is not None:  # the published columns are shown even where no run has them
            metrics += [c for c in (block.lines[0].texts if block.lines else ()) if c not in metrics]
            for c in metrics:
                recorded = g.loc[g["metric"] == c, "higher_is_better"].notna().any()
                if not recorded and c in block.higher_is_better:
                    hib[c] = block.higher_is_better[c]
        tables.append(Table(
            testset_name=ts_name, testset_hash=ts_hash, mode=mode, severity=float(sev) if sev is not None else None,
            preset=str(first["preset"]), preset_version=str(first["preset_version"]),
            dataset_hash=str(first["dataset_hash"]), metrics=metrics, higher_is_better=hib, rows=rows,
            notes=notes, protocol=protocol, published=block))
    return tables


def _published(g: pd.DataFrame, rows: list[Row]):
    """(protocol label, PublishedBlock or None) of one table's runs (the first protocol named, if any)."""
    if "protocol" not in g.columns:
        return "", None
    labels = [p for p in dict.fromkeys(g["protocol"].fillna("")) if p]
    if not labels:
        return "", None
    from leaderboard.published import deviations_of, published_block

    block = published_block(labels[0], rows, deviations_of(g["protocol_deviations"]))
    if block is not None and len(labels) > 1:
        block.notes.append(f"runs of this table used different protocols: {', '.join(labels)}")
    return labels[0], block


def rank_values(values: list[float | None], higher_is_better: bool) -> list[int | None]:
    """Competition ranks (1 = best; ties share the smaller rank); None for missing values."""
    out: list[int | None] = []
    for v in values:
        if v is None:
            out.append(None)
        else:
            better = sum(1 for w in values if w is not None and (w > v if higher_is_better else w < v))
            out.append(better + 1)
    return out
