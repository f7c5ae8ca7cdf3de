"""`bench evaluate` and `bench score`."""

from __future__ import annotations

import argparse
from pathlib import Path

from bfrcore import cliutil
from bfrcore.devices import resolve_device
from evaluation.metrics import DEFAULT_METRICS, MetricOptions


def _add_metric_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("metrics")
    g.add_argument("--protocol", default=None, metavar="NAME",
                   help="a published protocol (`bench protocols list`): fixes metrics, conventions, references "
                        "and checks the test set's recipe; recorded in summary.json")
    g.add_argument("--metrics", nargs="+", default=None, metavar="NAME",
                   help=f"metrics to compute (default: {' '.join(DEFAULT_METRICS)}; 'all' for every one; "
                        "`bench evaluate --list-metrics` lists them)")
    g.add_argument("--crop-border", type=int, default=0, help="pixels cut from each edge for PSNR/SSIM/NIQE (0)")
    g.add_argument("--convention", choices=("basicsr", "pyiqa"), default="basicsr",
                   help="PSNR/SSIM convention (default basicsr: uint8, MATLAB Y, per-channel SSIM)")
    g.add_argument("--fid-mode", choices=("clean", "legacy_pytorch"), default="clean",
                   help="FID/KID resize: clean (PIL bicubic, default) or legacy_pytorch (bilinear, BasicSR/VQFR)")
    g.add_argument("--fid-stats", default=None,
                   help="reference statistics instead of the test set's HQ images: ffhq512-fid-stats-clean, "
                        "ffhq512-fid-stats-basicsr or an .npz with mu/sigma")
    g.add_argument("--kid-subsets", type=int, default=100)
    g.add_argument("--kid-subset-size", type=int, default=1000)
    g.add_argument("--metric-batch-size", type=int, default=8, help="images per forward pass of network metrics")
    g.add_argument("--cache-dir", type=Path, default=None,
                   help="Inception feature cache (default $CELEBREF_HOME/cache/features)")
    g.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the 95%% CIs (2000)")
    g.add_argument("--max-refs", type=int, default=None, help="at most this many references per image (all)")
    g.add_argument("--limit", type=cliutil.positive_int, default=None,
                   help="only the first N test images (sorted ids); N >= 1")
    g.add_argument("--dataset-root", type=Path, default=None, help="where the test set's dataset is, if moved")
    g.add_argument("--overwrite", action="store_true", help="replace results computed with other settings")
    g.add_argument("--no-verify", dest="verify", action="store_false",
                   help="score even if the test set's LQ files do not match checksums.sha256 (recorded as "
                        "\"testset_verified\": false in summary.json)")


def check_metric_names(names) -> None:
    """Usage error (exit 2) listing the valid names when ``--metrics`` names an unknown metric."""
    from evaluation.metrics import expand_names, list_metrics

    known = list_metrics()
    unknown = [n for n in expand_names(names) if n not in known]
    if unknown:
        raise cliutil.UsageError(f"--metrics: unknown metric(s) {', '.join(unknown)}; valid: {', '.join(known)} "
                                 "(or 'default', 'all')")


def _options(args) -> MetricOptions:
    return MetricOptions(crop_border=args.crop_border, convention=args.convention, fid_mode=args.fid_mode,
                         fid_stats=args.fid_stats, kid_subsets=args.kid_subsets,
                         kid_subset_size=args.kid_subset_size, seed=args.seed, batch_size=args.metric_batch_size,
                         cache_dir=str(args.cache_dir) if args.cache_dir else None)


def register(sub, common) -> None:
    p = sub.add_parser("evaluate", parents=[common],
                       help="restore a test set with a model, save the outputs, compute metrics")
    p.add_argument("--model", help="model name (baselines.list_models())")
    p.add_argument("--testset", type=Path, help="test set folder (bench degrade output)")
    p.add_argument("--config", default=None, help="model config: tiny, paper or a YAML file (model default)")
    p.add_argument("--weights", default=None, help="weights-registry name or checkpoint file")
    p.add_argument("--allow-untrained", action="store_true",
                   help="score a trainable model without trained weights (random init; marked UNTRAINED)")
    p.add_argument("--name", default=None, help="results folder label (default: the model name)")
    p.add_argument("--mode", default="auto", choices=("auto", "generic", "specific", "both"),
                   help="auto: generic, plus specific when the model uses references and the test set has them")
    p.add_argument("--batch-size", type=int, default=1, help="images per restore() call (1)")
    p.add_argument("--lq-landmarks", choices=("manifest", "detect"), default="manifest",
                   help="landmarks of the LQ input for models that need them: the dataset manifest's (then dlib, "
                        "then mean face) or detected on the LQ image")
    p.add_argument("--eval-size", choices=("testset", "model"), default="testset",
                   help="score at the test set's size (outputs resized back) or at the model's input size")
    p.add_argument("--list-metrics", action="store_true", help="list the metrics and whether they can run here")
    cliutil.add_out(p, required=False, help="results root (default ./results)")
    cliutil.add_device(p)
    cliutil.add_seed(p)
    _add_metric_args(p)
    p.set_defaults(func=cmd_evaluate)

    q = sub.add_parser("score", parents=[common], help="score outputs of an external method by file name")
    q.add_argument("--pred", type=Path, required=True, help="folder of restored images named <image_id>.<ext>")
    q.add_argument("--testset", type=Path, required=True, help="test set folder")
    q.add_argument("--name", default=None, help="method name in the results (default: the --pred folder name)")
    q.add_argument("--mode", default="generic", choices=("generic", "specific"),
                   help="how the outputs were made: without (generic, default) or with references (specific)")
    q.add_argument("--pattern", default=None, help="file name pattern, e.g. '{image_id}_00.png'")
    q.add_argument("--resize", action="store_true", help="resize outputs of another size to the GT's (bicubic)")
    q.add_argument("--batch-size", type=int, default=4, help="images scored together (4)")
    cliutil.add_out(q, required=False, help="results root (default ./results)")
    cliutil.add_device(q)
    cliutil.add_seed(q)
    _add_metric_args(q)
    q.set_defaults(func=cmd_score)


def cmd_list_metrics(args) -> int:
    from evaluation.metrics import create_metric, list_metrics

    opts = _options(args)
    for name in list_metrics():
        m = create_metric(name, opts)
        ok, why = m.available()
        flag = "available" if ok else "UNAVAILABLE"
        default = " (default)" if name in DEFAULT_METRICS else ""
        print(f"{name:<14} {flag}{default}\n{'':<14} {m.convention}")
        if not ok:
            print(f"{'':<14} {why}")
    return 0


def _print_summaries(summaries, out: dict, command: str) -> None:
    rs = cliutil.RunSummary(command)
    for s in summaries:
        rs.done += s["n_scored"]
        if s["failures"]:
            rs.fail("image failed", len(s["failures"]))
        label = f"{s['model']} / {s['testset']['name']} / {s['mode']}"
        vals = ", ".join(f"{k} {v['mean']:.4f}" for k, v in s["metrics"].items()
                         if isinstance(v.get("mean"), (int, float)))
        rs.notes.append(f"{label}: {vals}")
        for k, why in s["unavailable"].items():
            rs.notes.append(f"{k} unavailable: {why}")
        for k, why in s.get("metric_errors", {}).items():
            rs.notes.append(f"{k} failed: {why}")
    rs.outputs.update(out)
    rs.print()


def cmd_evaluate(args) -> int:
    if args.list_metrics:
        return cmd_list_metrics(args)
    if not args.model or not args.testset:
        raise cliutil.UsageError("--model and --testset are required (or --list-metrics)")
    from evaluation.protocols.apply import apply_to_args

    proto = apply_to_args(args, command="evaluate")
    check_metric_names(args.metrics)
    from evaluation.runner import EvaluateConfig, evaluate

    device = resolve_device(args.device)
    cfg = EvaluateConfig(model=args.model, testset=args.testset, out=args.out or Path("results"), config=args.config,
                         weights=args.weights, name=args.name, metrics=args.metrics, modes=args.mode,
                         batch_size=args.batch_size, device=device, max_refs=args.max_refs, limit=args.limit,
                         lq_landmarks=args.lq_landmarks, eval_size=args.eval_size, dataset_root=args.dataset_root,
                         options=_options(args), bootstrap_resamples=args.bootstrap, seed=args.seed,
                         overwrite=args.overwrite, quiet=args.quiet, allow_untrained=args.allow_untrained,
                         verify=args.verify, protocol=proto.record() if proto else None,
                         extra_unavailable=proto.unavailable if proto else {})
    summaries = evaluate(cfg)
    root = (args.out or Path("results")) / (args.name or args.model)
    _print_summaries(summaries, {"results": str(root)}, "bench evaluate")
    return 1 if any(s["n_scored"] == 0 for s in summaries) else 0


def cmd_score(args) -> int:
    from evaluation.protocols.apply import apply_to_args
    from evaluation.score import ScoreConfig, score

    proto = apply_to_args(args, command="score")
    check_metric_names(args.metrics)
    device = resolve_device(args.device)
    cfg = ScoreConfig(pred=args.pred, testset=args.testset, out=args.out or Path("results"), name=args.name,
                      mode=args.mode, pattern=args.pattern, metrics=args.metrics, batch_size=args.batch_size,
                      device=device, max_refs=args.max_refs, limit=args.limit, resize=args.resize,
                      dataset_root=args.dataset_root, options=_options(args), bootstrap_resamples=args.bootstrap,
                      seed=args.seed, overwrite=args.overwrite, quiet=args.quiet, verify=args.verify,
                      protocol=proto.record() if proto else None,
                      extra_unavailable=proto.unavailable if proto else {})
    s = score(cfg)
    _print_summaries([s], {"results": str((args.out or Path("results")) / s["model"])}, "bench score")
    return 1 if s["n_scored"] == 0 else 0
