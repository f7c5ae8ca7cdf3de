"""Path safety: names from archives, URLs, manifests or user ids never escape the folder they belong to."""

from __future__ import annotations

import errno
import lzma
import os
import re
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from bfrcore.errors import InputError

_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9._\-]+$")


class UnsafePathError(InputError):
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


#: Reasons an archive member is skipped with (:class:`MemberReject`); the other members are still extracted.
MEMBER_REASONS = ("too_large", "corrupt_archive_member", "unsupported_archive_member", "name_conflict",
                  "bad_member_name", "truncated_archive")


class ArchiveError(InputError):
    """An archive that cannot be used at all (not a zip/tar, no readable member list) or, in :func:`safe_extract`,
    one member that could not be extracted."""


@dataclass(frozen=True)
class MemberReject:
    """A member skipped by :func:`extract_members`: its normalised path inside the archive, a reason from
    :data:`MEMBER_REASONS` and a one-line detail. Nothing of it is left on disk."""

    name: str
    reason: str
    detail: str


@dataclass
class ExtractResult:
    written: list[Path] = field(default_factory=list)
    rejected: list[MemberReject] = field(default_factory=list)


class _MemberFailure(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# Errors raised while *reading* a member (bad CRC, bad local header, truncated stream, bad compressed data).
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError)
# Members Python cannot decode (unknown compression method, encryption).
_UNSUPPORTED = (NotImplementedError, RuntimeError)
_CHUNK = 1 << 20


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:300]


def copy_capped(open_src, dst_path: Path, limit: int, *, declared: int | None = None,
                max_member_bytes: int | None = None, chunk: int = _CHUNK) -> int:
    """Stream ``open_src()`` (a callable returning a readable binary file) into ``dst_path`` in ``chunk``-byte
    blocks, writing at most ``limit`` bytes: a source with more data stops the copy (never more than ``limit + 1``
    bytes are read). Returns the bytes written. On any failure the partial file is deleted and
    :class:`_MemberFailure` is raised: ``too_large`` when the data passes ``max_member_bytes``, else
    ``corrupt_archive_member`` (data beyond the ``declared`` size, or a read error), ``unsupported_archive_member``
    (compression/encryption Python cannot read), ``name_conflict`` / ``bad_member_name`` (the target cannot be
    created). Write-side errors of the disk itself (full, read-only) are raised unchanged."""
    n = 0
    try:
        dst = open(dst_path, "wb")  # noqa: SIM115 - closed below, deleted on failure
    except (FileExistsError, IsADirectoryError, NotADirectoryError) as e:
        raise _MemberFailure("name_conflict", _describe(e)) from e
    except OSError as e:
        if e.errno in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):
            raise _MemberFailure("bad_member_name", _describe(e)) from e
        raise
    try:
        with dst:
            try:
                src = open_src()
            except _UNSUPPORTED as e:
                raise _MemberFailure("unsupported_archive_member", _describe(e)) from e
            except _CORRUPT as e:
                raise _MemberFailure("corrupt_archive_member", _describe(e)) from e
            with src:
                while True:
                    try:
                        block = src.read(min(chunk, limit + 1 - n))
                    except _UNSUPPORTED as e:
                        raise _MemberFailure("unsupported_archive_member", _describe(e)) from e
                    except _CORRUPT as e:
                        raise _MemberFailure("corrupt_archive_member", _describe(e)) from e
                    if not block:
                        return n
                    n += len(block)
                    if n > limit:
                        if max_member_bytes is not None and n > max_member_bytes:
                            said = "" if declared is None else f" (declared {declared})"
                            raise _MemberFailure("too_large", f"more than {max_member_bytes} bytes{said}; "
                                                 "extraction stopped at the limit")
                        raise _MemberFailure("corrupt_archive_member", f"holds more than its declared {declared} "
                                             "bytes; extraction stopped")
                    dst.write(block)
    except BaseException:
        try:
            os.unlink(dst_path)
        except FileNotFoundError:
            pass
        raise


def _plan_conflicts(names: list[tuple[int, str]], dir_names: set[str]) -> dict[int, str]:
    """Members that cannot be written side by side: a later member with the same normalised path, or a file whose
    path is also a folder of another member (``a`` and ``a/b.jpg``: the file ``a`` is skipped). -> {index: detail}"""
    folders: dict[str, str] = {d: d for d in dir_names}
    for _, name in names:
        parts = name.split("/")
        for k in range(1, len(parts)):
            folders.setdefault("/".join(parts[:k]), name)
    seen: dict[str, int] = {}
    out: dict[int, str] = {}
    for i, name in names:
        if name in folders:
            out[i] = f"{name!r} is also a folder in this archive (of {folders[name]!r})"
        elif name in seen:
            out[i] = f"same path as an earlier member {name!r}"
        else:
            seen[name] = i
    return out


def extract_members(archive: str | os.PathLike, dest: str | os.PathLike, *, max_member_bytes: int | None = None,
                    max_total_bytes: int = 20 << 30, chunk: int = _CHUNK) -> ExtractResult:
    """Extract a zip or tar archive into ``dest``, skipping and recording members that cannot be extracted.

    Refused for the whole archive, before anything is written (:class:`UnsafePathError`): members whose path
    escapes ``dest``, links and device files, a declared total above ``max_total_bytes``. An archive with no
    readable member list raises :class:`ArchiveError`. Per member (:class:`MemberReject`, nothing left on disk):
    a declared size above ``max_member_bytes`` (``too_large``, never read), data beyond the declared size or
    ``max_member_bytes`` while streaming (the copy stops at the limit), bad CRC / header / compressed data
    (``corrupt_archive_member``), name conflicts; a tar that ends early records ``truncated_archive``.
    """
    archive = Path(archive)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if not archive.is_file():
        raise ArchiveError(f"{archive} is not a regular file")
    if zipfile.is_zipfile(archive):
        try:
            zf = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise ArchiveError(f"{archive}: unreadable zip archive ({_describe(e)})") from e
        with zf:
            infos = zf.infolist()
            files = [i for i in infos if not i.is_dir()]
            dirs = _dir_names(i.filename for i in infos if i.is_dir())
            plan = []
            for i in files:
                target = safe_join(dest, i.filename)
                if (i.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafePathError(f"symlink member {i.filename!r} refused")
                plan.append((i, check_relative(i.filename).as_posix(), target, i.file_size))
            return _extract_plan(plan, dirs, lambda i: (lambda: zf.open(i)), max_member_bytes, max_total_bytes,
                                 chunk)
    try:
        is_tar = tarfile.is_tarfile(archive)
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise ArchiveError(f"{archive} is neither a zip nor a readable tar archive ({_describe(e)})") from e
    if not is_tar:
        raise ArchiveError(f"{archive} is neither a zip nor a tar archive (or it is truncated)")
    try:
        tf = tarfile.open(archive)  # noqa: SIM115 - the with block below
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise ArchiveError(f"{archive}: unreadable tar archive ({_describe(e)})") from e
    with tf:
        members: list[tarfile.TarInfo] = []
        list_error = None
        try:
            for m in tf:  # one by one: keep what was read before a truncation
                members.append(m)  # noqa: PERF402
        except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as e:
            list_error = e
        if list_error is not None and not members:
            raise ArchiveError(f"{archive}: unreadable tar archive ({_describe(list_error)})")
        plan, dirs = [], set()
        for m in members:
            if m.isdir():
                dirs |= _dir_names([m.name])
                continue
            if not m.isfile():
                raise UnsafePathError(f"non-regular member {m.name!r} (link/device) refused")
            plan.append((m, check_relative(m.name).as_posix(), safe_join(dest, m.name), m.size))

        def opener(m):
            def open_member():
                src = tf.extractfile(m)
                if src is None:  # pragma: no cover - isfile() members always have data
                    raise tarfile.ReadError("no data")
                return src
            return open_member

        res = _extract_plan(plan, dirs, opener, max_member_bytes, max_total_bytes, chunk)
        if list_error is not None:
            res.rejected.append(MemberReject(f"<rest of the archive after {members[-1].name!r}>",
                                             "truncated_archive", f"the archive ends early or is unreadable from "
                                             f"here: {_describe(list_error)}"))
        return res


def _dir_names(names) -> set[str]:
    """Normalised folder members ('./' and other empty names dropped: folders are never created from them)."""
    out = set()
    for n in names:
        try:
            out.add(check_relative(n).as_posix())
        except UnsafePathError:
            pass
    return out


def _extract_plan(plan, dirs, opener, max_member_bytes, max_total_bytes, chunk) -> ExtractResult:
    res = ExtractResult()
    conflicts = _plan_conflicts([(k, name) for k, (_, name, _, _) in enumerate(plan)], dirs)
    wanted = [k for k, p in enumerate(plan) if k not in conflicts
              and (max_member_bytes is None or p[3] <= max_member_bytes)]
    total = sum(plan[k][3] for k in wanted)
    if total > max_total_bytes:
        raise UnsafePathError(f"archive expands to {total} bytes > limit {max_total_bytes}")
    for k, (member, name, target, declared) in enumerate(plan):
        if k in conflicts:
            res.rejected.append(MemberReject(name, "name_conflict", conflicts[k]))
            continue
        if max_member_bytes is not None and declared > max_member_bytes:
            res.rejected.append(MemberReject(name, "too_large", f"{declared} bytes (declared) > limit "
                                                                f"{max_member_bytes}; not extracted"))
            continue
        try:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as e:
                raise _MemberFailure("name_conflict", _describe(e)) from e
            copy_capped(opener(member), target, declared, declared=declared, max_member_bytes=max_member_bytes,
                        chunk=chunk)
        except _MemberFailure as f:
            res.rejected.append(MemberReject(name, f.reason, f.detail))
            continue
        res.written.append(target)
    return res


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike, *, max_total_bytes: int = 20 << 30,
                 max_member_bytes: int | None = None) -> list[Path]:
    """Extract a zip or tar archive into ``dest``, all or nothing: refuses members that escape it, links and
    device files (:class:`UnsafePathError`, before writing anything) and raises :class:`ArchiveError` naming the
    first member that could not be extracted. Returns the regular files written. Batch ingest uses
    :func:`extract_members` instead, which skips and records bad members."""
    res = extract_members(archive, dest, max_member_bytes=max_member_bytes, max_total_bytes=max_total_bytes)
    if res.rejected:
        r = res.rejected[0]
        raise ArchiveError(f"{archive}: member {r.name!r}: {r.reason}: {r.detail}")
    return res.written
