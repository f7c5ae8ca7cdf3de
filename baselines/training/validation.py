"""Validation during training: PSNR / SSIM (bfrcore.metrics.functional, the BasicSR convention on uint8 RGB) and dlib
identity distance (bfrcore.faces 'dlib' embedder, Euclidean; lower is better) of the EMA model's restorations of
the held-out images, next to the same metrics of the *bicubic baseline* — the LQ itself, which the degradation
already upsampled back to full size with bicubic interpolation (resized to the model size like the HQ).

Models that use references optionally (DMDNet) are scored with references (``psnr``, ...) and without them
(``psnr_generic``, ...); models that need them, with them; others, without.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from baselines.training.data import ValidationSet, batch_to
from bfrcore.tensor_images import to_uint8

log = logging.getLogger(__name__)


def _metric_fns():
    """PSNR and SSIM of uint8 (H, W, 3) pairs with bfrcore.metrics.functional (BasicSR convention, RGB, no crop)."""
    from bfrcore.metrics import functional as F

    def as_batch(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]

    def psnr(pred: np.ndarray, target: np.ndarray) -> float:
        return float(F.psnr(as_batch(pred), as_batch(target))[0])

    def ssim(pred: np.ndarray, target: np.ndarray) -> float:
        return float(F.ssim(as_batch(pred), as_batch(target))[0])

    return psnr, ssim


class Validator:
    def __init__(self, val_set: ValidationSet, *, device, batch_size: int, identity: bool = True):
        self.val_set = val_set
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.psnr, self.ssim = _metric_fns()
        self.hq = [to_uint8(it["hq"]) for it in val_set.items]
        self.lq = [to_uint8(it["lq"]) for it in val_set.items]
        self.embedder = None
        self.hq_emb = None
        if identity:
            from bfrcore import weights as wreg
            from bfrcore.faces import get_embedder

            try:
                self.embedder = get_embedder("dlib")
            except wreg.WeightsError as e:
                log.warning("validation identity distance disabled: %s", e)
            else:
                self.hq_emb = self.embedder.embed(self.hq)
        self.baseline = self._scores(self.lq, "bicubic")

    def _scores(self, images: list[np.ndarray], suffix: str) -> dict[str, float]:
        sfx = f"_{suffix}" if suffix else ""
        out = {
            f"psnr{sfx}": float(np.mean([self.psnr(a, b) for a, b in zip(images, self.hq)])),
            f"ssim{sfx}": float(np.mean([self.ssim(a, b) for a, b in zip(images, self.hq)])),
        }
        if self.embedder is not None:
            emb = self.embedder.embed(images)
            out[f"id_dist{sfx}"] = float(np.mean(np.linalg.norm(emb - self.hq_emb, axis=1)))
        return out

    def modes(self, model) -> list[tuple[str, bool]]:
        """(suffix, with_refs) pairs to score ``model`` in."""
        has_refs = all(it.get("refs") is not None for it in self.val_set.items)
        if getattr(model, "needs_references", False):
            return [("", True)]
        if getattr(model, "uses_references", False) and has_refs:
            return [("", True), ("generic", False)]
        return [("", False)]

    @torch.no_grad()
    def restore_all(self, model, with_refs: bool) -> list[np.ndarray]:
        out = []
        for batch in self.val_set.batches(self.batch_size):
            b = batch_to(batch, self.device)
            refs = b["refs"] if with_refs else None
            ref_lm = b["ref_landmarks"] if with_refs else None
            restored = model.restore(b["lq"], b["landmarks"], refs, ref_lm)
            out += [to_uint8(x) for x in restored]
        return out

    def __call__(self, model) -> dict[str, float]:
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            result: dict[str, float] = {}
            for suffix, with_refs in self.modes(model):
                result.update(self._scores(self.restore_all(model, with_refs), suffix))
        finally:
            model.train(was_training)
        result.update(self.baseline)
        result["n_images"] = len(self.hq)
        result["seconds"] = time.perf_counter() - t0
        return result
