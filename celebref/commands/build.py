"""`celebref build --source ... --out OUT [--config build.yaml] [--workers N]`: build a CelebRef-HQ-style dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from bfrcore import cliutil


def register(sub, common) -> None:
    p = sub.add_parser(
        "build", parents=[common],
        help="build a CelebRef-HQ-style dataset (aligned identity folders, manifest, splits, references, report)",
        description="Ingest photos (folder, zip/tar, CelebRef-HQ layout, Hugging Face dataset, URL list), detect and "
                    "align faces, cluster identities, filter quality and near-duplicates, split by identity and "
                    "write the DATASET folder. Every stage is cached under OUT/cache: rerunning resumes, and a "
                    "changed threshold recomputes only what depends on it. See docs/build.md.",
    )
    p.add_argument("--source", "-s", action="append", required=False, default=[], metavar="SRC",
                   help="a source (repeatable): DIR, FILE.zip|tar, FILE.csv (URL list), a saved HF dataset, or "
                        "KIND:LOCATION with KIND in folder|archive|celebrefhq|hf|urls")
    cliutil.add_out(p, required=False, help="dataset folder to write (resumed when it exists)")
    cliutil.add_config(p, help="build.yaml (see docs/build.md 'Config reference'; unknown keys are an error)")
    cliutil.add_workers(p)
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="where the per-image stages (download, faces, embeddings, quality) run: local (this machine, "
                        "--workers processes) or dask (a Dask scheduler at --address, else a LocalCluster of --workers "
                        "processes)")
    p.add_argument("--address", default=None, metavar="tcp://HOST:PORT",
                   help="Dask scheduler address (with --executor dask); workers must see OUT and the sources at the "
                        "same paths (shared filesystem)")
    cliutil.add_seed(p, default=None)
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"),
                   help="where the torch parts of the per-image stages run (runner.device): the identity embedder "
                        "(dlib's network run by torch, or ArcFace through onnxruntime's CUDA provider) and the MTCNN "
                        "/ InsightFace detectors (--set faces.detector=mtcnn); dlib's HOG detector, the 68 points "
                        "and the quality scores stay on the CPU. Default: the config's runner.device (auto: cuda "
                        "when torch sees a GPU)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set quality.min_sharpness=50 (repeatable)")
    p.add_argument("--truth", type=Path, default=None,
                   help="CSV with sha256,identity columns: score the clustering (pairwise and BCubed P/R/F1)")
    p.add_argument("--mode", choices=("resume", "overwrite"), default="resume",
                   help="resume (default: reuse the cache in OUT) or overwrite (start from scratch)")
    p.add_argument("--curation", type=Path, default=None, metavar="FILE",
                   help="curation.json saved by the `celebref review` page: split/merge/reject decisions keyed by "
                        "face id, applied after clustering (recorded in build.json and the manifest's `curated`)")
    p.add_argument("--emit-split", type=Path, default=None, metavar="FILE",
                   help="with a CelebRef-HQ-layout source: also write the celebref-hq-v1 identity split of that copy "
                        "(seeded rule over its identity folder names, per-test-image reference lists; says whether it "
                        "equals the shipped split) to FILE. See docs/protocols.md")
    p.add_argument("--print-config", action="store_true", help="print the effective config as YAML and exit")
    p.set_defaults(func=run)


def celebrefhq_root(sources: list[str]) -> Path:
    """The one CelebRef-HQ-layout folder among the --source values (``celebrefhq:DIR`` or a DIR in that layout)."""
    from celebref.ingest import is_celebrefhq_layout

    roots = []
    for src in sources:
        if src.startswith("celebrefhq:"):
            roots.append(Path(src.split(":", 1)[1]))
        elif Path(src).is_dir() and is_celebrefhq_layout(Path(src)):
            roots.append(Path(src))
    if len(roots) != 1:
        raise cliutil.UsageError(f"--emit-split needs exactly one CelebRef-HQ-layout source (<5-digit id>/<n>.png), "
                                 f"found {len(roots)}")
    return roots[0]


def run(args: argparse.Namespace) -> int:
    import yaml

    from celebref.pipeline import build_dataset, load_config
    from celebref.pipeline.executor import ExecutorError

    overrides = list(args.set)
    if args.device is not None:
        overrides.append(f"runner.device={args.device}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    cfg = load_config(args.config, overrides)  # ConfigError (an InputError): exit 2
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return cliutil.EXIT_OK
    if not args.source:
        raise cliutil.UsageError("give at least one --source")
    if args.out is None:
        raise cliutil.UsageError("--out is required")
    if args.workers < 1:
        raise cliutil.UsageError("--workers must be >= 1")
    if args.truth is not None and not args.truth.is_file():
        raise cliutil.UsageError(f"--truth {args.truth} not found")
    if args.address and args.executor != "dask":
        raise cliutil.UsageError("--address needs --executor dask")
    # the split depends on the copy's folder names only: computed (and refused) before any build work
    split = split_of_copy(celebrefhq_root(args.source)) if args.emit_split is not None else None
    try:  # a bad source or config raises SourceError / ConfigError (InputErrors): exit 2 like a usage error
        res = build_dataset(args.source, args.out, cfg, workers=args.workers, truth=args.truth, mode=args.mode,
                            executor=args.executor, address=args.address, quiet=args.quiet,
                            curation=args.curation)
    except ExecutorError as e:  # no scheduler at --address, workers that cannot see the files
        raise cliutil.UsageError(str(e)) from e
    info = res.info
    summary = cliutil.RunSummary("celebref build")
    summary.done = int(info["counts"]["kept_images"])
    for stage, reasons in info.get("reject_reasons", {}).items():
        for reason, n in reasons.items():
            summary.skip(f"{stage}/{reason}", n)
    summary.outputs = {"dataset": str(res.out), "identities": str(info["counts"]["identities"]),
                       "report": str(res.out / "report.html") if cfg.output.report else "off"}
    cq = info.get("cluster_quality") or {}
    if cq.get("clusters"):
        c = cq["clusters"]
        summary.notes.append(f"clusters vs truth (n={c['n']}): BCubed F1 {c['bcubed_f1']:.3f} "
                             f"(P {c['bcubed_precision']:.3f} R {c['bcubed_recall']:.3f}), pairwise F1 "
                             f"{c['pairwise_f1']:.3f}")
    cur = info.get("curation")
    if cur:
        summary.notes.append(f"curation: {cur['actions']} action(s) applied to {cur['faces_curated']} face(s), "
                             f"{cur['faces_rejected']} rejected, {cur['n_warnings']} warning(s)")
    if split is not None:
        summary.notes.append(write_split(split, args.emit_split))
        summary.outputs["celebref-hq-v1 split"] = str(args.emit_split)
    summary.notes.append(f"NIQE: {info['resolved']['niqe']}")
    dev = info["resolved"].get("device") or {}
    summary.notes.append(f"device: detector {dev.get('detector', 'cpu')}, embedder {dev.get('embedder', 'cpu')} "
                         f"(68 points and quality scores on cpu)")
    ex = info.get("executor") or {}
    failed = [e for e in ex.get("events", []) if e.get("final")]
    retried = [e for e in ex.get("events", []) if not e.get("final")]
    summary.notes.append(f"executor: {ex.get('kind')} ({ex.get('workers')} worker(s)); {len(retried)} retried "
                         f"attempt(s), {len(failed)} shard(s) failed (rerun to retry them)")
    summary.print()
    return cliutil.EXIT_OK


def split_of_copy(root: Path) -> tuple[dict, bool]:
    """The celebref-hq-v1 split document of the copy at ``root`` and whether it equals the shipped one."""
    from bfrcore.celebrefhq_split import SplitError, emit_for_copy

    try:
        return emit_for_copy(root)
    except SplitError as e:
        raise cliutil.UsageError(f"--emit-split: {e}") from e


def write_split(split: tuple[dict, bool], out: Path) -> str:
    """Write the split document to ``out`` (atomically); returns a one-line summary note."""
    from bfrcore.celebrefhq_split import dumps
    from bfrcore.imageio import write_bytes_atomic

    doc, same = split
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, dumps(doc))
    return (f"celebref-hq-v1 split: {len(doc['test_identities'])} test identities of "
            f"{doc['identity_names']['count']}, {doc['n_test_images']} test images with references; "
            + ("equals the shipped split" if same else "this copy's own split (its names differ from the shipped list)"))
