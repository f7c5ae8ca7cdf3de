"""Format contracts of every artefact the stages exchange (docs/CONTRACTS.md), one module per artefact.

    bfrcore.formats.dataset   DATASET  parquet tables + build.json                 celebref.dataset/1
    bfrcore.formats.testset   TESTSET  params.parquet + testset.json               celebref.testset/1
    bfrcore.formats.run       RUN      checkpoint header, summary.json, config.yaml celebref.checkpoint/1, ...
    bfrcore.formats.results   RESULTS  metrics.parquet + summary.json              celebref.summary/1
    bfrcore.formats.hub       Hub upload folder: parquet shards + README front matter  celebref.hub/1

JSON/YAML documents are checked with pydantic v2 models, parquet tables with their pyarrow schema (column names and
types) plus a few vectorised value checks. Writers validate before writing (a bug in a writer raises
:class:`FormatError` instead of leaving a malformed artefact); readers validate on load. This package imports
nothing else of the project, so every stage can use it without import cycles.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

__all__ = ["FormatError", "Column", "Document", "check_columns", "validate_model", "Sha256", "NonEmptyStr"]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class FormatError(ValueError):
    """A file that does not follow its format contract. ``str()`` is one line:
    ``<path>: field '<field>': expected <expected>, got <got>``.

    ``writing`` is True when our own writer produced the bad content (a bug: the CLIs exit 1 with a traceback),
    False when an input file is malformed (bad input: exit 2)."""

    def __init__(self, path: str | os.PathLike, field: str, expected: str, got: str, *, writing: bool = False):
        self.path = str(path)
        self.field = field
        self.expected = expected
        self.got = got
        self.writing = writing
        super().__init__(f"{self.path}: {self.detail}")

    def __reduce__(self):  # picklable (raised in worker processes too)
        return (type(self), (self.path, self.field, self.expected, self.got), {"writing": self.writing})

    @property
    def detail(self) -> str:
        """The message without the file: ``field '<field>': expected <expected>, got <got>``."""
        return f"field '{self.field}': expected {self.expected}, got {self.got}"


def show(v: Any, limit: int = 60) -> str:
    """A short repr of an offending value for messages."""
    if isinstance(v, Mapping):
        return "an object"
    if isinstance(v, (list, tuple)) and len(repr(v)) > limit:
        return f"a list of {len(v)} items"
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 1] + "…"


# ----------------------------------------------------------------------------------------------- JSON documents
def _sha256(v: str) -> str:
    if not _SHA256_RE.match(v):
        raise ValueError("a sha256 (64 lowercase hex digits)")
    return v


def _non_empty(v: str) -> str:
    if not v.strip():
        raise ValueError("a non-empty string")
    return v


Sha256 = Annotated[str, AfterValidator(_sha256)]
NonEmptyStr = Annotated[str, AfterValidator(_non_empty)]


class Document(BaseModel):
    """Base of the JSON document models: strict types (no "5" -> 5, no true -> 1), unknown keys allowed (a
    document may carry more than the contract names; the named keys must have the named types)."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class Closed(Document):
    """A document model whose keys are all named (unknown keys are refused)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _field_path(loc: Iterable, doc: Any) -> str:
    """pydantic's error location as a dotted key path (``a.b[2].c``). Elements that are not keys of the
    document at that level (pydantic's names of union members) are left out."""
    parts: list[str] = []
    obj, inside = doc, True
    locs = list(loc)
    for k, x in enumerate(locs):
        last = k == len(locs) - 1
        if inside and isinstance(obj, Mapping) and x in obj:
            obj = obj[x]
        elif inside and isinstance(obj, (list, tuple)) and isinstance(x, int) and 0 <= x < len(obj):
            obj = obj[x]
        elif inside and not (last and isinstance(obj, Mapping)):
            continue  # a union member's name, not a key
        else:
            inside = False  # a missing key (the last element) or below it
        parts.append(f"[{x}]" if isinstance(x, int) else ("." if parts else "") + str(x))
    return "".join(parts) or "(document)"


def _expected(err: dict) -> str:
    t, msg = err.get("type", ""), err.get("msg", "")
    if t == "missing":
        return "a value (required key)"
    if t == "extra_forbidden":
        return "no such key"
    if t == "value_error":
        return msg.removeprefix("Value error, ")
    return msg.removeprefix("Input should be ").removeprefix("Input ")


def validate_model(model: type[BaseModel], doc: Any, path: str | os.PathLike, *, writing: bool = False,
                   prefix: str = "") -> BaseModel:
    """Validate ``doc`` (parsed JSON/YAML) against ``model``; raise :class:`FormatError` for the first problem."""
    try:
        return model.model_validate(doc)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        field = _field_path(err.get("loc", ()), doc)
        got = "nothing" if err.get("type") == "missing" else show(err.get("input"))
        raise FormatError(path, prefix + field if field != "(document)" else (prefix.rstrip(".") or field),
                          _expected(err), got, writing=writing) from None


def format_tag(doc: Any, path: str | os.PathLike, accepted: Iterable[str], *, writing: bool = False) -> str:
    """Check the ``format`` key first (a clear message for a file of another kind or version)."""
    accepted = tuple(accepted)
    if not isinstance(doc, Mapping):
        raise FormatError(path, "(document)", "a JSON object", type(doc).__name__, writing=writing)
    fmt = doc.get("format")
    if fmt not in accepted:
        raise FormatError(path, "format", " or ".join(repr(a) for a in accepted),
                          "nothing" if "format" not in doc else show(fmt), writing=writing)
    return fmt


# ----------------------------------------------------------------------------------------------- parquet tables
#: Column kinds and the arrow types that satisfy them (an all-null column is written with arrow type null).
KINDS = ("string", "bool", "int", "float", "list<float>", "list<string>", "image")


@dataclass(frozen=True)
class Column:
    """One contract column of a parquet table: name, kind (see :data:`KINDS`), required, nullable."""

    name: str
    kind: str
    required: bool = True
    nullable: bool = True
    doc: str = ""


def _type_ok(t, kind: str, nullable: bool) -> bool:
    import pyarrow as pa

    if pa.types.is_null(t):
        return nullable
    if kind == "string":
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if kind == "bool":
        return pa.types.is_boolean(t)
    if kind == "int":
        return pa.types.is_integer(t)
    if kind == "float":
        return pa.types.is_floating(t) or pa.types.is_integer(t)
    if kind in ("list<float>", "list<string>"):
        if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
            return False
        return _type_ok(t.value_type, kind[5:-1], True)
    if kind == "image":  # datasets.Image(): struct<bytes: binary, path: string>
        return pa.types.is_struct(t) and {t.field(i).name for i in range(t.num_fields)} >= {"bytes", "path"}
    raise ValueError(f"unknown column kind {kind!r}")


_KIND_TEXT = {"string": "a string", "bool": "a bool", "int": "an integer", "float": "a float (or integer)",
              "list<float>": "a list-of-floats", "list<string>": "a list-of-strings",
              "image": "an image struct {bytes, path}"}


def check_columns(schema, columns: Iterable[Column], path: str | os.PathLike, *, writing: bool = False,
                  extra_scalar: bool = False, num_rows: int | None = None) -> None:
    """Check an arrow schema against contract columns: each required column present with an acceptable type.
    ``extra_scalar``: other columns must be scalar (string/bool/integer/float), e.g. sampled parameters.
    ``num_rows == 0``: an empty table, whose columns may all have arrow type null."""
    import pyarrow as pa

    names = set(schema.names)
    named = set()
    for col in columns:
        named.add(col.name)
        if col.name not in names:
            if col.required:
                raise FormatError(path, col.name, f"{_KIND_TEXT[col.kind]} column", "no such column",
                                  writing=writing)
            continue
        t = schema.field(col.name).type
        if not _type_ok(t, col.kind, col.nullable or num_rows == 0):
            raise FormatError(path, col.name, f"{_KIND_TEXT[col.kind]} column"
                              + ("" if col.nullable else " without nulls"), f"type {t}", writing=writing)
    if extra_scalar:
        for name in schema.names:
            if name in named:
                continue
            t = schema.field(name).type
            if not (pa.types.is_null(t) or any(_type_ok(t, k, True) for k in ("string", "bool", "float"))):
                raise FormatError(path, name, "a scalar column (string, bool, integer or float)", f"type {t}",
                                  writing=writing)


def table_schema(df) -> Any:
    """The arrow schema a DataFrame is written with (``df.to_parquet(index=False)``)."""
    import pyarrow as pa

    return pa.Schema.from_pandas(df, preserve_index=False)


def parquet_schema(path: str | os.PathLike) -> Any:
    """The arrow schema of a parquet file (its footer only); FormatError when it is not parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise FormatError(path, "(file)", "a parquet file", f"unreadable ({str(e).splitlines()[0][:80]})") from None


def first_bad(mask, values) -> Any:
    """The first value where boolean ``mask`` is True (for messages)."""
    import numpy as np

    idx = np.flatnonzero(np.asarray(mask, dtype=bool))
    return values.iloc[idx[0]] if len(idx) else None


def check_not_null(df, col: str, path, *, writing: bool, rows=None, what: str = "") -> None:
    s = df[col] if rows is None else df.loc[rows, col]
    bad = s.isna()
    if bad.any():
        raise FormatError(path, col, f"a value in every row{what}", f"null in {int(bad.sum())} row(s)",
                          writing=writing)


def check_unique(df, col: str, path, *, writing: bool, rows=None, what: str = "") -> None:
    s = df[col] if rows is None else df.loc[rows, col]
    dup = s.duplicated()
    if dup.any():
        raise FormatError(path, col, f"unique values{what}", f"{show(first_bad(dup, s))} repeated",
                          writing=writing)


def check_sha256(df, col: str, path, *, writing: bool, rows=None, what: str = "") -> None:
    s = df[col] if rows is None else df.loc[rows, col]
    s = s[s.notna()]
    ok = s.astype(str).str.fullmatch(r"[0-9a-f]{64}")
    if not ok.all():
        raise FormatError(path, col, f"sha256 hex digests (64 lowercase hex digits){what}",
                          show(first_bad(~ok.to_numpy(), s)), writing=writing)
