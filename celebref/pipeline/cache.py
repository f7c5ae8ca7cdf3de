"""Per-stage caches: every stage's outputs live under ``<out>/cache/<stage>/<key>/``.

``key`` = sha256 over (stage name, stage version, the stage's own config section, the keys of the stages it reads),
so a changed threshold only changes the keys of the stages that use it, and everything upstream is reused.
Per-item results are one JSON file each (``items/<id[:2]>/<id>.json``, written atomically: the file is the
item's commit marker); per-shard ``shards/<hash>_stats.json`` files (counts by outcome, written last) mark a
whole shard done, so a resumed run skips finished shards without opening their items.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from bfrcore.imageio import write_bytes_atomic
from celebref.pipeline.config import to_plain


def stage_key(stage: str, version: str, params: Any, upstream: Iterable[str] = ()) -> str:
    blob = json.dumps({"stage": stage, "version": version, "params": to_plain(params), "upstream": list(upstream)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, obj: Any) -> Path:
    return write_bytes_atomic(path, json.dumps(obj, sort_keys=True, default=_json_default).encode())


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    return str(o)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


class StageCache:
    """The folder of one stage at one key."""

    def __init__(self, root: Path, stage: str, key: str):
        self.root = Path(root)
        self.stage = stage
        self.key = key
        self.dir = self.root / stage / key

    # ---------------------------------------------------------------- per item
    def item_path(self, item_id: str) -> Path:
        return self.dir / "items" / item_id[:2] / f"{item_id}.json"

    def has(self, item_id: str) -> bool:
        return self.item_path(item_id).is_file()

    def load(self, item_id: str) -> dict:
        return read_json(self.item_path(item_id))

    def save(self, item_id: str, record: dict) -> None:
        write_json_atomic(self.item_path(item_id), record)

    def file_path(self, name: str) -> Path:
        """Side files of a stage (aligned crops): ``files/<name[:2]>/<name>``."""
        return self.dir / "files" / name[:2] / name

    # ---------------------------------------------------------------- per shard
    def shard_stats_path(self, shard_hash: str) -> Path:
        return self.dir / "shards" / f"{shard_hash}_stats.json"

    def done_shards(self) -> set[str]:
        d = self.dir / "shards"
        if not d.is_dir():
            return set()
        return {p.name[: -len("_stats.json")] for p in d.glob("*_stats.json")}

    def shard_stats(self) -> list[dict]:
        d = self.dir / "shards"
        return [read_json(p) for p in sorted(d.glob("*_stats.json"))] if d.is_dir() else []

    # ---------------------------------------------------------------- meta / global results
    def write_meta(self, meta: dict) -> None:
        p = self.dir / "stage.json"
        if not p.is_file():
            write_json_atomic(p, meta)

    def result_path(self, name: str) -> Path:
        return self.dir / name


def shard_hash(item_ids: Iterable[str]) -> str:
    h = hashlib.sha256()
    for i in item_ids:
        h.update(i.encode() + b"\n")
    return h.hexdigest()[:16]


def dir_size(path: Path) -> int:
    total = 0
    for dp, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dp, f))
            except OSError:
                pass
    return total
