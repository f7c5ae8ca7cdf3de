"""`bench degrade`: list presets, generate a reproducible degraded test set, or verify one.

    bench degrade --list
    bench degrade --show gfpgan                       # the preset as YAML (a starting point for custom presets)
    bench degrade --dataset D --preset P --seed S --out T [--split test] [--workers N] [--limit N | --ids ...]
    bench degrade --verify T [--workers N] [--dataset D]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bfrcore.cliutil import RunSummary, UsageError, add_seed, add_workers, positive_int, progress


def register(sub, common) -> None:
    p = sub.add_parser(
        "degrade", parents=[common],
        help="make a reproducible degraded test set (lq/, params.parquet, checksums.sha256, testset.json)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="list the built-in presets with version and severity")
    mode.add_argument("--show", metavar="PRESET", help="print a preset (name or YAML file) as YAML")
    mode.add_argument("--verify", metavar="T", type=Path,
                      help="regenerate test set T from its recorded preset and seed and compare checksums")
    p.add_argument("--dataset", type=Path, help="dataset folder (celebref build output); with --verify: where "
                                                 "to find it if it moved")
    p.add_argument("--preset", help="built-in preset name (see --list) or a preset YAML file")
    add_seed(p, default=0)
    p.add_argument("--out", "-o", type=Path, help="test set folder to write (resumes an interrupted run)")
    p.add_argument("--split", default="test", help="dataset split: test (default), train or all")
    add_workers(p)
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--limit", type=positive_int, default=None, help="only the first N image ids (sorted)")
    sel.add_argument("--ids", default=None,
                     help="comma-separated image ids, or @FILE with one id per line")
    p.add_argument("--name", default=None, help="test set name (default: the --out folder name)")
    p.set_defaults(func=run)


def _parse_ids(spec: str | None) -> list[str] | None:
    if spec is None:
        return None
    if spec.startswith("@"):
        path = Path(spec[1:])
        if not path.is_file():
            raise UsageError(f"--ids file {path} does not exist")
        items = [ln.strip() for ln in path.read_text().splitlines()]
    else:
        items = [s.strip() for s in spec.split(",")]
    items = [i for i in items if i and not i.startswith("#")]
    if not items:
        raise UsageError("--ids lists no image id")
    return items


def _list(args) -> int:
    from degradations.presets import get_preset, list_presets

    rows = [get_preset(n) for n in list_presets()]
    w = max(len(p.name) for p in rows)
    print(f"{'preset':<{w}}  version  severity  description")
    for p in rows:
        print(f"{p.name:<{w}}  {p.version:<7}  {p.nominal_severity:>8.2f}  {p.description}")
    return 0


def _get_preset(spec: str):
    from degradations.presets import get_preset

    return get_preset(spec)  # an unknown or malformed preset is a PresetError (a ConfigError): exit 2


def _progress_cb(args, desc: str):
    state = {"bar": None}

    def cb(done: int, total: int) -> None:
        if state["bar"] is None:
            state["bar"] = progress(range(total), total=total, desc=desc, quiet=args.quiet)
        state["bar"].n = done
        state["bar"].refresh()
        if done >= total:
            state["bar"].close()

    return cb


def _verify(args) -> int:
    from degradations.testset import verify_testset

    summary = RunSummary("bench degrade --verify")
    # a folder that is not a test set (TestSetError, an InputError) exits 2 with its message
    rep = verify_testset(args.verify, dataset_root=args.dataset, workers=args.workers,
                         progress=_progress_cb(args, "verify"))
    summary.done = rep.ok
    for m in rep.mismatched:
        summary.fail("pixels_differ" if m.get("reason") == "pixels differ" else "regenerate_failed")
    if rep.file_changed:
        summary.fail("file_changed", len(rep.file_changed))
    if rep.missing:
        summary.fail("missing_file", len(rep.missing))
    summary.outputs["testset"] = str(args.verify)
    summary.notes.append(f"{rep.ok}/{rep.n_images} images regenerate identically"
                         + ("" if rep.passed else " — VERIFY FAILED"))
    if rep.encoding_only:
        summary.notes.append(f"{rep.encoding_only} image(s) equal in pixels but not in PNG bytes (another zlib)")
    for m in rep.mismatched[:5]:
        summary.notes.append(f"{m['image_id']}: {m['reason']}"
                             + (f" (max |diff| {m['max_abs_diff']})" if "max_abs_diff" in m else ""))
    for iid in (rep.file_changed + rep.missing)[:5]:
        summary.notes.append(f"{iid}: file missing or changed since generation")
    summary.print()
    return 0 if rep.passed else 1


def _generate(args) -> int:
    from bfrcore.dataset import FaceDataset
    from degradations.testset import generate_testset

    missing = [f for f, v in (("--dataset", args.dataset), ("--preset", args.preset), ("--out", args.out))
               if v is None]
    if missing:
        raise UsageError(f"generating a test set needs {', '.join(missing)} (or use --list / --verify)")
    if args.workers < 1:
        raise UsageError("--workers must be >= 1")
    preset = _get_preset(args.preset)
    split = None if args.split == "all" else args.split
    if split not in (None, "train", "test"):
        raise UsageError(f"--split must be test, train or all, got {args.split!r}")
    # TestSetError and UnsafePathError (bad dataset, ids, name or --out) are InputErrors: exit 2 with the message
    ds = FaceDataset.load(args.dataset)
    res = generate_testset(ds, preset, args.seed, args.out, split=split, workers=args.workers,
                           ids=_parse_ids(args.ids), limit=args.limit, name=args.name,
                           progress=_progress_cb(args, "degrade"))
    summary = RunSummary("bench degrade")
    summary.done = res.n_images
    for s in res.skipped:
        summary.skip(s["reason"].split(":")[0])
    summary.outputs["testset"] = str(res.root)
    summary.outputs["testset_hash"] = res.testset_hash
    summary.notes.append(f"preset {preset.name}@{preset.version} (severity {preset.nominal_severity:g}), "
                         f"seed {args.seed}; {res.generated} generated, {res.reused} reused")
    for s in res.skipped[:5]:
        summary.notes.append(f"skipped {s['image_id']}: {s['reason']}")
    summary.print()
    return 0


def run(args) -> int:
    if args.list:
        return _list(args)
    if args.show:
        print(_get_preset(args.show).to_yaml(), end="")
        return 0
    if args.verify is not None:
        return _verify(args)
    return _generate(args)

