"""`bench leaderboard`: gather every summary.json into one results store and render tables, CSV, plots, HTML."""

from __future__ import annotations

import argparse
from pathlib import Path

from bfrcore import cliutil


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
    from leaderboard.board import LeaderboardOptions, build_leaderboard

    if args.n_images < 1 or args.max_refs < 0 or args.tile < 32:
        raise cliutil.UsageError("--n-images must be >= 1, --max-refs >= 0 and --tile >= 32")
    images_arg = (args.images or "auto").strip()
    grids = images_arg.lower() != "none"
    images = None if images_arg.lower() in ("auto", "none") else [s.strip() for s in images_arg.split(",") if s.strip()]
    for t in args.testsets:
        if not t.is_dir():
            raise cliutil.UsageError(f"--testsets: no such folder {t}")
    options = LeaderboardOptions(images=images, n_auto_images=args.n_images, grids=grids,
                                 testset_roots=args.testsets, max_refs=args.max_refs, tile=args.tile,
                                 identity_metric=args.identity_metric, svg=args.svg, title=args.title)
    o = build_leaderboard(args.results, args.out, options)
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
