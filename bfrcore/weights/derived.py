"""Files derived from registered weights once per machine and kept in the weights cache, for a faster load than
the original format gives (``<cache>/derived/<name>``, each with a ``<name>.sha256`` record checked on every
load). Used for dlib's face ResNet as an ONNX graph (building it imports the ``onnx`` package, ~0.8 s) and dlib's
frontal face detector saved by dlib itself (``get_frontal_face_detector`` decodes an embedded compressed string,
~0.4 s; the saved file loads in ~2 ms and detects identically). A missing, damaged or unwritable cache means the
file is derived again (in memory when the cache cannot be written): never a different result, only slower."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from bfrcore.imageio import write_bytes_atomic
from bfrcore.weights.registry import cache_dir


def derived_path(name: str) -> Path:
    """Where the derived file ``name`` is kept (a plain file name: no folders)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"bad derived file name {name!r}")
    return cache_dir() / "derived" / name


def load_or_derive(name: str, make: Callable[[], bytes]) -> tuple[bytes, Path | None]:
    """The bytes of the derived file ``name`` and its path (None when it could not be stored): read from the cache
    when its sha256 matches the record, else made by ``make()`` and stored."""
    path = derived_path(name)
    record = path.with_name(path.name + ".sha256")
    try:
        data = path.read_bytes()
        if record.read_text().strip() == hashlib.sha256(data).hexdigest():
            return data, path
    except OSError:
        pass
    data = make()
    try:
        write_bytes_atomic(path, data)
        write_bytes_atomic(record, hashlib.sha256(data).hexdigest().encode())
    except OSError:
        return data, None
    return data, path
