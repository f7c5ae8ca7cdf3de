"""RESULTS contract (``bench evaluate`` / ``bench score`` output; read by :mod:`leaderboard.store`).

Files of ``R/<model>/<testset name>/<mode>/``: ``metrics.parquet`` (:data:`METRICS` plus one float column per
metric) and ``summary.json`` (:class:`Summary`; each entry of ``metrics`` is a :class:`MetricEntry`).

A summary is usable when its file-level keys are valid; a metric entry that is not valid is dropped on its own
(:func:`validate_summary` returns them), so one bad metric does not hide the others.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import Field

from bfrcore.formats import (
    Column,
    Document,
    FormatError,
    NonEmptyStr,
    check_columns,
    check_not_null,
    check_unique,
    first_bad,
    format_tag,
    show,
    table_schema,
    validate_model,
)

FORMAT = "celebref.summary/1"
MODES = ("generic", "specific")

METRICS = (
    Column("image_id", "string", nullable=False, doc="test-set image id"),
    Column("status", "string", nullable=False, doc="ok | failed"),
    Column("reason", "string", doc="why it failed (null when ok)"),
    Column("landmarks_source", "string", doc="where the LQ landmarks came from (dataset, detector, ...)"),
    Column("n_refs", "int", doc="reference images given to the model"),
    Column("seconds", "float", doc="restoration time of this image, s"),
)


class TestSetRef(Document):
    __test__ = False  # not a pytest class

    name: NonEmptyStr
    hash: NonEmptyStr
    severity: float | None = None
    path: str | None = None
    preset: str | None = None
    preset_version: str | None = None
    dataset_hash: str | None = None


class Weights(Document):
    name: str | None = None
    sha256: str | None = None


class Failure(Document):
    image_id: str
    reason: str | None


class Summary(Document):
    """summary.json (file-level keys; ``metrics`` entries are checked one by one with :class:`MetricEntry`)."""

    format: Literal["celebref.summary/1"]
    model: NonEmptyStr
    mode: Literal["generic", "specific"]
    testset: TestSetRef
    weights: Weights | None = None
    model_config_: str | dict[str, Any] | None = Field(default=None, alias="model_config")
    metrics: dict[str, Any]
    unavailable: dict[str, str] = {}
    n_images: int | None = Field(default=None, ge=0)
    n_scored: int | None = Field(default=None, ge=0)
    failures: list[Failure] = []
    created: str | None = None
    versions: dict[str, str | None] | None = None
    device: str | None = None
    seconds: float | None = None
    testset_verified: bool | None = None


class MetricEntry(Document):
    higher_is_better: bool
    mean: float | None
    ci95: Annotated[list[float | None], Field(min_length=2, max_length=2)] | None = None  # [low, high]
    n: int | None = Field(default=None, ge=0)
    convention: str | None = None


def validate_summary(doc: Any, path: str | os.PathLike, *, writing: bool = False) -> list[FormatError]:
    """Check a parsed summary.json. Raises :class:`FormatError` for file-level problems; returns one FormatError
    per metric entry that must be dropped (field ``metrics.<name>.<key>``)."""
    format_tag(doc, path, (FORMAT,), writing=writing)
    validate_model(Summary, doc, path, writing=writing)
    dropped = []
    for name, entry in doc["metrics"].items():
        try:  # higher_is_better is checked first: the direction is never guessed
            validate_model(MetricEntry, entry, path, writing=writing, prefix=f"metrics.{name}.")
        except FormatError as e:
            dropped.append(e)
    if writing and dropped:
        raise dropped[0]
    return dropped


def validate_metrics_table(df, path: str | os.PathLike, *, schema=None, metric_columns=(),
                           writing: bool = False) -> None:
    """metrics.parquet: base columns, float metric columns, unique ids, status ok|failed."""
    cols = METRICS + tuple(Column(m, "float") for m in metric_columns)
    check_columns(schema if schema is not None else table_schema(df), cols, path, writing=writing,
                  num_rows=len(df))
    check_not_null(df, "image_id", path, writing=writing)
    check_not_null(df, "status", path, writing=writing)
    check_unique(df, "image_id", path, writing=writing)
    bad = ~df["status"].isin(("ok", "failed"))
    if bad.any():
        raise FormatError(path, "status", "'ok' or 'failed'", show(first_bad(bad, df["status"])), writing=writing)
