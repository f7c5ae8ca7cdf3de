"""Folder source: ``<root>/<name>/<photos>`` (name = weak identity label), any depth, sorted walk."""

from __future__ import annotations

import os
from pathlib import Path

from celebref.build.config import IngestConfig
from celebref.build.ingest import IngestResult, SourceError, make_item, name_for, reject_record


def iter_image_files(root: Path, extensions) -> tuple[list[Path], int]:
    """Image files under ``root`` (sorted, hidden entries and symlinked folders skipped) and the count ignored."""
    exts = {"." + e for e in extensions}
    out, ignored = [], 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            p = Path(dirpath) / fn
            if p.suffix.lower() in exts and p.is_file():
                out.append(p)
            else:
                ignored += 1
    out.sort(key=lambda p: p.relative_to(root).as_posix())
    return out, ignored


def ingest_folder(root: Path, cfg: IngestConfig, *, source: str, source_index: int, source_kind: str = "folder",
                  display_root: str | None = None, aligned: bool = False, name_mode: str | None = None,
                  extra_provenance=None) -> IngestResult:
    if not root.is_dir():
        raise SourceError(f"folder {root} not found")
    files, ignored = iter_image_files(root, cfg.extensions)
    res = IngestResult()
    res.counts["ignored_non_image_files"] += ignored
    for k, f in enumerate(files):
        rel = f.relative_to(root)
        shown = f"{display_root}!{rel.as_posix()}" if display_root else str(f)
        name = name_for(rel.parts, name_mode or cfg.name_from)
        prov = {"path": shown}
        if extra_provenance:
            prov.update(extra_provenance(rel))
        size = f.stat().st_size
        base = {"source_kind": source_kind, "source": source, "source_path": shown, "name": name,
                "provenance": prov, "order": [source_index, k]}
        if size > cfg.max_bytes:
            res.rejects.append(reject_record(base, "too_large", f"{size} bytes > ingest.max_bytes {cfg.max_bytes}"))
            res.counts["too_large"] += 1
            continue
        if size == 0:
            res.rejects.append(reject_record(base, "empty", "zero bytes"))
            res.counts["empty"] += 1
            continue
        res.items.append(make_item(path=f, source_kind=source_kind, source=source, source_path=shown, name=name,
                                   order=[source_index, k], aligned=aligned, provenance=prov))
        res.counts["ok"] += 1
    return res
