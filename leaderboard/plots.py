"""Leaderboard plots (matplotlib, Agg backend; PNG for the HTML page and SVG next to it).

* ``severity_<mode>``: each metric (a panel each) vs. test-set severity (``testset.severity`` of the summaries),
  a line per model, 95% CI as error bars.
* ``tradeoff_<mode>``: fidelity–perception scatter, PSNR (x) vs. LPIPS, or FID when LPIPS is absent (y); a point
  per (model, test set).
* ``identity_<mode>``: distribution of the per-image identity distance (from each run's ``metrics.parquet``), a
  panel per test set, one box + points per model.

Axis labels carry ↑/↓ from each metric's recorded ``higher_is_better``. SVG copies on request (``svg=True``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bfrcore.results import METRICS_FILE as METRICS_NAME
from leaderboard.tables import arrow, display_name, order_metrics

#: Metric keys treated as per-image identity distances/similarities when no --identity-metric is given.
IDENTITY_METRIC_NAMES = ("ids", "id_dist", "identity_distance", "id_distance", "identity", "idd", "id_sim",
                         "deg", "arcface_distance")
FIDELITY_METRIC = "psnr"
PERCEPTION_METRICS = ("lpips", "fid")


@dataclass
class Plot:
    kind: str  # severity | tradeoff | identity
    title: str
    png: Path
    svg: Path | None
    caption: str = ""


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "x"


def _save(fig, out_dir: Path, stem: str, svg: bool) -> tuple[Path, Path | None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{stem}.png"
    fig.savefig(png, dpi=90, metadata={"Software": None})
    svg_path = None
    if svg:
        svg_path = out_dir / f"{stem}.svg"
        fig.savefig(svg_path, metadata={"Date": None, "Creator": None})
    _plt().close(fig)
    return png, svg_path


def _direction(df: pd.DataFrame, metric: str) -> bool | None:
    vals = {bool(v) for v in df.loc[df["metric"] == metric, "higher_is_better"].dropna()}
    return vals.pop() if len(vals) == 1 else None


def _axis_label(df: pd.DataFrame, metric: str) -> str:
    return f"{display_name(metric)} {arrow(_direction(df, metric))}".strip()


def run_labels(runs: pd.DataFrame) -> dict[str, str]:
    """run_id -> 'model (config)', plus the short weights hash where two different weights would otherwise share
    a label."""
    uniq = runs.drop_duplicates("run_id")
    base = {r["run_id"]: (f"{r['model']} ({r['model_config']})" if r["model_config"] else r["model"])
            for _, r in uniq.iterrows()}
    weights_per_label: dict[str, set] = {}
    for _, r in uniq.iterrows():
        weights_per_label.setdefault(base[r["run_id"]], set()).add(r["weights_sha256"])
    out = {}
    for _, r in uniq.iterrows():
        lab = base[r["run_id"]]
        if len(weights_per_label[lab]) > 1:
            lab += f" [{r['weights_sha256'][:8] or 'no weights'}]"
        out[r["run_id"]] = lab
    return out


def _model_key(r) -> tuple:
    return (r["model"], r["model_config"], r["weights_sha256"])


def _grid_axes(plt, n: int, w: float = 4.6, h: float = 3.4):
    ncols = min(3, max(1, n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False, layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def severity_plots(df: pd.DataFrame, out_dir: Path, svg: bool = False) -> list[Plot]:
    """Each metric vs. severity, a line per model: one figure per mode, a panel per metric."""
    plt = _plt()
    plots: list[Plot] = []
    d = df[df["mean"].notna() & df["severity"].notna()]
    for mode, gm in d.groupby("mode", sort=True):
        metrics = order_metrics(gm["metric"].unique())
        if not metrics:
            continue
        gm = gm.assign(_model=gm.apply(lambda r: "|".join(_model_key(r)), axis=1))
        labels = run_labels(gm)
        fig, axes = _grid_axes(plt, len(metrics))
        for ax, metric in zip(axes, metrics):
            g = gm[gm["metric"] == metric]
            for _, gg in g.groupby("_model", sort=True):
                gg = gg.sort_values("severity")
                x = gg["severity"].to_numpy(float)
                y = gg["mean"].to_numpy(float)
                lo = np.nan_to_num(np.clip(y - gg["ci_low"].to_numpy(float, na_value=np.nan), 0, None))
                hi = np.nan_to_num(np.clip(gg["ci_high"].to_numpy(float, na_value=np.nan) - y, 0, None))
                ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=labels[gg["run_id"].iloc[0]])
            ax.set_xlabel("degradation severity (test set)")
            ax.set_ylabel(_axis_label(df, metric))
            ax.set_title(f"{display_name(metric)} vs severity")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"Metrics vs degradation severity ({mode})")
        png, svgp = _save(fig, out_dir, f"severity_{_slug(mode)}", svg)
        plots.append(Plot("severity", f"Metrics vs severity ({mode})", png, svgp,
                          "Each metric of each model on each test set against the test set's severity; "
                          "bars: 95% CI."))
    return plots


def tradeoff_plots(df: pd.DataFrame, out_dir: Path, svg: bool = False, fidelity: str = FIDELITY_METRIC,
                   perception: tuple[str, ...] = PERCEPTION_METRICS) -> list[Plot]:
    """Fidelity–perception scatter per mode: ``fidelity`` (x) vs the first available ``perception`` metric (y)."""
    plt = _plt()
    plots: list[Plot] = []
    d = df[df["mean"].notna()]
    for mode, gm in d.groupby("mode", sort=True):
        if fidelity not in set(gm["metric"]):
            continue
        pm = next((p for p in perception if p in set(gm["metric"])), None)
        if pm is None:
            continue
        x = gm[gm["metric"] == fidelity].set_index("run_id")
        y = gm[gm["metric"] == pm].set_index("run_id")
        both = x.index.intersection(y.index)
        if len(both) == 0:
            continue
        labels = run_labels(gm[gm["run_id"].isin(both)])
        fig, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
        testsets = sorted(set(x.loc[both, "testset_name"]))
        markers = "osD^v<>pPX*h"
        by_label: dict[str, list[str]] = {}
        for rid in both:
            by_label.setdefault(labels[rid], []).append(rid)
        for lab in sorted(by_label):
            rids = by_label[lab]
            color = None
            for rid in rids:
                m = markers[testsets.index(x.at[rid, "testset_name"]) % len(markers)]
                pts = ax.scatter([x.at[rid, "mean"]], [y.at[rid, "mean"]], marker=m, color=color,
                                 label=lab if color is None else None)
                color = pts.get_facecolor()[0]
        for i, ts in enumerate(testsets):
            ax.scatter([], [], marker=markers[i % len(markers)], color="grey", label=f"test set: {ts}")
        ax.set_xlabel(_axis_label(df, fidelity))
        ax.set_ylabel(_axis_label(df, pm))
        ax.set_title(f"Fidelity vs perception ({mode}): {display_name(fidelity)} vs {display_name(pm)}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        png, svgp = _save(fig, out_dir, f"tradeoff_{_slug(mode)}", svg)
        plots.append(Plot("tradeoff", f"{display_name(fidelity)} vs {display_name(pm)} ({mode})", png, svgp,
                          "Each point is one model on one test set (marker = test set)."))
    return plots


def identity_metric(df: pd.DataFrame, requested: str | None = None) -> str | None:
    names = set(df["metric"])
    if requested:
        return requested if requested in names else None
    for n in IDENTITY_METRIC_NAMES:
        if n in names:
            return n
    cands = sorted(n for n in names if "ident" in n or n.startswith("id_"))
    return cands[0] if cands else None


def read_per_image(run_dir: str | os.PathLike, metric: str) -> np.ndarray | None:
    """Finite per-image values of ``metric`` from <run_dir>/metrics.parquet (status 'ok' rows); None if absent."""
    p = Path(run_dir) / METRICS_NAME
    if not p.is_file():
        return None
    try:
        m = pd.read_parquet(p)
    except Exception:  # noqa: BLE001 - a broken file only loses this plot
        return None
    if metric not in m.columns:
        return None
    if "status" in m.columns:
        m = m[m["status"] == "ok"]
    v = pd.to_numeric(m[metric], errors="coerce").to_numpy(float)
    return v[np.isfinite(v)]


def identity_plots(df: pd.DataFrame, out_dir: Path, svg: bool = False, metric: str | None = None,
                   notes: list[str] | None = None) -> list[Plot]:
    """Per-image identity-distance distribution of each model (box + jittered points): one figure per mode,
    a panel per test set."""
    plt = _plt()
    plots: list[Plot] = []
    im = identity_metric(df, metric)
    if im is None:
        if notes is not None and metric:
            notes.append(f"identity metric {metric!r} not found in any summary; no identity plots")
        return plots
    d = df[df["metric"] == im]
    for mode, gmode in d.groupby("mode", sort=True):
        panels = []
        for (ts_name, ts_hash), g in gmode.groupby(["testset_name", "testset_hash"], sort=True):
            labels = run_labels(g)
            data, labs = [], []
            for _, r in g.sort_values(["model", "model_config", "weights_sha256"]).iterrows():
                v = read_per_image(r["run_dir"], im)
                if v is None or v.size == 0:
                    if notes is not None:
                        notes.append(f"{r['run_dir']}: no per-image {im!r} values in {METRICS_NAME}")
                    continue
                data.append(v)
                labs.append(labels[r["run_id"]])
            if data:
                panels.append((ts_name, data, labs))
        if not panels:
            continue
        fig, axes = _grid_axes(plt, len(panels), w=max(4.0, 1.1 * max(len(p[1]) for p in panels) + 1.5))
        rng = np.random.default_rng(0)
        for ax, (ts_name, data, labs) in zip(axes, panels):
            ax.boxplot(data, showfliers=False)
            ax.set_xticks(range(1, len(labs) + 1), labs, rotation=20, ha="right", fontsize=8)
            for i, v in enumerate(data, 1):
                ax.scatter(i + rng.uniform(-0.12, 0.12, v.size), v, s=8, alpha=0.6)
            ax.set_ylabel(f"{_axis_label(df, im)} per image")
            ax.set_title(ts_name)
            ax.grid(True, axis="y", alpha=0.3)
        fig.suptitle(f"{display_name(im)} distribution ({mode})")
        png, svgp = _save(fig, out_dir, f"identity_{_slug(mode)}", svg)
        plots.append(Plot("identity", f"{display_name(im)} distribution ({mode})", png, svgp,
                          f"Per-image {display_name(im)} from each run's {METRICS_NAME} (scored images only); "
                          "a panel per test set."))
    return plots


def all_plots(df: pd.DataFrame, out_dir: Path, svg: bool = False, identity: str | None = None,
              notes: list[str] | None = None) -> list[Plot]:
    if df.empty:
        return []
    return (severity_plots(df, out_dir, svg) + tradeoff_plots(df, out_dir, svg)
            + identity_plots(df, out_dir, svg, identity, notes))
