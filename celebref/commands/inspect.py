"""`celebref inspect FILE...`: decode images with the suite's safe reader and report what was found."""

from __future__ import annotations

import argparse
from pathlib import Path

from bfrcore import cliutil
from celebref.inspection import inspect_files


def register(sub, common) -> None:
    p = sub.add_parser(
        "inspect", parents=[common],
        help="check that files are readable images (format, mode, size, hashes, or the reason they are not)",
    )
    p.add_argument("paths", nargs="+", type=Path, help="image files or folders (searched recursively)")
    p.add_argument("--json", action="store_true", help="one JSON record per file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        raise cliutil.UsageError(f"no such file or folder: {', '.join(map(str, missing))}")
    records = inspect_files(args.paths)
    if not records:
        raise cliutil.UsageError("no files found")
    summary = cliutil.RunSummary("celebref inspect")
    for r in records:
        if r["ok"]:
            summary.done += 1
        else:
            summary.skip(r["reason"])
    if args.json:
        cliutil.print_json(records)
    else:
        for r in records:
            if r["ok"]:
                print(f"ok    {r['path']}  {r['format']} {r['mode']} {r['width']}x{r['height']}  "
                      f"sha256 {r['file_sha256'][:16]}")
            else:
                print(f"BAD   {r['path']}  {r['reason']}: {r['error']}")
        summary.print()
    return cliutil.EXIT_OK if not summary.skipped else cliutil.EXIT_USAGE
