"""`celebref review DATASET [--out review.html]`: write the human-review page of a built dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from bfrcore import cliutil


def register(sub, common) -> None:
    p = sub.add_parser(
        "review", parents=[common],
        help="write review.html: identities as face grids (impure identities and near-merges first) with split / "
             "merge / reject buttons; saves curation.json for `celebref build --curation`",
        description="Write a self-contained HTML page (open it from the file system, no server) showing every "
                    "identity of DATASET as a grid of its faces ordered by distance to the identity centre, flagged "
                    "identities first. Its buttons record split/merge/reject decisions; 'save curation' downloads "
                    "curation.json, which `celebref build --curation FILE` (same sources and --out) applies. "
                    "See docs/build.md 'Review and curation'.",
    )
    p.add_argument("dataset", type=Path, help="a dataset folder written by `celebref build`")
    p.add_argument("--out", "-o", type=Path, default=None,
                   help="page to write (default DATASET/review.html); images are linked relative to it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bfrcore.dataset import FaceDataset
    from celebref.review.analysis import review_dataset
    from celebref.review.page import write_page

    if not args.dataset.is_dir():
        raise cliutil.UsageError(f"{args.dataset}: not a dataset folder (no such folder)")
    if not (args.dataset / "manifest.parquet").is_file():
        raise cliutil.UsageError(f"{args.dataset}: not a dataset folder (no manifest.parquet); run `celebref build`")
    out = args.out or args.dataset / "review.html"
    if out.suffix.lower() not in (".html", ".htm"):
        raise cliutil.UsageError(f"--out {out}: expected an .html file name")
    ds = FaceDataset.load(args.dataset)
    review = review_dataset(ds)
    out.parent.mkdir(parents=True, exist_ok=True)
    page = write_page(review, ds.root, out)
    summary = cliutil.RunSummary("celebref review")
    summary.done = sum(len(r.faces) for r in review.identities)
    summary.outputs = {"page": str(page)}
    impure = sum(r.impure for r in review.identities)
    summary.notes.append(f"{len(review.identities)} identities: {impure} impure, {len(review.near_pairs)} "
                         f"near-merge pair(s) (threshold {review.threshold:g}, {review.metric})")
    summary.notes.append("embeddings: " + ", ".join(f"{v} {'read from the build cache' if k == 'cache' else k}"
                                                    for k, v in sorted(review.embeddings_from.items())))
    summary.print()
    return cliutil.EXIT_OK
