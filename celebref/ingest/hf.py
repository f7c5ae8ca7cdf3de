"""Hugging Face dataset source: a ``save_to_disk`` folder, a local data folder/file (parquet, imagefolder) or a
Hub id (``HF_HUB_OFFLINE=1`` makes that fail fast unless it is cached).

The image column is the first ``Image`` feature (or ``ingest.hf_image_column``); it is read undecoded so the
item hash is the sha256 of the original encoded bytes, which go to the content-addressed blob store. The name
label comes from ``ingest.hf_name_column`` or, when unset, the first of ``name``, ``identity``, ``label``,
``person``, ``celebrity`` present (ClassLabel integers are mapped to their names).
"""

from __future__ import annotations

from pathlib import Path

from celebref.ingest import IngestResult, SourceError, make_item, reject_record
from celebref.ingest.blobs import store_blob
from celebref.ingest.config import IngestConfig

NAME_COLUMNS = ("name", "identity", "label", "person", "celebrity")


def load_hf(location: str, split: str):
    import datasets

    p = Path(location)
    try:
        if p.is_dir() and ((p / "dataset_info.json").is_file() or (p / "state.json").is_file()
                           or (p / "dataset_dict.json").is_file()):
            ds = datasets.load_from_disk(str(p))
        elif p.is_file() and p.suffix == ".parquet":
            ds = datasets.load_dataset("parquet", data_files=str(p), split=split)
        else:
            ds = datasets.load_dataset(str(location), split=split)
    except Exception as e:  # datasets raises many types for "not found / offline"
        raise SourceError(f"cannot load Hugging Face dataset {location!r}: {type(e).__name__}: {e}") from e
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise SourceError(f"{location}: no split {split!r} (has {sorted(ds)})")
        ds = ds[split]
    return ds


def ingest_hf(location: str, cache_root: Path, cfg: IngestConfig, *, source: str, source_index: int) -> IngestResult:
    import datasets

    ds = load_hf(location, cfg.hf_split)
    feats = ds.features
    img_col = cfg.hf_image_column or next((k for k, v in feats.items() if isinstance(v, datasets.Image)), None)
    if img_col is None or img_col not in feats:
        raise SourceError(f"{location}: no image column (set ingest.hf_image_column); columns {list(feats)}")
    name_col = cfg.hf_name_column or next((c for c in NAME_COLUMNS if c in feats), None)
    if name_col is not None and name_col not in feats:
        raise SourceError(f"{location}: no column {name_col!r}")
    if isinstance(feats[img_col], datasets.Image):
        ds = ds.cast_column(img_col, datasets.Image(decode=False))
    label_feat = feats[name_col] if name_col else None
    res = IngestResult()
    for k, row in enumerate(ds):
        cell = row[img_col]
        name = None
        if name_col is not None and row.get(name_col) is not None:
            v = row[name_col]
            name = label_feat.int2str(v) if isinstance(label_feat, datasets.ClassLabel) else str(v)
        shown = f"{location}#{cfg.hf_split}[{k}]"
        base = {"source_kind": "hf", "source": source, "source_path": shown, "name": name,
                "provenance": {"dataset": location, "split": cfg.hf_split, "row": k}, "order": [source_index, k]}
        data = None
        if isinstance(cell, dict):
            data = cell.get("bytes")
            if data is None and cell.get("path") and Path(cell["path"]).is_file():
                data = Path(cell["path"]).read_bytes()
        elif isinstance(cell, (bytes, bytearray)):
            data = bytes(cell)
        if not data:
            res.rejects.append(reject_record(base, "empty", "no image bytes in the row"))
            res.counts["empty"] += 1
            continue
        if len(data) > cfg.max_bytes:
            res.rejects.append(reject_record(base, "too_large", f"{len(data)} bytes > ingest.max_bytes"))
            res.counts["too_large"] += 1
            continue
        path, sha = store_blob(cache_root, data)
        if isinstance(cell, dict) and cell.get("path"):
            base["provenance"]["file"] = str(cell["path"])
        res.items.append(make_item(path=path, source_kind="hf", source=source, source_path=shown, name=name,
                                   order=[source_index, k], provenance=base["provenance"], sha256=sha))
        res.counts["ok"] += 1
    return res
