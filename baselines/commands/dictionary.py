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
from pathlib import Path

from bfrcore import cliutil
from bfrcore.devices import resolve_device


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


def run_build(args: argparse.Namespace) -> int:
    from baselines.dictionary_build import DictionaryBuildOptions, build_from_dataset

    device = resolve_device(args.device)
    if args.max_images < 0:
        raise cliutil.UsageError("--max-images must be >= 0")
    if args.batch_size < 1:
        raise cliutil.UsageError("--batch-size must be >= 1")
    options = DictionaryBuildOptions(model_config=args.model_config, weights=args.weights, atoms=args.atoms,
                                     split=args.split, max_images=args.max_images, seed=args.seed,
                                     iters=args.iters, batch_size=args.batch_size, device=device)
    res = build_from_dataset(args.dataset, args.out, options)
    summary = cliutil.RunSummary("bench dict build")
    summary.skipped.update(res.skipped)
    summary.done = res.n_images
    summary.outputs["dictionary"] = str(res.out)
    summary.notes.append(res.note)
    summary.print()
    return 0
