"""`celebref publish`: build a Hugging Face dataset from a DATASET folder (and its test sets) and push it."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bfrcore import cliutil

_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def register(sub, common) -> None:
    p = sub.add_parser(
        "publish", parents=[common],
        help="build a Hugging Face dataset (parquet shards + dataset card) from a dataset folder and push it",
        description="Builds the exact folder to upload (data/<config>/<split>-0000k-of-0000N.parquet, README.md "
                    "dataset card, build.json, testsets/*.json) and pushes it with huggingface_hub. Metadata only "
                    "by default; image bytes only with --include-pixels and a licence you name (--license). "
                    "Token: HF_TOKEN or `hf auth login` (never printed). --dry-run only builds the folder.",
    )
    p.add_argument("--dataset", type=Path, required=True, help="dataset folder (celebref build output)")
    p.add_argument("--repo-id", required=True, help="Hub dataset repository, user/name or org/name")
    p.add_argument("--testset", type=Path, action="append", default=[], metavar="T",
                   help="a degraded test set of this dataset to publish as its own config (repeatable)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--metadata-only", action="store_true",
                   help="publish paths, hashes, landmarks, identities, splits, references, scores and degradation "
                        "parameters, no pixels (default)")
    g.add_argument("--include-pixels", action="store_true",
                   help="embed the image bytes (HQ images and LQ test inputs); requires --license")
    p.add_argument("--license", default=None,
                   help="licence of the published data, a Hub id (e.g. cc-by-nc-4.0) or any name (then "
                        "license: other + license_name); required with --include-pixels")
    p.add_argument("--license-link", default=None, help="URL of the licence text (for licences the Hub does not know)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--gated", choices=("auto", "manual", "none"), default="auto",
                   help="gated access: users accept the non-commercial terms first (auto: approved at once, "
                        "manual: you approve each request; none: not gated). Default auto")
    p.add_argument("--pretty-name", default=None, help="dataset title on the card (default: the repo name)")
    p.add_argument("--dry-run", action="store_true", help="only build the folder that would be uploaded")
    cliutil.add_out(p, required=False,
                    help="where the upload folder is built (default: ./hf_publish/<user>__<name>); reruns "
                         "replace what a previous run wrote there")
    p.add_argument("--max-shard-mb", type=float, default=500.0, help="largest parquet shard in MB (default 500)")
    p.add_argument("--retries", type=int, default=4, help="retries per Hub call on transient errors (default 4)")
    p.add_argument("--files-per-commit", type=int, default=50, help="files per upload commit (default 50)")
    p.add_argument("--retry-wait", type=float, default=2.0,
                   help="seconds before the first retry; doubles each time (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from celebref.publish import PublishError, build_folder, push_folder
    from celebref.publish.card import permits_commercial_use

    if not _REPO_RE.match(args.repo_id or ""):
        raise cliutil.UsageError(f"--repo-id {args.repo_id!r} must look like user/name (letters, digits, . _ -)")
    if args.include_pixels and not (args.license and args.license.strip()):
        raise cliutil.UsageError("--include-pixels needs --license NAME: face photos are published only under a "
                                 "licence you name (and hold the rights for); use --metadata-only otherwise")
    if not args.dataset.is_dir():
        raise cliutil.UsageError(f"--dataset: no such folder {args.dataset}")
    if args.max_shard_mb <= 0 or args.retries < 0 or args.files_per_commit < 1 or args.retry_wait < 0:
        raise cliutil.UsageError("--max-shard-mb must be > 0, --retries >= 0, --files-per-commit >= 1, "
                                 "--retry-wait >= 0")
    out = args.out or Path("hf_publish") / args.repo_id.replace("/", "__")
    summary = cliutil.RunSummary("celebref publish" + (" --dry-run" if args.dry_run else ""))
    res = build_folder(args.dataset, out, repo_id=args.repo_id, testsets=args.testset,
                       include_pixels=args.include_pixels, license=args.license,
                       license_link=args.license_link, pretty_name=args.pretty_name,
                       max_shard_bytes=int(args.max_shard_mb * 1024 * 1024), gated=args.gated)
    for c in res.configs:
        summary.notes.append(f"config {c.name}: " + ", ".join(f"{s} {c.num_examples[s]} rows" for s in c.splits))
    summary.done = sum(res.config("hq").num_examples.values())
    summary.outputs["folder"] = str(out)
    summary.outputs["files"] = f"{len(res.files)} ({sum((out / f).stat().st_size for f in res.files)} bytes)"
    summary.outputs["pixels"] = "included" if res.include_pixels else "not included (metadata only)"
    if args.include_pixels and permits_commercial_use(args.license):
        summary.notes.append(f"licence {args.license!r} permits commercial use; face images from CelebRef-HQ-style "
                             "sources are usually non-commercial only: make sure you hold the rights")
    if args.dry_run:
        summary.notes.append(f"dry run: nothing uploaded; load it with datasets.load_dataset({str(out)!r}, 'hq')")
        summary.print()
        return cliutil.EXIT_OK
    import logging

    if args.verbose < 2:  # per-request INFO lines of the HTTP client (httpx2 is not in cliutil's quiet list)
        logging.getLogger("httpx2").setLevel(logging.WARNING)
    try:
        rep = push_folder(out, args.repo_id, private=args.private, token=None, gated=args.gated,
                          retries=args.retries, backoff=args.retry_wait, max_files_per_commit=args.files_per_commit,
                          log=(lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True)))
    except Exception as e:  # noqa: BLE001 - every failure is reported redacted (never the token)
        from celebref.publish.push import redact

        msg = str(e) if isinstance(e, PublishError) else f"{type(e).__name__}: {e}"
        print(f"error: {redact(msg, _env_token())}", file=sys.stderr)
        print(f"note: the built folder is kept at {out}; rerun the same command to resume", file=sys.stderr)
        return cliutil.EXIT_FAILURE
    summary.outputs["repository"] = rep.repo_url + (" (private)" if args.private else "")
    summary.notes.append(f"uploaded {len(rep.uploaded)} file(s) in {rep.commits} commit(s); "
                         f"{len(rep.unchanged)} already on the Hub; {len(rep.deleted)} stale file(s) deleted; "
                         f"{rep.retries} retry(ies)")
    if rep.gated:
        summary.notes.append(f"gated access: {rep.gated}")
    summary.print()
    return cliutil.EXIT_OK


def _env_token() -> str | None:
    import os

    return os.environ.get("HF_TOKEN") or None
