"""Typed configs: frozen dataclasses parsed from plain mappings (parsed YAML) with errors that name the key.

One parser for every config of the suite (`celebref build`, `bench train`):

- every field of a dataclass is an accepted key, anything else is an error naming the key and the valid ones;
- values are checked against the field annotations: ``bool``, ``int``, ``float`` (ints accepted), ``str``,
  ``Literal[...]``, ``X | None``, ``tuple[X, ...]`` / ``tuple[X, Y]`` (from YAML lists), ``dict[K, V]``, nested
  dataclasses (a ``null`` section means "all defaults") and ``Any``;
- fields without a default are required.

The caller passes its own exception type, so each tool keeps its error class (and exit code). A family of configs
that accepts more than these strict rules says so with :class:`Rules` (degradation presets: ranges written
``[lo, hi]`` / a number / ``{lo, hi, step}``, a single value for a one-element list, ``3.0`` for an integer).
:func:`parse_overrides` applies a mapping of fields onto an existing instance (model configs: overrides on a
named base config).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Rules:
    """What one family of configs accepts beyond the strict defaults, and how it words the structural errors."""

    #: annotation -> ``fn(value, key)``: parses the values of a type this parser does not know (e.g. ``Range``);
    #: the function raises the caller's error itself
    converters: Mapping[Any, Callable[[Any, str], Any]] = field(default_factory=dict)
    #: dotted key -> ``fn(value, key)``: the conversion of one key (e.g. a numeric ``version`` read as a string)
    key_converters: Mapping[str, Callable[[Any, str], Any]] = field(default_factory=dict)
    #: a single value where a list is expected is a one-element list (``kernel_size: 41``)
    scalar_as_list: bool = False
    #: a float with an integral value (``3.0``) is accepted for an ``int`` field
    integral_floats: bool = False
    #: a value that already is an instance of the section's dataclass is taken as is (Python callers)
    accept_instances: bool = False
    #: append "(or null)" to the error of a value that may also be null
    or_null_hint: bool = True
    #: the name of the top level in messages
    top: str = "config"
    #: ``(section, unknown keys, valid keys) -> message``; None: the default wording
    unknown_keys_message: Callable[[str, list[str], list[str]], str] | None = None
    #: ``(section, missing key) -> message``; None: the default wording
    missing_key_message: Callable[[str, str], str] | None = None


#: the suite's configs (``celebref build``, ``bench train``): exactly the annotated types
STRICT = Rules()


def to_plain(obj: Any) -> Any:
    """Dataclass -> plain dict/list values (tuples become lists), for JSON/YAML, hashing and checkpoints."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def read_yaml_mapping(path: str | os.PathLike, what: str, error: type[Exception] = ValueError,
                      *, empty_ok: bool = False) -> dict:
    """The mapping at the top of YAML file ``path`` (safe loader). Errors (``error``) name the file: not found, not
    valid YAML, or not "a ``what`` must be a YAML mapping". ``empty_ok``: an empty file is ``{}``."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise error(f"config file {p} not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise error(f"{p}: not valid YAML ({e})") from None
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        raise error(f"{p}: a {what} must be a YAML mapping")
    return data


def set_dotted(raw: dict, dotted: str, value: Any, error: type[Exception] = ValueError) -> None:
    """``raw["a"]["b"] = value`` for ``dotted = "a.b"``, creating missing sections."""
    parts = dotted.strip().split(".")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise error(f"{dotted}: {p} is not a section")
    node[parts[-1]] = value


def parse_dataclass(cls: type, raw: Any, where: str = "", error: type[Exception] = ValueError, *,
                    rules: Rules = STRICT) -> Any:
    """An instance of dataclass ``cls`` from the mapping ``raw``; ``where`` is the dotted key of this section."""
    if rules.accept_instances and isinstance(raw, cls):
        return raw
    return cls(**_section(cls, raw, where, error, rules, required=True))


def parse_overrides(base: Any, raw: Any, where: str = "", error: type[Exception] = ValueError, *,
                    rules: Rules = STRICT) -> Any:
    """``base`` (a dataclass instance) with the fields given in the mapping ``raw`` replaced, each checked against
    its annotation as :func:`parse_dataclass` does; fields not in ``raw`` keep the base's values."""
    return dataclasses.replace(base, **_section(type(base), raw, where, error, rules, required=False))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _section(cls: type, raw: Any, where: str, error: type[Exception], rules: Rules, *,
             required: bool) -> dict[str, Any]:
    """The converted values of the keys ``raw`` gives, after the unknown-key check; ``required``: a field without a
    default that ``raw`` lacks is an error (fields are checked in their order)."""
    if raw is None:
        raw = {}
    name = where or rules.top
    if not isinstance(raw, Mapping):
        raise error(f"{name}: expected a mapping, got {type(raw).__name__} {raw!r}")
    hints = _hints(cls)
    fields = _fields(cls)
    unknown = sorted(str(k) for k in raw if k not in fields)
    if unknown:
        if rules.unknown_keys_message is not None:
            raise error(rules.unknown_keys_message(name, unknown, sorted(fields)))
        more = f" (and {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
        raise error(f"{where + '.' if where else ''}{unknown[0]}: unknown key{more} (valid keys of {name}: "
                    f"{', '.join(sorted(fields))})")
    kwargs = {}
    for key, f in fields.items():
        dotted = f"{where}.{key}" if where else key
        if key in raw:
            kwargs[key] = _coerce(raw[key], hints[key], dotted, error, rules)
        elif required and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if rules.missing_key_message is not None:
                raise error(rules.missing_key_message(name, key))
            raise error(f"{dotted}: required key is missing")
    return kwargs


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, error: type[Exception], rules: Rules = STRICT) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if key in rules.key_converters:
        return rules.key_converters[key](value, key)
    if tp is Any:
        return value
    if tp in rules.converters:
        return rules.converters[tp](value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own message
            try:
                return _coerce(value, options[0], key, error, rules)
            except error as e:
                raise error(f"{e} (or null)" if type(None) in args and rules.or_null_hint else str(e)) from None
        for a in options:
            try:
                return _coerce(value, a, key, error, rules)
            except error:
                continue
        raise error(f"{key}: expected {' or '.join(_type_name(a) for a in options)}, got "
                    f"{type(value).__name__} {value!r}")
    if origin is Literal:
        if value not in args:
            raise error(f"{key}: must be one of {', '.join(map(repr, args))}; {value!r} is not one of them")
        return value
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, key, error, rules=rules)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            if not rules.scalar_as_list:
                raise error(f"{key}: expected a list, got {type(value).__name__} {value!r}")
            value = [value]  # a single value is a one-element list
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]", error, rules) for i, v in enumerate(value))
        if len(value) != len(args):
            raise error(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]", error, rules) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        kt, vt = args
        if not isinstance(value, Mapping):
            raise error(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return {_coerce(k, kt, key, error, rules): _coerce(v, vt, f"{key}.{k}", error, rules) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise error(f"{key}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if rules.integral_floats and isinstance(value, float) and value.is_integer():
            return int(value)
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
