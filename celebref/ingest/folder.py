"""Folder source: ``<root>/<name>/<photos>`` (name = weak identity label), any depth, sorted walk.

Every entry with an image extension becomes an item or a recorded rejection: only regular files are ever opened
(checked with ``os.stat``, following symlinks, then again on the open descriptor), so a named pipe, a device such as
``/dev/zero``, a socket or a dangling symlink is recorded (``not_a_regular_file`` / ``broken_link``) and never read.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from celebref.ingest import IngestResult, SourceError, make_item, name_for, reject_record
from celebref.ingest.config import IngestConfig

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


@dataclass(frozen=True)
class Entry:
    """One image-named entry of the walk: ``problem`` is None for a regular file, else (reason, detail)."""

    path: Path
    problem: tuple[str, str] | None = None


class _Unusable(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _kind(mode: int) -> str:
    return next((what for test, what in _KINDS if test(mode)), f"not a regular file (mode {oct(mode)})")


def classify(p: Path) -> tuple[str, str] | None:
    """None for a regular file (after following symlinks); else (reason, detail). Never opens ``p``."""
    link = f" (symlink to {os.readlink(p)!r})" if p.is_symlink() else ""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return ("broken_link", f"dangling symlink{link}") if link else ("unreadable", "vanished during the walk")
    except OSError as e:
        if link:
            return "broken_link", f"{type(e).__name__}: {e.strerror}{link}"
        return "unreadable", f"{type(e).__name__}: {e.strerror}"
    if stat.S_ISREG(st.st_mode):
        return None
    return "not_a_regular_file", f"{_kind(st.st_mode)}{link}; not read"


def scan_image_entries(root: Path, extensions) -> tuple[list[Entry], int]:
    """Entries under ``root`` with an image extension (sorted by relative path; hidden entries and symlinked
    folders skipped), each classified without opening it, and the count of other files ignored."""
    exts = {"." + e for e in extensions}
    out, ignored = [], 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            p = Path(dirpath) / fn
            if p.suffix.lower() in exts:
                out.append(Entry(p, classify(p)))
            else:
                ignored += 1
    out.sort(key=lambda e: e.path.relative_to(root).as_posix())
    return out, ignored


def hash_regular_file(p: Path, max_bytes: int, chunk: int = 1 << 20) -> tuple[str, int]:
    """(sha256, size) of a regular file, read through one descriptor opened without blocking and checked again
    with ``fstat`` (a file swapped for a pipe or device after the walk is refused, not read). Raises
    :class:`_Unusable` with ``too_large``, ``empty``, ``not_a_regular_file`` or ``unreadable``."""
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise _Unusable("unreadable", f"{type(e).__name__}: {e.strerror}") from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Unusable("not_a_regular_file", f"{_kind(st.st_mode)}; not read")
        if st.st_size > max_bytes:
            raise _Unusable("too_large", f"{st.st_size} bytes > ingest.max_bytes {max_bytes}")
        if st.st_size == 0:
            raise _Unusable("empty", "zero bytes")
        h, n = hashlib.sha256(), 0
        try:
            while block := f.read(chunk):
                n += len(block)
                if n > max_bytes:  # grew since fstat
                    raise _Unusable("too_large", f"more than ingest.max_bytes {max_bytes} bytes")
                h.update(block)
        except OSError as e:
            raise _Unusable("unreadable", f"{type(e).__name__}: {e.strerror}") from e
    return h.hexdigest(), n


def ingest_folder(root: Path, cfg: IngestConfig, *, source: str, source_index: int, source_kind: str = "folder",
                  display_root: str | None = None, aligned: bool = False, name_mode: str | None = None,
                  extra_provenance=None) -> IngestResult:
    if not root.is_dir():
        raise SourceError(f"folder {root} not found")
    entries, ignored = scan_image_entries(root, cfg.extensions)
    res = IngestResult()
    res.counts["ignored_non_image_files"] += ignored
    for k, e in enumerate(entries):
        f = e.path
        rel = f.relative_to(root)
        shown = f"{display_root}!{rel.as_posix()}" if display_root else str(f)
        name = name_for(rel.parts, name_mode or cfg.name_from)
        prov = {"path": shown}
        if extra_provenance:
            prov.update(extra_provenance(rel))
        base = {"source_kind": source_kind, "source": source, "source_path": shown, "name": name,
                "provenance": prov, "order": [source_index, k]}
        try:
            if e.problem is not None:
                raise _Unusable(*e.problem)
            sha, _ = hash_regular_file(f, cfg.max_bytes)
        except _Unusable as u:
            res.rejects.append(reject_record(base, u.reason, u.detail))
            res.counts[u.reason] += 1
            continue
        res.items.append(make_item(path=f, source_kind=source_kind, source=source, source_path=shown, name=name,
                                   order=[source_index, k], aligned=aligned, provenance=prov, sha256=sha))
        res.counts["ok"] += 1
    return res
