"""DFDNet component dictionaries from a DATASET: K-means over the HQ component features of its kept images.

The library side of `bench dict build` (:mod:`baselines.commands.dictionary`). The features come from the DFDNet of
``model_config``: VGG19 for 'paper' (needs the torchvision-vgg19 weights), the learned extractor for 'tiny' (its
seeded initialisation, or the one of ``weights``, a DFDNet checkpoint). Images are the kept images of ``split`` that
have landmarks, resized to the model size. The output folder holds ``{part}_{F}_center.npy`` (K, C, s, s) and
``dictionary.json`` (:mod:`baselines.dictionary` writes and reads them).
"""

from __future__ import annotations

import dataclasses
import logging
import platform
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bfrcore.errors import InputError

log = logging.getLogger(__name__)


class DictionaryBuildError(InputError):
    """A dictionary cannot be built from these inputs (not a DFDNet checkpoint, a bad config or atom count, an
    unknown or empty split, too few images for the atoms); the message names the input and the fix."""


@dataclass(frozen=True)
class DictionaryBuildOptions:
    """What to build. ``model_config``: 'paper' | 'tiny' | a YAML path | a config dict, or None for the
    ``weights`` checkpoint's config, else 'paper'. ``weights``: a DFDNet checkpoint whose learned extractor to use.
    ``atoms``: K per part and scale (None: the config's). ``split``: a dataset split or 'all'. ``max_images``:
    at most this many images (0 = all). ``iters``: K-means iterations. ``batch_size``: images per feature
    batch. ``device``: a torch device name ('cpu', 'cuda')."""

    model_config: str | dict | None = None
    weights: str | Path | None = None
    atoms: int | None = None
    split: str = "train"
    max_images: int = 0
    seed: int = 0
    iters: int = 100
    batch_size: int = 4
    device: str = "cpu"


@dataclass
class DictionaryBuildResult:
    """What :func:`build_from_dataset` wrote: the dictionary.json ``record``, the ``out`` folder, the number of
    images used, the images skipped by reason and a one-line ``note`` describing the dictionary."""

    record: dict
    out: Path
    n_images: int
    skipped: Counter = field(default_factory=Counter)
    note: str = ""


def _load_images(ds, ids: list[str], size: int):
    """(image (3, S, S) float tensor in [0, 1], landmarks (68, 2) in pixels of S) per id with landmarks."""
    import torch
    import torch.nn.functional as F

    for iid in ids:
        lm = ds.landmarks(iid)
        if lm is None:
            yield iid, None, None
            continue
        img = ds.read(iid)
        h, w = img.shape[:2]
        t = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(255).unsqueeze(0)
        if (h, w) != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        pts = torch.from_numpy(np.asarray(lm, np.float32) * np.array([size / w, size / h], np.float32))
        yield iid, t[0].clamp(0, 1), pts


def build_from_dataset(dataset: Path, out: Path,
                       options: DictionaryBuildOptions | None = None) -> DictionaryBuildResult:
    """Build the dictionaries of ``dataset`` into ``out`` (the library function behind `bench dict build`).

    Raises :class:`DictionaryBuildError` (an :class:`~bfrcore.errors.InputError`) for a bad checkpoint, config,
    atom count or split, or too few images for the atoms; ``FileNotFoundError`` for a missing checkpoint or
    dataset folder."""
    import torch

    from baselines.dictionary import DICTIONARY_FORMAT, build_dictionary, write_dictionary
    from baselines.registry import CHECKPOINT_FORMAT, get_model_info, load_file, resolve_config
    from bfrcore.dataset import FaceDataset

    o = options or DictionaryBuildOptions()
    model_config, weights, atoms, split = o.model_config, o.weights, o.atoms, o.split
    max_images, seed, iters, batch_size, device = o.max_images, o.seed, o.iters, o.batch_size, o.device
    info = get_model_info("dfdnet")
    ckpt_state = None
    cfg_source = model_config if model_config is not None else "paper"
    if weights is not None:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"checkpoint {weights} not found")
        ckpt = load_file(weights)
        if not (isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT and ckpt.get("model") == "dfdnet"):
            raise DictionaryBuildError(f"{weights}: not a DFDNet checkpoint of this suite")
        ckpt_state = ckpt.get("ema") or ckpt["state_dict"]
        if model_config is None and ckpt.get("config") is not None:
            cfg_source = ckpt["config"]
    try:
        cfg = resolve_config(info, cfg_source)
    except (ValueError, TypeError) as e:
        raise DictionaryBuildError(str(e)) from None
    k = atoms if atoms is not None else cfg.n_atoms
    if k is None:
        raise DictionaryBuildError("the config does not fix the number of atoms: give --atoms K")
    if k < 1:
        raise DictionaryBuildError("--atoms must be >= 1")
    cfg = dataclasses.replace(cfg, dictionary=None, n_atoms=int(k))
    model = info.model_cls(cfg)
    if ckpt_state is not None:
        own = model.state_dict()
        feats = {n: v for n, v in ckpt_state.items() if n.startswith("features.")}
        missing = [n for n in own if n.startswith("features.") and n not in feats]
        if missing:
            raise DictionaryBuildError(f"{weights}: lacks extractor tensors {missing[:3]}")
        model.load_state_dict({**own, **feats}, strict=True)
    model = model.to(device).eval()

    if not dataset.is_dir():
        raise FileNotFoundError(f"dataset folder {dataset} not found")
    ds = FaceDataset.load(dataset)
    try:
        ids = ds.image_ids(None if split == "all" else split)
    except ValueError as e:
        raise DictionaryBuildError(str(e)) from None
    if not ids:
        raise DictionaryBuildError(f"{dataset}: no kept images in split {split!r}")
    skipped: Counter = Counter()
    used: list[str] = []

    def batches():
        buf_i, buf_l = [], []
        for iid, img, lm in _load_images(ds, ids, cfg.size):
            if img is None:
                skipped["no landmarks"] += 1
                continue
            if max_images and len(used) >= max_images:
                break
            used.append(iid)
            buf_i.append(img)
            buf_l.append(lm)
            if len(buf_i) == batch_size:
                yield torch.stack(buf_i), torch.stack(buf_l)
                buf_i, buf_l = [], []
        if buf_i:
            yield torch.stack(buf_i), torch.stack(buf_l)

    try:
        atoms_, stats = build_dictionary(model, batches(), cfg.n_atoms, seed=seed, n_iter=iters,
                                         progress=lambda m: log.info(m))
    except ValueError as e:
        raise DictionaryBuildError(f"{e} (images used: {len(used)}; lower --atoms or use more images)") from None
    record = {
        "format": DICTIONARY_FORMAT,
        "size": cfg.size,
        "feature_extractor": cfg.feature_extractor,
        "feature_sizes": [model.feature_size(level) for level in range(4)],
        "part_sizes_512": list(cfg.part_sizes),
        "n_atoms": cfg.n_atoms,
        "seed": seed,
        "kmeans_iters": iters,
        "model_config": cfg_source if isinstance(cfg_source, str) else "checkpoint config",
        "weights": str(weights) if weights else (cfg.vgg_weights if cfg.feature_extractor == "vgg19"
                                                 else f"seeded init (init_seed={cfg.init_seed})"),
        "dataset": {"root": str(dataset), "hash": ds.hash, "split": split},
        "n_images": len(used),
        "image_ids_sha": _ids_digest(used),
        **stats,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
    }
    write_dictionary(out, atoms_, model, {k_: v for k_, v in record.items() if k_ != "format"})
    return DictionaryBuildResult(
        record=record, out=out, n_images=len(used), skipped=skipped,
        note=(f"{cfg.n_atoms} atoms x 4 parts x 4 scales from {len(used)} faces "
              f"({cfg.feature_extractor} features at {cfg.size})"))


def _ids_digest(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ids).encode()).hexdigest()
