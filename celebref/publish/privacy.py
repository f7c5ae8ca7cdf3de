"""Nothing local leaves the machine: reduce local paths in what is published, and refuse a folder that still
carries one.

* :func:`public_path` / :func:`sanitize` — a string that *is* a local absolute path becomes ``<local>/<file name>``.
* :func:`scrub_text` — the same for local absolute paths *inside* free text (error messages, JSON kept as text).
* :func:`find_leaks` / :func:`check_folder` — the last guard before a folder is handed over: every text the folder
  holds (README.md, the JSON files, every string of every parquet shard, image bytes excepted) is searched for local
  absolute paths (POSIX, Windows, ``~/``), the home folder, ``site-packages``/``dist-packages`` and the user name.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
from dataclasses import dataclass
from pathlib import Path

LOCAL = "<local>"
_URL_RE = re.compile(r"^(?!file:)[A-Za-z][A-Za-z0-9+.-]*://")
_SEG = r"[^\s/\\\"'`<>|,;:()\[\]{}]+"
#: a local absolute path inside text: /a/b..., ~/a..., C:\a... or C:/a..., \\server\share... (not part of a URL,
#: a relative path or ``<local>/``: the character before it is none of these)
_EMBEDDED_RE = re.compile(
    rf"(?<![\w.~/\\<>%@-])(?:file://(?=/))?(?:~?/{_SEG}(?:/{_SEG})*/?|[A-Za-z]:(?:/(?!/)|\\+){_SEG}(?:(?:/|\\+){_SEG})*|\\\\+{_SEG}(?:\\+{_SEG})+)")
#: top-level folders whose mere mention (``/root``, ``/home``) is already a local path
_ROOT_DIRS = ("home", "root", "Users", "tmp", "var", "mnt", "media", "opt", "srv", "usr", "private", "Volumes",
              "scratch", "work", "nfs", "gpfs", "data", "workspace", "content")
_ABS_LEAK_RE = re.compile(
    rf"(?<![\w.~/\\<>%@-])(?:file:///|/{_SEG}/{_SEG}|/(?:{'|'.join(_ROOT_DIRS)})\b|~/{_SEG}"
    rf"|[A-Za-z]:(?:/(?!/)|\\+){_SEG}|\\\\+{_SEG}\\)")
#: account names that identify no person (containers, CI runners, notebooks): not searched for as user names
GENERIC_ACCOUNTS = frozenset({"root", "user", "admin", "administrator", "ubuntu", "debian", "runner", "jovyan",
                              "nobody", "app", "docker", "vscode", "ec2-user", "codespace", "colab", "guest"})
_PACKAGES_RE = re.compile(r"(?:site|dist)-packages")


class LocalPathLeak(ValueError):
    """A file about to be published still carries a local path, the home folder or the user name."""


def public_path(s: str) -> str:
    """Local absolute paths become ``<local>/<file name>`` (no home folders on the Hub); URLs and relative paths
    are kept."""
    if not isinstance(s, str) or not s:
        return s
    if _URL_RE.match(s):
        return s
    if s.startswith(("/", "~", "\\\\", "file:/")) or re.match(r"^[A-Za-z]:[\\/]", s):
        name = re.split(r"[\\/]", s.rstrip("/\\"))[-1]
        return f"{LOCAL}/{name}" if name and name != "~" else LOCAL
    return scrub_text(s)


def scrub_text(s: str) -> str:
    """Every local absolute path inside ``s`` becomes ``<local>/<file name>``; the home folder becomes ``~``."""
    if not isinstance(s, str) or not s:
        return s
    home = _home()
    if home:
        s = re.sub(rf"{re.escape(home)}(?![\w.-])", "~", s)

    def repl(m: re.Match) -> str:
        name = re.split(r"[\\/]", m.group(0).rstrip("/\\"))[-1]
        return f"{LOCAL}/{name}" if name and name != "~" else LOCAL

    return _EMBEDDED_RE.sub(repl, s)


def sanitize(obj):
    """Recursively apply :func:`public_path` to every string of a JSON-like object (keys included)."""
    if isinstance(obj, dict):
        return {(public_path(k) if isinstance(k, str) else k): sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    if isinstance(obj, str):
        return public_path(obj)
    return obj


def _home() -> str | None:
    home = os.path.expanduser("~")
    return home if home and home not in ("~", "/") and len(home) > 1 else None


def _user_names() -> list[str]:
    names = set()
    with contextlib.suppress(Exception):  # no passwd entry in some containers
        names.add(getpass.getuser())
    for var in ("USER", "LOGNAME", "USERNAME"):
        if os.environ.get(var):
            names.add(os.environ[var])
    home = _home()
    if home:
        names.add(Path(home).name)
    # names shorter than 3 characters would match ordinary words and numbers; shared system accounts (root,
    # runner, ...) name no one, and their home folders are caught as absolute paths
    return sorted(n for n in names if n and len(n) >= 3 and n.lower() not in GENERIC_ACCOUNTS)


@dataclass
class Leak:
    file: str  # relative path in the folder
    where: str  # 'text', 'json', or the parquet column
    kind: str  # 'absolute path' | 'home folder' | 'site-packages' | 'user name'
    excerpt: str

    def __str__(self) -> str:
        return f"{self.file} ({self.where}): {self.kind} {self.excerpt!r}"


def find_leaks(text: str, *, extra: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(kind, excerpt) for every local path, home folder, site-packages or user name in ``text``; ``extra``: more
    literal strings that must not appear (e.g. the dataset folder's absolute path)."""
    out: list[tuple[str, str]] = []

    def ctx(i: int, j: int) -> str:
        return text[max(0, i - 20):j + 20].replace("\n", " ")

    home = _home()
    m = re.search(rf"{re.escape(home)}(?![\w.-])", text) if home else None
    if m:
        out.append(("home folder", ctx(m.start(), m.end())))
    for s in extra:
        if s and s in text:
            i = text.index(s)
            out.append(("local path", ctx(i, i + len(s))))
    m = _PACKAGES_RE.search(text)
    if m:
        out.append(("site-packages", ctx(m.start(), m.end())))
    m = _ABS_LEAK_RE.search(text)
    if m:
        out.append(("absolute path", ctx(m.start(), m.end())))
    for name in _user_names():
        m = re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", text)
        if m:
            out.append(("user name", ctx(m.start(), m.end())))
    return out


def _parquet_texts(path: Path):
    """(column, all strings of that column joined by newlines) for every column of a parquet file; binary values
    (image bytes) are skipped, strings nested in lists and structs are included."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)

    def strings(arr, name):
        t = arr.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            vals = [v for v in arr.to_pylist() if v is not None]
            if vals:
                yield name, "\n".join(vals)
        elif pa.types.is_struct(t):
            for k in range(t.num_fields):
                yield from strings(arr.field(k), f"{name}.{t.field(k).name}")
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            yield from strings(arr.flatten(), f"{name}[]")
        elif pa.types.is_dictionary(t):
            yield from strings(arr.dictionary, name)

    for name in table.column_names:
        col = table.column(name)
        for chunk in col.chunks:
            yield from strings(chunk, name)
    meta = table.schema.metadata or {}
    for k, v in meta.items():
        yield f"schema metadata {k.decode(errors='replace')}", v.decode("utf-8", errors="replace")


def check_folder(folder: str | Path, *, extra: tuple[str, ...] = ()) -> list[Leak]:
    """Every leak in the files of ``folder`` (README.md, JSON, parquet strings; other files as UTF-8 text)."""
    folder = Path(folder)
    leaks: list[Leak] = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(folder).as_posix()
        if p.suffix == ".parquet":
            texts = list(_parquet_texts(p))
        else:
            texts = [("json" if p.suffix == ".json" else "text", p.read_bytes().decode("utf-8", errors="replace"))]
        for where, text in texts:
            leaks += [Leak(rel, where, kind, ex) for kind, ex in find_leaks(text, extra=extra)]
    return leaks


def require_clean(folder: str | Path, *, extra: tuple[str, ...] = ()) -> None:
    """Raise :class:`LocalPathLeak` naming the first leak (and how many there are) when ``folder`` has any."""
    leaks = check_folder(folder, extra=extra)
    if leaks:
        more = f" (and {len(leaks) - 1} more)" if len(leaks) > 1 else ""
        raise LocalPathLeak(f"refusing to publish: {leaks[0]}{more}; published files may carry names, versions and "
                            "hashes only, not local paths, the home folder or the user name")
