"""DATASET contract (``celebref build`` output; read with :class:`bfrcore.dataset.FaceDataset`).

Files: ``manifest.parquet`` (:data:`MANIFEST`), ``identities.parquet`` (:data:`IDENTITIES`),
``references.parquet`` (:data:`REFERENCES`), ``build.json`` (:class:`BuildInfo`). Tables may carry more columns
than the contract names (the builder adds stage-specific ones such as quality scores); the named ones must exist
with the named types. Value rules checked too: kept rows have unique ``image_id`` and non-null identity, path,
sha256 (64 hex digits) and split (train|test); rejected rows name reject_stage and reject_reason; landmarks are
136 floats; a reference is never the image itself.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field

from bfrcore.formats import (
    Column,
    Document,
    FormatError,
    NonEmptyStr,
    Sha256,
    check_columns,
    check_not_null,
    check_sha256,
    check_unique,
    first_bad,
    format_tag,
    show,
    table_schema,
    validate_model,
)

FORMAT = "celebref.dataset/1"
SPLITS = ("train", "test")
N_LANDMARK_VALUES = 136  # 68 (x, y) points, flat

MANIFEST = (
    Column("face_id", "string", nullable=False, doc="unique id of the candidate face (source hash + face index)"),
    Column("kept", "bool", nullable=False, doc="bool: in the dataset"),
    Column("reject_stage", "string",
           doc="stage that rejected it (ingest|faces|identity|curation|quality|dedup|splits) or null"),
    Column("reject_reason", "string", doc="machine-readable reason, e.g. no_face, low_sharpness, near_duplicate"),
    Column("identity", "string", doc="identity id (kept faces; clustered faces may keep it when rejected later)"),
    Column("image_id", "string", doc="<identity>_<n> for kept faces"),
    Column("path", "string", doc="images/<identity>/<n>.png relative to the dataset root (kept faces)"),
    Column("sha256", "string", doc="sha256 of the aligned PNG file (kept faces)"),
    Column("split", "string", doc="train | test (identity-disjoint) for kept faces"),
    Column("landmarks", "list<float>", doc="list of 136 floats: 68 (x, y) points in aligned-image pixels"),
    Column("source_path", "string", doc="where the photo came from (file path / archive member / URL)"),
    Column("source_sha256", "string", doc="sha256 of the source file bytes"),
    Column("curated", "string", required=False,
           doc="review actions applied to the face (`build --curation`), e.g. 'merge#3' or 'split#1;reject_face#4', "
               "else null"),
)
IDENTITIES = (
    Column("identity", "string", nullable=False, doc="identity id (file-name safe)"),
    Column("name", "string", doc="display name or null"),
    Column("n_images", "int", nullable=False, doc="kept images of this identity (>= 1)"),
    Column("split", "string", nullable=False, doc="train | test (| mixed with per-image splits)"),
)
REFERENCES = (
    Column("image_id", "string", nullable=False, doc="a test image"),
    Column("ref_image_id", "string", nullable=False, doc="a reference image of the same identity, never itself"),
    Column("rank", "int", nullable=False, doc="0, 1, ... (order of preference)"),
)


class Counts(Document):
    kept_images: int = Field(ge=0)
    identities: int = Field(ge=0)


class Params(Document):
    size: int = Field(gt=0)


class WeightRecord(Document):
    name: NonEmptyStr


class CurationRecord(Document):
    """build.json ``curation``: the curation file a build applied (``celebref build --curation``)."""

    file_sha256: Sha256
    reviewed_dataset_hash: Sha256
    actions: int = Field(ge=0)
    faces_curated: int = Field(ge=0)
    faces_rejected: int = Field(ge=0)
    n_warnings: int = Field(ge=0)


class BuildInfo(Document):
    """build.json: what the dataset is (format, content hash, counts) and how it was built (params, versions,
    weights). Further keys (sources, timings, stage keys, ...) are free-form."""

    format: Literal["celebref.dataset/1"]
    dataset_hash: Sha256
    params: Params
    counts: Counts
    build_format: str | None = None
    versions: dict[str, str | None] | None = None
    weights: list[WeightRecord] | None = None
    created: str | None = None
    seed: int | None = None
    curation: CurationRecord | None = None


# ----------------------------------------------------------------------------------------------- validators
def validate_build_info(doc: Any, path: str | os.PathLike, *, writing: bool = False) -> BuildInfo:
    format_tag(doc, path, (FORMAT,), writing=writing)
    return validate_model(BuildInfo, doc, path, writing=writing)


def validate_manifest(df, path: str | os.PathLike, *, schema=None, writing: bool = False) -> None:
    """manifest.parquet: contract columns/types (``schema``: the file's arrow schema; default: the one ``df``
    is written with) and the value rules of kept and rejected rows."""
    check_columns(schema if schema is not None else table_schema(df), MANIFEST, path, writing=writing,
                  num_rows=len(df))
    check_not_null(df, "face_id", path, writing=writing)
    check_not_null(df, "kept", path, writing=writing)
    kept = df["kept"].astype(bool).to_numpy()
    for col in ("image_id", "identity", "path", "sha256", "split"):
        check_not_null(df, col, path, writing=writing, rows=kept, what=" with kept=true")
    check_unique(df, "image_id", path, writing=writing, rows=kept, what=" among kept rows")
    check_sha256(df, "sha256", path, writing=writing, rows=kept, what=" for kept rows")
    split = df.loc[kept, "split"]
    bad = ~split.isin(SPLITS)
    if bad.any():
        raise FormatError(path, "split", "'train' or 'test' for kept rows", show(first_bad(bad, split)),
                          writing=writing)
    for col in ("reject_stage", "reject_reason"):
        check_not_null(df, col, path, writing=writing, rows=~kept, what=" with kept=false")
    lm = df["landmarks"]
    lm = lm[lm.notna()]
    if len(lm):
        n = lm.map(len)
        bad = n != N_LANDMARK_VALUES
        if bad.any():
            raise FormatError(path, "landmarks", f"{N_LANDMARK_VALUES} floats (68 x, y points) or null",
                              f"{int(first_bad(bad, n))} values", writing=writing)


def validate_identities(df, path: str | os.PathLike, *, schema=None, writing: bool = False) -> None:
    check_columns(schema if schema is not None else table_schema(df), IDENTITIES, path, writing=writing,
                  num_rows=len(df))
    for col in ("identity", "n_images", "split"):
        check_not_null(df, col, path, writing=writing)
    check_unique(df, "identity", path, writing=writing)
    bad = df["n_images"] < 1
    if bad.any():
        raise FormatError(path, "n_images", "an integer >= 1", show(first_bad(bad, df["n_images"])),
                          writing=writing)
    bad = ~df["split"].isin((*SPLITS, "mixed"))
    if bad.any():
        raise FormatError(path, "split", "'train', 'test' or 'mixed'", show(first_bad(bad, df["split"])),
                          writing=writing)


def validate_references(df, path: str | os.PathLike, *, schema=None, writing: bool = False) -> None:
    check_columns(schema if schema is not None else table_schema(df), REFERENCES, path, writing=writing,
                  num_rows=len(df))
    for col in ("image_id", "ref_image_id", "rank"):
        check_not_null(df, col, path, writing=writing)
    bad = (df["image_id"] == df["ref_image_id"]).to_numpy(dtype=bool)
    if bad.any():
        raise FormatError(path, "ref_image_id", "another image than image_id (never the image itself)",
                          show(first_bad(bad, df["ref_image_id"])), writing=writing)
    bad = (df["rank"] < 0).to_numpy(dtype=bool)
    if bad.any():
        raise FormatError(path, "rank", "an integer >= 0", show(first_bad(bad, df["rank"])), writing=writing)
