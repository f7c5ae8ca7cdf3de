"""DMDNet: official key/shape compatibility, parameter counts, per-sample specific dictionaries, gradients,
checkpoint round trips, generic-dictionary initialisation, restore on a real aligned face."""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines import create_model, get_model_info, list_models
from baselines.dmdnet import PAPER, TINY, DMDNet, DMDNetConfig
from baselines.landmarks import mean_face_landmarks, read_landmark_txt
from baselines.registry import CHECKPOINT_FORMAT, resolve_config

TSV = Path(__file__).resolve().parents[2] / "baselines" / "data" / "dmdnet_official_state_dict.tsv"
S = TINY.size


def _official_keys() -> list[tuple[str, tuple[int, ...]]]:
    rows = [line.rstrip("\n").split("\t") for line in TSV.read_text().splitlines()[1:] if line.strip()]
    assert all(r[2] == "float32" for r in rows)
    return [(k, tuple(int(x) for x in shape.split("x"))) for k, shape, _ in rows]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The forwards here are many small ops; on a shared 2-core machine OpenMP barriers with 2 threads stall on
    every op while another job holds a core (10-50x slower). One thread keeps these tests fast either way."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def paper_meta() -> DMDNet:
    """The paper model without allocating its 600 MB (shapes and names only)."""
    with torch.device("meta"):
        return DMDNet(PAPER)


@pytest.fixture(scope="module")
def tiny() -> DMDNet:
    torch.manual_seed(0)
    return create_model("dmdnet", "tiny")


def _inputs(b: int, seed: int = 0, n_refs=()):
    g = torch.Generator().manual_seed(seed)
    lm = torch.from_numpy(mean_face_landmarks(S))
    lq = torch.rand(b, 3, S, S, generator=g)
    lms = lm[None].repeat(b, 1, 1) + torch.randn(b, 68, 2, generator=g)
    refs = [torch.rand(n, 3, S, S, generator=g) for n in n_refs]
    ref_lms = [lm[None].repeat(n, 1, 1) + torch.randn(n, 68, 2, generator=g) for n in n_refs]
    return lq, lms, refs, ref_lms


# ------------------------------------------------------------------------------------------ official checkpoint
def test_paper_state_dict_equals_official_keys_and_shapes(paper_meta):
    mine = [(k, tuple(v.shape)) for k, v in paper_meta.state_dict().items()]
    official = _official_keys()
    assert len(official) == 1014
    assert mine == official  # same names, shapes and order


def test_paper_parameter_counts(paper_meta):
    net = sum(p.numel() for p in paper_meta.network_parameters())
    dic = sum(p.numel() for p in paper_meta.dictionary_parameters())
    assert net == 40_356_737 and round(net / 1e6, 2) == 40.36
    assert dic == 110_172_160 and round(dic / 1e6, 2) == 110.17
    assert len(paper_meta.dictionary_parameters()) == 18
    assert sum(p.numel() for p in paper_meta.parameters()) == net + dic
    # the generic-only path never touches E_hq, the K/V heads or the mask nets; E_hq's queries are never used
    assert all(p.requires_grad for p in paper_meta.dictionary_parameters())


def test_official_style_state_dict_loads_strictly(paper_meta):
    """A state dict shaped like DMDNet.pth (dictionaries stored as buffers there) passes the registry's filter and
    loads with strict=True; tested on meta tensors so nothing is allocated."""
    info = get_model_info("dmdnet")
    assert info.pretrained == {"dmdnet-official": "paper"}
    state = OrderedDict((k, torch.empty(shape, device="meta")) for k, shape in _official_keys())
    res = paper_meta.load_state_dict(info.checkpoint_filter_fn(state, paper_meta), strict=True, assign=False)
    assert not res.missing_keys and not res.unexpected_keys
    wrapped = {"module." + k: v for k, v in state.items()}
    paper_meta.load_state_dict(info.checkpoint_filter_fn({"params": wrapped}, paper_meta), strict=True)


def test_official_weights_missing_names_the_fix(isolated_weights):
    from bfrcore.weights import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="bench weights"):
        create_model("dmdnet", weights="dmdnet-official")


# ------------------------------------------------------------------------------------------ registry and config
def test_registry_and_configs(tiny):
    assert "dmdnet" in list_models()
    assert tiny.model_name == "dmdnet" and not tiny.training
    assert DMDNet.uses_references and DMDNet.needs_landmarks and not DMDNet.needs_references
    assert tiny.input_size == 128 and tiny.config == TINY
    def rois(c):
        return [(c.roi_size("LE", s), c.roi_size("MO", s)) for s in (2, 4, 8)]

    assert rois(PAPER) == [(40, 55), (20, 27), (10, 13)]
    assert rois(TINY) == [(10, 13), (5, 6), (2, 3)]
    info = get_model_info("dmdnet")
    c = resolve_config(info, {"base": "tiny", "n_atoms": 8, "eye_roi": [6, 4, 2]})
    assert c.n_atoms == 8 and c.eye_roi == (6, 4, 2) and c.roi_size("LE", 4) == 4
    with pytest.raises(ValueError):
        DMDNetConfig(size=100)
    with pytest.raises(ValueError):
        DMDNetConfig(size=64, ngf=16)  # eye ROI at stride 8 would be 1 pixel


# ------------------------------------------------------------------------------------------ forward
def test_generic_forward_shape_range(tiny):
    lq, lms, _, _ = _inputs(2)
    with torch.no_grad():
        out = tiny.restore(lq, lms)
    assert out.shape == (2, 3, S, S) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_per_sample_reference_sets_are_independent(tiny):
    lq, lms, refs, ref_lms = _inputs(3, seed=1, n_refs=(1, 3, 2))
    with torch.no_grad():
        base = tiny.restore(lq, lms, refs, ref_lms)
        assert base.shape == (3, 3, S, S) and torch.isfinite(base).all()
        assert base.min() >= 0 and base.max() <= 1
        # permuting sample 1's references changes nothing for samples 0 and 2 (nor, beyond rounding, for 1)
        perm = [refs[0], refs[1][[2, 0, 1]], refs[2]]
        perm_lms = [ref_lms[0], ref_lms[1][[2, 0, 1]], ref_lms[2]]
        out = tiny.restore(lq, lms, perm, perm_lms)
        torch.testing.assert_close(out[[0, 2]], base[[0, 2]], rtol=0, atol=1e-6)
        torch.testing.assert_close(out[1], base[1], rtol=0, atol=1e-5)
        # replacing sample 1's references (other images, another count) changes only sample 1
        _, _, new_refs, new_lms = _inputs(1, seed=7, n_refs=(4,))
        out = tiny.restore(lq, lms, [refs[0], new_refs[0], refs[2]], [ref_lms[0], new_lms[0], ref_lms[2]])
        torch.testing.assert_close(out[[0, 2]], base[[0, 2]], rtol=0, atol=1e-6)
        assert not torch.equal(out[1], base[1])
        # each sample's output equals running it alone with its own references
        alone = tiny.restore(lq[2:3], lms[2:3], [refs[2]], [ref_lms[2]])
        torch.testing.assert_close(alone[0], base[2], rtol=0, atol=1e-5)
        # and the specific path really differs from generic-only restoration
        assert not torch.equal(tiny.restore(lq, lms), base)


def test_training_outputs_and_gradients():
    torch.manual_seed(0)
    model = create_model("dmdnet", "tiny").train()
    lq, lms, refs, ref_lms = _inputs(2, seed=2, n_refs=(2, 1))
    outs = model.training_outputs(lq, lms, refs, ref_lms)
    assert set(outs) == {"restored", "restored_generic"}
    assert all(v.shape == (2, 3, S, S) for v in outs.values())
    (outs["restored"] - lq).abs().mean().add((outs["restored_generic"] - lq).abs().mean()).backward()
    for name, p in model.named_parameters():
        if "_mem_" in name:  # every generic atom tensor gets a gradient
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name in ("E_hq.conv1.0.weight_orig", "LE_64_KV.Value.0.weight_orig", "MO_256_Mask.convCat.2.weight_orig",
                 "E_lq.conv1.0.weight_orig", "up4.4.weight_orig"):
        g = model.get_parameter(name).grad
        assert g is not None and g.abs().sum() > 0, name
    assert model.get_parameter("E_hq.LE_256_Q.Query.0.weight_orig").grad is None  # unused, as released
    # generic mode: only "restored"
    model.zero_grad()
    outs = model.training_outputs(lq, lms)
    assert set(outs) == {"restored"}
    # an EMA copy can be taken right after a training forward (old-style spectral norm otherwise refuses)
    ema = copy.deepcopy(model)
    assert ema is not model and ema.le_256_mem_key is not model.le_256_mem_key
    torch.testing.assert_close(ema.state_dict()["up1.conv1.0.weight_orig"], model.state_dict()["up1.conv1.0.weight_orig"])
    assert "__deepcopy__" not in model.__dict__ and "__deepcopy__" not in ema.__dict__


def test_in_place_activations_and_residuals_change_nothing():
    """LReLU, residual adds and the SFT modulation run in place (fewer full-size tensors at 512): the outputs equal
    an out-of-place copy bit for bit, with and without autograd, and so do the gradients."""
    torch.manual_seed(0)
    model = DMDNet(TINY).train()
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, torch.nn.LeakyReLU):
            m.inplace = False
    assert any(isinstance(m, torch.nn.LeakyReLU) and m.inplace for m in model.modules())
    g = torch.Generator().manual_seed(1)
    lq = torch.rand(2, 3, 128, 128, generator=g) * 2 - 1
    boxes = model.boxes(torch.from_numpy(mean_face_landmarks(128))[None].repeat(2, 1, 1))
    out, out_ref = model(lq, boxes)["generic"], ref(lq, boxes)["generic"]
    assert torch.equal(out, out_ref)
    out.square().mean().backward()
    out_ref.square().mean().backward()
    for (name, p), p_ref in zip(model.named_parameters(), ref.parameters(), strict=True):
        assert (p.grad is None) == (p_ref.grad is None) and (p.grad is None or torch.equal(p.grad, p_ref.grad)), name
    model.eval()
    with torch.no_grad():  # in-place SFT modulation ...
        fast = model(lq, boxes)["generic"]
    assert torch.equal(fast, model(lq, boxes)["generic"])  # ... equals the autograd path's out-of-place one
    with torch.no_grad():
        assert torch.equal(fast, ref.eval()(lq, boxes)["generic"])


def test_input_validation(tiny):
    lq, lms, refs, ref_lms = _inputs(2, n_refs=(1, 1))
    with pytest.raises(ValueError, match="128x128"):
        tiny.restore(torch.rand(1, 3, 64, 64), lms[:1])
    with pytest.raises(ValueError):
        tiny.restore(lq, lms[:1])
    with pytest.raises(ValueError):
        tiny.restore(lq, lms, refs[:1], ref_lms[:1])
    with pytest.raises(ValueError):
        tiny.restore(lq, lms, refs, [ref_lms[0], ref_lms[1][:0]])


# ------------------------------------------------------------------------------------------ checkpoints
def test_state_dict_and_checkpoint_round_trip(tmp_path, tiny):
    lq, lms, _, _ = _inputs(1, seed=3)
    with torch.no_grad():
        ref_out = tiny.restore(lq, lms)
    path = tmp_path / "tiny.pth"
    torch.save(tiny.state_dict(), path)
    loaded = create_model("dmdnet", "tiny", weights=path)
    assert loaded.weights_record["name"] == "tiny.pth"
    with torch.no_grad():
        torch.testing.assert_close(loaded.restore(lq, lms), ref_out, rtol=0, atol=1e-6)
    # our trainer's checkpoint format, with a non-default config recorded inside
    cfg = dataclasses.replace(TINY, n_atoms=8)
    torch.manual_seed(1)
    model = DMDNet(cfg)
    ckpt = {"format": CHECKPOINT_FORMAT, "model": "dmdnet", "config": model.config_dict(),
            "state_dict": model.state_dict(), "ema": None, "step": 12}
    torch.save(ckpt, tmp_path / "ckpt.pth")
    loaded = create_model("dmdnet", weights=tmp_path / "ckpt.pth")
    assert loaded.config == cfg and loaded.weights_record["checkpoint_step"] == 12
    got = loaded.state_dict()
    assert all(torch.equal(got[k], v) for k, v in model.state_dict().items())


def test_pretrained_registry_path_with_imported_file(tmp_path, isolated_weights, tiny):
    """The whole `--weights dmdnet-official` path (weights cache, filter, strict load, record) with a stand-in file:
    a tiny model's state dict saved DataParallel-style (the real file implies config 'paper'). Put into the cache
    directly: `bench weights import` refuses a file without the paper layout (tests/celebref/test_weights.py)."""
    path = isolated_weights / "DMDNet.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(OrderedDict(("module." + k, v) for k, v in tiny.state_dict().items()), path)
    loaded = create_model("dmdnet", "tiny", weights="dmdnet-official")
    assert loaded.weights_record["name"] == "dmdnet-official" and len(loaded.weights_record["sha256"]) == 64
    assert torch.equal(loaded.up4[4].weight_orig, tiny.up4[4].weight_orig)


# ------------------------------------------------------------------------------------------ dictionary init
def test_generic_dictionary_init_rule():
    torch.manual_seed(0)
    model = create_model("dmdnet", {"base": "tiny", "n_atoms": 4})
    g = torch.Generator().manual_seed(5)
    imgs = torch.rand(6, 3, S, S, generator=g)
    lms = torch.from_numpy(mean_face_landmarks(S))[None].repeat(6, 1, 1) + torch.randn(6, 68, 2, generator=g)
    before = model.le_128_mem_key.detach().clone()
    with pytest.raises(ValueError, match="at least n_atoms=4"):
        model.generic_dictionary_init([(imgs[:3], lms[:3])])
    assert torch.equal(model.le_128_mem_key, before)  # untouched on failure

    with torch.no_grad():
        keys, values = model._items(imgs * 2 - 1, model.boxes(lms))
    stats = model.generic_dictionary_init([(imgs[:3], lms[:3]), {"hq": imgs[3:], "landmarks": lms[3:]}])
    assert stats["init_images"] == 4 and stats["update_images"] == 2 and model.training is False
    for comp, label in (("LE", 256), ("MO", 64)):
        k_atoms, v_atoms = model._mem(comp, label)
        k_items, v_items = keys[comp, label], values[comp, label]
        # expected: atoms = items 0..3, then items 4, 5 averaged into the atom with the most similar key
        exp_k, exp_v, n = k_items[:4].clone(), v_items[:4].clone(), torch.ones(4)
        kn = torch.nn.functional.normalize
        sim = kn(k_items[4:].flatten(1), dim=1) @ kn(k_items[:4].flatten(1), dim=1).t()
        sums_k, sums_v = exp_k.clone(), exp_v.clone()
        for j, a in enumerate(sim.argmax(1).tolist()):
            sums_k[a] += k_items[4 + j]
            sums_v[a] += v_items[4 + j]
            n[a] += 1
        shape = (-1,) + (1,) * (exp_k.ndim - 1)
        torch.testing.assert_close(k_atoms.detach(), sums_k / n.view(shape), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(v_atoms.detach(), sums_v / n.view(shape), rtol=1e-5, atol=1e-6)
        assert stats["items_per_atom"][f"{comp}_{label}"] == n.tolist()
    # momentum variant runs and keeps the atoms finite
    stats = model.generic_dictionary_init([(imgs, lms)], momentum=0.9)
    assert stats["rule"] == "momentum 0.9"
    assert all(torch.isfinite(p).all() for p in model.dictionary_parameters())


# ------------------------------------------------------------------------------------------ real faces
def _load_small(path, n=S) -> torch.Tensor:
    from bfrcore.imageio import read_image

    x = torch.from_numpy(np.array(read_image(path))).permute(2, 0, 1).float()[None] / 255
    return torch.nn.functional.interpolate(x, size=(n, n), mode="area")


@pytest.mark.shared_data
def test_restore_real_aligned_face(celebref_examples, tiny):
    ident = "00075"
    lq = _load_small(celebref_examples / "SynLQ" / f"{ident}_14.png")
    ref_files = [celebref_examples / "RefsImg" / ident / f"{n}.png" for n in (0, 1, 2)]
    refs = torch.cat([_load_small(f) for f in ref_files])
    ref_lms = torch.from_numpy(np.stack([
        read_landmark_txt(celebref_examples / "RefsLandmark" / ident / f"{f.name}.txt") for f in ref_files
    ])).float() * (S / 512)
    lq_lms = ref_lms[:1]  # the same person, FFHQ-aligned: a stand-in for the LQ's own landmarks
    with torch.no_grad():
        generic = tiny.restore(lq, lq_lms)
        specific = tiny.restore(lq, lq_lms, [refs], [ref_lms])
        found = tiny.restore(lq)  # landmarks found by the provider (detector, else mean face)
    for out in (generic, specific, found):
        assert out.shape == (1, 3, S, S) and torch.isfinite(out).all()
        assert out.min() >= 0 and out.max() <= 1
    assert tiny.last_landmark_sources["lq"][0] in ("detected", "mean_face")
