"""`bench protocols list | show NAME | testset NAME | split | landmark-subset RUN`.

    bench protocols list                                   # name, version, citation, test set, metrics
    bench protocols show refldm-ffhqref-severe [--json]    # everything the protocol fixes, with published rows
    bench protocols testset refldm-ffhqref-severe --dataset D --out T   # the protocol's test set from dataset D
    bench protocols split --celebref-root DIR --out split.json          # celebref-hq-v1 on your CelebRef-HQ copy
    bench protocols landmark-subset RESULTS/dmdnet/T/specific           # means without landmark fallbacks
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bfrcore import cliutil


def register(sub, common) -> None:
    p = sub.add_parser("protocols", parents=[common], help="published evaluation protocols (list, show, test sets)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ps = p.add_subparsers(dest="protocols_command", metavar="ACTION")
    ps.required = True
    q = ps.add_parser("list", parents=[common], help="every built-in protocol")
    q.set_defaults(func=cmd_list)
    q = ps.add_parser("show", parents=[common], help="one protocol in full, with its published rows")
    q.add_argument("name")
    q.add_argument("--json", action="store_true", help="machine-readable (the protocol's canonical dict)")
    q.set_defaults(func=cmd_show)
    q = ps.add_parser("testset", parents=[common], help="make the protocol's degraded test set from a dataset")
    q.add_argument("name")
    q.add_argument("--dataset", type=Path, required=True, help="HQ dataset folder (celebref build output)")
    cliutil.add_out(q, help="test set folder to write (resumes an interrupted run)")
    cliutil.add_workers(q)
    q.add_argument("--limit", type=cliutil.positive_int, default=None, help="only the first N image ids")
    q.set_defaults(func=cmd_testset)
    q = ps.add_parser("split", parents=[common],
                      help="the celebref-hq-v1 identity split of a CelebRef-HQ copy, with per-image references")
    q.add_argument("--celebref-root", type=Path, required=True, help="CelebRef-HQ folder: <root>/<identity>/<n>.png")
    q.add_argument("--out", "-o", type=Path, required=True, help="JSON file to write")
    q.set_defaults(func=cmd_split)
    q = ps.add_parser("landmark-subset", parents=[common],
                      help="a run's means over the images whose landmarks were found (ReF-LDM's DMDNet rule)")
    q.add_argument("run", type=Path, help="results folder with summary.json and metrics.parquet")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_landmark_subset)


def _get(name: str):
    from evaluation.protocols import get_protocol

    return get_protocol(name)  # an unknown name is a ProtocolError (an InputError): exit 2 with its message


def cmd_list(args) -> int:
    from evaluation.protocols import get_protocol, list_protocols

    for n in list_protocols():
        p = get_protocol(n)
        t = p.testset
        size = f"{t.n_images} images" if t.n_images else "size not fixed"
        print(f"{p.label:<30} {p.title}")
        print(f"{'':<30} {p.citation.split(',')[0]} {p.table}; preset {t.preset}@{t.preset_version} seed {t.seed}; "
              f"{size}; refs: {p.references.kind}; metrics: {' '.join(m.column for m in p.metrics)}; "
              f"{len(p.published)} published rows")
    return cliutil.EXIT_OK


def cmd_show(args) -> int:
    from evaluation.protocols.apply import split_metrics

    p = _get(args.name)
    _, unavailable = split_metrics(p)
    if args.json:
        print(json.dumps({**p.to_dict(), "sha256": p.sha256, "unregistered_metrics": unavailable}, indent=2))
        return cliutil.EXIT_OK
    t, r = p.testset, p.references
    lines = [f"{p.label}  {p.title}", f"  citation   {p.citation}, {p.table}", f"  sha256     {p.sha256}",
             f"  test set   {t.source}",
             f"             preset {t.preset}@{t.preset_version}, seed {t.seed}, split {t.split}"
             + (f", identity split {t.identity_split}" if t.identity_split else "")
             + (f", {t.n_images} images" if t.n_images else "") + (f", {t.n_identities} identities"
                                                                    if t.n_identities else ""),
             f"  references {r.kind}: {r.description}" + (f" (at most {r.max_refs})" if r.max_refs else ""),
             (f"  options    crop_border {p.options.crop_border}, {p.options.convention} PSNR/SSIM, FID resize "
             f"{p.options.fid_mode}, FID reference {p.options.fid_stats or 'the test set HQ images'}"),
             "  metrics"]
    for m in p.metrics:
        flag = "  [not installed]" if m.metric in unavailable else ""
        lines.append(f"    {m.paper:<10} {m.column:<12} {'↑' if m.higher_is_better else '↓'}  {m.convention}{flag}")
    if p.published:
        cols = [m.column for m in p.metrics if any(row.value(m.column) is not None for row in p.published)]
        lines.append(f"  published ({p.table}): " + " / ".join(p.spec(c).paper for c in cols))
        for row in p.published:
            vals = " / ".join(row.text(c) or "—" for c in cols)
            lines.append(f"    {row.method:<12} {vals}" + (f"   ({row.note})" if row.note else ""))
    else:
        lines.append("  published: none")
    lines.append(f"  failures   {p.failures}")
    lines += [f"  note       {n}" for n in p.notes]
    print("\n".join(lines))
    return cliutil.EXIT_OK


def cmd_testset(args) -> int:
    from bfrcore.formats import FormatError
    from evaluation.protocols.apply import make_testset

    p = _get(args.name)
    try:  # ProtocolError and TestSetError (bad dataset or test set folder) are InputErrors: exit 2 as they are
        res = make_testset(p, args.dataset, args.out, workers=args.workers, limit=args.limit)
    except FormatError as e:  # exit 2 here, also for a format check on writing
        raise cliutil.UsageError(str(e)) from e
    s = cliutil.RunSummary(f"bench protocols testset {p.name}")
    s.done = res.n_images
    s.outputs = {"test set": str(args.out)}
    s.notes = [f"preset {p.testset.preset}@{p.testset.preset_version} seed {p.testset.seed}",
               f"testset_hash {res.testset_hash}"]
    s.print()
    return cliutil.EXIT_OK


def cmd_split(args) -> int:
    from bfrcore.celebrefhq_split import dumps, emit_for_copy
    from bfrcore.imageio import write_bytes_atomic

    doc, same = emit_for_copy(args.celebref_root)  # SplitError (not a CelebRef-HQ copy) is an InputError: exit 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out, dumps(doc))
    s = cliutil.RunSummary("bench protocols split")
    s.done = doc["n_test_images"]
    s.outputs = {"split": str(args.out)}
    s.notes = [(f"{doc['identity_names']['count']} identities, {len(doc['test_identities'])} test, "
               f"{doc['n_test_images']} test images with references"),
               "identity names match the shipped celebref_hq_v1.json: test identities identical" if same else
               "identity names differ from the shipped file's documented list: this is your copy's own split "
               "under the same rule (not the shipped one)"]
    s.print()
    return cliutil.EXIT_OK


def cmd_landmark_subset(args) -> int:
    from evaluation.protocols.landmarks import landmark_subset

    try:
        res = landmark_subset(args.run)
    except (FileNotFoundError, ValueError) as e:
        raise cliutil.UsageError(str(e)) from e
    if args.json:
        print(json.dumps(res, indent=2))
        return cliutil.EXIT_OK
    print(f"{args.run}: {res['n_ok']} scored images, landmarks found on {res['n_detected']}, fallback "
          f"(mean face) on {res['n_fallback']}")
    print(f"{'metric':<14} {'all scored':>12} {'detected only':>14}")
    for m, v in res["metrics"].items():
        a = "n/a" if v["all"] is None else f"{v['all']:.4f}"
        d = "n/a" if v["detected_only"] is None else f"{v['detected_only']:.4f}"
        print(f"{m:<14} {a:>12} {d:>14}")
    return cliutil.EXIT_OK
