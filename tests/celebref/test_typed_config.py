"""The one typed-config parser behind `celebref build` and `bench train` configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from bfrcore.typed_config import Rules, parse_dataclass, parse_overrides, set_dotted, to_plain


class MyError(ValueError):
    pass


@dataclass(frozen=True)
class Inner:
    k: int = 1
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str
    ratio: float = 0.5
    limit: int | None = None
    upsample: int | Literal["auto"] = "auto"
    exts: tuple[str, ...] = ("png",)
    betas: tuple[float, float] = (0.9, 0.99)
    weights: dict[str, float] = field(default_factory=dict)
    extra: Any = None
    inner: Inner = field(default_factory=Inner)


def parse(raw):
    return parse_dataclass(Outer, raw, "", MyError)


def test_values_are_typed_and_round_trip():
    cfg = parse({"name": "x", "ratio": 1, "exts": ["jpg", "png"], "betas": [0.5, 0.9], "weights": {"a": 2},
                 "upsample": 2, "extra": [1, {"z": 2}], "inner": None})
    assert cfg.ratio == 1.0 and isinstance(cfg.ratio, float)
    assert cfg.exts == ("jpg", "png") and cfg.betas == (0.5, 0.9) and cfg.weights == {"a": 2.0}
    assert cfg.upsample == 2 and cfg.inner == Inner()  # a null section is all defaults
    assert parse(to_plain(cfg)) == cfg
    assert to_plain(cfg)["exts"] == ["jpg", "png"]


@pytest.mark.parametrize("raw, match", [
    ({"name": "x", "ratoi": 1, "zz": 2}, r"^ratoi: unknown key \(and zz\) \(valid keys of config: "),
    ({"name": "x", "inner": {"kk": 1}}, r"^inner\.kk: unknown key \(valid keys of inner: k, mode\)"),
    ({}, r"^name: required key is missing"),
    ({"name": "x", "ratio": "high"}, r"^ratio: expected a number"),
    ({"name": "x", "ratio": True}, r"^ratio: expected a number"),
    ({"name": "x", "limit": 2.5}, r"^limit: expected an integer, got float 2\.5 \(or null\)"),
    ({"name": "x", "upsample": "never"}, r"^upsample: expected int or Literal"),
    ({"name": "x", "inner": {"mode": "c"}}, r"^inner\.mode: must be one of 'a', 'b'; 'c' is not one of them"),
    ({"name": "x", "exts": "png"}, r"^exts: expected a list"),
    ({"name": "x", "exts": ["png", 3]}, r"^exts\[1\]: expected a string"),
    ({"name": "x", "betas": [0.9]}, r"^betas: expected a list of 2 values"),
    ({"name": "x", "weights": {"a": "b"}}, r"^weights\.a: expected a number"),
    ({"name": "x", "inner": [1]}, r"^inner: expected a mapping"),
    ("text", r"^config: expected a mapping"),
])
def test_errors_name_the_key_and_use_the_callers_class(raw, match):
    with pytest.raises(MyError, match=match):
        parse(raw)


def test_set_dotted():
    raw = {"a": {"b": 1}, "c": 2}
    set_dotted(raw, "a.d.e", 3, MyError)
    set_dotted(raw, "f", 4, MyError)
    assert raw == {"a": {"b": 1, "d": {"e": 3}}, "c": 2, "f": 4}
    with pytest.raises(MyError, match=r"c\.x: c is not a section"):
        set_dotted(raw, "c.x", 1, MyError)


# ----------------------------------------------------------------------------------------------- families' rules
@dataclass(frozen=True)
class Span:
    lo: float
    hi: float


@dataclass(frozen=True)
class Spec:
    sizes: tuple[int, ...] = (3,)
    span: Span = Span(0.0, 1.0)
    maybe: Span | None = None
    version: str = "1"


def _span(v, key):
    if isinstance(v, (int, float)):
        return Span(float(v), float(v))
    if isinstance(v, list) and len(v) == 2:
        return Span(float(v[0]), float(v[1]))
    raise MyError(f"{key}: a span is [lo, hi] or a number, got {v!r}")


LENIENT = Rules(converters={Span: _span}, key_converters={"version": lambda v, k: str(v)}, scalar_as_list=True,
                integral_floats=True, accept_instances=True, or_null_hint=False, top="spec",
                unknown_keys_message=lambda where, unknown, valid: f"{where}: unknown key(s) {unknown}",
                missing_key_message=lambda where, key: f"{where}: missing {key!r}")


def test_rules_extend_the_one_parser_for_a_family():
    """What presets need (a converter for a type, a single value as a one-element list, 3.0 for an int, a numeric
    version), opted into per family; the strict rules still refuse all of it."""
    spec = parse_dataclass(Spec, {"sizes": 5.0, "span": [1, 2], "maybe": 3, "version": 2}, "", MyError, rules=LENIENT)
    assert spec == Spec(sizes=(5,), span=Span(1.0, 2.0), maybe=Span(3.0, 3.0), version="2")
    assert isinstance(spec.sizes[0], int)
    assert parse_dataclass(Spec, spec, "", MyError, rules=LENIENT) is spec
    with pytest.raises(MyError, match=r"^sizes\[0\]: expected an integer, got float 2\.5$"):
        parse_dataclass(Spec, {"sizes": [2.5]}, "", MyError, rules=LENIENT)
    with pytest.raises(MyError, match=r"^maybe: a span is \[lo, hi\] or a number, got 'x'$"):  # no "(or null)"
        parse_dataclass(Spec, {"maybe": "x"}, "", MyError, rules=LENIENT)
    with pytest.raises(MyError, match=r"^spec: unknown key\(s\) \['bad'\]$"):
        parse_dataclass(Spec, {"bad": 1}, "", MyError, rules=LENIENT)
    with pytest.raises(MyError, match=r"^spec: missing 'lo'$"):
        parse_dataclass(Span, {"hi": 1}, "", MyError, rules=LENIENT)
    with pytest.raises(MyError, match=r"^sizes: expected a list"):
        parse_dataclass(Spec, {"sizes": 5}, "", MyError)
    with pytest.raises(MyError, match=r"^sizes\[0\]: expected an integer, got float 5\.0"):
        parse_dataclass(Spec, {"sizes": [5.0]}, "", MyError)
    with pytest.raises(MyError, match=r"^span: expected a mapping, got list"):  # no converter: a plain section
        parse_dataclass(Spec, {"span": [1, 2]}, "", MyError)


def test_parse_overrides_replaces_only_the_given_fields():
    base = Outer(name="base", ratio=0.25, exts=("jpg",))
    got = parse_overrides(base, {"ratio": 1, "betas": [0.1, 0.2]}, "", MyError)
    assert got == Outer(name="base", ratio=1.0, exts=("jpg",), betas=(0.1, 0.2)) and isinstance(got.ratio, float)
    assert parse_overrides(base, {}, "", MyError) == base
    with pytest.raises(MyError, match=r"^ratoi: unknown key"):
        parse_overrides(base, {"ratoi": 1}, "", MyError)
    with pytest.raises(MyError, match=r"^limit: expected an integer"):
        parse_overrides(base, {"limit": "many"}, "", MyError)


def test_read_yaml_mapping_names_the_file_and_the_problem(tmp_path):
    """The one YAML reader of the build, training and model configs."""
    from bfrcore.typed_config import read_yaml_mapping

    class Bad(ValueError):
        pass

    good = tmp_path / "good.yaml"
    good.write_text("a: 1\nb: {c: two}\n")
    assert read_yaml_mapping(good, "build config", Bad) == {"a": 1, "b": {"c": "two"}}
    cases = {"missing.yaml": None, "list.yaml": "- 1\n- 2\n", "broken.yaml": "a: [1\n", "empty.yaml": ""}
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
    with pytest.raises(Bad, match=r"config file .*missing.yaml not found"):
        read_yaml_mapping(tmp_path / "missing.yaml", "build config", Bad)
    with pytest.raises(Bad, match=r"list.yaml: a training config must be a YAML mapping"):
        read_yaml_mapping(tmp_path / "list.yaml", "training config", Bad)
    with pytest.raises(Bad, match=r"broken.yaml: not valid YAML"):
        read_yaml_mapping(tmp_path / "broken.yaml", "model config", Bad)
    with pytest.raises(Bad, match="must be a YAML mapping"):
        read_yaml_mapping(tmp_path / "empty.yaml", "training config", Bad)
    assert read_yaml_mapping(tmp_path / "empty.yaml", "build config", Bad, empty_ok=True) == {}
