"""Torch datasets for training and validation, built from a DATASET (:class:`bfrcore.dataset.FaceDataset`).

Per training sample (image ``i`` visited in epoch ``e``):

- **HQ**: the aligned dataset image (optionally mirrored), resized to the model's input size (bicubic,
  antialiased when shrinking: the resize of `bench evaluate`).
- **LQ**: :class:`degradations.training.OnTheFlyDegrader` ``(preset, seed)(hq, image_id, e)``. By default the HQ is
  degraded at the dataset's resolution (as `bench degrade` makes test sets) and the LQ is then resized like the HQ
  (``data.degrade_at: dataset``); ``degrade_at: model`` degrades the resized HQ instead (cheaper, but the preset's
  scale factor then applies to the small image).
- **landmarks**: the manifest's 68 points of the HQ image (ground truth, as the authors train), scaled to the model
  size and mirrored with the image.
- **references**: other images of the same identity in the same split (never the image itself), a random subset of
  at most ``max_refs`` (with their landmarks), unmirrored.

Every random choice (mirror, reference subset; the degradation inside the degrader) is seeded from
``(seed, image_id, epoch)`` through :func:`degradations.pipeline.item_seed`, so a sample does not depend on the
order, the batch it lands in, the number of DataLoader workers or of DDP processes. :class:`StepSampler` yields
``(index, epoch)`` pairs from any global sample position, which makes resuming at step ``s`` exact; under DDP each
rank takes its own contiguous shard of every global batch.

Samples without references: with ``references='required'`` (the default for models that need or use them) images
whose identity has no other usable image are skipped and counted in :attr:`FaceTrainingSet.skipped`; with
``'optional'`` they are kept and :func:`collate` passes ``refs=None`` for a batch that contains one. Samples
without landmarks are skipped when landmarks are needed (model.needs_landmarks or component discriminators).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from bfrcore.dataset import FaceDataset
from bfrcore.tensor_images import resize_uint8
from degradations.pipeline import degrade_image, item_seed
from degradations.presets import get_preset
from degradations.training import OnTheFlyDegrader

log = logging.getLogger(__name__)

#: index of each iBUG-68 point's mirror image (jaw, brows, nose, eyes, outer and inner lips)
FLIP_68 = np.array(
    list(range(16, -1, -1))
    + list(range(26, 21, -1)) + list(range(21, 16, -1))
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65],
    dtype=np.int64,
)
REFERENCE_MODES = ("required", "optional", "none")


def sample_seed(seed: int, image_id: str, epoch: int | None, purpose: str) -> int:
    """Seed of one random choice of one sample (sha256-derived, independent of order and workers)."""
    return item_seed(seed, f"{image_id}@{epoch}#{purpose}")


def flip_landmarks(pts: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of the horizontally mirrored image (x -> width - 1 - x, points permuted so that e.g. the left eye
    stays points 36-41)."""
    out = pts[FLIP_68].copy()
    out[:, 0] = (width - 1) - out[:, 0]
    return out


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


class _Images:
    """Reads (and optionally caches) dataset images and their landmarks, and resizes them to the model size."""

    def __init__(self, faces: FaceDataset, size: int, cache: bool):
        self.faces = faces
        self.size = int(size)
        self.cache = cache
        self._full: dict[str, np.ndarray] = {}
        self._small: dict[str, np.ndarray] = {}

    def full(self, image_id: str) -> np.ndarray:
        img = self._full.get(image_id)
        if img is None:
            img = self.faces.read(image_id)
            if self.cache:
                self._full[image_id] = img
        return img

    def small(self, image_id: str) -> np.ndarray:
        img = self._small.get(image_id)
        if img is None:
            img = resize_uint8(self.full(image_id), self.size)
            if self.cache:
                self._small[image_id] = img
        return img

    def landmarks_full(self, image_id: str) -> np.ndarray | None:
        pts = self.faces.landmarks(image_id)
        return None if pts is None else np.asarray(pts, np.float32)

    def landmarks_small(self, image_id: str, full_width: int | None = None) -> np.ndarray | None:
        pts = self.landmarks_full(image_id)
        if pts is None:
            return None
        w = full_width or self.full(image_id).shape[1]
        return (pts * (self.size / float(w))).astype(np.float32)


def _filter_items(faces: FaceDataset, ids: Sequence[str], split_ids: set[str], references: str,
                  need_landmarks: bool) -> tuple[list[str], dict[str, list[str]], Counter]:
    """Usable image ids, each one's candidate references, and skip counts by reason."""
    skipped: Counter = Counter()
    has_lm = {i: faces.landmarks(i) is not None for i in ids} if need_landmarks else {}
    keep, refs = [], {}
    for iid in ids:
        if need_landmarks and not has_lm[iid]:
            skipped["no_landmarks"] += 1
            continue
        cands: list[str] = []
        if references != "none":
            cands = [r for r in faces.same_identity(iid) if r in split_ids and r != iid]
            if need_landmarks:
                cands = [r for r in cands if faces.landmarks(r) is not None]
            if not cands and references == "required":
                skipped["no_references"] += 1
                continue
        keep.append(iid)
        refs[iid] = cands
    return keep, refs, skipped


class FaceTrainingSet(Dataset):
    """Training samples with on-the-fly degradations. Index with ``(index, epoch)`` (see :class:`StepSampler`);
    a plain int means epoch 0."""

    def __init__(self, faces: FaceDataset, *, split: str, size: int, preset, seed: int, max_refs: int,
                 references: str, need_landmarks: bool, hflip: bool = True, degrade_at: str = "dataset",
                 cache_images: bool = True):
        if references not in REFERENCE_MODES:
            raise ValueError(f"references must be one of {REFERENCE_MODES}, got {references!r}")
        if degrade_at not in ("dataset", "model"):
            raise ValueError(f"degrade_at must be 'dataset' or 'model', got {degrade_at!r}")
        self.faces = faces
        self.split = split
        self.size = int(size)
        self.seed = int(seed)
        self.max_refs = int(max_refs)
        self.references = references
        self.need_landmarks = bool(need_landmarks)
        self.hflip = bool(hflip)
        self.degrade_at = degrade_at
        self.degrader = OnTheFlyDegrader(preset, seed)
        self.images = _Images(faces, size, cache_images)
        all_ids = faces.image_ids(split)
        if not all_ids:
            raise ValueError(f"{faces.root}: no kept images in split {split!r}")
        self.ids, self._ref_candidates, self.skipped = _filter_items(faces, all_ids, set(all_ids), references,
                                                                     need_landmarks)
        if not self.ids:
            raise ValueError(f"{faces.root}: none of the {len(all_ids)} {split!r} images is usable "
                             f"(skipped: {dict(self.skipped)})")

    def __len__(self) -> int:
        return len(self.ids)

    def reference_candidates(self, image_id: str) -> list[str]:
        return list(self._ref_candidates.get(image_id, []))

    def choose_references(self, image_id: str, epoch: int) -> list[str]:
        cands = self._ref_candidates.get(image_id, [])
        if not cands:
            return []
        rng = np.random.default_rng(sample_seed(self.seed, image_id, epoch, "refs"))
        n = min(self.max_refs, len(cands))
        return [cands[j] for j in sorted(rng.choice(len(cands), size=n, replace=False))]

    def flips(self, image_id: str, epoch: int) -> bool:
        if not self.hflip:
            return False
        return bool(np.random.default_rng(sample_seed(self.seed, image_id, epoch, "flip")).random() < 0.5)

    def __getitem__(self, key) -> dict:
        index, epoch = (key, 0) if isinstance(key, (int, np.integer)) else key
        iid = self.ids[int(index)]
        epoch = int(epoch)
        flip = self.flips(iid, epoch)
        full = self.images.full(iid)
        width = full.shape[1]
        pts = self.images.landmarks_small(iid, width)
        if self.degrade_at == "dataset":
            hq_full = full[:, ::-1] if flip else full
            lq_full, _ = self.degrader(np.ascontiguousarray(hq_full), iid, epoch)
            hq = self.images.small(iid)
            hq = hq[:, ::-1] if flip else hq
            lq = resize_uint8(lq_full, self.size)
        else:
            hq = self.images.small(iid)
            hq = np.ascontiguousarray(hq[:, ::-1]) if flip else hq
            lq, _ = self.degrader(hq, iid, epoch)
        if pts is not None and flip:
            pts = flip_landmarks(pts, self.size)
        item = {"image_id": iid, "epoch": epoch, "flipped": flip, "lq": to_tensor(lq), "hq": to_tensor(hq),
                "landmarks": None if pts is None else torch.from_numpy(pts), "refs": None, "ref_landmarks": None}
        if self.references != "none":
            rids = self.choose_references(iid, epoch)
            if rids:
                item["refs"] = torch.stack([to_tensor(self.images.small(r)) for r in rids])
                rl = [self.images.landmarks_small(r) for r in rids]
                if all(p is not None for p in rl):
                    item["ref_landmarks"] = torch.from_numpy(np.stack(rl))
                item["ref_ids"] = rids
        return item

    def init_batches(self, count: int, batch_size: int, seed: int) -> Iterator[dict]:
        """``count`` distinct HQ training faces (image x mirror when hflip is on), chosen with ``seed``, at the model
        size with landmarks, as dicts {"hq": (B, 3, S, S), "landmarks": (B, 68, 2)} (for
        ``generic_dictionary_init``)."""
        pool = [(i, f) for i in self.ids if self.faces.landmarks(i) is not None
                for f in ((False, True) if self.hflip else (False,))]
        rng = np.random.default_rng(item_seed(seed, "generic-dictionary-init"))
        order = rng.permutation(len(pool))[: min(count, len(pool))]
        chosen = [pool[j] for j in order]
        for s in range(0, len(chosen), batch_size):
            hqs, lms = [], []
            for iid, flip in chosen[s:s + batch_size]:
                hq = self.images.small(iid)
                pts = self.images.landmarks_small(iid)
                if flip:
                    hq, pts = hq[:, ::-1], flip_landmarks(pts, self.size)
                hqs.append(to_tensor(hq))
                lms.append(torch.from_numpy(pts))
            yield {"hq": torch.stack(hqs), "landmarks": torch.stack(lms)}

    def init_pool_size(self) -> int:
        n = sum(1 for i in self.ids if self.faces.landmarks(i) is not None)
        return n * (2 if self.hflip else 1)


def collate(items: list[dict]) -> dict:
    """Batch: ``lq``/``hq`` (B, 3, S, S); ``landmarks`` (B, 68, 2) or None (when any sample lacks them);
    ``refs`` a list of (N_i, 3, S, S) and ``ref_landmarks`` a list of (N_i, 68, 2), or None when any sample has no
    references (resp. reference landmarks); ``image_id``, ``epoch`` lists."""
    batch = {
        "image_id": [it["image_id"] for it in items],
        "epoch": [it.get("epoch") for it in items],
        "lq": torch.stack([it["lq"] for it in items]),
        "hq": torch.stack([it["hq"] for it in items]),
        "landmarks": None, "refs": None, "ref_landmarks": None,
    }
    if all(it.get("landmarks") is not None for it in items):
        batch["landmarks"] = torch.stack([it["landmarks"] for it in items])
    if all(it.get("refs") is not None for it in items):
        batch["refs"] = [it["refs"] for it in items]
        if all(it.get("ref_landmarks") is not None for it in items):
            batch["ref_landmarks"] = [it["ref_landmarks"] for it in items]
    return batch


def batch_to(batch: dict, device, memory_format=torch.contiguous_format) -> dict:
    """Move a collated batch's tensors to ``device`` (images in ``memory_format``)."""
    out = dict(batch)
    for k in ("lq", "hq"):
        out[k] = batch[k].to(device, non_blocking=True).contiguous(memory_format=memory_format)
    if batch.get("landmarks") is not None:
        out["landmarks"] = batch["landmarks"].to(device)
    if batch.get("refs") is not None:
        out["refs"] = [r.to(device, non_blocking=True).contiguous(memory_format=memory_format) for r in batch["refs"]]
    if batch.get("ref_landmarks") is not None:
        out["ref_landmarks"] = [r.to(device) for r in batch["ref_landmarks"]]
    return out


class StepSampler(Sampler):
    """Endless stream of ``(index, epoch)``: epoch ``e`` visits every index once in the order of a permutation
    seeded by ``(seed, e)``. ``start`` is the global sample position to begin at (``step * batch_size`` when
    resuming), so the stream after a resume is the one an uninterrupted run would have seen.

    Distributed (``world_size > 1``): the global stream is cut into global batches of ``batch_size`` positions
    (``start`` must be a multiple of it) and rank ``r`` yields the ``r``-th contiguous shard of
    ``batch_size // world_size`` positions of each. The shard of global step ``s`` is thus a function of
    ``(seed, s, rank)`` only, and the ranks' shards of one step together are exactly the batch a single process
    trains on at that step, whatever the number of processes."""

    def __init__(self, n: int, seed: int, start: int = 0, *, rank: int = 0, world_size: int = 1,
                 batch_size: int | None = None):
        if n < 1:
            raise ValueError("StepSampler needs at least one item")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"StepSampler: rank {rank} is not in [0, world_size={world_size})")
        if world_size > 1:
            if batch_size is None or batch_size % world_size:
                raise ValueError(f"StepSampler: batch_size {batch_size} must be a multiple of world_size "
                                 f"{world_size}")
            if start % batch_size:
                raise ValueError(f"StepSampler: start {start} must be a multiple of batch_size {batch_size}")
        self.n = int(n)
        self.seed = int(seed)
        self.start = int(start)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.batch_size = batch_size

    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng(item_seed(self.seed, f"epoch-order@{epoch}")).permutation(self.n)

    def global_stream(self) -> Iterator[tuple[int, int]]:
        """Every ``(index, epoch)`` from position ``start`` on, as a single process sees them."""
        pos = self.start
        while True:
            epoch, off = divmod(pos, self.n)
            perm = self.permutation(epoch)
            for i in range(off, self.n):
                yield (int(perm[i]), epoch)
            pos = (epoch + 1) * self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        stream = self.global_stream()
        if self.world_size == 1:
            yield from stream
            return
        shard = self.batch_size // self.world_size
        lo, hi = self.rank * shard, (self.rank + 1) * shard
        while True:
            batch = [next(stream) for _ in range(self.batch_size)]
            yield from batch[lo:hi]


class ValidationSet:
    """Held-out images with one fixed LQ each: ``degrade_image(hq, val_preset, item_seed(seed, image_id))`` at the
    dataset resolution (the LQ a test set made with the same preset and seed contains), resized like the HQ.
    References come from the dataset's reference lists (``references_of``, first ``max_refs``)."""

    def __init__(self, faces: FaceDataset, *, split: str, size: int, preset, seed: int, max_refs: int,
                 references: str, need_landmarks: bool, max_images: int = 0, degrade_at: str = "dataset"):
        self.faces = faces
        self.size = int(size)
        self.preset = get_preset(preset)
        self.seed = int(seed)
        images = _Images(faces, size, cache=False)
        ids = faces.image_ids(split)
        if not ids:
            raise ValueError(f"{faces.root}: no kept images in the validation split {split!r}")
        split_ids = set(ids)
        self.skipped: Counter = Counter()
        self.items: list[dict] = []
        for iid in ids:
            if max_images and len(self.items) >= max_images:
                break
            pts = images.landmarks_small(iid)
            if need_landmarks and pts is None:
                self.skipped["no_landmarks"] += 1
                continue
            refs: list[str] = []
            if references != "none":
                refs = [r for r in faces.references_of(iid) if r in split_ids and r != iid]
                if need_landmarks:
                    refs = [r for r in refs if faces.landmarks(r) is not None]
                refs = refs[:max_refs]
                if not refs and references == "required":
                    self.skipped["no_references"] += 1
                    continue
            full = images.full(iid)
            s = item_seed(self.seed, iid)
            if degrade_at == "dataset":
                lq = resize_uint8(degrade_image(full, self.preset, s)[0], self.size)
            else:
                lq = degrade_image(images.small(iid), self.preset, s)[0]
            item = {"image_id": iid, "epoch": None, "lq": to_tensor(lq), "hq": to_tensor(images.small(iid)),
                    "landmarks": None if pts is None else torch.from_numpy(pts), "refs": None,
                    "ref_landmarks": None}
            if refs:
                item["refs"] = torch.stack([to_tensor(images.small(r)) for r in refs])
                rl = [images.landmarks_small(r) for r in refs]
                if all(p is not None for p in rl):
                    item["ref_landmarks"] = torch.from_numpy(np.stack(rl))
            self.items.append(item)
        if not self.items:
            raise ValueError(f"{faces.root}: no usable validation images in split {split!r} "
                             f"(skipped: {dict(self.skipped)})")

    def __len__(self) -> int:
        return len(self.items)

    def batches(self, batch_size: int) -> Iterator[dict]:
        for s in range(0, len(self.items), batch_size):
            yield collate(self.items[s:s + batch_size])
