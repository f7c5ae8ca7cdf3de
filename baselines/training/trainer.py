"""The training loop (model-agnostic): every trainable model of the zoo trains through :func:`train`.

Per step: one generator update — image losses (L1, perceptual, identity) on ``restored`` and every
``restored_*`` output of ``model.training_outputs(lq, landmarks, refs, ref_landmarks)``, hinge adversarial losses on
``restored`` (whole face and components, from ``loss.gan_start_step``), plus the model's ``extra_losses`` — then one
discriminator update on (HQ, detached ``restored``), then the EMA update. AdamW with linear warm-up + cosine decay,
gradient-norm clipping, AMP (bf16 or fp16 with a GradScaler) on CUDA. Validation (EMA weights) every ``val_every``
steps and at the end; checkpoints every ``ckpt_every`` steps, at the end and on Ctrl-C.

Resuming (``resume='auto'``: ``<out>/checkpoints/last.pt`` when present) restores the model, EMA, discriminators,
optimisers, schedulers, scaler, RNG states and the position in the data stream, so the losses after a resume are
those of an uninterrupted run (within floating-point tolerance).

Distributed data parallel (``torchrun --nproc_per_node N -m bfrcli.bench train ...``, see
:mod:`baselines.training.distributed`): one process per device; ``batch_size`` is the *global* batch, each rank
trains on its own contiguous shard of every global batch (:class:`StepSampler`), so the sample stream, the schedule
and the checkpoints do not depend on the number of processes. The generator loss (and the discriminator loss) is
computed inside the forward of a small module wrapped in DistributedDataParallel, so DDP sees exactly the graph the
loss depends on (``ddp_find_unused_parameters`` for branches a step does not use); the discriminators the
generator loss consults are the unwrapped modules (frozen in that pass). Rank 0 alone logs, validates, writes
checkpoints (of the unwrapped modules: no ``module.`` prefix, interchangeable with single-process runs) and the
summary; the other ranks wait at barriers. Without the torchrun variables nothing of this is active.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from baselines.base import conv_weights_to
from baselines.registry import CHECKPOINT_FORMAT, create_model, get_model_info, resolve_config
from baselines.training import checkpoint as ckpt
from baselines.training import distributed as ddp
from baselines.training.config import RUNTIME_FIELDS, ConfigError, TrainConfig, diff, dump_yaml
from baselines.training.data import FaceTrainingSet, StepSampler, ValidationSet, batch_to, collate
from baselines.training.discriminators import ComponentDiscriminators, PatchDiscriminator
from baselines.training.ema import ModelEMA
from baselines.training.logger import RunLogger
from baselines.training.losses import (
    build_identity_loss,
    build_perceptual_loss,
    hinge_d_loss,
    hinge_g_loss,
    l1_loss,
)
from baselines.training.schedule import WarmupCosine, lr_factor, make_scheduler
from bfrcore.cpu_allocator import reuse_freed_memory
from bfrcore.formats.run import validate_train_config, validate_train_summary
from bfrcore.versions import suite_version

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out: Path
    step: int
    checkpoint: Path | None
    seconds: float
    train_seconds: float
    resumed_from: int | None
    val: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    last_losses: dict[str, float] = field(default_factory=dict)
    #: CPU seconds (user + system) of this process ("main") and of its finished children ("workers")
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def resolve_model(cfg: TrainConfig):
    """(ModelInfo, model config) for ``cfg``, or ConfigError naming what is wrong."""
    try:
        info = get_model_info(cfg.model)
    except KeyError as e:
        raise ConfigError(f"model: {e.args[0]}") from None
    if not info.model_cls.trainable:
        raise ConfigError(f"model: {cfg.model!r} has no trainable parameters")
    try:
        model_cfg = resolve_config(info, cfg.model_config)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model_config: {e}") from None
    return info, model_cfg


def _reference_mode(cfg: TrainConfig, model) -> str:
    if cfg.data.references != "auto":
        if cfg.data.references == "none" and getattr(model, "needs_references", False):
            raise ConfigError(f"data.references: {cfg.model} needs references; use 'required' or 'auto'")
        return cfg.data.references
    if getattr(model, "needs_references", False) or getattr(model, "uses_references", False):
        return "required"
    return "none"


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _set_requires_grad(module: torch.nn.Module | None, flag: bool) -> None:
    if module is not None:
        for p in module.parameters():
            p.requires_grad_(flag)


class _LossModule(nn.Module):
    """``forward(*args)`` = ``loss_fn(*args)``: a loss computed inside a module's forward, which is what
    DistributedDataParallel wraps (it synchronises the gradients of ``modules``' trainable parameters and, with
    ``find_unused_parameters``, looks for the unused ones from the returned loss). Called directly in a single
    process."""

    def __init__(self, modules: dict[str, nn.Module | None], loss_fn: Callable[..., Any]):
        super().__init__()
        self.parts = nn.ModuleDict({k: m for k, m in modules.items() if m is not None})
        self.loss_fn = loss_fn

    def forward(self, *args: Any) -> Any:
        return self.loss_fn(*args)


def _wrap_ddp(module: _LossModule, device: torch.device, find_unused: bool) -> nn.Module:
    """``module`` in DistributedDataParallel (which broadcasts rank 0's parameters and buffers to every rank)."""
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, output_device=device.index if ids else None,
                                   find_unused_parameters=find_unused)


class Trainer:
    """Builds everything from a :class:`TrainConfig` (see :func:`train`). In a torchrun job (``WORLD_SIZE`` > 1)
    it initialises the process group itself (:func:`baselines.training.distributed.setup`) and destroys it when
    :meth:`fit` ends."""

    def __init__(self, cfg: TrainConfig, *, resume: str | os.PathLike | None = "auto",
                 device: str | None = None, on_step: Callable[[int, dict], None] | None = None):
        from bfrcore.devices import resolve_device

        self.t_start = time.perf_counter()
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.on_step = on_step
        self.notes: list[str] = []
        self.logger: RunLogger | None = None
        self.validator = None
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        info, model_cfg = resolve_model(cfg)
        self.info = info
        self.dist, self.device = ddp.setup(torch.device(device or resolve_device(cfg.device)))
        self.cpu_allocator = reuse_freed_memory() if self.device.type == "cpu" else None
        self.is_main = self.dist.is_main
        try:
            self._build(cfg, model_cfg, resume)
        except BaseException:
            ddp.cleanup(self.dist)
            raise

    def _build(self, cfg: TrainConfig, model_cfg: Any, resume: str | os.PathLike | None) -> None:
        """Everything but the device and the process group (see __init__)."""
        from bfrcore.dataset import FaceDataset

        try:
            self.local_batch = ddp.shard_size(cfg.batch_size, self.dist)
        except ValueError as e:
            raise ConfigError(f"batch_size: {e}") from None

        # ---- what to resume from (decided first: a fresh run initialises the dictionary, a resumed one not)
        self.resume_path = self._resume_path(resume)
        resume_ck = ckpt.load_checkpoint(self.resume_path) if self.resume_path else None
        if resume_ck is not None:
            self._check_resumable(resume_ck)
        self._check_same_start(resume_ck)

        _seed_all(cfg.seed)
        self.model = create_model(cfg.model, model_cfg, device=self.device).train()
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        conv_weights_to(self.model, self.memory_format)
        self.size = self.model.input_size
        if cfg.data.size is not None and cfg.data.size != self.size:
            raise ConfigError(f"data.size: {cfg.data.size} differs from the input size {self.size} of "
                              f"{cfg.model} config; change model_config (e.g. {{base: tiny, size: {cfg.data.size}}})")
        self.references = _reference_mode(cfg, self.model)
        self.component_gan = cfg.loss.component_adversarial > 0
        # landmarks: needed by the model, by its training losses (opt-in class flag ``training_needs_landmarks``,
        # e.g. a landmark loss) or by the component discriminators
        self.need_landmarks = bool(self.model.needs_landmarks or self.component_gan
                                   or getattr(self.model, "training_needs_landmarks", False))

        # ---- data
        try:
            faces = FaceDataset.load(cfg.data.dataset)
        except FileNotFoundError as e:
            raise ConfigError(f"data.dataset: {e}") from None
        self.faces = faces
        common = {"size": self.size, "seed": cfg.seed, "max_refs": cfg.data.max_refs, "references": self.references,
                  "need_landmarks": self.need_landmarks, "degrade_at": cfg.data.degrade_at}
        try:
            self.train_set = FaceTrainingSet(faces, split=cfg.data.train_split, preset=cfg.data.preset,
                                             hflip=cfg.data.hflip, cache_images=cfg.data.cache_images, **common)
            self.val_set = ValidationSet(faces, split=cfg.data.val_split, preset=cfg.data.val_preset,
                                         max_images=cfg.data.val_max_images, **common)
        except ValueError as e:  # empty split, unknown preset (PresetError is a ValueError) ...
            raise ConfigError(f"data: {e}") from None
        for name, skipped in (("train", self.train_set.skipped), ("val", self.val_set.skipped)):
            if skipped:
                self.notes.append(f"{name}: skipped {dict(skipped)}")
        log.info("data: %d training images (%s), %d validation images (%s), references %s, size %d",
                 len(self.train_set), cfg.data.train_split, len(self.val_set), cfg.data.val_split,
                 self.references, self.size)

        # ---- discriminators and losses
        torch.manual_seed(cfg.seed + 1)
        self.d_face = None
        if cfg.loss.adversarial > 0:
            self.d_face = PatchDiscriminator(cfg.discriminator.channels, cfg.discriminator.layers).to(
                self.device, memory_format=self.memory_format)
        self.d_comp = None
        if self.component_gan:
            crop = cfg.discriminator.component_size or max(8, self.size // 4)
            self.d_comp = ComponentDiscriminators(crop, cfg.discriminator.component_channels).to(
                self.device, memory_format=self.memory_format)
        self.perceptual = None
        if cfg.loss.perceptual > 0:
            self.perceptual = build_perceptual_loss().to(self.device)
            if self.perceptual.kind != "vgg19":
                self.notes.append("perceptual loss: VGG19 weights missing, used the SSIM+gradient fallback")
        self.identity = None
        if cfg.loss.identity > 0:
            self.identity = build_identity_loss()
            if self.identity is None:
                self.notes.append("identity loss disabled: arcface-resnet18 weights missing")
            else:
                self.identity = self.identity.to(self.device)

        # ---- precision
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        if cfg.amp and not self.amp:
            log.info("amp: ignored on %s (mixed precision is used on CUDA only)", self.device.type)
        self.amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bf16" else torch.float16
        if self.amp and self.amp_dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            log.warning("amp: bf16 unsupported on this GPU; using fp16 with a GradScaler")
            self.amp_dtype = torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)

        # ---- model-specific initialisation (fresh runs only), the DDP wrappers, then optimisers, EMA
        self.step = 0
        self.init_stats: dict | None = None
        if resume_ck is None:
            self.init_stats = self._model_init()
        self._build_loss_modules()
        g_params = [p for p in self.model.parameters() if p.requires_grad]
        o = cfg.optim
        self.opt_g = torch.optim.AdamW(g_params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        self.sched_g = make_scheduler(self.opt_g, cfg.schedule.total_steps, cfg.schedule.warmup_steps,
                                      cfg.schedule.min_lr_ratio)
        # the discriminators' rate follows the same schedule, set from the step (they only step once the GAN starts)
        self.opt_d = None
        d_params = [p for d in (self.d_face, self.d_comp) if d is not None for p in d.parameters()]
        if d_params:
            self.opt_d = torch.optim.AdamW(d_params, lr=o.d_lr, betas=o.d_betas, weight_decay=o.d_weight_decay)
        self.ema = ModelEMA(self.model, cfg.ema.decay, cfg.ema.warmup)
        self.last_val: dict[str, float] = {}
        self.resumed_from = None
        if resume_ck is not None:
            self._load_state(resume_ck)
            self.resumed_from = self.step
            log.info("resumed from %s at step %d", self.resume_path, self.step)
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            text = dump_yaml(cfg)
            validate_train_config(yaml.safe_load(text), self.out / "config.yaml", writing=True)
            (self.out / "config.yaml").write_text(text)
            self.logger = RunLogger(self.out, resume_step=self.step if resume_ck is not None else None,
                                    tensorboard=cfg.tensorboard)
        ddp.barrier(self.dist)

    # ------------------------------------------------------------------------------------------ setup helpers
    def _resume_path(self, resume) -> Path | None:
        if resume is None or resume == "never":
            return None
        if resume == "auto":
            return ckpt.find_resume(self.out)
        p = Path(resume)
        if not p.is_file():
            raise ConfigError(f"--resume: checkpoint {p} not found")
        return p

    def _check_same_start(self, ck: dict | None) -> None:
        """Every rank must start from the same checkpoint (or all fresh): a run folder that is not shared by the
        ranks (e.g. node-local disks in a multi-node job) is refused."""
        starts = ddp.all_gather_object(self.dist, None if ck is None else int(ck["step"]))
        if len(set(starts)) > 1:
            raise ConfigError(f"the ranks would start from different steps {starts} (None: fresh); every rank must "
                              f"see the same run folder {self.out} (a shared file system) and checkpoint")

    def _build_loss_modules(self) -> None:
        """The generator / discriminator loss modules (wrapped in DDP in a multi-process run)."""
        self.g_loss: nn.Module = _LossModule({"model": self.model}, self._generator_loss)
        self.d_loss: nn.Module = _LossModule({"face": self.d_face, "components": self.d_comp},
                                             self._discriminator_loss)
        if not self.dist.enabled:
            return
        self.g_loss = _wrap_ddp(self.g_loss, self.device, self.cfg.ddp_find_unused_parameters)
        if self.d_face is not None or self.d_comp is not None:
            # every discriminator parameter takes part in each discriminator update
            self.d_loss = _wrap_ddp(self.d_loss, self.device, find_unused=False)

    def _check_resumable(self, ck: dict) -> None:
        if ck.get("model") != self.cfg.model:
            raise ConfigError(f"{self.resume_path} is a checkpoint of {ck.get('model')!r}, not {self.cfg.model!r}; "
                              f"use another --out or --resume never")
        saved = ck.get("train_config")
        if saved is None:
            raise ConfigError(f"{self.resume_path} has no training state (a weights-only checkpoint); "
                              f"use another --out or --resume never")
        changed = [k for k in diff(saved, self.cfg.to_dict()) if k not in RUNTIME_FIELDS]
        if changed:
            raise ConfigError(f"the config differs from the one of the run in {self.out} in {', '.join(changed)}; "
                              f"resume with the same config, or use another --out (or --resume never)")

    def _model_init(self) -> dict | None:
        """Data-dependent initialisation before step 0: the generic dictionary of DMDNet-like models."""
        init = getattr(self.model, "generic_dictionary_init", None)
        y = self.cfg.init.generic_dictionary_images
        if init is None or y <= 0:
            return None
        pool = self.train_set.init_pool_size()
        count = min(y, pool)
        t0 = time.perf_counter()
        batches = self.train_set.init_batches(count, self.cfg.init.batch_size, self.cfg.seed)
        try:
            stats = init({"hq": b["hq"].to(self.device, memory_format=self.memory_format),
                           "landmarks": b["landmarks"]} for b in batches)
        except ValueError as e:  # e.g. fewer faces than dictionary atoms
            raise ConfigError(f"init.generic_dictionary_images: {e} (Y={y}, {pool} distinct HQ training faces "
                              f"available); add training images or set init.generic_dictionary_images: 0 for "
                              f"the model's own initialisation") from None
        log.info("generic dictionary initialised from %d HQ training faces in %.1f s", count,
                 time.perf_counter() - t0)
        stats = dict(stats or {})
        stats.pop("items_per_atom", None)
        return {"images": count, **{k: v for k, v in stats.items() if isinstance(v, (int, float, str))}}

    # ------------------------------------------------------------------------------------------ state
    def _discriminator_states(self) -> dict:
        out = {}
        if self.d_face is not None:
            out["face"] = self.d_face.state_dict()
        if self.d_comp is not None:
            out["components"] = self.d_comp.state_dict()
        return out

    def _payload(self, rank_rng: list[dict] | None = None) -> dict:
        # celebref-suite None: running from a source tree that is not installed
        versions = {"torch": str(torch.__version__), "celebref-suite": suite_version()}
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.cfg.model,
            "config": _plain(self.model.config_dict()),
            "state_dict": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "step": self.step,
            "ema_updates": self.ema.updates,
            "train_config": self.cfg.to_dict(),
            "discriminators": self._discriminator_states(),
            "optimizers": {"g": self.opt_g.state_dict(), **({"d": self.opt_d.state_dict()} if self.opt_d else {})},
            "schedulers": {"g": self.sched_g.state_dict()},
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            **({"rng_ranks": rank_rng} if rank_rng else {}),
            "metrics": {k: float(v) for k, v in self.last_val.items()},
            "init": _plain(self.init_stats or {}),
            "versions": versions,
        }

    def _load_state(self, ck: dict) -> None:
        self.model.load_state_dict(ck["state_dict"])
        self.ema.load_state_dict(ck.get("ema") or ck["state_dict"], ck.get("ema_updates", ck["step"]))
        ds = ck.get("discriminators", {})
        if self.d_face is not None:
            self.d_face.load_state_dict(ds["face"])
        if self.d_comp is not None:
            self.d_comp.load_state_dict(ds["components"])
        self.opt_g.load_state_dict(ck["optimizers"]["g"])
        self.sched_g.load_state_dict(ck["schedulers"]["g"])
        # the schedule is the one of *this* config (schedule.total_steps may be raised to extend a run)
        s = self.cfg.schedule
        self.sched_g.lr_lambdas[0] = WarmupCosine(s.total_steps, s.warmup_steps, s.min_lr_ratio)
        for g, base in zip(self.opt_g.param_groups, self.sched_g.base_lrs):
            g["lr"] = base * self.sched_g.lr_lambdas[0](self.sched_g.last_epoch)
        if self.opt_d is not None:
            self.opt_d.load_state_dict(ck["optimizers"]["d"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.step = int(ck["step"])
        self.last_val = dict(ck.get("metrics") or {})
        self.init_stats = ck.get("init") or None
        ckpt.set_rng_state(self._rank_rng(ck))

    def _rank_rng(self, ck: dict) -> dict:
        """This rank's RNG state in ``ck``: its own when the checkpoint comes from a run with as many processes
        (``rng_ranks``), else the one of rank 0 / the single process (``rng``)."""
        per_rank = ck.get("rng_ranks") or []
        if self.dist.enabled and len(per_rank) == self.dist.world_size:
            return per_rank[self.dist.rank]
        return ck["rng"]

    def save(self, collective: bool = True) -> Path:
        """Write a checkpoint of the current step (rank 0). ``collective``: every rank calls this at the same
        step (their RNG states are gathered into the checkpoint and they wait until it is written); False on
        rank 0 alone (Ctrl-C), where the checkpoint holds rank 0's RNG state only."""
        rank_rng = None
        if collective and self.dist.enabled:
            rank_rng = ddp.all_gather_object(self.dist, ckpt.rng_state())
        path = ckpt.step_path(self.out, self.step)
        if self.is_main:
            path = ckpt.save_checkpoint(self.out, self.step, self._payload(rank_rng), keep=self.cfg.keep_checkpoints)
            log.info("checkpoint %s", path)
        if collective:
            ddp.barrier(self.dist)
        return path

    # ------------------------------------------------------------------------------------------ steps
    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def gan_active(self) -> bool:
        return self.step >= self.cfg.loss.gan_start_step and (self.d_face is not None or self.d_comp is not None)

    def train_step(self, batch: dict) -> dict[str, float]:
        """One generator + discriminator update on a device batch (this rank's shard in a DDP run); returns the
        loss terms (weighted) of this batch."""
        gan = self.gan_active()
        _set_requires_grad(self.d_face, False)
        _set_requires_grad(self.d_comp, False)
        rois = self.d_comp.rois(batch["landmarks"], self.size) if (self.d_comp is not None and gan) else None
        total, terms, fake = self.g_loss(batch, gan, rois)
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite generator loss at step {self.step}: "
                                     f"{ {k: float(v) for k, v in terms.items()} }")
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        gnorm = self._clip(self.opt_g, self.model.parameters())
        self.scaler.step(self.opt_g)
        values = {k: float(v.detach()) for k, v in terms.items()}
        values["total"] = float(total.detach())
        if gnorm is not None:
            values["grad_norm"] = gnorm
        if gan:
            values.update(self._discriminator_step(batch["hq"], fake, rois))
        self.scaler.update()
        self.sched_g.step()
        self.ema.update(self.model)
        self.step += 1
        return values

    def _generator_loss(self, batch: dict, gan: bool, rois: dict | None
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(total, weighted terms, detached ``restored``) of the generator: image losses on ``restored`` and every
        weighted ``restored_*`` output, adversarial terms (discriminators frozen), the model's extra losses."""
        cfg, lw = self.cfg, self.cfg.loss
        hq, lm = batch["hq"], batch["landmarks"]
        with self._autocast():
            outputs = self.model.training_outputs(batch["lq"], lm, batch["refs"], batch["ref_landmarks"])
            if "restored" not in outputs:
                raise RuntimeError(f"{cfg.model}.training_outputs() must return a 'restored' image")
            terms: dict[str, torch.Tensor] = {}
            for key, img in outputs.items():
                if not (key == "restored" or key.startswith("restored_")):
                    continue
                w = lw.outputs.get(key, 1.0)
                if w == 0:
                    continue
                sfx = key[len("restored"):]
                if lw.l1 > 0:
                    terms[f"l1{sfx}"] = w * lw.l1 * l1_loss(img, hq)
                if self.perceptual is not None:
                    terms[f"perceptual{sfx}"] = w * lw.perceptual * self.perceptual(img, hq)
                if self.identity is not None:
                    terms[f"identity{sfx}"] = w * lw.identity * self.identity(img, hq)
            fake = outputs["restored"]
            if gan and self.d_face is not None:
                terms["adv"] = lw.adversarial * hinge_g_loss(self.d_face(fake))
            if rois is not None:
                logits = self.d_comp(fake, rois)
                terms["comp_adv"] = lw.component_adversarial * torch.stack(
                    [hinge_g_loss(v) for v in logits.values()]).mean()
            for k, v in (self.model.extra_losses(outputs, batch) or {}).items():
                w = lw.extra.get(k, 1.0)
                if w:
                    terms[f"extra_{k}"] = w * v.float()
        if not terms:
            raise ConfigError("loss: every loss weight is 0, nothing to train")
        total = torch.stack([t.float() for t in terms.values()]).sum()
        return total, terms, fake.detach()

    def _discriminator_loss(self, hq: torch.Tensor, fake: torch.Tensor, rois: dict | None
                            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total, terms) of the discriminators: hinge loss on (HQ, detached ``restored``), whole face and
        components."""
        with self._autocast():
            d_terms: dict[str, torch.Tensor] = {}
            if self.d_face is not None:
                d_terms["d_face"] = hinge_d_loss(self.d_face(hq), self.d_face(fake))
            if self.d_comp is not None:
                real_l, fake_l = self.d_comp(hq, rois), self.d_comp(fake, rois)
                d_terms["d_comp"] = torch.stack([hinge_d_loss(real_l[n], fake_l[n]) for n in real_l]).mean()
        return torch.stack(list(d_terms.values())).sum(), d_terms

    def _discriminator_step(self, hq: torch.Tensor, fake: torch.Tensor, rois: dict | None) -> dict[str, float]:
        """One discriminator update (learning rate from the step's schedule); returns its loss terms."""
        _set_requires_grad(self.d_face, True)
        _set_requires_grad(self.d_comp, True)
        d_total, d_terms = self.d_loss(hq, fake, rois)
        s = self.cfg.schedule
        for g in self.opt_d.param_groups:
            g["lr"] = self.cfg.optim.d_lr * lr_factor(self.step, s.total_steps, s.warmup_steps, s.min_lr_ratio)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(d_total).backward()
        self._clip(self.opt_d, [p for g in self.opt_d.param_groups for p in g["params"]])
        self.scaler.step(self.opt_d)
        return {k: float(v.detach()) for k, v in d_terms.items()}

    def _clip(self, opt, params) -> float | None:
        if self.cfg.optim.grad_clip <= 0:
            return None
        self.scaler.unscale_(opt)
        return float(torch.nn.utils.clip_grad_norm_(list(params), self.cfg.optim.grad_clip))

    # ------------------------------------------------------------------------------------------ loop
    def loader(self) -> DataLoader:
        """This rank's endless training stream from the current step (``local_batch`` samples per step)."""
        cfg = self.cfg
        if cfg.workers > 0:
            # OpenCV's thread pool does not survive fork() (a forked worker that touches it can deadlock): run
            # OpenCV single-threaded in this process before the workers are forked; they inherit it.
            import cv2

            cv2.setNumThreads(1)
        sampler = StepSampler(len(self.train_set), cfg.seed, start=self.step * cfg.batch_size, rank=self.dist.rank,
                              world_size=self.dist.world_size, batch_size=cfg.batch_size)
        return DataLoader(self.train_set, batch_size=self.local_batch, sampler=sampler, collate_fn=collate,
                          num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
                          generator=torch.Generator().manual_seed(cfg.seed),
                          pin_memory=self.device.type == "cuda")

    def validate(self) -> dict[str, float]:
        """Validate the EMA model on the held-out images (in a DDP run fit calls it on rank 0 only)."""
        if self.validator is None:
            from baselines.training.validation import Validator

            self.validator = Validator(self.val_set, device=self.device, batch_size=self.cfg.batch_size,
                                       identity=self.cfg.val_identity)
        res = self.validator(self.ema.module)
        self.last_val = res
        if self.logger is not None:
            self.logger.log("val", self.step, res)
        log.info("val step %d: %s", self.step, _fmt_metrics(res))
        return res

    def _validate_on_main(self) -> None:
        """Rank 0 validates; the other ranks wait at a barrier."""
        if self.is_main:
            self.validate()
        ddp.barrier(self.dist)

    def _log_train(self, sums: dict[str, float], n_sum: int, dt: float) -> None:
        """Log the mean loss terms since the last row (averaged over the ranks: every rank calls this)."""
        cfg, total = self.cfg, self.cfg.schedule.total_steps
        row = ddp.mean_over_ranks(self.dist, {k: v / n_sum for k, v in sums.items()})
        if not self.is_main:
            return
        row.update(lr=self.opt_g.param_groups[0]["lr"], sec_per_step=dt,
                   epoch=self.step * cfg.batch_size / len(self.train_set))
        self.logger.log("train", self.step, row)
        eta = dt * (total - self.step)
        log.info("step %d/%d loss %.4f (%s) lr %.2e %.2f s/step ETA %.0f s", self.step, total,
                 row["total"], ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                                         if k not in ("total", "lr", "sec_per_step", "epoch")),
                 row["lr"], dt, eta)

    def close(self) -> None:
        """Close the logs and destroy the process group this trainer created (fit calls it)."""
        if self.logger is not None:
            self.logger.close()
        ddp.cleanup(self.dist)

    def fit(self) -> TrainResult:
        """Train to ``schedule.total_steps`` (validating, checkpointing, logging as configured); then close the
        logs and the process group this trainer created."""
        try:
            return self._fit()
        finally:
            self.close()

    def _fit(self) -> TrainResult:
        cfg = self.cfg
        total = cfg.schedule.total_steps
        t_loop = time.perf_counter()
        last_ck: Path | None = None
        sums: dict[str, float] = defaultdict(float)
        n_sum = 0
        t_interval = time.perf_counter()
        last_values: dict[str, float] = {}
        if self.step >= total:
            log.info("already at step %d of %d; nothing to train", self.step, total)
        it = iter(self.loader()) if self.step < total else iter(())
        try:
            while self.step < total:
                batch = batch_to(next(it), self.device, self.memory_format)
                values = self.train_step(batch)
                last_values = values
                for k, v in values.items():
                    sums[k] += v
                n_sum += 1
                if self.on_step is not None:
                    self.on_step(self.step, values)
                at_end = self.step >= total
                if (cfg.log_every and self.step % cfg.log_every == 0) or at_end:
                    self._log_train(sums, n_sum, (time.perf_counter() - t_interval) / max(n_sum, 1))
                    sums.clear()
                    n_sum = 0
                    t_interval = time.perf_counter()
                if (cfg.val_every and self.step % cfg.val_every == 0) or at_end:
                    self._validate_on_main()
                if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or at_end:
                    last_ck = self.save()
        except KeyboardInterrupt:
            if self.step > 0 and self.is_main:
                log.warning("interrupted at step %d; saving a checkpoint to resume from", self.step)
                self.save(collective=False)
            raise
        finally:
            del it  # shuts the DataLoader workers down (their CPU time is then counted below)
            if self.logger is not None:
                self.logger.close()
        if last_ck is None:
            last_ck = ckpt.find_resume(self.out)
        result = TrainResult(out=self.out, step=self.step, checkpoint=last_ck, cpu_seconds=_cpu_seconds(),
                             seconds=time.perf_counter() - self.t_start,
                             train_seconds=time.perf_counter() - t_loop, resumed_from=self.resumed_from,
                             val=dict(self.last_val), notes=list(self.notes), last_losses=last_values)
        if self.is_main:
            self._write_summary(result)
        ddp.barrier(self.dist)
        return result

    def _write_summary(self, r: TrainResult) -> None:
        summary = {
            "format": "celebref.train-summary/1",
            "model": self.cfg.model,
            "model_config": _plain(self.model.config_dict()),
            "step": r.step,
            "total_steps": self.cfg.schedule.total_steps,
            "resumed_from": r.resumed_from,
            "checkpoint": str(r.checkpoint) if r.checkpoint else None,
            "seconds": r.seconds,
            "train_seconds_this_run": r.train_seconds,
            "cpu_seconds": r.cpu_seconds,
            "device": str(self.device),
            **({"cpu_allocator": self.cpu_allocator} if self.cpu_allocator else {}),
            "world_size": self.dist.world_size,
            "batch_size": {"global": self.cfg.batch_size, "per_rank": self.local_batch},
            "torch_threads": torch.get_num_threads(),
            "amp": self.amp,
            "dataset": {"path": str(self.faces.root), "hash": self.faces.hash,
                        "train_images": len(self.train_set), "val_images": len(self.val_set)},
            "degradations": {"train": self.train_set.degrader.preset.name, "val": self.val_set.preset.name},
            "references": self.references,
            "perceptual": getattr(self.perceptual, "kind", None),
            "identity_loss": self.identity is not None,
            "init": self.init_stats,
            "val": r.val,
            "notes": r.notes,
        }
        tmp = self.out / ".summary.json.tmp"
        text = json.dumps(summary, indent=2, sort_keys=True, default=str)
        validate_train_summary(json.loads(text), self.out / "summary.json", writing=True)  # bfrcore.formats.run
        tmp.write_text(text)
        os.replace(tmp, self.out / "summary.json")


def train(cfg: TrainConfig, *, resume: str | os.PathLike | None = "auto", device: str | None = None,
          on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train ``cfg.model`` as configured; resume from ``<out>/checkpoints/last.pt`` when ``resume='auto'``
    (a path resumes from that file; None / 'never' starts fresh)."""
    return Trainer(cfg, resume=resume, device=device, on_step=on_step).fit()


def _cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) of this process and of its finished children (the DataLoader workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"main": own.ru_utime + own.ru_stime, "workers": kids.ru_utime + kids.ru_stime}


def _fmt_metrics(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) and not math.isnan(v) else f"{k} {v}"
                     for k, v in d.items())


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v
