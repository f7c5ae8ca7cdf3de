"""zip/tar source: extracted once into the cache with :func:`bfrcore.safepath.extract_members` (members that would
escape, links and device files refuse the whole archive before anything is written; a member that is too large,
corrupt or in conflict with another is skipped and recorded), then read as a folder tree or, when it holds one, the
CelebRef-HQ layout. A single wrapping top-level folder that itself holds folders is skipped."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bfrcore.imageio import file_sha256, write_bytes_atomic
from bfrcore.safepath import MemberReject, UnsafePathError, extract_members
from celebref.ingest import IngestResult, SourceError, is_celebrefhq_layout, name_for, reject_record
from celebref.ingest.celebrefhq import ingest_celebrefhq
from celebref.ingest.config import IngestConfig
from celebref.ingest.folder import ingest_folder

#: version of the extraction record (``extract.json``); a different one re-extracts
EXTRACT_FORMAT = 2


@dataclass
class Extracted:
    tree: Path
    rejected: list[MemberReject]


def extract_archive(archive: Path, cache_root: Path, max_member_bytes: int | None = None) -> Extracted:
    """Extract ``archive`` into ``cache/archives/<sha256[:16]>/tree`` once per (content, ``max_member_bytes``); the
    skipped members are kept in ``extract.json`` (the commit marker) so a rerun records them again."""
    if not archive.is_file():
        raise SourceError(f"archive {archive} not found" if not archive.exists()
                          else f"archive {archive} is not a regular file")
    sha = file_sha256(archive)
    dest = Path(cache_root) / "archives" / sha[:16]
    marker = dest / "extract.json"
    want = {"format": EXTRACT_FORMAT, "sha256": sha, "max_member_bytes": max_member_bytes}
    if marker.is_file():
        try:
            rec = json.loads(marker.read_text())
            if {k: rec.get(k) for k in want} == want:
                return Extracted(dest / "tree", [MemberReject(**r) for r in rec["rejected"]])
        except (ValueError, KeyError, TypeError):
            pass  # unreadable record: extract again
    shutil.rmtree(dest / "tree", ignore_errors=True)  # an interrupted or differently limited extraction
    try:
        res = extract_members(archive, dest / "tree", max_member_bytes=max_member_bytes)
    except UnsafePathError as e:
        raise SourceError(f"unsafe archive {archive}: {e}") from e
    except ValueError as e:  # ArchiveError: not a zip/tar, no readable member list
        raise SourceError(str(e)) from e
    rec = {**want, "rejected": [r.__dict__ for r in res.rejected]}
    write_bytes_atomic(marker, json.dumps(rec, indent=1, sort_keys=True).encode())
    return Extracted(dest / "tree", res.rejected)


def _content_root(tree: Path) -> Path:
    entries = [p for p in tree.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        inner = [p for p in entries[0].iterdir() if not p.name.startswith(".")]
        if inner and all(p.is_dir() for p in inner):
            return entries[0]
    return tree


def ingest_archive(archive: Path, cache_root: Path, cfg: IngestConfig, *, source: str,
                   source_index: int) -> IngestResult:
    ext = extract_archive(archive, cache_root, cfg.max_bytes)
    tree = ext.tree
    tree.mkdir(parents=True, exist_ok=True)  # an archive whose every member was skipped
    root = _content_root(tree)
    shown = str(archive) + ("" if root == tree else "!" + root.name)
    if is_celebrefhq_layout(root):
        res = ingest_celebrefhq(root, cfg, source=source, source_index=source_index, display_root=shown)
    else:
        res = ingest_folder(root, cfg, source=source, source_index=source_index, source_kind="archive",
                            display_root=shown)
    # skipped members: one manifest row each, after the extracted ones
    start = 1 + max((r["order"][1] for r in res.items + res.rejects if r.get("order")), default=-1)
    inner = PurePosixPath(root.relative_to(tree).as_posix()) if root != tree else None
    for j, r in enumerate(ext.rejected):
        member = PurePosixPath(r.name)
        if inner is not None and member.is_relative_to(inner):
            rel = member.relative_to(inner)
            path = f"{shown}!{rel.as_posix()}"
        else:
            rel = member
            path = f"{archive}!{r.name}"
        detail = r.detail + (" (ingest.max_bytes)" if r.reason == "too_large" else "")
        base = {"source_kind": "archive", "source": source, "source_path": path,
                "name": name_for(rel.parts, cfg.name_from) if not r.name.startswith("<") else None,
                "provenance": {"path": path}, "order": [source_index, start + j]}
        res.rejects.append(reject_record(base, r.reason, detail))
        res.counts[r.reason] += 1
    return res
