"""Training plumbing (baselines.training): config validation, data (shapes, per-sample seeds), losses,
discriminators, EMA, schedule, and the loop (loss goes down, exact resume, checkpoint -> create_model).

The loop tests use a tiny registered test model (a residual conv net that uses references and landmarks) so they
run in seconds; one test trains the real DMDNet (tiny config, shrunk) for a step, generic-dictionary init included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from baselines.base import RestorationModel
from baselines.registry import _MODELS as _REGISTERED
from baselines.registry import ModelInfo, create_model, register_model
from baselines.training import checkpoint as ckpt
from baselines.training.config import ConfigError, load_config, parse_config, replace
from baselines.training.data import (
    FLIP_68,
    FaceTrainingSet,
    StepSampler,
    ValidationSet,
    collate,
    flip_landmarks,
)
from baselines.training.discriminators import ComponentDiscriminators, PatchDiscriminator, component_rois
from baselines.training.ema import ModelEMA
from baselines.training.losses import (
    PerceptualFallbackWarning,
    StructureLoss,
    build_identity_loss,
    build_perceptual_loss,
    hinge_d_loss,
    hinge_g_loss,
)
from baselines.training.schedule import lr_factor
from baselines.training.trainer import Trainer
from bfrcore.tensor_images import resize_uint8

TEST_MODEL = "trainer-testnet"


# ----------------------------------------------------------------------------------------------- test model
@dataclass(frozen=True)
class _NetConfig:
    size: int = 32
    width: int = 8


class _TestNet(RestorationModel):
    """Residual conv net; adds a feature of the mean reference when given; a second output and an extra loss
    exercise the trainer's restored_* / extra_losses paths."""

    uses_references = True
    needs_landmarks = True

    def __init__(self, config: _NetConfig | None = None):
        super().__init__(config or _NetConfig())
        w = self.config.width
        self.body = nn.Sequential(nn.Conv2d(6, w, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(w, w, 3, 1, 1),
                                  nn.LeakyReLU(0.2), nn.Conv2d(w, 3, 3, 1, 1))
        self.gate = nn.Parameter(torch.zeros(1))

    def _ref_mean(self, lq, refs):
        if not refs:
            return torch.zeros_like(lq)
        return torch.stack([r.mean(0) for r in refs])

    def training_outputs(self, lq, landmarks=None, refs=None, ref_landmarks=None):
        self.check_inputs(lq, landmarks, refs, ref_landmarks)
        x = torch.cat([lq, self._ref_mean(lq, refs)], 1)
        out = (lq + self.body(x)).clamp(0, 1)
        return {"restored": out, "restored_plain": (lq + self.body(torch.cat([lq, lq * 0], 1))).clamp(0, 1),
                "gate": self.gate}

    def restore(self, lq, landmarks=None, refs=None, ref_landmarks=None):
        return self.training_outputs(lq, landmarks, refs, ref_landmarks)["restored"]

    def extra_losses(self, outputs, batch):
        return {"gate_l2": outputs["gate"].pow(2).sum()}


def register_test_model() -> str:
    if TEST_MODEL not in _REGISTERED:
        register_model(ModelInfo(name=TEST_MODEL, model_cls=_TestNet, config_cls=_NetConfig,
                                 configs={"tiny": _NetConfig(), "paper": _NetConfig(size=64, width=16)},
                                 description="trainer test model"))
    return TEST_MODEL


def base_raw(dataset, out, **top) -> dict:
    raw = {
        "model": register_test_model(), "model_config": "tiny", "seed": 3, "device": "cpu", "out": str(out),
        "batch_size": 2, "workers": 0, "val_every": 0, "ckpt_every": 0, "log_every": 1, "val_identity": False,
        "tensorboard": False,
        "data": {"dataset": str(dataset), "max_refs": 3, "preset": "celebref-x4", "val_preset": "celebref-x4",
                 "val_max_images": 2},
        "optim": {"lr": 2e-3, "grad_clip": 1.0},
        "schedule": {"total_steps": 4, "warmup_steps": 1},
        "loss": {"l1": 1.0, "perceptual": 0.0, "adversarial": 0.1, "component_adversarial": 0.1,
                 "gan_start_step": 1},
        "discriminator": {"channels": 8, "layers": 2, "component_channels": 8, "component_size": 8},
        "ema": {"decay": 0.9},
    }
    raw.update(top)
    return raw


# ----------------------------------------------------------------------------------------------- config
def test_config_parses_and_converts_types(tmp_path):
    cfg = parse_config(base_raw(tmp_path / "d", tmp_path / "o"))
    assert cfg.optim.betas == (0.9, 0.99) and isinstance(cfg.optim.betas, tuple)
    assert cfg.loss.adversarial == 0.1 and cfg.data.max_refs == 3
    raw = base_raw(tmp_path / "d", tmp_path / "o")
    raw["optim"]["betas"] = [0.5, 0.9]
    raw["optim"]["lr"] = 1  # ints are fine for floats
    cfg = parse_config(raw)
    assert cfg.optim.betas == (0.5, 0.9) and cfg.optim.lr == 1.0
    assert replace(cfg, **{"schedule.total_steps": 9}).schedule.total_steps == 9
    assert parse_config(cfg.to_dict()) == cfg  # round trip through plain types


@pytest.mark.parametrize("mutate, match", [
    (lambda r: r.update(learning_rate=1), r"learning_rate: unknown key"),
    (lambda r: r["loss"].update(l2=1.0), r"loss\.l2: unknown key"),
    (lambda r: r["optim"].update(lr="fast"), r"optim\.lr: expected a number"),
    (lambda r: r.update(batch_size=2.5), r"batch_size: expected an integer"),
    (lambda r: r.update(amp="yes"), r"amp: expected true or false"),
    (lambda r: r["optim"].update(betas=[0.9]), r"optim\.betas: expected a list of 2"),
    (lambda r: r.update(device="tpu"), r"device: must be one of"),
    (lambda r: r["schedule"].update(total_steps=0), r"schedule\.total_steps: must be >= 1"),
    (lambda r: r["data"].pop("dataset"), r"data\.dataset: required key is missing"),
    (lambda r: r.update(data=[1, 2]), r"data: expected a mapping"),
    (lambda r: r["loss"].update(outputs={"generic": 1.0}), r"loss\.outputs\.generic"),
])
def test_config_errors_name_the_key(tmp_path, mutate, match):
    raw = base_raw(tmp_path / "d", tmp_path / "o")
    mutate(raw)
    with pytest.raises(ConfigError, match=match):
        parse_config(raw)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: dmdnet\ndata: {dataset: x}\nloss: {l1: 1, vgg: 2}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: loss\.vgg: unknown key"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_parse():
    """Every configs/train/*.yaml parses, names a registered trainable model and a valid model config."""
    from baselines.training.trainer import resolve_model
    from tests.helpers import PROJECT_ROOT

    files = sorted((PROJECT_ROOT / "configs" / "train").glob("*.yaml"))
    assert {"dmdnet_tiny.yaml", "dmdnet_paper.yaml"} <= {f.name for f in files}
    for f in files:
        cfg = load_config(f)
        _, model_cfg = resolve_model(cfg)
        assert f.name.startswith(cfg.model), f
        assert getattr(model_cfg, "size", None) in (None, 128, 256, 512)


# ----------------------------------------------------------------------------------------------- losses
def test_hinge_losses_on_known_logits():
    real = torch.tensor([2.0, 0.5])
    fake = torch.tensor([-2.0, 0.5])
    # relu(1 - real) = [0, 0.5] -> 0.25; relu(1 + fake) = [0, 1.5] -> 0.75
    assert hinge_d_loss(real, fake).item() == pytest.approx(1.0)
    assert hinge_g_loss(torch.tensor([1.0, -3.0])).item() == pytest.approx(1.0)
    assert hinge_d_loss(torch.full((4,), 5.0), torch.full((4,), -5.0)).item() == 0.0


def test_perceptual_fallback_warns_without_vgg_weights(isolated_weights):
    with pytest.warns(PerceptualFallbackWarning, match="torchvision-vgg19"):
        loss = build_perceptual_loss()
    assert isinstance(loss, StructureLoss)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 48, 48, generator=g)
    y = torch.rand(2, 3, 48, 48, generator=g)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(x, y).item() > 0.5
    x.requires_grad_(True)
    loss(x, y).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_identity_loss_disabled_without_weights(isolated_weights, caplog):
    with caplog.at_level("WARNING"):
        assert build_identity_loss() is None
    assert "identity loss disabled" in caplog.text and "arcface-resnet18" in caplog.text


# ----------------------------------------------------------------------------------------------- D, EMA, schedule
def _mean_face(size: int) -> torch.Tensor:
    from baselines.landmarks import mean_face_landmarks

    return torch.as_tensor(mean_face_landmarks(size), dtype=torch.float32)


def test_discriminators_shapes_and_spectral_norm():
    d = PatchDiscriminator(channels=8, layers=3)
    assert d(torch.rand(2, 3, 64, 64)).shape == (2, 1, 8, 8)
    assert any(n.endswith("weight_orig") for n, _ in d.named_parameters())
    lm = _mean_face(64).expand(2, 68, 2)
    cd = ComponentDiscriminators(crop_size=16, channels=8)
    rois = cd.rois(lm, 64)
    assert set(rois) == {"left_eye", "right_eye", "mouth"} and rois["mouth"].shape == (2, 5)
    # left eye box (as seen in the image) lies left of the right eye box
    assert rois["left_eye"][0, 1] < rois["right_eye"][0, 1]
    out = cd(torch.rand(2, 3, 64, 64, requires_grad=True), rois)
    assert all(v.shape[0] == 2 and v.ndim == 4 for v in out.values())


def test_component_crops_follow_the_box():
    from baselines.training.discriminators import crop_components

    img = torch.zeros(1, 3, 64, 64)
    img[..., 10:20, 30:40] = 1.0
    rois = {"box": torch.tensor([[0.0, 30.0, 10.0, 40.0, 20.0]]), "off": torch.tensor([[0.0, 0.0, 40.0, 20.0, 60.0]])}
    crops = crop_components(img, rois, 8)
    assert crops["box"].shape == (1, 3, 8, 8) and crops["box"].mean().item() > 0.9
    assert crops["box"][..., 2:6, 2:6].min().item() == pytest.approx(1.0)
    assert crops["off"].abs().max().item() == 0.0
    assert component_rois(_mean_face(128)[None], 128)["mouth"][0, 0] == 0  # batch index column


def test_ema_math_and_buffers():
    m = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(0.0)
    ema = ModelEMA(m, decay=0.5, warmup=False)
    with torch.no_grad():
        m.weight.fill_(1.0)
    ema.update(m)
    assert ema.module.weight.flatten().tolist() == [0.5, 0.5]
    ema.update(m)
    assert ema.module.weight.flatten().tolist() == [0.75, 0.75]
    assert ModelEMA(m, decay=0.999).current_decay() == pytest.approx(0.1)  # warm-up (1 + 0) / (10 + 0)


def test_warmup_cosine_schedule():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, min_lr_ratio=0.1) == pytest.approx(0.1)


# ----------------------------------------------------------------------------------------------- data
def test_flip_permutation_is_a_mirror():
    assert sorted(FLIP_68.tolist()) == list(range(68))
    assert (FLIP_68[FLIP_68] == np.arange(68)).all()  # an involution
    pts = _mean_face(512).numpy()
    flipped = flip_landmarks(pts, 512)
    np.testing.assert_allclose(flip_landmarks(flipped, 512), pts, atol=1e-4)
    # the mean face is nearly symmetric: its mirror image is close to itself, point for point
    assert np.abs(flipped - pts).mean() < 4.0
    assert flipped[36:42, 0].mean() < flipped[42:48, 0].mean()  # the left eye stays on the left


def _train_set(mini_dataset, size=32, **kw):
    from bfrcore.dataset import FaceDataset

    args = {"split": "train", "size": size, "preset": "celebref-x4", "seed": 7, "max_refs": 10,
            "references": "required", "need_landmarks": True, "hflip": True}
    args.update(kw)
    return FaceTrainingSet(FaceDataset.load(mini_dataset), **args)


@pytest.mark.shared_data
def test_dataset_items_and_collate_with_per_sample_refs(mini_dataset):
    ds = _train_set(mini_dataset)
    assert len(ds) == 27 and not ds.skipped  # 00086, 00089, 00121; 00075 / 00146 are held out
    items = [ds[(i, 0)] for i in range(len(ds))]
    for it in items[:5]:
        assert it["lq"].shape == it["hq"].shape == (3, 32, 32)
        assert it["lq"].dtype == torch.float32 and 0 <= it["lq"].min() and it["lq"].max() <= 1
        assert it["landmarks"].shape == (68, 2)
        assert 1 <= it["refs"].shape[0] <= 10 and it["refs"].shape[1:] == (3, 32, 32)
        assert it["ref_landmarks"].shape == (it["refs"].shape[0], 68, 2)
        ident = it["image_id"].split("_")[0]
        assert it["image_id"] not in it["ref_ids"] and all(r.startswith(ident + "_") for r in it["ref_ids"])
    # identities have 7-11 images: per-sample reference counts differ within one batch
    by_ident = {it["image_id"].split("_")[0]: it for it in items}
    batch = collate(list(by_ident.values()))
    assert batch["lq"].shape == (3, 3, 32, 32) and batch["landmarks"].shape == (3, 68, 2)
    assert isinstance(batch["refs"], list) and len({r.shape[0] for r in batch["refs"]}) > 1
    assert [r.shape[0] for r in batch["refs"]] == [r.shape[0] for r in batch["ref_landmarks"]]
    # a sample without references makes the batch reference-free in 'optional' mode
    lone = dict(items[0], refs=None, ref_landmarks=None)
    assert collate([lone, items[1]])["refs"] is None


@pytest.mark.shared_data
def test_samples_do_not_depend_on_order_or_workers(mini_dataset):
    from torch.utils.data import DataLoader

    ds = _train_set(mini_dataset)
    a = ds[(5, 3)]
    for k in (0, 1, 2):
        ds[(k, 3)]  # other samples first
    b = _train_set(mini_dataset)[(5, 3)]
    assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["hq"], b["hq"]) and a["ref_ids"] == b["ref_ids"]
    c = ds[(5, 4)]  # another epoch: another degradation / reference draw
    assert not torch.equal(a["lq"], c["lq"]) or a["ref_ids"] != c["ref_ids"]

    def stream(workers, start):
        dl = DataLoader(ds, batch_size=3, sampler=StepSampler(len(ds), 1, start=start), collate_fn=collate,
                        num_workers=workers)
        it = iter(dl)
        return [next(it) for _ in range(3)]

    single, multi = stream(0, 30), stream(2, 30)
    for x, y in zip(single, multi):
        assert x["image_id"] == y["image_id"] and torch.equal(x["lq"], y["lq"])
    # resuming the stream at position 33 gives what the uninterrupted stream had there
    later = stream(0, 33)
    assert later[0]["image_id"] == single[1]["image_id"]
    assert torch.equal(later[1]["lq"], single[2]["lq"])


def test_step_sampler_epochs():
    s = iter(StepSampler(5, seed=0))
    first = [next(s) for _ in range(10)]
    assert sorted(i for i, e in first[:5]) == list(range(5)) and {e for _, e in first[:5]} == {0}
    assert {e for _, e in first[5:]} == {1}
    tail = iter(StepSampler(5, seed=0, start=7))
    assert [next(tail) for _ in range(3)] == first[7:10]


@pytest.mark.shared_data
def test_validation_lq_matches_a_test_set_made_with_the_same_seed(mini_dataset):
    from bfrcore.dataset import FaceDataset
    from degradations.pipeline import degrade_image, item_seed

    faces = FaceDataset.load(mini_dataset)
    vs = ValidationSet(faces, split="test", size=64, preset="celebref-x8", seed=5, max_refs=4,
                       references="required", need_landmarks=True, max_images=2)
    assert len(vs) == 2 and all(it["image_id"].split("_")[0] in ("00075", "00146") for it in vs.items)
    it = vs.items[0]
    lq = resize_uint8(degrade_image(faces.read(it["image_id"]), "celebref-x8", item_seed(5, it["image_id"]))[0], 64)
    assert torch.equal(it["lq"], torch.from_numpy(lq.transpose(2, 0, 1).copy()).float() / 255)
    assert it["refs"].shape[0] == 4
    assert [r for r in faces.references_of(it["image_id"])][:4]


# ----------------------------------------------------------------------------------------------- loop
@pytest.mark.shared_data
def test_training_steps_reduce_the_loss(mini_dataset, tmp_path):
    cfg = parse_config(base_raw(mini_dataset, tmp_path / "run", tensorboard=True))
    tr = Trainer(cfg, resume=None)
    batch = collate([tr.train_set[(i, 0)] for i in range(2)])
    tr.d_face = tr.d_comp = None  # pure reconstruction on one fixed batch
    tr.opt_d = None
    losses = [tr.train_step(batch)["l1"] for _ in range(12)]
    assert losses[-1] < 0.8 * losses[0], losses
    assert tr.step == 12 and tr.ema.updates == 12


@pytest.mark.shared_data
def test_resume_gives_the_same_losses_and_checkpoint_loads(mini_dataset, tmp_path):
    raw = base_raw(mini_dataset, tmp_path / "full", ckpt_every=2)
    full_losses = {}
    full = Trainer(parse_config(raw), resume=None, on_step=lambda s, v: full_losses.__setitem__(s, v))
    res = full.fit()
    assert res.step == 4 and set(full_losses) == {1, 2, 3, 4}
    assert "adv" in full_losses[2] and "comp_adv" in full_losses[2] and "extra_gate_l2" in full_losses[1]
    assert "l1_plain" in full_losses[1] and "d_face" in full_losses[3]
    assert (tmp_path / "full" / "train_log.csv").is_file() and (tmp_path / "full" / "val_log.csv").is_file()
    assert math.isfinite(res.val["psnr"]) and "psnr_bicubic" in res.val and "psnr_generic" in res.val

    # interrupted after step 2 (Ctrl-C saves a checkpoint), then resumed by rerunning the same config
    raw2 = base_raw(mini_dataset, tmp_path / "split")
    seen = {}

    def interrupt(step, values):
        seen[step] = values
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(parse_config(raw2), resume="auto", on_step=interrupt).fit()
    assert ckpt.find_resume(tmp_path / "split") is not None
    resumed = Trainer(parse_config(raw2), resume="auto", on_step=lambda s, v: seen.__setitem__(s, v))
    assert resumed.step == 2
    resumed.fit()
    for s in (1, 2, 3, 4):
        for k in ("l1", "l1_plain", "adv", "comp_adv", "d_face", "d_comp"):
            if k in full_losses[s]:
                assert seen[s][k] == pytest.approx(full_losses[s][k], rel=1e-5, abs=1e-6), (s, k)

    # a changed config is refused for resumption; a runtime-only change (workers) is not
    with pytest.raises(ConfigError, match="optim.lr"):
        Trainer(parse_config(dict(raw2, optim={"lr": 1e-3})), resume="auto")

    # the checkpoint: weights_only-loadable, our format, create_model restores the EMA weights
    path = ckpt.last_path(tmp_path / "full")
    ck = torch.load(path, map_location="cpu", weights_only=True)
    assert ck["format"] == "celebref.checkpoint/1" and ck["model"] == TEST_MODEL and ck["step"] == 4
    assert ck["config"] == {"size": 32, "width": 8}
    model = create_model(TEST_MODEL, weights=path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck["ema"][k])
    assert any(not torch.equal(ck["ema"][k], ck["state_dict"][k]) for k in ck["ema"])
    assert model.weights_record["checkpoint_step"] == 4


@pytest.mark.shared_data
def test_dmdnet_trains_a_step_with_dictionary_init(mini_dataset, tmp_path):
    raw = base_raw(mini_dataset, tmp_path / "dmd", model="dmdnet",
                   model_config={"base": "tiny", "ngf": 8, "n_atoms": 4, "size": 64, "eye_roi": [5, 3, 2],
                                 "mouth_roi": [6, 4, 2]},
                   batch_size=1, threads=0)
    raw["schedule"] = {"total_steps": 1}
    raw["init"] = {"generic_dictionary_images": 6, "batch_size": 3}
    raw["data"]["max_refs"] = 2
    raw["loss"]["outputs"] = {"restored_generic": 0.5}
    with pytest.raises(ConfigError, match="init.generic_dictionary_images"):
        Trainer(parse_config(dict(raw, init={"generic_dictionary_images": 3})), resume=None)  # < 4 atoms
    cfg = parse_config(raw)
    tr = Trainer(cfg, resume=None)
    assert tr.init_stats["images"] == 6
    before = tr.model.le_256_mem_key.detach().clone()
    assert torch.equal(before, tr.ema.module.le_256_mem_key)  # EMA starts from the initialised dictionary
    res = tr.fit()
    assert res.step == 1 and math.isfinite(res.last_losses["l1_generic"])
    assert res.val["n_images"] == 2
    model = create_model("dmdnet", weights=res.checkpoint)
    assert model.config.size == 64 and model.config.eye_roi == (5, 3, 2)
