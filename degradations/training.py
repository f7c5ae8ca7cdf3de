"""Training-time degradation on the fly, through the same code path as test sets (:func:`degrade_image`).

* :class:`OnTheFlyDegrader` — ``(hq_uint8, item_id, epoch) -> (lq_uint8, params)``; the seed is
  ``item_seed(seed, f"{item_id}@{epoch}")``, so each (item, epoch) pair gets its own, reproducible degradation,
  whatever the DataLoader's worker count or shuffling. ``epoch=None`` reproduces a test set made with the same
  preset and seed (``item_seed(seed, item_id)``) byte for byte.
* :class:`DegradedFaceDataset` — a ``torch.utils.data.Dataset`` over a dataset object with ``image_ids(split)`` and
  ``read(image_id)`` (e.g. :class:`bfrcore.dataset.FaceDataset`), yielding float tensors in [0, 1].
* :class:`RandomDegradation` — a torchvision-style transform on a tensor image, drawing seeds from an explicit
  ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from degradations.pipeline import degrade_image, item_seed
from degradations.presets import Preset, get_preset


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


class OnTheFlyDegrader:
    """Degrade training images reproducibly: same (preset, seed, item_id, epoch) -> same bytes."""

    def __init__(self, preset: Preset | str | dict, seed: int = 0):
        self.preset = get_preset(preset)
        self.seed = int(seed)

    def seed_for(self, item_id: str, epoch: int | None = 0) -> int:
        return item_seed(self.seed, str(item_id) if epoch is None else f"{item_id}@{int(epoch)}")

    def __call__(self, hq: np.ndarray, item_id: str, epoch: int | None = 0) -> tuple[np.ndarray, dict]:
        return degrade_image(hq, self.preset, self.seed_for(item_id, epoch))

    def __repr__(self) -> str:
        return f"OnTheFlyDegrader({self.preset.label}, seed={self.seed})"


class DegradedFaceDataset(torch.utils.data.Dataset):
    """(LQ, GT) pairs degraded on the fly. Items: ``{"lq", "gt"}`` float32 (3, H, W) in [0, 1], ``"image_id"``,
    ``"seed"`` (and ``"params"`` without kernels when ``return_params``: it holds None values, so batch it with
    a ``collate_fn`` of your own). Call :meth:`set_epoch` each epoch for
    fresh degradations (a DataLoader with persistent workers needs a fresh iterator to see it)."""

    def __init__(self, dataset: Any, preset: Preset | str | dict, seed: int = 0, split: str | None = "train",
                 ids: Sequence[str] | None = None, epoch: int = 0, return_params: bool = False):
        self.dataset = dataset
        self.degrader = OnTheFlyDegrader(preset, seed)
        self.ids = list(ids) if ids is not None else list(dataset.image_ids(split))
        if not self.ids:
            raise ValueError(f"no images in split {split!r}")
        self.epoch = int(epoch)
        self.return_params = return_params

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        iid = self.ids[index]
        hq = self.dataset.read(iid)
        lq, params = self.degrader(hq, iid, self.epoch)
        item = {"lq": _to_tensor(lq), "gt": _to_tensor(hq), "image_id": iid,
                "seed": self.degrader.seed_for(iid, self.epoch)}
        if self.return_params:
            from degradations.sampling import params_to_record

            item["params"] = params_to_record(params)
        return item


class RandomDegradation:
    """Transform: degrade a tensor image (3, H, W) or a batch (B, 3, H, W), uint8 or float in [0, 1]; returns the
    same shape, dtype and device. Each image's seed is drawn from ``generator`` (``torch.randint``), then the
    shared code path applies (the drawn params are kept in :attr:`last_params`)."""

    def __init__(self, preset: Preset | str | dict, generator: torch.Generator | None = None):
        self.preset = get_preset(preset)
        self.generator = generator
        self.last_params: list[dict] = []

    def _one(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 3 or img.shape[0] != 3:
            raise ValueError(f"expected (3, H, W), got {tuple(img.shape)}")
        arr = img.detach().cpu()
        if arr.dtype != torch.uint8:
            arr = (arr.float().clamp(0, 1) * 255.0).round().to(torch.uint8)
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=self.generator).item())
        lq, params = degrade_image(arr.permute(1, 2, 0).numpy(), self.preset, seed)
        params["seed"] = seed
        self.last_params.append(params)
        out = torch.from_numpy(np.ascontiguousarray(lq.transpose(2, 0, 1)))
        if img.dtype != torch.uint8:
            out = out.to(img.dtype).div_(255.0)
        return out.to(img.device)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        self.last_params = []
        if img.ndim == 4:
            return torch.stack([self._one(x) for x in img])
        return self._one(img)

    def __repr__(self) -> str:
        return f"RandomDegradation({self.preset.label})"
