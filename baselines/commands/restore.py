"""`bench restore`: restore aligned faces or whole photos with a model of the zoo.

    bench restore --model dmdnet --input DIR|FILE [--refs DIR] [--weights W] [--config C] [--out O]
                  [--aligned auto|yes|no] [--device auto|cpu|cuda] [--seed S]

Writes ``O/<name>.png`` per input (PNG, same file name), ``O/faces/`` and ``O/faces_input/`` (restored and input
crops of the faces of whole photos) and ``O/manifest.json`` (model, weights sha256 or 'random init', per image:
kind, faces found, landmark source, skipped/failed with the reason). Exit codes: 0 when at least one image was
restored, 1 when none was (every image skipped or failed, or no image in the folder), 2 for usage errors (missing
input, unknown model or config, a model that needs references without usable --refs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bfrcore import cliutil
from bfrcore.devices import resolve_device


def register(sub, common) -> None:
    p = sub.add_parser("restore", parents=[common], help="restore aligned faces or whole photos with a model",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", required=True, help="model name (`bench models`)")
    p.add_argument("--input", "-i", type=Path, required=True, help="an image or a folder of images")
    p.add_argument("--refs", type=Path, default=None,
                   help="folder of reference faces of the same person (aligned faces or photos; the largest face "
                        "of a photo is used), used for every input by models that use references")
    p.add_argument("--weights", default=None, help="weights-registry name (e.g. dmdnet-official) or checkpoint file")
    p.add_argument("--allow-untrained", action="store_true",
                   help="run a trainable model without trained weights (random init; outputs flagged UNTRAINED)")
    p.add_argument("--config", default=None, help="model config: tiny, paper or a YAML file (default: the "
                                                  "weights' config, else the model's default)")
    cliutil.add_out(p, required=False, help="output folder (default ./restored/<model>)")
    p.add_argument("--aligned", choices=("auto", "yes", "no"), default="auto",
                   help="inputs are aligned faces (yes), whole photos (no) or decided per image (auto, default)")
    p.add_argument("--max-refs", type=int, default=None, help="use at most this many reference faces (all)")
    p.add_argument("--detector", default="dlib-hog", help="face detector (dlib-hog, dlib-cnn, mtcnn, insightface)")
    p.add_argument("--feather", type=float, default=0.08,
                   help="paste-back mask feather, as a fraction of the face crop side (0.08)")
    cliutil.add_device(p)
    cliutil.add_seed(p)
    p.set_defaults(func=run_restore)


def run_restore(args: argparse.Namespace) -> int:
    from baselines.inference import restore_folder

    if args.max_refs is not None and args.max_refs < 1:
        raise cliutil.UsageError("--max-refs must be >= 1")
    if not 0.0 < args.feather <= 0.5:
        raise cliutil.UsageError("--feather must be in (0, 0.5]")
    device = resolve_device(args.device)
    out = args.out or Path("restored") / args.model
    m = restore_folder(args.model, args.input, out, refs=args.refs, weights=args.weights, config=args.config,
                       aligned=args.aligned, device=device, seed=args.seed, detector=args.detector,
                       max_refs=args.max_refs, feather=args.feather, quiet=args.quiet,
                       allow_untrained=args.allow_untrained)
    rs = cliutil.RunSummary("bench restore")
    rs.done = m["counts"]["ok"]
    for r in m["images"]:
        if r["status"] != "ok":
            reason = r.get("reason", "?")
            reason = reason.split(":")[0] if reason.startswith("unreadable") else reason.split(":")[0][:60]
            (rs.skip if r["status"] == "skipped" else rs.fail)(reason)
    rs.outputs["restored"] = str(out)
    rs.outputs["manifest"] = str(out / "manifest.json")
    w = m["weights"]
    rs.notes.append(f"{m['model']} ({m['mode']} mode, size {m['options']['model_size']}), "
                    f"{m['counts']['faces_restored']} face(s) restored")
    if w["status"] == "random init":
        rs.notes.append("WARNING: " + w["warning"])
    elif w["status"] == "loaded":
        rs.notes.append(f"weights {w['name']} sha256 {str(w['sha256'])[:16]}...")
    if m["refs"]:
        rs.notes.append(f"references: {m['refs']['used']} used of {len(m['refs']['files'])} file(s)"
                        + (f" ({m['refs']['note']})" if m["refs"].get("note") else ""))
    if m.get("note"):
        rs.notes.append(m["note"])
    rs.print()
    if m["counts"]["images"] == 0:
        return cliutil.EXIT_USAGE  # an input without images is bad input, not a failed run
    return cliutil.EXIT_OK if m["counts"]["ok"] > 0 else cliutil.EXIT_FAILURE
