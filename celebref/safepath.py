"""Path safety: names from archives, URLs, manifests or user ids never escape the folder they belong to."""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9._\-]+$")


class UnsafePathError(ValueError):
    """A name that would escape its root (absolute, '..', drive letters, NUL) or is not a plain file name."""


def check_relative(name: str) -> PurePosixPath:
    """Validate an archive member / manifest path: relative, no '..', no drive, no NUL. Returns it normalised."""
    if not name or "\x00" in name:
        raise UnsafePathError(f"empty or NUL in path {name!r}")
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if p.is_absolute() or re.match(r"^[A-Za-z]:", norm):
        raise UnsafePathError(f"absolute path {name!r}")
    parts = [q for q in p.parts if q not in ("", ".")]
    if any(q == ".." for q in parts) or not parts:
        raise UnsafePathError(f"path escapes its root: {name!r}")
    return PurePosixPath(*parts)


def safe_join(root: str | os.PathLike, *names: str) -> Path:
    """``root / names`` after checking each name with :func:`check_relative` and the resolved result stays inside."""
    root_p = Path(root).resolve()
    out = root_p
    for n in names:
        out = out / Path(*check_relative(n).parts)
    resolved = out.resolve()
    if resolved != root_p and root_p not in resolved.parents:
        raise UnsafePathError(f"{names!r} resolves outside {root_p}")
    return out


def safe_component(name: str, what: str = "name") -> str:
    """A single file-name component made of [A-Za-z0-9._-] (ids used as file names: identities, image ids)."""
    if not name or not _SAFE_COMPONENT.match(name) or name in (".", ".."):
        raise UnsafePathError(f"invalid {what} {name!r}: use letters, digits, '.', '_' or '-'")
    return name


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike, *, max_total_bytes: int = 20 << 30) -> list[Path]:
    """Extract a zip or tar archive into ``dest``, refusing members that escape it, links and device files.

    Returns the regular files written. Raises :class:`UnsafePathError` before writing anything unsafe.
    """
    archive = Path(archive)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            total = sum(i.file_size for i in infos)
            if total > max_total_bytes:
                raise UnsafePathError(f"archive expands to {total} bytes > limit {max_total_bytes}")
            targets = [(i, safe_join(dest, i.filename)) for i in infos]
            for info, target in targets:
                mode = (info.external_attr >> 16) & 0o170000
                if mode == 0o120000:
                    raise UnsafePathError(f"symlink member {info.filename!r} refused")
            for info, target in targets:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                written.append(target)
        return written
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            total = sum(m.size for m in members if m.isfile())
            if total > max_total_bytes:
                raise UnsafePathError(f"archive expands to {total} bytes > limit {max_total_bytes}")
            plan = []
            for m in members:
                if m.isdir():
                    continue
                if not m.isfile():
                    raise UnsafePathError(f"non-regular member {m.name!r} (link/device) refused")
                plan.append((m, safe_join(dest, m.name)))
            for m, target in plan:
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(m)
                assert src is not None
                with src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                written.append(target)
        return written
    raise ValueError(f"{archive} is neither a zip nor a tar archive")
