"""Presets: registry, YAML round trips, strict validation with clear messages."""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from degradations.presets import (
    BlurSpec,
    ColorJitterSpec,
    ColorShiftSpec,
    JpegSpec,
    NoiseSpec,
    Preset,
    PresetError,
    Range,
    ResizeSpec,
    get_preset,
    list_presets,
)

REQUIRED = {"gfpgan", "dfdnet", "refldm-moderate", "refldm-severe", "celebref-x4", "celebref-x8", "celebref-x16",
            "realesrgan"}


def test_registry_has_the_required_presets():
    names = list_presets()
    assert REQUIRED <= set(names) and names == sorted(names)
    for n in names:
        p = get_preset(n)
        assert p.name == n and p.version and p.description and p.nominal_severity > 0
    assert [get_preset(f"celebref-x{s}").nominal_severity for s in (4, 8, 16)] == [4.0, 8.0, 16.0]
    assert get_preset("refldm-severe").nominal_severity > get_preset("refldm-moderate").nominal_severity


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_preset_round_trips_through_yaml(name, tmp_path):
    p = get_preset(name)
    text = p.to_yaml()
    assert Preset.from_yaml(text) == p
    assert Preset.from_dict(p.to_dict()) == p
    f = tmp_path / f"{name}.yaml"
    f.write_text(text)
    assert get_preset(str(f)) == p
    assert get_preset(p.to_dict()) == p
    # the YAML is plain (safe_load-able, no Python tags)
    assert "!!python" not in text and isinstance(yaml.safe_load(text), dict)


def test_published_ranges():
    g = get_preset("gfpgan")
    assert g.blur.kernel_size == (41,) and g.blur.kernel_list == ("iso", "aniso")
    assert (g.blur.sigma_x.lo, g.blur.sigma_x.hi) == (0.1, 10.0)
    assert (g.resize.scale.lo, g.resize.scale.hi) == (0.8, 8.0)
    assert (g.noise.sigma.lo, g.noise.sigma.hi) == (0.0, 20.0)
    assert (g.jpeg.quality.lo, g.jpeg.quality.hi) == (60.0, 100.0)
    assert g.color_shift.prob == 0.3 and g.gray_prob == 0.01 and g.color_jitter.prob == 0.3
    m, s = get_preset("refldm-moderate"), get_preset("refldm-severe")
    assert (m.blur.sigma_x.lo, m.blur.sigma_x.hi, m.resize.scale.lo, m.resize.scale.hi) == (0, 8, 1, 8)
    assert (m.noise.sigma.hi, m.jpeg.quality.lo) == (15, 60)
    assert (s.blur.sigma_x.lo, s.blur.sigma_x.hi, s.resize.scale.lo, s.resize.scale.hi) == (8, 16, 8, 32)
    assert (s.noise.sigma.hi, s.jpeg.quality.lo, s.jpeg.quality.hi) == (20, 30, 100)
    d = get_preset("dfdnet")
    assert d.blur.prob == 0.9 and d.resize.prob == 0.95 and d.noise.prob == 0.9 and d.jpeg.prob == 0.6
    assert d.blur.kernel_size == tuple(range(3, 36, 2))


def _write(tmp_path, text):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    return str(f)


@pytest.mark.parametrize("text, match", [
    ("name: x\nversion: '1'\nblur: {kernel_sze: [21]}\n", r"blur: unknown key\(s\) \['kernel_sze'\]"),
    ("name: x\nversion: '1'\nblur: {kernel_size: [20]}\n", r"blur.kernel_size: kernel sizes must be odd"),
    ("name: x\nversion: '1'\nblur: {kernel_list: [iso, aniso], kernel_prob: [0.5]}\n",
     r"blur.kernel_prob: 1 probabilities for 2 kernel types"),
    ("name: x\nversion: '1'\nblur: {kernel_list: [iso, aniso], kernel_prob: [0.5, 0.6]}\n", r"sum to 1.1"),
    ("name: x\nversion: '1'\nblur: {kernel_list: [skew]}\n", r"unknown value 'skew'"),
    ("name: x\nversion: '1'\nnoise: {sigma: [20, 5]}\n", r"noise.sigma: lo 20.0 > hi 5.0"),
    ("name: x\nversion: '1'\njpeg: {quality: [60, 120]}\n", r"jpeg.quality: .* outside the allowed"),
    ("name: x\nversion: '1'\njpeg: {prob: 1.5}\n", r"jpeg.prob: a probability must be in \[0, 1\]"),
    ("name: x\nversion: '1'\nresize: {scale: [1, 4], modes: [lanczos]}\n", r"resize.modes: unknown value"),
    ("name: x\nversion: '1'\nnoise: {sigma: [0, abc]}\n", r"noise.sigma\[1\]: expected a number"),
    ("name: x\nversion: '1'\nresize: {scale: {lo: 2, hi: 10, step: 0.3}}\n", r"not a multiple of step"),
    ("name: x\nversion: '1'\nblur: {betag: [2, 4]}\n", r"blur.betag: must contain 1"),
    ("name: x\nversion: '1'\nupsample: sinc\n", r"upsample: unknown mode"),
    ("version: '1'\n", r"missing required key 'name'"),
    ("name: 'a/b'\nversion: '1'\n", r"name: 'a/b' must be a file-name-safe"),
    ("name: x\nversion: '1'\nsecond_order: {target_scale: 0}\n", r"second_order.target_scale"),
    ("- just\n- a list\n", r"must be a YAML mapping"),
    ("name: x\nversion: '1'\nblur: [unclosed\n", r"not valid YAML"),
])
def test_bad_yaml_is_a_clear_error(tmp_path, text, match):
    with pytest.raises(PresetError, match=match):
        get_preset(_write(tmp_path, text))


def test_unknown_preset_lists_the_known_ones(tmp_path):
    with pytest.raises(PresetError, match="unknown preset 'gfpgna'.*gfpgan"):
        get_preset("gfpgna")
    with pytest.raises(PresetError, match="does not exist"):
        get_preset(str(tmp_path / "missing.yaml"))


def test_custom_preset_minimal_yaml(tmp_path):
    p = get_preset(_write(tmp_path, "name: my-blur\nversion: 2\nseverity: 3\n"
                                    "blur: {kernel_size: 15, sigma_x: 2.5}\nresize: {scale: 3, modes: [area]}\n"))
    assert p.version == "2" and p.blur.kernel_size == (15,) and p.blur.sigma_x == Range(2.5, 2.5)
    assert p.resize.scale.is_fixed and p.noise is None and p.nominal_severity == 3.0
    assert Preset.from_yaml(p.to_yaml()) == p


# ----------------------------------------------------------------------------------------------- property test
def _range(lo_min, hi_max, integer=False):
    def build(a, b, step):
        lo, hi = sorted((a, b))
        if step:
            n = 4
            return Range(lo, lo + n * step, step) if lo + n * step <= hi_max else Range(lo, lo)
        return Range(lo, hi)
    vals = st.integers(int(lo_min), int(hi_max)) if integer else st.floats(lo_min, hi_max)
    return st.builds(build, vals, vals, st.sampled_from([None, None, 1.0] if integer else [None, None, 0.5]))


def _probs(n):
    return st.lists(st.integers(1, 10), min_size=n, max_size=n).map(lambda w: tuple(x / sum(w) for x in w))


blur_specs = st.builds(
    lambda prob, sizes, types_and_probs, sx, noise: BlurSpec(
        prob=prob, kernel_size=tuple(sorted(set(sizes))), kernel_list=types_and_probs[0],
        kernel_prob=types_and_probs[1], sigma_x=sx, kernel_noise=noise),
    st.floats(0, 1), st.lists(st.sampled_from([3, 7, 21, 41]), min_size=1, max_size=3),
    st.sampled_from([("iso",), ("iso", "aniso"), ("sinc", "motion", "plateau_aniso")]).flatmap(
        lambda t: st.tuples(st.just(t), _probs(len(t)))),
    _range(0, 10), st.none() | st.just(Range(0.75, 1.25)))

presets = st.builds(
    lambda name, version, blur, scale, noise, q, shift, gray, jitter: Preset(
        name=name, version=version, blur=blur, resize=ResizeSpec(scale=scale, modes=("bicubic", "area")),
        noise=noise, jpeg=JpegSpec(quality=q), color_shift=shift, gray_prob=gray, color_jitter=jitter),
    st.from_regex(r"[a-z][a-z0-9\-]{0,12}", fullmatch=True), st.sampled_from(["1", "2.0", "2024-01"]),
    st.none() | blur_specs, _range(1, 32), st.none() | st.builds(NoiseSpec, sigma=_range(0, 50)),
    _range(1, 100, integer=True), st.none() | st.just(ColorShiftSpec()), st.floats(0, 1),
    st.none() | st.just(ColorJitterSpec()))


@settings(max_examples=60, deadline=None)
@given(presets)
def test_random_valid_presets_round_trip(p):
    p.validate()
    assert Preset.from_yaml(p.to_yaml()) == p


def test_presets_are_frozen():
    p = get_preset("gfpgan")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "other"  # type: ignore[misc]
    assert math.isclose(p.blur.rotation.hi, math.pi)
