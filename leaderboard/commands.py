"""`bench leaderboard`: gather every summary.json into one results store and render tables, CSV, plots, HTML."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from bfrcore import cliutil


@dataclass
class LeaderboardOutputs:
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


def build_leaderboard(results: list[Path], out: Path, *, images: list[str] | None = None, n_auto_images: int = 2,
                      grids: bool = True, testset_roots: list[Path] | None = None, max_refs: int = 3,
                      tile: int = 160, identity_metric: str | None = None, svg: bool = False,
                      title: str = "CelebRef-HQ leaderboard") -> LeaderboardOutputs:
    """Library entry point of the command (see module docstring)."""
    from leaderboard import export, html, store
    from leaderboard import grids as grids_mod
    from leaderboard import plots as plots_mod
    from leaderboard import tables as tables_mod

    df, skipped = store.collect(results)
    if df.empty:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:5])
        raise cliutil.UsageError(
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
    o.plots = plots_mod.all_plots(df, out / "plots", svg=svg, identity=identity_metric, notes=notes)
    if grids:
        o.grids = grids_mod.comparison_grids(df, out / "grids", images, n_auto=n_auto_images, max_refs=max_refs,
                                             tile=tile, testset_roots=testset_roots)
        for g in o.grids:
            notes += [f"grid {g.title}: {n}" for n in g.notes]
    html.write_html(o.html, o.tables, o.plots, o.grids, skipped, title=title, notes=notes)
    tmp = o.skipped_json.with_name(".skipped.json.tmp")
    tmp.write_text(json.dumps([s.to_dict() for s in skipped], indent=2))
    os.replace(tmp, o.skipped_json)
    return o


def register(sub, common) -> None:
    p = sub.add_parser(
        "leaderboard", parents=[common],
        help="gather every summary.json into results.parquet and render tables, CSV, plots and one HTML page",
        description="Collect RESULTS folders (summary.json, metrics.parquet, restored/) written by `bench evaluate` "
                    "or `bench score` into OUT/results.parquet and write OUT/leaderboard.md, OUT/leaderboard.csv "
                    "(NTIRE-style columns), OUT/aggregator.csv (Task,Dataset,Result,Rank), OUT/plots/, "
                    "OUT/grids/ and OUT/index.html (one self-contained page). Malformed summaries are skipped "
                    "and listed with a reason (OUT/skipped.json).",
    )
    p.add_argument("--results", type=Path, nargs="+", required=True, metavar="DIR",
                   help="results folders (searched recursively for summary.json)")
    cliutil.add_out(p, help="output folder for the leaderboard files")
    p.add_argument("--images", default="auto",
                   help="comma-separated image ids for the visual comparison grids; 'auto' (default): the first "
                        "--n-images ids restored by every model; 'none': no grids")
    p.add_argument("--n-images", type=int, default=2, help="how many images 'auto' picks (default 2)")
    p.add_argument("--testsets", type=Path, nargs="*", default=[], metavar="DIR",
                   help="folders to search for test sets (matched by testset_hash) when a summary's recorded "
                        "testset.path no longer exists")
    p.add_argument("--max-refs", type=int, default=3, help="reference images shown per grid row (default 3)")
    p.add_argument("--tile", type=int, default=160, help="grid tile size in pixels (default 160)")
    p.add_argument("--identity-metric", default=None,
                   help="metric key of the per-image identity distance (default: detected, e.g. 'ids')")
    p.add_argument("--svg", action="store_true", help="also write SVG copies of the plots")
    p.add_argument("--title", default="CelebRef-HQ leaderboard", help="page and Markdown title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.n_images < 1 or args.max_refs < 0 or args.tile < 32:
        raise cliutil.UsageError("--n-images must be >= 1, --max-refs >= 0 and --tile >= 32")
    images_arg = (args.images or "auto").strip()
    grids = images_arg.lower() != "none"
    images = None if images_arg.lower() in ("auto", "none") else [s.strip() for s in images_arg.split(",") if s.strip()]
    for t in args.testsets:
        if not t.is_dir():
            raise cliutil.UsageError(f"--testsets: no such folder {t}")
    o = build_leaderboard(args.results, args.out, images=images, n_auto_images=args.n_images, grids=grids,
                          testset_roots=args.testsets, max_refs=args.max_refs, tile=args.tile,
                          identity_metric=args.identity_metric, svg=args.svg, title=args.title)
    s = cliutil.RunSummary("bench leaderboard")
    s.done = sum(len(t.rows) for t in o.tables)
    for sk in o.skipped:
        s.skip("duplicate run" if sk.reason.startswith("duplicate") else
               ("metric dropped" if sk.metric else "malformed summary"))
    s.outputs = {"results store": str(o.results), "markdown": str(o.markdown), "csv (NTIRE-style)": str(o.csv),
                 "aggregator csv": str(o.aggregator), "html": str(o.html),
                 "plots": f"{len(o.plots)} in {args.out / 'plots'}", "grids": f"{len(o.grids)} in {args.out / 'grids'}"}
    s.notes = [f"{len(o.tables)} table(s) (test set x mode)"]
    s.notes += [f"skipped {sk.path}{' [' + sk.metric + ']' if sk.metric else ''}: {sk.reason}" for sk in o.skipped]
    s.notes += o.notes[:20] + ([f"... {len(o.notes) - 20} more notes in {o.html}"] if len(o.notes) > 20 else [])
    s.print()
    return cliutil.EXIT_OK
