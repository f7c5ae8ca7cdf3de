"""`build_leaderboard`: RESULTS folders -> one leaderboard folder (the library side of `bench leaderboard`).

Collects every summary.json under the given folders into ``OUT/results.parquet`` (:mod:`leaderboard.store`) and
writes ``OUT/leaderboard.md``, ``OUT/leaderboard.csv`` (NTIRE-style columns), ``OUT/aggregator.csv``
(Task,Dataset,Result,Rank), ``OUT/plots/``, ``OUT/grids/`` and ``OUT/index.html``; malformed summaries are skipped
and listed with a reason in ``OUT/skipped.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from bfrcore.errors import InputError
from leaderboard import export, html, store
from leaderboard import grids as grids_mod
from leaderboard import plots as plots_mod
from leaderboard import tables as tables_mod


class NoResultsError(InputError):
    """No valid summary.json under the given results folders (nothing to rank); the message lists why the
    first summaries were skipped, or says to run `bench evaluate` first."""


@dataclass(frozen=True)
class LeaderboardOptions:
    """What to render. ``images``: image ids for the comparison grids (None: the first ``n_auto_images`` ids
    restored by every model); ``grids``: draw them at all; ``testset_roots``: folders to search for test sets
    (by testset_hash) whose recorded path is gone; ``max_refs``: reference images per grid row; ``tile``: grid
    tile side in pixels; ``identity_metric``: metric key of the per-image identity distance (None: detected);
    ``svg``: also write SVG plots; ``title``: page and Markdown title."""

    images: list[str] | None = None
    n_auto_images: int = 2
    grids: bool = True
    testset_roots: list[Path] | None = None
    max_refs: int = 3
    tile: int = 160
    identity_metric: str | None = None
    svg: bool = False
    title: str = "CelebRef-HQ leaderboard"


@dataclass
class LeaderboardOutputs:
    """The files written (paths) and what went into them: tables, plots, grids, skipped summaries, notes."""

    results: Path
    markdown: Path
    csv: Path
    aggregator: Path
    html: Path
    skipped_json: Path
    plots: list = field(default_factory=list)
    grids: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def build_leaderboard(results: list[Path], out: Path,
                      options: LeaderboardOptions | None = None) -> LeaderboardOutputs:
    """Collect the RESULTS folders under ``results`` into ``out``/results.parquet and write the tables, CSVs,
    plots, comparison grids and index.html there (see the module docstring). Raises :class:`NoResultsError`
    when no valid summary.json is found."""
    opt = options or LeaderboardOptions()
    df, skipped = store.collect(results)
    if df.empty:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:5])
        raise NoResultsError(
            f"no valid summary.json under {', '.join(map(str, results))}"
            + (f" ({len(skipped)} skipped: {reasons})" if skipped else " (run `bench evaluate` first)"))
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    o = LeaderboardOutputs(
        results=store.write_store(df, out / "results.parquet"),
        markdown=out / "leaderboard.md", csv=out / "leaderboard.csv", aggregator=out / "aggregator.csv",
        html=out / "index.html", skipped_json=out / "skipped.json", skipped=skipped, notes=notes)
    o.tables = tables_mod.build_tables(df)
    export.write_markdown(o.tables, o.markdown, skipped)
    export.write_ntire_csv(o.tables, o.csv)
    export.write_aggregator_csv(o.tables, o.aggregator)
    o.plots = plots_mod.all_plots(df, out / "plots", svg=opt.svg, identity=opt.identity_metric, notes=notes)
    if opt.grids:
        o.grids = grids_mod.comparison_grids(df, out / "grids", opt.images, n_auto=opt.n_auto_images,
                                             max_refs=opt.max_refs, tile=opt.tile, testset_roots=opt.testset_roots)
        for g in o.grids:
            notes += [f"grid {g.title}: {n}" for n in g.notes]
    html.write_html(o.html, o.tables, o.plots, o.grids, skipped, title=opt.title, notes=notes)
    tmp = o.skipped_json.with_name(".skipped.json.tmp")
    tmp.write_text(json.dumps([s.to_dict() for s in skipped], indent=2))
    os.replace(tmp, o.skipped_json)
    return o
