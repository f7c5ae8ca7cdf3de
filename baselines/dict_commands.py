"""`bench dict build`: DFDNet component dictionaries by K-means over HQ component features of a DATASET.

    bench dict build --dataset D --out F [--model-config paper|tiny|YAML] [--weights CKPT] [--atoms K]
                     [--split train] [--max-images N] [--seed 0] [--iters 100] [--batch-size 4] [--device auto]

The features come from the DFDNet of ``--model-config``: VGG19 for 'paper' (needs the torchvision-vgg19 weights),
the learned extractor for 'tiny' (its seeded initialisation, or the one of ``--weights``, a DFDNet checkpoint).
Images are the kept images of ``--split`` that have landmarks, resized to the model size. The output folder holds
``{part}_{F}_center.npy`` (K, C, s, s) and ``dictionary.json``; use it with ``model_config: {dictionary: F}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bfrcore import cliutil

log = logging.getLogger(__name__)


def register(sub, common) -> None:
    p = sub.add_parser("dict", parents=[common], help="DFDNet component dictionaries (K-means over HQ features)")
    dsub = p.add_subparsers(dest="dict_command", metavar="ACTION")
    dsub.required = True
    q = dsub.add_parser("build", parents=[common], help="build {part}_{F}_center.npy dictionaries from a DATASET")
    q.add_argument("--dataset", type=Path, required=True, help="DATASET folder (bfrcore.dataset format)")
    cliutil.add_out(q, help="output folder for the .npy files and dictionary.json")
    q.add_argument("--model-config", default=None,
                   help="DFDNet config whose feature extractor is used: paper (VGG19, 512), tiny (learned, 128) "
                        "or a YAML file (default: the --weights checkpoint's config, else paper)")
    q.add_argument("--weights", default=None,
                   help="DFDNet checkpoint whose (learned) extractor to use instead of the seeded initialisation")
    q.add_argument("--atoms", type=int, default=None, help="atoms K per part and scale (default: the config's)")
    q.add_argument("--split", default="train", help="dataset split to use (default train; 'all' for every split)")
    q.add_argument("--max-images", type=int, default=0, help="use at most this many images (0 = all)")
    q.add_argument("--iters", type=int, default=100, help="K-means iterations (default 100)")
    q.add_argument("--batch-size", type=int, default=4, help="images per feature-extraction batch")
    cliutil.add_seed(q)
    cliutil.add_device(q)
    q.set_defaults(func=run_build)


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


def build_from_dataset(dataset: Path, out: Path, *, model_config=None, weights=None, atoms: int | None = None,
                       split: str = "train", max_images: int = 0, seed: int = 0, iters: int = 100,
                       batch_size: int = 4, device: str = "cpu", summary: cliutil.RunSummary | None = None) -> dict:
    """The library function behind `bench dict build`; returns the dictionary.json record."""
    import torch

    from baselines.dictionary import DICTIONARY_FORMAT, build_dictionary, write_dictionary
    from baselines.registry import CHECKPOINT_FORMAT, get_model_info, load_file, resolve_config
    from bfrcore.dataset import FaceDataset

    info = get_model_info("dfdnet")
    ckpt_state = None
    cfg_source = model_config if model_config is not None else "paper"
    if weights is not None:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"checkpoint {weights} not found")
        ckpt = load_file(weights)
        if not (isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT and ckpt.get("model") == "dfdnet"):
            raise cliutil.UsageError(f"{weights}: not a DFDNet checkpoint of this suite")
        ckpt_state = ckpt.get("ema") or ckpt["state_dict"]
        if model_config is None and ckpt.get("config") is not None:
            cfg_source = ckpt["config"]
    try:
        cfg = resolve_config(info, cfg_source)
    except (ValueError, TypeError) as e:
        raise cliutil.UsageError(str(e)) from None
    k = atoms if atoms is not None else cfg.n_atoms
    if k is None:
        raise cliutil.UsageError("the config does not fix the number of atoms: give --atoms K")
    if k < 1:
        raise cliutil.UsageError("--atoms must be >= 1")
    cfg = dataclasses.replace(cfg, dictionary=None, n_atoms=int(k))
    model = info.model_cls(cfg)
    if ckpt_state is not None:
        own = model.state_dict()
        feats = {n: v for n, v in ckpt_state.items() if n.startswith("features.")}
        missing = [n for n in own if n.startswith("features.") and n not in feats]
        if missing:
            raise cliutil.UsageError(f"{weights}: lacks extractor tensors {missing[:3]}")
        model.load_state_dict({**own, **feats}, strict=True)
    model = model.to(device).eval()

    if not dataset.is_dir():
        raise FileNotFoundError(f"dataset folder {dataset} not found")
    ds = FaceDataset.load(dataset)
    try:
        ids = ds.image_ids(None if split == "all" else split)
    except ValueError as e:
        raise cliutil.UsageError(str(e)) from None
    if not ids:
        raise cliutil.UsageError(f"{dataset}: no kept images in split {split!r}")
    summary = summary or cliutil.RunSummary("bench dict build")
    used: list[str] = []

    def batches():
        buf_i, buf_l = [], []
        for iid, img, lm in _load_images(ds, ids, cfg.size):
            if img is None:
                summary.skip("no landmarks")
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
        raise cliutil.UsageError(f"{e} (images used: {len(used)}; lower --atoms or use more images)") from None
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
    summary.done = len(used)
    summary.outputs["dictionary"] = str(out)
    summary.notes.append(f"{cfg.n_atoms} atoms x 4 parts x 4 scales from {len(used)} faces "
                         f"({cfg.feature_extractor} features at {cfg.size})")
    return record


def _ids_digest(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def run_build(args: argparse.Namespace) -> int:
    device = cliutil.resolve_device(args.device)
    if args.max_images < 0:
        raise cliutil.UsageError("--max-images must be >= 0")
    if args.batch_size < 1:
        raise cliutil.UsageError("--batch-size must be >= 1")
    summary = cliutil.RunSummary("bench dict build")
    build_from_dataset(args.dataset, args.out, model_config=args.model_config, weights=args.weights,
                       atoms=args.atoms, split=args.split, max_images=args.max_images, seed=args.seed,
                       iters=args.iters, batch_size=args.batch_size, device=device, summary=summary)
    summary.print()
    return 0
