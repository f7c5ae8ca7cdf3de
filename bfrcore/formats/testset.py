"""TESTSET contract (``bench degrade`` output; read with :class:`bfrcore.testset.TestSet`).

Files: ``params.parquet`` (:data:`PARAMS` plus one scalar column per sampled parameter) and ``testset.json``
(:class:`TestSetInfo`). Value rules: unique non-null image ids, one row per generated image (``n_images``),
``lq_sha256`` a sha256 per row.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field

from bfrcore.formats import (
    Closed,
    Column,
    Document,
    FormatError,
    NonEmptyStr,
    Sha256,
    check_columns,
    check_not_null,
    check_sha256,
    check_unique,
    format_tag,
    table_schema,
    validate_model,
)

FORMAT = "celebref.testset/1"

PARAMS = (
    Column("image_id", "string", nullable=False, doc="the dataset image this input was made from"),
    Column("seed", "int", nullable=False, doc="item_seed(global seed, image_id)"),
    Column("kernel_sha256", "string", doc="sha256 of the blur kernel array (null: no blur)"),
    Column("lq_sha256", "string", nullable=False, doc="sha256 of lq/<image_id>.png (file bytes)"),
    Column("lq_pixel_sha256", "string", nullable=False, doc="sha256 of the decoded LQ pixels"),
)


class DatasetRef(Document):
    root: str | None
    hash: Sha256
    root_relative: str | None = None
    image_size: int | None = Field(default=None, gt=0)


class SkippedItem(Closed):
    image_id: str
    reason: str


class TestSetInfo(Document):
    """testset.json."""

    __test__ = False  # not a pytest class

    format: Literal["celebref.testset/1"]
    name: NonEmptyStr
    preset: dict[str, Any]
    preset_name: NonEmptyStr
    preset_version: NonEmptyStr
    seed: int = Field(ge=0)
    split: Literal["train", "test"] | None
    dataset: DatasetRef
    n_images: int = Field(ge=1)
    testset_hash: Sha256
    severity: float | None
    versions: dict[str, str | None]
    created: str
    skipped: list[SkippedItem] = []
    seed_scheme: str | None = None
    jpeg_rounding: str | None = None


def validate_info(doc: Any, path: str | os.PathLike, *, writing: bool = False) -> TestSetInfo:
    format_tag(doc, path, (FORMAT,), writing=writing)
    return validate_model(TestSetInfo, doc, path, writing=writing)


def validate_params(df, path: str | os.PathLike, *, schema=None, n_images: int | None = None,
                    writing: bool = False) -> None:
    """params.parquet: contract columns, scalar parameter columns, unique ids, ``n_images`` rows when given."""
    check_columns(schema if schema is not None else table_schema(df), PARAMS, path, writing=writing,
                  num_rows=len(df), extra_scalar=True)
    for col in ("image_id", "seed", "lq_sha256", "lq_pixel_sha256"):
        check_not_null(df, col, path, writing=writing)
    check_unique(df, "image_id", path, writing=writing)
    check_sha256(df, "lq_sha256", path, writing=writing)
    if n_images is not None and len(df) != n_images:
        raise FormatError(path, "image_id", f"{n_images} rows (testset.json n_images)", f"{len(df)} rows",
                          writing=writing)
