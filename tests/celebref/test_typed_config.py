"""The one typed-config parser behind `celebref build` and `bench train` configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from bfrcore.typed_config import parse_dataclass, set_dotted, to_plain


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
