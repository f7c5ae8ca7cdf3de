"""Published rows next to our runs: a table made under a protocol (``summary.json`` ``protocol``) shows the cited
table's numbers, marked "published" with the citation, and our difference to them (ours − published) for each run
whose model is one of the published methods (names compared case- and punctuation-insensitively)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field


@dataclass
class PublishedLine:
    method: str
    texts: dict[str, str]  # column -> value exactly as printed
    note: str = ""


@dataclass
class DiffLine:
    run_label: str
    method: str
    diffs: dict[str, float | None]  # column -> ours - published (None: one side missing)


@dataclass
class PublishedBlock:
    protocol: str
    citation: str
    table: str
    lines: list[PublishedLine]
    diffs: list[DiffLine]
    higher_is_better: dict[str, bool]
    notes: list[str] = field(default_factory=list)

    @property
    def caption(self) -> str:
        return f"published: {self.citation}, {self.table} (protocol {self.protocol})"


def norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def published_block(protocol_label: str, rows, deviations: list[str]) -> PublishedBlock | None:
    """The block for a table whose runs used ``protocol_label``; ``rows``: the table's rows (tables.Row)."""
    if not protocol_label:
        return None
    from evaluation.protocols import ProtocolError, get_protocol

    try:
        p = get_protocol(protocol_label)
    except ProtocolError as e:
        return PublishedBlock(protocol_label, "", "", [], [], {}, [f"protocol {protocol_label}: {e}"])
    if not p.published:
        return None
    cols = [m.column for m in p.metrics if any(r.text(m.column) is not None for r in p.published)]
    lines = [PublishedLine(r.method, {c: r.text(c) for c in cols if r.text(c) is not None}, r.note)
             for r in p.published]
    by_method = {norm(r.method): r for r in p.published}
    diffs = []
    for row in rows:
        pub = by_method.get(norm(row.model))
        if pub is None:
            continue
        d = {}
        for c in cols:
            cell = row.cells.get(c)
            pv = pub.value(c)
            d[c] = None if (cell is None or cell.mean is None or pv is None) else cell.mean - pv
        diffs.append(DiffLine(row.label, pub.method, d))
    notes = [f"Δ = ours − published ({p.citation.split(',')[0]} {p.table})"]
    if deviations:
        notes.append("our runs deviate from the protocol, so Δ is not a reproduction: " + "; ".join(deviations))
    notes += [f"published {ln.method}: {ln.note}" for ln in lines if ln.note]
    return PublishedBlock(p.label, p.citation, p.table, lines, diffs,
                          {m.column: m.higher_is_better for m in p.metrics}, notes)


def deviations_of(values) -> list[str]:
    """Union (sorted) of the JSON deviation lists of a table's runs."""
    out: set[str] = set()
    for v in values:
        try:
            out.update(str(x) for x in json.loads(v or "[]"))
        except (TypeError, ValueError):
            continue
    return sorted(out)


def fmt_diff(v: float | None) -> str:
    if v is None:
        return "—"
    digits = 4 if abs(v) < 1 else (3 if abs(v) < 10 else 2)
    return f"{v:+.{digits}f}"
