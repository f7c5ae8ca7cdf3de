"""Content-addressed store for ingested bytes that have no stable file of their own (Hugging Face rows,
downloads): ``<out>/cache/blobs/<sha[:2]>/<sha>``, written atomically."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bfrcore.imageio import write_bytes_atomic


def blob_path(cache_root: Path, sha256: str) -> Path:
    """Where the bytes with this sha256 live under the build cache ``cache_root``."""
    return Path(cache_root) / "blobs" / sha256[:2] / sha256


def store_blob(cache_root: Path, data: bytes, sha256: str | None = None) -> tuple[Path, str]:
    """Store ``data`` (once) and return (its path, its sha256)."""
    sha = sha256 or hashlib.sha256(data).hexdigest()
    p = blob_path(cache_root, sha)
    if not p.is_file():
        write_bytes_atomic(p, data)
    return p, sha
