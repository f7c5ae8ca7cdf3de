"""Registry-wide smoke test (timm's pattern): every registered model builds in its tiny config and restores a
small batch with references / landmarks as it declares; every ModelInfo has paper + tiny configs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from baselines import RestorationModel, create_model, get_model_info, list_models
from baselines.landmarks import mean_face_landmarks

MODELS = list_models()
OURS = ("asffnet", "bicubic", "dfdnet", "gfrnet", "gwainet", "ref_colormatch")


def test_all_baselines_are_registered():
    assert set(OURS) <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_model_info_has_paper_and_tiny_configs(name):
    info = get_model_info(name)
    assert {"paper", "tiny"} <= set(info.configs)
    assert info.default_config in info.configs
    for cfg in info.configs.values():
        assert isinstance(cfg, info.config_cls) and dataclasses.is_dataclass(cfg)
    assert issubclass(info.model_cls, RestorationModel) and info.model_cls.model_name == name
    assert info.description


def _inputs(m, g):
    s = m.input_size
    lm = torch.from_numpy(mean_face_landmarks(s))
    lq = torch.rand(2, 3, s, s, generator=g)
    kwargs = {}
    if m.needs_landmarks or m.uses_references or m.needs_references:
        kwargs["landmarks"] = lm[None].repeat(2, 1, 1) + torch.randn(2, 68, 2, generator=g)
    if m.needs_references or m.uses_references:
        kwargs["refs"] = [torch.rand(2, 3, s, s, generator=g), torch.rand(1, 3, s, s, generator=g)]
        kwargs["ref_landmarks"] = [lm[None].repeat(2, 1, 1) + torch.randn(2, 68, 2, generator=g),
                                   lm[None] + torch.randn(1, 68, 2, generator=g)]
    return lq, kwargs


@pytest.mark.parametrize("name", MODELS)
def test_channels_last_weights_give_the_same_restoration(name):
    """create_model(channels_last=True) (what `bench restore` uses) changes the memory order, not the model."""
    torch.manual_seed(0)
    a = create_model(name, "tiny")
    torch.manual_seed(0)
    b = create_model(name, "tiny", channels_last=True)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    conv_tensors = {id(t) for m in b.modules() if isinstance(m, torch.nn.Conv2d)
                    for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)]}
    for name, t in [*b.named_parameters(), *b.named_buffers()]:
        if t.dim() == 4:  # conv weights NHWC; anything else (dictionary atoms) untouched: flattening must not copy
            fmt = torch.channels_last if id(t) in conv_tensors else torch.contiguous_format
            assert t.is_contiguous(memory_format=fmt), name
    lq, kwargs = _inputs(a, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(a.restore(lq, **kwargs), b.restore(lq, **kwargs), atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_tiny_model_restores_a_batch(name):
    torch.manual_seed(0)
    m = create_model(name, "tiny")
    assert not m.training and m.model_name == name
    lq, kwargs = _inputs(m, torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = m.restore(lq, **kwargs)
    assert out.shape == lq.shape and out.dtype == lq.dtype
    assert torch.isfinite(out).all()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    if m.needs_references:
        with pytest.raises(ValueError):
            m.restore(lq, landmarks=kwargs.get("landmarks"))
    assert m.trainable == bool(list(m.parameters()))


def test_model_config_overrides_go_through_the_config_parser(tmp_path):
    """Overrides on a named base config are typed by bfrcore.typed_config: YAML lists become tuples, ints are
    accepted for floats, and an unknown field, a wrong type or a wrong length is a ConfigError naming it."""
    from baselines.registry import resolve_config
    from bfrcore.errors import ConfigError

    info = get_model_info("dmdnet")
    cfg = resolve_config(info, {"base": "tiny", "n_atoms": 8, "eye_roi": [6, 4, 2]})
    assert cfg == dataclasses.replace(info.configs["tiny"], n_atoms=8, eye_roi=(6, 4, 2))
    f = tmp_path / "m.yaml"
    f.write_text("model_config: {base: paper, ngf: 32}\n")
    assert resolve_config(info, f) == dataclasses.replace(info.configs["paper"], ngf=32)
    for bad, match in [({"depth": 3}, r"^dmdnet: unknown config fields \['depth'\]; valid: \['eye_part'"),
                       ({"n_atoms": "many"}, r"^dmdnet: n_atoms: expected an integer, got str 'many'"),
                       ({"eye_roi": [6, 4]}, r"^dmdnet: eye_roi: expected a list of 3 values"),
                       ({"base": "huge"}, r"^dmdnet: unknown base config 'huge'"),
                       ("huge", r"^dmdnet: unknown config 'huge' \(named configs: paper, tiny\)")]:
        with pytest.raises(ConfigError, match=match):
            resolve_config(info, bad)
    f.write_text("- a list\n")
    with pytest.raises(ConfigError, match="a model config must be a YAML mapping"):
        resolve_config(info, f)


@pytest.mark.parametrize("content", [b"hello", bytes(range(256)) * 400])
def test_unreadable_weights_file_is_an_input_error_naming_it(content, tmp_path):
    """A junk file given as weights: a CheckpointReadError (InputError: the CLIs exit 2) naming the file, not a
    KeyError / UnpicklingError traceback."""
    from baselines.registry import CheckpointReadError, load_file
    from bfrcore.errors import InputError

    bad = tmp_path / "junk.pt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointReadError, match="junk.pt: not a readable torch weights file") as e:
        load_file(bad)
    assert isinstance(e.value, InputError)
    with pytest.raises(CheckpointReadError):
        create_model("bicubic", weights=bad)
