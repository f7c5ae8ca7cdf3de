"""`bench train` and `bench models`.

    bench train [--model dmdnet] --config configs/train/dmdnet_tiny.yaml [--out O] [--dataset D]
                [--device auto|cpu|cuda] [--workers N] [--steps N] [--seed S] [--resume auto|never|CKPT]
                [--set key=value ...]
    bench models [--json] [PATTERN]

`bench train` resumes from ``<out>/checkpoints/last.pt`` when it exists (``--resume auto``, the default), so
rerunning an interrupted command continues it. A bad config (unknown key, wrong type, unknown model, missing
dataset) exits with code 2 and names the key.
Multi-GPU / DDP (batch_size = global batch): torchrun --nproc_per_node N -m bfrcli.bench train ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from bfrcore import cliutil


def register(sub, common) -> None:
    p = sub.add_parser("train", parents=[common], help="train a model of the zoo (on-the-fly degradations)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", default=None,
                   help="model to train (`bench models`); must match the config's 'model' when it names one")
    p.add_argument("--config", "-c", type=Path, required=True, help="training config YAML (configs/train/*.yaml)")
    p.add_argument("--out", "-o", type=Path, default=None, help="run folder (default: the config's 'out')")
    p.add_argument("--dataset", type=Path, default=None, help="DATASET folder (default: the config's data.dataset)")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"),
                   help="where to train (default: the config's 'device')")
    p.add_argument("--workers", type=int, default=None, help="DataLoader worker processes (default: config)")
    p.add_argument("--steps", type=int, default=None, help="schedule.total_steps (default: config)")
    p.add_argument("--seed", type=int, default=None, help="global seed (default: config)")
    p.add_argument("--resume", default="auto",
                   help="auto (default): continue <out>/checkpoints/last.pt if present; never: start fresh "
                        "(refuses a folder holding checkpoints); or a checkpoint path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set loss.perceptual=0.1 (value parsed as YAML); repeatable")
    p.set_defaults(func=run_train)

    q = sub.add_parser("models", parents=[common], help="list the registered models, their flags and configs")
    q.add_argument("pattern", nargs="?", default="*", help="glob over model names (default: all)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=run_models)


def _overrides(args) -> dict:
    out: dict = {}
    for item in args.overrides:
        if "=" not in item:
            raise cliutil.UsageError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as e:
            raise cliutil.UsageError(f"--set {item!r}: value is not valid YAML ({e})") from None
    for key, val in (("out", args.out), ("data.dataset", args.dataset), ("device", args.device),
                     ("workers", args.workers), ("schedule.total_steps", args.steps), ("seed", args.seed)):
        if val is not None:
            out[key] = str(val) if isinstance(val, Path) else val
    return out


def _raw_model(path: Path) -> str | None:
    """The 'model' a config file names (None when unreadable: load_config reports that with exit 2)."""
    try:
        loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return None
    return loaded.get("model") if isinstance(loaded, dict) else None


def run_train(args: argparse.Namespace) -> int:
    import logging

    from baselines.training import checkpoint as ckpt
    from baselines.training import distributed
    from baselines.training.config import load_config
    from baselines.training.trainer import Trainer, resolve_model

    is_main = distributed.env_info().is_main
    if not is_main:  # a torchrun rank other than 0: warnings and errors only (rank 0 logs the run)
        logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    overrides = _overrides(args)
    if args.model is not None:
        raw_model = _raw_model(args.config)
        if raw_model is not None and raw_model != args.model:
            raise cliutil.UsageError(f"--model {args.model}, but {args.config} is a config for {raw_model!r}")
        overrides["model"] = args.model
    cfg = load_config(args.config, overrides)
    resolve_model(cfg)  # unknown model / bad model_config -> exit 2 before any work
    resume = args.resume
    if resume == "never" and ckpt.find_resume(cfg.out) is not None:
        raise cliutil.UsageError(f"{cfg.out} already holds checkpoints; use another --out or --resume auto")
    trainer = Trainer(cfg, resume=resume)
    result = trainer.fit()
    if not is_main:
        return cliutil.EXIT_OK
    summary = cliutil.RunSummary("bench train")
    summary.done = result.step
    summary.outputs["run"] = str(result.out)
    if result.checkpoint:
        summary.outputs["checkpoint"] = str(result.checkpoint)
    cpu = result.cpu_seconds
    summary.outputs["seconds"] = (f"{result.seconds:.0f} wall; CPU {cpu.get('main', 0):.0f} main process + "
                                  f"{cpu.get('workers', 0):.0f} data workers")
    if result.resumed_from is not None:
        summary.notes.append(f"resumed from step {result.resumed_from}")
    if result.val:
        keys = [k for k in ("psnr", "psnr_bicubic", "ssim", "ssim_bicubic", "id_dist", "id_dist_bicubic",
                            "psnr_generic", "id_dist_generic") if k in result.val]
        summary.notes.append("validation: " + ", ".join(f"{k} {result.val[k]:.4f}" for k in keys))
    summary.notes += result.notes
    summary.print()
    return cliutil.EXIT_OK


def run_models(args: argparse.Namespace) -> int:
    from baselines.catalog import model_rows

    rows = model_rows(args.pattern)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return cliutil.EXIT_OK
    if not rows:
        print(f"no registered model matches {args.pattern!r}")
        return cliutil.EXIT_OK
    for r in rows:
        flags = [k for k, v in r["flags"].items() if v]
        print(f"{r['name']}: {r['description']}")
        print(f"    flags: {', '.join(flags) or 'none'}")
        cfgs = []
        for cname, c in r["configs"].items():
            size = c.get("size")
            mark = " (default)" if cname == r["default_config"] else ""
            cfgs.append(f"{cname}{mark}" + (f" [{size}px]" if size else ""))
        print(f"    configs: {', '.join(cfgs)}")
        if r["pretrained"]:
            print(f"    weights: {', '.join(f'{w} ({c})' for w, c in r['pretrained'].items())}")
        if r["paper"]:
            print(f"    paper: {r['paper']}")
    print(f"\n{len(rows)} models; train one with `bench train --config configs/train/<model>_tiny.yaml`")
    return cliutil.EXIT_OK
