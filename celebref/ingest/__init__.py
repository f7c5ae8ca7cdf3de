"""Stage 1, ingest: turn sources into items (one per unique photo) plus recorded rejections.

Sources (``--source``, repeatable; an explicit ``kind:`` prefix or detected from the path):

- ``folder:DIR`` - a folder tree, ``<name>/<photos>`` gives a weak name label (``ingest.name_from``)
- ``archive:FILE`` - a zip/tar archive, extracted with :func:`bfrcore.safepath.extract_members` (no path escapes,
  links or devices; too large, corrupt or clashing members are skipped and recorded), then read like a folder (or
  like the CelebRef-HQ layout)
- ``celebrefhq:DIR`` - the released CelebRef-HQ layout ``<5-digit id>/<n>.png`` (already FFHQ-aligned 512)
- ``hf:PATH_OR_ID`` - a Hugging Face dataset: a ``save_to_disk`` folder, a local data folder (parquet,
  imagefolder) or a Hub id (needs the network unless cached)
- ``urls:FILE`` - a URL list (CSV: url, name, license, author), crawled politely and resumably

An item is a plain dict: ``item_id`` (sha256 of the bytes), ``source_kind``, ``source``, ``source_path``,
``path`` (a local file holding the bytes), ``name`` (weak label or None), ``aligned``, ``provenance`` (dict),
``order`` (source index, position). Exact duplicates (same sha256) collapse onto the first occurrence; the
others are recorded as ``exact_duplicate`` rejections.

This package never imports :mod:`celebref.pipeline` (the pipeline calls it): its config sections live in
:mod:`celebref.ingest.config`, its byte store in :mod:`celebref.ingest.blobs`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bfrcore.errors import InputError
from bfrcore.imageio import file_sha256
from celebref.ingest.config import SourcesConfig

SOURCE_KINDS = ("folder", "archive", "celebrefhq", "hf", "urls")
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class SourceError(InputError):
    """A source that cannot be read at all (bad path, unsafe archive, unknown kind); the CLI exits 2."""


@dataclass(frozen=True)
class SourceSpec:
    kind: str
    location: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}"


@dataclass
class IngestResult:
    items: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def is_celebrefhq_layout(root: Path) -> bool:
    """True when ``root`` holds only 5-digit identity folders of numerically named images."""
    if not root.is_dir():
        return False
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    dirs = [p for p in entries if p.is_dir()]
    if not dirs or len(dirs) != len(entries) or not all(re.fullmatch(r"\d{5}", p.name) for p in dirs):
        return False
    for d in dirs[:5]:
        files = [f for f in d.iterdir() if not f.name.startswith(".")]
        if not files or not all(re.fullmatch(r"\d+\.(png|jpg|jpeg)", f.name, re.I) for f in files):
            return False
    return True


def parse_source(text: str) -> SourceSpec:
    """``kind:location`` or a path whose kind is detected (folder / archive / CelebRef-HQ layout / url list /
    saved HF dataset). A string that is no existing path and looks like ``owner/name`` is a Hub dataset id."""
    m = re.match(r"^([a-z]+):(?!//)(.+)$", text)
    if m and m.group(1) in SOURCE_KINDS:
        return SourceSpec(m.group(1), m.group(2))
    if m and len(m.group(1)) > 1:
        raise SourceError(f"unknown source kind {m.group(1)!r} in {text!r}; use one of {SOURCE_KINDS}")
    p = Path(text)
    if p.is_dir():
        if (p / "dataset_info.json").is_file() or (p / "state.json").is_file():
            return SourceSpec("hf", text)
        if is_celebrefhq_layout(p):
            return SourceSpec("celebrefhq", text)
        return SourceSpec("folder", text)
    if p.is_file():
        name = p.name.lower()
        if name.endswith(_ARCHIVE_SUFFIXES):
            return SourceSpec("archive", text)
        if name.endswith((".csv", ".txt", ".tsv")):
            return SourceSpec("urls", text)
        if name.endswith(".parquet"):
            return SourceSpec("hf", text)
        raise SourceError(f"cannot tell what kind of source {text!r} is; prefix it with one of {SOURCE_KINDS}")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text) and not text.startswith((".", "/")):
        return SourceSpec("hf", text)
    raise SourceError(f"source {text!r} not found")


def ingest_sources(specs: list[SourceSpec], cache_root: Path, cfg: SourcesConfig, *, quiet: bool = True,
                   executor=None) -> IngestResult:
    """Read every source (in order), then collapse exact duplicates. Deterministic for the same inputs.
    ``executor`` (optional): URL downloads are spread over its workers, partitioned by host."""
    from celebref.ingest import archive, celebrefhq, folder, hf, urls  # noqa: F401

    res = IngestResult()
    for si, spec in enumerate(specs):
        if spec.kind == "folder":
            part = folder.ingest_folder(Path(spec.location), cfg.ingest, source=str(spec), source_index=si)
        elif spec.kind == "celebrefhq":
            part = celebrefhq.ingest_celebrefhq(Path(spec.location), cfg.ingest, source=str(spec), source_index=si)
        elif spec.kind == "archive":
            part = archive.ingest_archive(Path(spec.location), cache_root, cfg.ingest, source=str(spec),
                                          source_index=si)
        elif spec.kind == "hf":
            part = hf.ingest_hf(spec.location, cache_root, cfg.ingest, source=str(spec), source_index=si)
        elif spec.kind == "urls":
            part = ingest_urls(Path(spec.location), cache_root, cfg, source=str(spec), source_index=si, quiet=quiet,
                               executor=executor)
        else:  # pragma: no cover - parse_source guards this
            raise SourceError(f"unknown source kind {spec.kind}")
        res.items += part.items
        res.rejects += part.rejects
        res.counts.update({f"{spec.kind}.{k}": v for k, v in part.counts.items()})
    _collapse_duplicates(res)
    return res


def _collapse_duplicates(res: IngestResult) -> None:
    first: dict[str, dict] = {}
    kept = []
    for it in sorted(res.items, key=lambda i: tuple(i["order"])):
        prev = first.get(it["item_id"])
        if prev is None:
            first[it["item_id"]] = it
            kept.append(it)
            continue
        res.rejects.append(reject_record(it, "exact_duplicate", f"same bytes as {prev['source_path']}",
                                         source_sha256=it["item_id"], duplicate_of=prev["source_path"]))
        res.counts["exact_duplicate"] += 1
    res.items = kept


def make_item(*, path: Path, source_kind: str, source: str, source_path: str, name: str | None, order,
              aligned: bool = False, provenance: dict | None = None, sha256: str | None = None) -> dict:
    sha = sha256 or file_sha256(path)
    return {
        "item_id": sha,
        "source_kind": source_kind,
        "source": source,
        "source_path": source_path,
        "path": str(path),
        "name": name,
        "aligned": bool(aligned),
        "provenance": dict(provenance or {}),
        "order": list(order),
    }


def reject_record(item_or_none: dict | None, reason: str, detail: str = "", **extra) -> dict:
    base = dict(item_or_none or {})
    rec = {
        "source_kind": base.get("source_kind"),
        "source": base.get("source"),
        "source_path": base.get("source_path"),
        "source_sha256": base.get("item_id"),
        "name": base.get("name"),
        "provenance": base.get("provenance", {}),
        "order": base.get("order"),
        "reject_stage": "ingest",
        "reject_reason": reason,
        "reject_detail": detail,
    }
    rec.update(extra)
    return rec


def name_for(rel_parts: tuple[str, ...], mode: str) -> str | None:
    if mode == "none" or len(rel_parts) < 2:
        return None
    return rel_parts[0] if mode == "first_dir" else rel_parts[-2]


def ingest_urls(path: Path, cache_root: Path, cfg: SourcesConfig, *, source: str, source_index: int,
                quiet: bool = True, executor=None) -> IngestResult:
    from celebref.ingest.urls import crawl, read_url_list

    if not path.is_file():
        raise SourceError(f"URL list {path} not found")
    rows = read_url_list(path)
    # one crawl state per cache, keyed by URL: a moved/copied list or another working directory refetches nothing
    outcomes = crawl(rows, cache_root, cfg.crawl, quiet=quiet, executor=executor)
    res = IngestResult()
    for k, rec in enumerate(outcomes):
        base = {"source_kind": "urls", "source": source, "source_path": rec["url"], "name": rec.get("name"),
                "provenance": rec.get("provenance", {}), "order": [source_index, k]}
        if rec["status"] == "ok":
            res.items.append(make_item(path=Path(rec["path"]), source_kind="urls", source=source,
                                       source_path=rec["url"], name=rec.get("name"), order=[source_index, k],
                                       provenance=rec.get("provenance"), sha256=rec["sha256"]))
            res.counts["ok"] += 1
        else:
            res.rejects.append(reject_record(base, rec["reason"], rec.get("provenance", {}).get("error", "")))
            res.counts[rec["reason"]] += 1
    return res
