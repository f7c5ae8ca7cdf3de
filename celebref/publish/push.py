"""Upload a built folder to the Hugging Face Hub with huggingface_hub.

* Token: ``HF_TOKEN`` from the environment, else the stored login (``hf auth login``); never printed or logged —
  every error message goes through :func:`redact`.
* ``HF_HUB_OFFLINE=1`` fails at once with a clear message (nothing is attempted).
* Resumable: the remote tree is listed first and files whose content is already there (LFS sha256 for large
  files, git blob id for small ones) are skipped; the rest is committed in batches (each batch is one commit, so
  an interrupted upload keeps what was committed). ``README.md`` goes last, with the deletion of stale shards
  under ``data/`` and ``testsets/`` (files a previous publish wrote that this build no longer has).
* Retries: each Hub call is retried with exponential backoff on connection errors, timeouts, 408/429/5xx;
  other errors (401/403/404, bad requests) stop at once.
* Gating: after the upload the repository's gated-access setting is set (``auto``/``manual``; ``none`` leaves it).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
MANAGED_PREFIXES = ("data/", "testsets/")
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{8,}")


class PublishError(RuntimeError):
    """Publishing failed (exit code 1); the message is safe to print (token redacted)."""


def redact(text: str, token: str | None = None) -> str:
    """Remove the token (and anything shaped like a Hugging Face token) from a message."""
    text = str(text)
    if token:
        text = text.replace(token, "***")
    text = _TOKEN_RE.sub("hf_***", text)
    return re.sub(r"(?i)(authorization:\s*bearer\s+)\S+", r"\1***", text)


def offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return bool(env or constants.HF_HUB_OFFLINE)


def resolve_token() -> str:
    """HF_TOKEN from the environment, else the token stored by ``hf auth login``."""
    tok = os.environ.get("HF_TOKEN", "").strip()
    if tok:
        return tok
    try:
        from huggingface_hub import get_token

        tok = (get_token() or "").strip()
    except Exception:  # noqa: BLE001 - a broken token file is the same as no token
        tok = ""
    if not tok:
        raise PublishError("no Hugging Face token: set HF_TOKEN (a write token) or run `hf auth login`")
    return tok


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: connection problems, timeouts, 408/425/429/5xx (also when wrapped in another error)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OfflineModeIsEnabled):
            return False
        if isinstance(e, HfHubHTTPError):
            status = getattr(getattr(e, "response", None), "status_code", None)
            return status in TRANSIENT_STATUS
        name = type(e).__name__
        if isinstance(e, (ConnectionError, TimeoutError)) or name in (
                "ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "ReadError",
                "WriteError", "RemoteProtocolError", "NetworkError", "TimeoutException", "TransportError"):
            return True
        e = e.__cause__ or e.__context__
    return False


@dataclass
class PushReport:
    repo_url: str = ""
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    commits: int = 0
    retries: int = 0
    gated: str | None = None


class _Retrier:
    def __init__(self, retries: int, backoff: float, token: str, log: Callable[[str], None], report: PushReport):
        self.retries, self.backoff, self.token, self.log, self.report = retries, backoff, token, log, report

    def __call__(self, what: str, fn, *args, **kwargs):
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - classified below
                if attempt >= self.retries or not is_transient(e):
                    raise PublishError(f"{what} failed: {redact(_describe(e), self.token)}") from None
                wait = self.backoff * (2 ** attempt)
                attempt += 1
                self.report.retries += 1
                self.log(f"{what}: {redact(_describe(e), self.token)}; retry {attempt}/{self.retries} in {wait:.1f} s")
                time.sleep(wait)


def _describe(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}"
    cause = e.__cause__
    if cause is not None and str(cause) and str(cause) not in msg:
        msg += f" (caused by {type(cause).__name__}: {cause})"
    return msg.strip()


def local_files(folder: Path) -> list[str]:
    """Every file to upload (relative POSIX paths), README.md last."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    files = [f for f in files if not any(part.startswith(".") for part in f.split("/"))]
    if "README.md" in files:
        files.remove("README.md")
        files.append("README.md")
    return files


def _batches(files: list[tuple[str, int]], max_files: int, max_bytes: int):
    batch, size = [], 0
    for f, n in files:
        if batch and (len(batch) >= max_files or size + n > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(f)
        size += n
    if batch:
        yield batch


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                gated: str = "auto", endpoint: str | None = None, retries: int = 4, backoff: float = 2.0,
                max_files_per_commit: int = 50, max_bytes_per_commit: int = 2 << 30,
                log: Callable[[str], None] = print) -> PushReport:
    """Upload ``folder`` (built by :func:`celebref.publish.build_folder`) to the dataset repo ``repo_id``."""
    folder = Path(folder)
    if offline():
        raise PublishError(
            f"HF_HUB_OFFLINE is set, so nothing can be uploaded; the folder is ready at {folder}. "
            "Unset HF_HUB_OFFLINE (and check HF_ENDPOINT) to push, or use --dry-run to only build it.")
    if not (folder / "README.md").is_file():
        raise PublishError(f"{folder} has no README.md; build it with `celebref publish --dry-run` first")
    if gated not in ("auto", "manual", "none"):
        raise PublishError(f"gated must be auto, manual or none, not {gated!r}")
    token = token or resolve_token()
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    from bfrcore.versions import SUITE_DISTRIBUTION
    from bfrcore import __version__

    report = PushReport()
    call = _Retrier(retries, backoff, token, log, report)
    api = HfApi(endpoint=endpoint, token=token, library_name=SUITE_DISTRIBUTION, library_version=__version__)

    url = call("create_repo", api.create_repo, repo_id, repo_type="dataset", private=private, exist_ok=True)
    report.repo_url = str(url)

    def _list_remote():
        try:
            return list(api.list_repo_tree(repo_id, repo_type="dataset", recursive=True))
        except (EntryNotFoundError, RevisionNotFoundError):
            return []  # empty repo: no main branch yet

    remote_entries = call("list remote files", _list_remote)
    remote: dict[str, tuple[str | None, str | None]] = {}
    for f in remote_entries:
        if getattr(f, "blob_id", None) is None and getattr(f, "lfs", None) is None:
            continue  # a folder
        lfs = getattr(f, "lfs", None)
        remote[f.path] = (lfs.sha256 if lfs is not None else None, getattr(f, "blob_id", None))

    files = local_files(folder)
    todo: list[tuple[str, int]] = []
    for rel in files:
        p = folder / rel
        if rel in remote:
            lfs_sha, blob = remote[rel]
            if lfs_sha is not None and lfs_sha == _sha256(p):
                report.unchanged.append(rel)
                continue
            if lfs_sha is None and blob is not None and p.stat().st_size <= (10 << 20) \
                    and blob == git_blob_sha1(p.read_bytes()):
                report.unchanged.append(rel)
                continue
        todo.append((rel, p.stat().st_size))
    local_set = set(files)
    stale = sorted(r for r in remote if r.startswith(MANAGED_PREFIXES) and r not in local_set)

    body = [t for t in todo if t[0] != "README.md"]
    readme = [t for t in todo if t[0] == "README.md"]
    batches = list(_batches(body, max_files_per_commit, max_bytes_per_commit))
    n_commits = len(batches) + (1 if (readme or stale) else 0)
    for i, batch in enumerate(batches, 1):
        ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)) for rel in batch]
        log(f"commit {i}/{n_commits}: {len(batch)} file(s)")
        call(f"commit {i}/{n_commits}", api.create_commit, repo_id, repo_type="dataset", operations=ops,
             commit_message=f"celebref publish: data ({i}/{n_commits})")
        report.uploaded += batch
        report.commits += 1
    if readme or stale:
        ops = [CommitOperationDelete(path_in_repo=r) for r in stale]
        if readme:
            ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(folder / "README.md")))
        log(f"commit {n_commits}/{n_commits}: dataset card" + (f", delete {len(stale)} stale file(s)" if stale else ""))
        call(f"commit {n_commits}/{n_commits}", api.create_commit, repo_id, repo_type="dataset", operations=ops,
             commit_message="celebref publish: dataset card" + (" and stale files" if stale else ""))
        report.uploaded += [r for r, _ in readme]
        report.deleted = stale
        report.commits += 1
    if gated != "none":
        call("update_repo_settings (gated)", api.update_repo_settings, repo_id, repo_type="dataset", gated=gated)
        report.gated = gated
    return report
