"""DISTS, MUSIQ, CLIP-IQA, MANIQA (pyiqa-backed), fLPIPS and Deg.

Offline, with seeded random weights: each weights file is written into an isolated weights cache under its
registry name (the entry's hash swapped for the test file's own digest), our metric runs through the registry and
must equal pyiqa's own model built by pyiqa (its ``create_metric`` / architecture + ``load_pretrained_network``)
with the same weights, on real image pairs. Without the files every metric is unavailable with the fetch command,
and nothing is computed."""

from __future__ import annotations

import dataclasses
import hashlib
import types

import numpy as np
import pytest
import torch

from bfrcore import weights as wreg
from bfrcore.weights import registry as reg
from evaluation.metrics import Batch, MetricOptions, create_metric, resolve_metrics

NEW = {"dists": ("dists-pyiqa", "torchvision-vgg16"), "musiq": ("musiq-koniq",), "clipiqa": ("clip-rn50",),
       "maniqa": ("maniqa-koniq",), "flpips": ("torchvision-vgg16",), "deg": ("arcface-resnet18",)}


def install(monkeypatch, name: str, obj) -> None:
    """torch.save ``obj`` as registry file ``name`` in the (isolated) cache; the entry is replaced by one that
    verifies the test file's own sha256."""
    entry = wreg.get_entry(name)
    path = reg.cache_dir() / entry.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    test_entry = dataclasses.replace(entry, sha256=digest, sha256_prefix=None, size=None, content=None,
                                     package_file=None, upstream_paths=())
    monkeypatch.setitem(reg._REGISTRY, name, test_entry)
    assert wreg.locate(name) == path


def _batch(pred, gt=None) -> Batch:
    as_list = lambda t: [np.ascontiguousarray(i) for i in (t.permute(0, 2, 3, 1).numpy() if torch.is_tensor(t) else t)]
    return Batch([f"i{k}" for k in range(len(pred))], as_list(pred), None if gt is None else as_list(gt))


def _close(ours: np.ndarray, ref: torch.Tensor) -> None:
    ref = ref.reshape(-1).double().numpy()
    assert ours.shape == ref.shape and np.isfinite(ours).all()
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)
    assert np.ptp(ref) > 1e-5 * np.abs(ref).max()  # the images give different numbers (not a constant)


# ----------------------------------------------------------------------------------------------- offline
def test_without_weights_each_metric_is_unavailable_with_the_fix(isolated_weights):
    r = resolve_metrics(list(NEW))
    assert not r.metrics
    for metric, files in NEW.items():
        for f in files:
            assert f"bench weights fetch {f}" in r.unavailable[metric], (metric, r.unavailable[metric])
    with pytest.raises(Exception, match="maniqa-koniq"):
        create_metric("maniqa").setup("cpu")


def test_names_conventions_and_directions():
    want = {"dists": False, "musiq": True, "clipiqa": True, "maniqa": True, "flpips": False, "deg": False}
    for name, higher in want.items():
        m = create_metric(name)
        assert m.name == name and m.columns[0].name == name and m.higher_is_better is higher
        assert m.convention and m.reference
    assert create_metric("dists").kind == "full_reference"
    assert {create_metric(n).kind for n in ("musiq", "clipiqa", "maniqa")} == {"no_reference"}
    assert "deg < 1" in create_metric("deg").convention and "x[96,416) y[128,480)" in create_metric("flpips").convention


def test_pyiqa_architectures_build_without_downloads(isolated_weights):
    """pyiqa's defaults would fetch ImageNet VGG16 (DISTS), timm's ViT (MANIQA) and CLIP; ours never do."""
    from evaluation.pyiqa_metrics import DownloadRefused, build_arch, no_downloads

    net = build_arch("dists")
    assert tuple(net.alpha.shape) == (1, 1475, 1, 1)
    with no_downloads(), pytest.raises(DownloadRefused):
        build_arch("clipiqa")  # backbone 'RN50' -> pyiqa's CLIP download
    from pyiqa.archs import arch_util

    assert arch_util.load_file_from_url.__name__ != "_refuse"  # restored afterwards
    assert not any((isolated_weights.parent / "torch").rglob("*.pth"))


# ----------------------------------------------------------------------------------------------- DISTS
def test_dists_equals_pyiqa_with_the_same_weights(isolated_weights, calibration, monkeypatch):
    import pyiqa
    import torchvision
    from pyiqa.archs import dists_arch

    from evaluation.pyiqa_metrics import load_dists

    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None).eval()
    alpha_beta = {"alpha": torch.rand(1, 1475, 1, 1) * 0.2, "beta": torch.rand(1, 1475, 1, 1) * 0.2}
    install(monkeypatch, "torchvision-vgg16", {k: v for k, v in vgg.state_dict().items() if k.startswith("features.")})
    install(monkeypatch, "dists-pyiqa", alpha_beta)
    idx = [0, 4]  # I03, I19: two very different distortions; the central 192x256 (DISTS takes any size)
    pred, gt = calibration["dist"][idx, :, 96:288, 128:384], calibration["ref"][idx, :, 96:288, 128:384]
    ours = create_metric("dists", MetricOptions(batch_size=1)).setup("cpu").compute(_batch(pred, gt))["dists"]

    # pyiqa: its DISTS takes torchvision's VGG16 (here the same seeded one) and loads the file non-strictly itself
    monkeypatch.setattr(dists_arch, "models", types.SimpleNamespace(vgg16=lambda *a, **k: vgg))
    ref_model = pyiqa.create_metric("dists", device=torch.device("cpu"),
                                    pretrained_model_path=str(wreg.locate("dists-pyiqa")))
    ref = ref_model(pred.float() / 255, gt.float() / 255)
    _close(ours, ref)
    assert (ours > 0).all()

    from evaluation.pyiqa_metrics import build_arch

    with pytest.raises(ValueError, match="beta"):  # a file without beta is refused: pyiqa would keep a random one
        load_dists(build_arch("dists"), vgg.state_dict(), {"alpha": alpha_beta["alpha"]})


def test_dists_content_check(tmp_path):
    """dists-pyiqa's import check: alpha and beta of DISTS' shape, nothing outside pyiqa's DISTS."""
    import evaluation.weights_checks  # noqa: F401  (registers the checks)
    from bfrcore.weights import content

    def saved(obj):
        f = tmp_path / f"d{len(list(tmp_path.iterdir()))}.pth"
        torch.save(obj, f)
        return f

    ab = {"alpha": torch.rand(1, 1475, 1, 1), "beta": torch.rand(1, 1475, 1, 1)}
    content.check("dists-alpha-beta", saved(ab))
    content.check("dists-alpha-beta", saved({"params": {f"module.{k}": v for k, v in ab.items()}}))
    with pytest.raises(content.ContentError, match="no beta"):
        content.check("dists-alpha-beta", saved({"alpha": ab["alpha"]}))
    with pytest.raises(content.ContentError, match="alpha 1x1474x1x1"):
        content.check("dists-alpha-beta", saved({**ab, "alpha": torch.rand(1, 1474, 1, 1)}))
    with pytest.raises(content.ContentError, match="outside pyiqa's DISTS: head.w"):
        content.check("dists-alpha-beta", saved({**ab, "head.w": torch.zeros(1)}))


# ----------------------------------------------------------------------------------------------- MUSIQ
def test_musiq_equals_pyiqa_with_the_same_weights(isolated_weights, face_pairs, monkeypatch):
    import pyiqa

    from evaluation.pyiqa_metrics import build_arch

    torch.manual_seed(1)
    install(monkeypatch, "musiq-koniq", build_arch("musiq").state_dict())
    hq, lq = face_pairs
    imgs = np.concatenate([hq[:1], lq[:1]])
    ours = create_metric("musiq").setup("cpu").compute(_batch(imgs))["musiq"]
    ref_model = pyiqa.create_metric("musiq", device=torch.device("cpu"),
                                    pretrained_model_path=str(wreg.locate("musiq-koniq")))
    ref = ref_model(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255)
    _close(ours, ref)


# ----------------------------------------------------------------------------------------------- CLIP-IQA
def _tiny_clip_state() -> dict:
    """A seeded CLIP with OpenAI's ModifiedResNet layout but small (CLIP-IQA's code path is the same as RN50's;
    pyiqa's ``build_model`` reads the sizes from the state dict). Vocabulary and context are CLIP's (49408, 77)."""
    from pyiqa.archs.clip_model import CLIP

    torch.manual_seed(2)
    model = CLIP(embed_dim=64, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=16, vision_patch_size=None,
                 context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                 transformer_layers=1)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_clipiqa_equals_pyiqa_with_the_same_weights(isolated_weights, face_pairs, monkeypatch):
    import pyiqa
    from pyiqa.archs import clip_model, clipiqa_arch

    state = _tiny_clip_state()
    install(monkeypatch, "clip-rn50", state)
    hq, lq = face_pairs
    imgs = np.concatenate([hq[:2], lq[:2]])[:, ::2, ::2]  # 256x256: the network is resolution-free (no pos. emb.)
    ours = create_metric("clipiqa").setup("cpu").compute(_batch(imgs))["clipiqa"]
    # pyiqa: CLIPIQA with the CLIP model its load() builds from a state dict (build_model, then float on CPU)
    monkeypatch.setattr(clipiqa_arch, "load",
                        lambda name, device: clip_model.build_model(dict(state)).to(device).float())
    ref_model = pyiqa.create_metric("clipiqa", device=torch.device("cpu"))
    ref = ref_model(torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float() / 255)
    _close(ours, ref)
    assert ((ours > 0) & (ours < 1)).all()


# ----------------------------------------------------------------------------------------------- MANIQA
def test_maniqa_equals_pyiqa_with_the_same_weights(isolated_weights, face_pairs, monkeypatch):
    import pyiqa
    import timm
    from pyiqa.archs import maniqa_arch

    from evaluation.pyiqa_metrics import build_arch

    torch.manual_seed(3)
    state = {k: v.half() for k, v in build_arch("maniqa").state_dict().items()}  # fp16 file: half the disk
    install(monkeypatch, "maniqa-koniq", state)
    hq, lq = face_pairs
    imgs = np.concatenate([hq[:1], lq[:1]])
    m = create_metric("maniqa", MetricOptions(batch_size=2)).setup("cpu")
    assert m._net.test_sample == 20  # pyiqa's default: 20 uniform crops
    m._net.test_sample = 1  # one crop keeps the test to seconds (the crop code is pyiqa's either way)
    ours = m.compute(_batch(imgs))["maniqa"]

    # pyiqa: MANIQA(pretrained=False) built with timm's ViT (no ImageNet download), then pyiqa's loader, strict
    monkeypatch.setattr(maniqa_arch, "timm", types.SimpleNamespace(
        create_model=lambda name, pretrained=True, **k: timm.create_model(name, pretrained=False, **k)))
    ref_model = pyiqa.create_metric("maniqa", device=torch.device("cpu"), pretrained=False)
    from pyiqa.archs.arch_util import load_pretrained_network

    load_pretrained_network(ref_model.net, str(wreg.locate("maniqa-koniq")), True)
    ref_model.net.test_sample = 1
    ref = ref_model(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255)
    _close(ours, ref)
    import evaluation.weights_checks  # noqa: F401  (registers the checks)
    from bfrcore.weights import content

    content.check("maniqa-pyiqa", wreg.locate("maniqa-koniq"))  # the import check accepts MANIQA's full layout


# ----------------------------------------------------------------------------------------------- fLPIPS
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_flpips_equals_lpips_on_the_face_box(face_pairs):
    import lpips

    from evaluation.lpips import FACE_BOX_512, face_box, face_mask

    assert face_box(512, 512) == FACE_BOX_512 == (96, 128, 416, 480)
    assert face_box(256, 256) == (48, 64, 208, 240)
    assert float(face_mask(512, 512).sum()) == 320 * 352
    torch.manual_seed(4)
    ref_model = lpips.LPIPS(net="vgg", version="0.1", pnet_rand=True, verbose=False).eval()  # random trunk
    m = create_metric("flpips")
    m._model, m._ready = ref_model, True  # the same (seeded) trunk; the registry path is tested above
    hq, lq = face_pairs
    pred, gt = lq[:2, ::2, ::2], hq[:2, ::2, ::2]  # 256 px: the box scales with the image
    ours = m.compute(_batch(pred, gt))["flpips"]
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255
    x0, y0, x1, y1 = face_box(256, 256)
    mask = torch.zeros(1, 1, 256, 256)
    mask[..., y0:y1, x0:x1] = 1
    with torch.no_grad():
        ref = ref_model(t(pred) * mask, t(gt) * mask, normalize=True)
        full = ref_model(t(pred), t(gt), normalize=True).reshape(-1).double().numpy()
    _close(ours, ref)
    assert not np.allclose(ours, full, rtol=1e-3)  # the mask matters


# ----------------------------------------------------------------------------------------------- Deg
def test_deg_is_the_angle_between_arcface18_embeddings(isolated_weights, face_pairs, monkeypatch):
    from bfrcore.faces.arcface18 import ArcFace18Embedder, ResNetArcFace18

    torch.manual_seed(5)
    state = ResNetArcFace18().state_dict()
    install(monkeypatch, "arcface-resnet18", state)
    hq, lq = face_pairs
    pred = [lq[0], lq[1], hq[2]]
    gt = [hq[0], hq[1], hq[2]]  # the third pair is identical: Deg ~ 0, left out of VQFR's mean
    out = create_metric("deg").setup("cpu").compute(_batch(pred, gt))
    emb = ArcFace18Embedder(state_dict=state)
    e1, e2 = emb.embed(pred).astype(np.float64), emb.embed(gt).astype(np.float64)
    cos = (e1 * e2).sum(1) / (np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1))
    deg = np.arccos(np.clip(cos, -1, 1)) * 180 / np.pi
    np.testing.assert_allclose(out["deg"], deg, rtol=1e-9, atol=1e-7)
    assert (out["deg"][:2] > 1).all() and out["deg"][2] < 1
    np.testing.assert_array_equal(out["deg_vqfr"][:2], out["deg"][:2])
    assert np.isnan(out["deg_vqfr"][2])
