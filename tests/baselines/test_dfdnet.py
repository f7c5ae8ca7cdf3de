"""DFDNet: VGG19 taps, part boxes, atom selection, official checkpoint key mapping, weights errors, training."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import numpy as np
import pytest
import torch

from baselines import create_model, get_model_info
from baselines.blocks import adain
from baselines.dfdnet import (
    PAPER,
    PART_POINTS,
    TINY,
    VGG19_STAGES,
    DFDNet,
    DFDNetConfig,
    VGG19Features,
    dfdnet_part_boxes,
    official_key_map,
    select_atom,
)
from baselines.dictionary import PARTS
from baselines.landmarks import mean_face_landmarks
from baselines.registry import CHECKPOINT_FORMAT
from tests.helpers import read_landmark_txt

S = TINY.size


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A stand-in for vgg19-dcbb9e9d.pth: torchvision's VGG19 feature layers, randomly initialised (structure
    tests only; a DFDNet result always needs the real file)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    feats = make_layers(cfgs["E"])
    path = tmp_path_factory.mktemp("vgg") / "vgg19-fake.pth"
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, path)
    return path, feats


def _fake_dictionary(root, size: int, k: int = 2):
    """{part}_{F}_center.npy files for a ``size`` model (flat (K, C*s*s) arrays, as the release's files)."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = DFDNetConfig(size=size, n_atoms=k, dictionary=None, vgg_weights="unused")
    chans = cfg.channels
    rng = np.random.default_rng(0)
    for level, stride in enumerate((2, 4, 8, 16)):
        for part, p512 in zip(PARTS, cfg.part_sizes):
            s = max(2, (p512 * size) // (512 * stride))
            np.save(root / f"{part}_{size // stride}_center.npy",
                    rng.standard_normal((k, chans[level] * s * s)).astype(np.float32))
    return root


@pytest.fixture(scope="module")
def vgg_model(vgg_file, tmp_path_factory) -> DFDNet:
    """The released architecture (VGG19 extractor, ngf 64) at size 64, with the stand-in VGG and a 2-atom
    dictionary folder."""
    root = _fake_dictionary(tmp_path_factory.mktemp("dict") / "d64", 64)
    torch.manual_seed(0)
    return DFDNet(dataclasses.replace(PAPER, size=64, vgg_weights=str(vgg_file[0]), dictionary=str(root))).eval()


@pytest.fixture(scope="module")
def tiny() -> DFDNet:
    torch.manual_seed(0)
    return create_model("dfdnet", "tiny")


def _inputs(b: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lm = torch.from_numpy(mean_face_landmarks(S))
    return torch.rand(b, 3, S, S, generator=g), lm[None].repeat(b, 1, 1) + torch.randn(b, 68, 2, generator=g)


# ------------------------------------------------------------------------------------------ features, boxes
def test_vgg19_taps_are_relu2_2_relu3_4_relu4_4_conv5_4(vgg_file):
    """The release slices vgg19.features at [0, 8, 17, 26, 35]; its in-place ReLUs make the first three taps
    post-ReLU."""
    path, feats = vgg_file
    ours = VGG19Features(torch.load(path, weights_only=True))
    x = torch.rand(1, 3, 64, 64)
    xn = (x - ours.mean) / ours.std
    with torch.no_grad():
        taps = ours(x)
        ref = [torch.relu(feats[:8](xn)), torch.relu(feats[:17](xn)), torch.relu(feats[:26](xn)), feats[:35](xn)]
    assert [t.shape[1:] for t in taps] == [(128, 32, 32), (256, 16, 16), (512, 8, 8), (512, 4, 4)]
    for a, b in zip(taps, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert not any(k.startswith("w") for k in ours.state_dict())  # frozen copies are not checkpointed
    assert [i for st in VGG19_STAGES for i in st][-1] == 34


def test_part_boxes_follow_the_release_rule(celebref_examples):
    f = next(iter(sorted((celebref_examples / "RefsLandmark" / "00075").glob("*.txt"))))
    lm = read_landmark_txt(f).astype(np.float64)
    boxes = dfdnet_part_boxes(lm, 512)
    for i, pts in enumerate(PART_POINTS):
        p = lm[list(pts)]
        cx, cy = p[:, 0].mean(), p[:, 1].mean()
        half = max((p.max(0) - p.min(0)).max() / 2, 16)
        assert boxes[i].tolist() == [int(cx - half + 1), int(cy - half + 1), int(cx + half), int(cy + half)]
    # a collapsed part gets the minimum half side 16; at another size the landmarks are mapped to 512 first
    one = np.tile(np.array([[200.0, 300.0]]), (68, 1))
    assert dfdnet_part_boxes(one, 512)[3].tolist() == [185, 285, 216, 316]
    assert dfdnet_part_boxes(one / 4, 128)[3].tolist() == [185, 285, 216, 316]


def test_atom_sizes_match_the_release_at_512_and_scale_down():
    m = DFDNet.__new__(DFDNet)
    m.config = dataclasses.replace(PAPER, dictionary=None, n_atoms=1)
    sizes = [[m.atom_shape(p, lv)[1] for p in PARTS] for lv in range(4)]
    assert sizes == [[40, 40, 25, 55], [20, 20, 12, 27], [10, 10, 6, 13], [5, 5, 3, 6]]
    m.config = TINY
    assert [[m.atom_shape(p, lv)[1] for p in PARTS] for lv in range(4)] == [
        [10, 10, 6, 13], [5, 5, 3, 6], [2, 2, 2, 3], [2, 2, 2, 2]]


# ------------------------------------------------------------------------------------------ DFT block
def test_select_atom_equals_the_release_score():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        atoms = torch.randn(12, 6, 5, 5, generator=g) * 2
        roi = torch.randn(1, 6, 5, 5, generator=g) + 0.5
        naive = int(torch.argmax(torch.softmax(adain(atoms, roi).flatten(1) @ roi.flatten(), 0)))
        assert select_atom(atoms, roi) == naive


def test_dft_picks_the_atom_matching_the_input_component(tiny):
    """An atom equal to the input's own component crop (up to a per-channel affine change, which AdaIN undoes)
    has the largest score (AdaIN fixes each channel's norm, so by Cauchy-Schwarz the crop itself wins). Checked
    at strides 2 and 4: deeper tiny boxes are 1-2 feature pixels, whose resized crops are constant (all tie)."""
    lq, lm = _inputs(1, seed=5)
    crops = tiny.component_crops(lq, lm)
    model = DFDNet(TINY).eval()
    with torch.no_grad():
        for (part, level), crop in crops.items():
            atoms = model.atoms(part, level)
            j = (3 * level + PARTS.index(part)) % atoms.shape[0]
            atoms[j] = crop[0] * 1.7 + 0.3
        model.features.load_state_dict(tiny.features.state_dict())
        model.restore(lq, lm)
    for (part, level) in crops:
        if level > 1:
            continue
        assert model.last_selection[0][f"{part}_{level}"] == (3 * level + PARTS.index(part)) % model.n_atoms


def test_forward_shape_range_no_references(tiny):
    lq, lm = _inputs(2)
    with torch.no_grad():
        out = tiny.restore(lq, lm)
    assert out.shape == lq.shape and torch.isfinite(out).all()
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    assert DFDNet.needs_landmarks and not DFDNet.needs_references and not DFDNet.uses_references
    with pytest.raises(ValueError, match="128x128"):
        tiny.restore(torch.rand(1, 3, 96, 96), lm[:1])


def test_vgg_model_forward_and_frozen_extractor(vgg_model):
    lm = torch.from_numpy(mean_face_landmarks(64))[None]
    with torch.no_grad():
        out = vgg_model.restore(torch.rand(1, 3, 64, 64), lm)
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()
    assert vgg_model.n_atoms == 2 and bool(vgg_model.dictionary_ready)
    assert not any(p.requires_grad for p in vgg_model.features.parameters())
    assert not any(n.startswith("dict_") for n, _ in vgg_model.named_parameters())  # atoms are fixed buffers


# ------------------------------------------------------------------------------------------ official checkpoint
def _official_state(vgg_feats) -> OrderedDict:
    """A state dict laid out like the release's UNetDictFace (``latest_net_G.pth``): module names of
    models/networks.py (le_256 ... mo_32 attention blocks, VggExtract with its torchvision VGG19 and the sliced
    copies, MSDilate, up0-up3 StyledUpBlocks with Blur buffers, up4 head, unused to_rgb0-3)."""
    sd: OrderedDict = OrderedDict()

    def sn(prefix, cout, cin, k=3, bias=True):
        if bias:
            sd[f"{prefix}.bias"] = torch.randn(cout) * 0.01
        sd[f"{prefix}.weight_orig"] = torch.randn(cout, cin, k, k) * 0.01
        sd[f"{prefix}.weight_u"] = torch.nn.functional.normalize(torch.randn(cout), dim=0)
        sd[f"{prefix}.weight_v"] = torch.nn.functional.normalize(torch.randn(cin * k * k), dim=0)

    for code in ("le", "re", "no", "mo"):
        for label, c in zip((256, 128, 64, 32), (128, 256, 512, 512)):
            sn(f"{code}_{label}.0", c, c)
            sn(f"{code}_{label}.2", c, c)
    vs = vgg_feats.state_dict()
    for k, v in vs.items():
        sd[f"VggExtract.model.features.{k}"] = v
    for i, (o, n) in zip((0, 3, 6), ((4096, 25088), (4096, 4096), (1000, 4096))):
        sd[f"VggExtract.model.classifier.{i}.weight"] = torch.empty(o, n)
        sd[f"VggExtract.model.classifier.{i}.bias"] = torch.empty(o)
    sd["VggExtract.RGB_mean"] = torch.tensor([0.48, 0.45, 0.41]).view(1, 3, 1, 1)
    sd["VggExtract.RGB_std"] = torch.tensor([0.23, 0.22, 0.23]).view(1, 3, 1, 1)
    bounds = (0, 8, 17, 26, 35)
    for s in range(4):
        for j in range(bounds[s], bounds[s + 1]):
            for t in ("weight", "bias"):
                if f"{j}.{t}" in vs:
                    sd[f"VggExtract.features.{s}.{j}.{t}"] = vs[f"{j}.{t}"]
    for i in range(1, 5):
        sn(f"MSDilate.conv{i}.0", 512, 512)
        sn(f"MSDilate.conv{i}.2", 512, 512)
    sn("MSDilate.convi", 512, 2048)
    for k, (cin, cout) in enumerate(((512, 512), (512, 256), (256, 128), (128, 64))):
        sd[f"up{k}.conv1.0.weight"] = torch.full((cin, 1, 3, 3), 1 / 16)
        sd[f"up{k}.conv1.0.weight_flip"] = torch.full((cin, 1, 3, 3), 1 / 16)
        sn(f"up{k}.conv1.1", cout, cin)
        sn(f"up{k}.convup.1", cout, cout)
        sn(f"up{k}.ScaleModel1.0", cout, cin)
        sn(f"up{k}.ScaleModel1.2", cout, cout)
        sn(f"up{k}.ShiftModel1.0", cout, cin)
        sn(f"up{k}.ShiftModel1.2", cout, cout)
    sn("up4.0", 64, 64)
    for b in (2, 3):
        for j in (0, 2):
            sd[f"up4.{b}.Model.{j}.weight"] = torch.randn(64, 64, 3, 3) * 0.01
            sd[f"up4.{b}.Model.{j}.bias"] = torch.zeros(64)
    sd["up4.4.weight"] = torch.randn(3, 64, 3, 3) * 0.01
    sd["up4.4.bias"] = torch.zeros(3)
    for k, c in enumerate((512, 256, 128, 64)):
        sn(f"to_rgb{k}.0", c, c)
        sn(f"to_rgb{k}.2", 3, c)
    return sd


def test_official_checkpoint_maps_onto_ours_strictly(vgg_model, vgg_file):
    info = get_model_info("dfdnet")
    assert info.pretrained == {"dfdnet-official": "paper"}
    official = _official_state(vgg_file[1])
    atoms_before = {k: v.clone() for k, v in vgg_model.state_dict().items() if k.startswith("dict_")}
    for wrapped in (official, OrderedDict(("module." + k, v) for k, v in official.items())):
        mapped = info.checkpoint_filter_fn(wrapped, vgg_model)
        own = vgg_model.state_dict()
        assert set(mapped) == set(own)
        assert all(tuple(mapped[k].shape) == tuple(own[k].shape) for k in own)
        res = vgg_model.load_state_dict(mapped, strict=True)
        assert not res.missing_keys and not res.unexpected_keys
    torch.testing.assert_close(vgg_model.features.mean, official["VggExtract.RGB_mean"])
    torch.testing.assert_close(vgg_model.attn["mouth_3"][2].weight_orig, official["mo_32.2.weight_orig"])
    torch.testing.assert_close(vgg_model.msdilate.branches[2][0].weight_orig, official["MSDilate.conv3.0.weight_orig"])
    torch.testing.assert_close(vgg_model.up[1].shift[2].weight_orig, official["up1.ShiftModel1.2.weight_orig"])
    torch.testing.assert_close(vgg_model.head[3].Model[2].weight, official["up4.3.Model.2.weight"])
    for k, v in atoms_before.items():  # the atoms come from the dictionary files, not the generator file
        assert torch.equal(vgg_model.state_dict()[k], v)
    assert official_key_map("VggExtract.model.classifier.0.weight") is None
    assert official_key_map("up2.conv1.0.weight_flip") is None and official_key_map("to_rgb1.0.bias") is None
    with pytest.raises(KeyError):
        official_key_map("somethingelse.weight")


def test_missing_vgg_dictionary_or_generator_names_the_fix(isolated_weights, vgg_file):
    from bfrcore.weights import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="vgg19-dcbb9e9d.pth.*bench weights fetch torchvision-vgg19"):
        create_model("dfdnet", "paper")
    with pytest.raises(MissingWeightsError, match="DictionaryCenter512"):
        create_model("dfdnet", {"base": "paper", "vgg_weights": str(vgg_file[0])})
    with pytest.raises(MissingWeightsError, match="latest_net_G.pth"):
        create_model("dfdnet", weights="dfdnet-official")
    with pytest.raises(ValueError, match="ngf = 64"):
        DFDNetConfig(ngf=32)


# ------------------------------------------------------------------------------------------ training, checkpoints
def test_training_updates_extractor_and_selected_atoms_and_round_trips(tmp_path):
    torch.manual_seed(0)
    m = DFDNet(TINY).train()
    lq, lm = _inputs(1, seed=2)
    out = m.training_outputs(lq, lm)
    assert set(out) == {"restored"}
    out["restored"].mean().backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if not n.startswith("dict_"))
    chosen = m.last_selection[0]["mouth_0"]
    g = m.dict_mouth_0.grad
    assert g is not None and float(g[chosen].abs().sum()) > 0
    others = [i for i in range(m.n_atoms) if i not in {s["mouth_0"] for s in m.last_selection}]
    assert float(g[others].abs().sum()) == 0  # hard selection: unselected atoms get no gradient
    m.eval()
    cfg = m.config_dict()
    assert cfg["dictionary"] is None and cfg["n_atoms"] == TINY.n_atoms
    ckpt = {"format": CHECKPOINT_FORMAT, "model": "dfdnet", "config": cfg, "state_dict": m.state_dict(),
            "ema": None, "step": 5}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    loaded = create_model("dfdnet", weights=tmp_path / "ckpt.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded.restore(lq, lm), m.restore(lq, lm))


def test_generic_dictionary_init_runs_kmeans_once(mini_dataset):
    from baselines.dictionary_build import _load_images
    from baselines.dictionary import build_dictionary
    from bfrcore.dataset import FaceDataset

    ds = FaceDataset.load(mini_dataset)
    items = [(img, lm) for _, img, lm in _load_images(ds, ds.image_ids("train")[:8], S) if img is not None]
    batches = [(torch.stack([i for i, _ in items[:4]]), torch.stack([lm for _, lm in items[:4]])),
               (torch.stack([i for i, _ in items[4:]]), torch.stack([lm for _, lm in items[4:]]))]
    cfg = dataclasses.replace(TINY, n_atoms=4)
    torch.manual_seed(0)
    m = DFDNet(cfg)
    assert not bool(m.dictionary_ready)
    stats = m.generic_dictionary_init(batches)
    assert stats["n_atoms"] == 4 and bool(m.dictionary_ready)
    ref_atoms, _ = build_dictionary(DFDNet(cfg), batches, 4, seed=cfg.init_seed, n_iter=cfg.kmeans_iters)
    for (part, level), arr in ref_atoms.items():  # same extractor init (init_seed), same K-means seed
        torch.testing.assert_close(m.atoms(part, level).detach(), torch.from_numpy(arr))
    assert "skipped" in m.generic_dictionary_init(batches)
    with pytest.raises(ValueError, match="cannot make"):
        DFDNet(dataclasses.replace(TINY, n_atoms=64)).generic_dictionary_init(batches)


def test_official_dictionary_loads_through_the_weights_registry(isolated_weights, tmp_path):
    """DictionaryCenter512 as a zip-dir weights entry: `bench weights import dfdnet-dictionary512 FOLDER` puts it
    in the cache, and the paper config's ``dictionary: dfdnet-dictionary512`` resolves to it (2-atom stand-in)."""
    import shutil

    from baselines.dfdnet import resolve_dictionary_dir
    from baselines.dictionary import read_dictionary
    from bfrcore.weights import import_file

    _fake_dictionary(tmp_path / "DictionaryCenter512", 512)
    # imported as the .zip the authors distribute (importing the bare folder trips over bfrcore.weights hashing
    # a directory for entries without published hashes; reported)
    archive = shutil.make_archive(str(tmp_path / "DictionaryCenter512"), "zip", root_dir=tmp_path,
                                  base_dir="DictionaryCenter512")
    installed = import_file("dfdnet-dictionary512", archive)
    root = resolve_dictionary_dir(PAPER.dictionary)
    assert root == installed and root.is_dir()
    m = DFDNet.__new__(DFDNet)
    m.config = dataclasses.replace(PAPER, dictionary=None, n_atoms=2)
    atoms = read_dictionary(root, 512, m._atom_shapes(), m._feature_sizes())
    assert atoms["mouth", 0].shape == (2, 128, 55, 55) and atoms["nose", 3].shape == (2, 512, 3, 3)
    with pytest.raises(FileNotFoundError, match="bench dict build"):
        resolve_dictionary_dir("no-such-dictionary")
