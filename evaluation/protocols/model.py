"""The protocol object: a named, versioned, frozen description of how a published table was (or is to be) made.

A :class:`Protocol` fixes the test-set recipe (HQ source, split, degradation preset and seed), the reference rule,
the metrics with the conventions the paper used, the metric options this suite applies, and the published rows it
reproduces (each value copied exactly from the cited table). ``to_dict`` is canonical JSON-ready data and
``sha256`` its hash, recorded in every summary made under the protocol.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass

from bfrcore.errors import InputError

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")


class ProtocolError(InputError):
    """An unknown or malformed protocol, a run whose options contradict it, or a test set that does not follow a
    protocol's recipe (an input error: the command-line apps exit 2)."""


@dataclass(frozen=True)
class TestSetRecipe:
    """How the protocol's test set is made from an HQ dataset (``bench protocols testset``).

    ``split``: the dataset split whose images are degraded (None: all kept images); ``identity_split``: a shipped
    identity split (e.g. ``celebref-hq-v1``) whose test identities select the images instead; ``preset``/
    ``preset_version``/``seed``: :func:`degradations.testset.generate_testset` arguments; ``n_images``/
    ``n_identities``: the published test set's size (None: not fixed)."""

    __test__ = False  # not a pytest class

    source: str
    preset: str
    preset_version: str
    seed: int = 0
    split: str | None = "test"
    identity_split: str | None = None
    n_images: int | None = None
    n_identities: int | None = None


@dataclass(frozen=True)
class ReferenceRule:
    """Which references a reference-based method gets. ``kind``: 'none' (blind) or 'same-identity';
    ``max_refs``: at most this many (None: all the dataset lists, in its order)."""

    kind: str
    description: str
    max_refs: int | None = None


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the protocol: ``metric`` is the name in :mod:`evaluation.metrics` (it may not be installed
    here: then it is reported unavailable), ``column`` the summary column compared with the published value,
    ``paper`` the paper's name and ``convention`` how the paper computes it and how ours differs."""

    metric: str
    column: str
    paper: str
    higher_is_better: bool
    convention: str


@dataclass(frozen=True)
class PublishedRow:
    """One method's row of the cited table: ``values`` as (column, text) pairs, the text exactly as printed
    (e.g. ``".110"``); :meth:`value` parses it."""

    method: str
    values: tuple[tuple[str, str], ...]
    note: str = ""

    def text(self, column: str) -> str | None:
        return dict(self.values).get(column)

    def value(self, column: str) -> float | None:
        t = self.text(column)
        return None if t is None else float(t)


@dataclass(frozen=True)
class MetricOptionsSpec:
    """The :class:`evaluation.metrics.MetricOptions` fields the protocol pins."""

    crop_border: int = 0
    convention: str = "basicsr"
    fid_mode: str = "clean"
    fid_stats: str | None = None


@dataclass(frozen=True)
class Protocol:
    """A named, versioned evaluation protocol (see the module doc)."""

    name: str
    version: str
    title: str
    citation: str
    table: str
    testset: TestSetRecipe
    references: ReferenceRule
    metrics: tuple[MetricSpec, ...]
    options: MetricOptionsSpec = MetricOptionsSpec()
    published: tuple[PublishedRow, ...] = ()
    failures: str = ("an image that fails (model error, unreadable file) is recorded with its reason and left out "
                     "of the means; the summary counts it")
    notes: tuple[str, ...] = ()

    def validate(self) -> Protocol:
        if not _NAME_RE.match(self.name):
            raise ProtocolError(f"name: {self.name!r} must be lower-case [a-z0-9.-]")
        if not self.version:
            raise ProtocolError(f"{self.name}: version must not be empty")
        if self.references.kind not in ("none", "same-identity"):
            raise ProtocolError(f"{self.name}: references.kind must be 'none' or 'same-identity'")
        cols = [m.column for m in self.metrics]
        if len(set(cols)) != len(cols) or not cols:
            raise ProtocolError(f"{self.name}: metric columns must be unique and non-empty")
        for row in self.published:
            for c, t in row.values:
                if not isinstance(t, str):
                    raise ProtocolError(f"{self.name}: published {row.method}.{c} must be the printed text")
                float(t)
            extra = [c for c, _ in row.values if c not in cols]
            if extra:
                raise ProtocolError(f"{self.name}: published row {row.method!r} has column(s) {extra} that the "
                                    "protocol's metrics do not name")
        return self

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def metric_names(self) -> list[str]:
        return list(dict.fromkeys(m.metric for m in self.metrics))

    def spec(self, column: str) -> MetricSpec | None:
        return next((m for m in self.metrics if m.column == column), None)

    def to_dict(self) -> dict:
        return _plain(self)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def record(self) -> dict:
        """What a summary.json records about the protocol."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "citation": self.citation,
                "table": self.table}


def _plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_plain(v) for v in obj]
    return obj
