"""Typed configs: frozen dataclasses parsed from plain mappings (parsed YAML) with errors that name the key.

One parser for every config of the suite (`celebref build`, `bench train`):

- every field of a dataclass is an accepted key, anything else is an error naming the key and the valid ones;
- values are checked against the field annotations: ``bool``, ``int``, ``float`` (ints accepted), ``str``,
  ``Literal[...]``, ``X | None``, ``tuple[X, ...]`` / ``tuple[X, Y]`` (from YAML lists), ``dict[K, V]``, nested
  dataclasses (a ``null`` section means "all defaults") and ``Any``;
- fields without a default are required.

The caller passes its own exception type, so each tool keeps its error class (and exit code).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal


def to_plain(obj: Any) -> Any:
    """Dataclass -> plain dict/list values (tuples become lists), for JSON/YAML, hashing and checkpoints."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def set_dotted(raw: dict, dotted: str, value: Any, error: type[Exception] = ValueError) -> None:
    """``raw["a"]["b"] = value`` for ``dotted = "a.b"``, creating missing sections."""
    parts = dotted.strip().split(".")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise error(f"{dotted}: {p} is not a section")
    node[parts[-1]] = value


def parse_dataclass(cls: type, raw: Any, where: str = "", error: type[Exception] = ValueError) -> Any:
    """An instance of dataclass ``cls`` from the mapping ``raw``; ``where`` is the dotted key of this section."""
    if raw is None:
        raw = {}
    name = where or "config"
    if not isinstance(raw, Mapping):
        raise error(f"{name}: expected a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in raw if k not in fields)
    if unknown:
        more = f" (and {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
        raise error(f"{where + '.' if where else ''}{unknown[0]}: unknown key{more} (valid keys of {name}: "
                    f"{', '.join(sorted(fields))})")
    kwargs = {}
    for key, f in fields.items():
        dotted = f"{where}.{key}" if where else key
        if key in raw:
            kwargs[key] = _coerce(raw[key], hints[key], dotted, error)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise error(f"{dotted}: required key is missing")
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, error: type[Exception]) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own message
            try:
                return _coerce(value, options[0], key, error)
            except error as e:
                raise error(f"{e} (or null)" if type(None) in args else str(e)) from None
        for a in options:
            try:
                return _coerce(value, a, key, error)
            except error:
                continue
        raise error(f"{key}: expected {' or '.join(_type_name(a) for a in options)}, got "
                    f"{type(value).__name__} {value!r}")
    if origin is Literal:
        if value not in args:
            raise error(f"{key}: must be one of {', '.join(map(repr, args))}; {value!r} is not one of them")
        return value
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, key, error)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise error(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]", error) for i, v in enumerate(value))
        if len(value) != len(args):
            raise error(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]", error) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        kt, vt = args
        if not isinstance(value, Mapping):
            raise error(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return {_coerce(k, kt, key, error): _coerce(v, vt, f"{key}.{k}", error) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise error(f"{key}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise error(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise error(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")  # a bug in the dataclass, not in the YAML
