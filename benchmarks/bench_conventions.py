"""Why papers disagree: how much each metric convention switch moves the number, measured on real face pairs.

    .venv/bin/python benchmarks/bench_conventions.py [--n 24] [--faces ../shared/data/faces] [--out FILE.md]

Pairs: the first ``--n`` FFHQ-aligned 512x512 CelebRef-HQ images of the DMDNet test examples
(``dmdnet_celebrefhq/TestExamples/TestSpecificRestoration/RefsImg``), each degraded with a built-in preset
(``refldm-moderate`` and ``celebref-x8``, seed = the suite's per-image seed of the file name), so the "restored"
image is the degraded one upsampled back (what a bicubic baseline scores). For every switch the table gives the
mean value under each setting, the mean difference (B − A) and its largest absolute value over the pairs.

Switches: PSNR on RGB vs on Y (BasicSR MATLAB Y); crop_border 0 vs 4 vs 8 (PSNR-Y); BasicSR vs pyiqa PSNR;
SSIM BasicSR RGB vs BasicSR Y vs pyiqa Y vs pyiqa Y with MATLAB's automatic downsampling; MS-SSIM; NIQE
crop_border 0 vs 4; the FID resize (clean PIL bicubic vs legacy bilinear F.interpolate) as the difference of the
299x299 Inception inputs. Network metrics run only where their weights are in the cache (else the row says
"n/a" and which weights are missing): FID itself (Inception), IDS with ArcFace R50 / arcface_resnet18 / dlib,
LPIPS alex vs vgg. Nothing is downloaded and nothing is written to the repository unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXAMPLES = "dmdnet_celebrefhq/TestExamples/TestSpecificRestoration/RefsImg"
PRESETS = ("refldm-moderate", "celebref-x8")


def load_pairs(faces: Path, n: int, preset: str):
    from bfrcore.imageio import read_image
    from degradations.pipeline import degrade_image, item_seed

    files = sorted((faces / EXAMPLES).glob("*/*.png"))[:n]
    if not files:
        raise SystemExit(f"no images under {faces / EXAMPLES}")
    hq, lq = [], []
    for f in files:
        img = read_image(f)
        out, _ = degrade_image(img, preset, item_seed(0, f"{f.parent.name}_{f.stem}"))
        hq.append(img)
        lq.append(out)
    t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).contiguous()
    return t(lq), t(hq), files


def row(name, a_label, a, b_label, b, unit=""):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = b - a
    return {"switch": name, "A": a_label, "mean A": a.mean(), "B": b_label, "mean B": b.mean(),
            "mean (B-A)": d.mean(), "max |B-A|": np.abs(d).max(), "unit": unit}


def na(name, why):
    return {"switch": name, "na": why}


def measure(pred: torch.Tensor, gt: torch.Tensor, preset: str) -> list[dict]:
    from bfrcore.metrics import functional as fn
    from evaluation.metrics import MetricOptions, create_metric

    rows = []
    P = lambda **k: fn.psnr(pred, gt, **k).numpy()
    S = lambda **k: fn.ssim(pred, gt, **k).numpy()
    rows.append(row("PSNR colour", "RGB", P(), "Y (BasicSR)", P(test_y_channel=True), "dB"))
    rows.append(row("PSNR crop border (Y)", "0", P(test_y_channel=True), "4", P(test_y_channel=True, crop_border=4),
                    "dB"))
    rows.append(row("PSNR crop border (Y)", "0", P(test_y_channel=True), "8", P(test_y_channel=True, crop_border=8),
                    "dB"))
    rows.append(row("PSNR implementation (RGB)", "BasicSR", P(), "pyiqa", P(convention="pyiqa"), "dB"))
    rows.append(row("PSNR implementation (Y)", "BasicSR Y", P(test_y_channel=True), "pyiqa Y (YIQ)",
                    P(test_y_channel=True, convention="pyiqa"), "dB"))
    rows.append(row("SSIM colour", "BasicSR RGB", S(), "BasicSR Y", S(test_y_channel=True)))
    rows.append(row("SSIM implementation (Y)", "BasicSR Y", S(test_y_channel=True), "pyiqa Y",
                    S(test_y_channel=True, convention="pyiqa")))
    rows.append(row("SSIM downsampling (pyiqa Y)", "none", S(test_y_channel=True, convention="pyiqa"),
                    "MATLAB auto (f=2 at 512)", S(test_y_channel=True, convention="pyiqa", downsample=True)))
    rows.append(row("SSIM vs MS-SSIM (Y)", "SSIM pyiqa Y", S(test_y_channel=True, convention="pyiqa"),
                    "MS-SSIM pyiqa", fn.ms_ssim(pred, gt).numpy()))
    from evaluation.metrics import Batch

    imgs = [p.permute(1, 2, 0).numpy() for p in pred]
    gts = [g.permute(1, 2, 0).numpy() for g in gt]
    batch = Batch([str(i) for i in range(len(imgs))], imgs, gts)
    niqe0, niqe4 = create_metric("niqe", MetricOptions()), create_metric("niqe", MetricOptions(crop_border=4))
    ok, why = niqe0.available()
    if ok:
        rows.append(row("NIQE crop border", "0", niqe0.setup().compute(batch)["niqe"], "4",
                        niqe4.setup().compute(batch)["niqe"]))
    else:
        rows.append(na("NIQE crop border", why.split(". Fix")[0]))
    from evaluation import fid

    xc, xl = fid.preprocess(gts, "clean"), fid.preprocess(gts, "legacy_pytorch")
    diff = ((xc - xl).abs().mean(dim=(1, 2, 3)) * 127.5).numpy()  # [-1, 1] -> 8-bit levels
    rows.append({"switch": "FID resize input (HQ images)", "A": "clean (PIL bicubic)", "B": "legacy (bilinear)",
                 "mean (B-A)": float(diff.mean()), "max |B-A|": float(diff.max()),
                 "unit": "mean |Δ| of the 299x299 Inception input, 8-bit levels", "mean A": None, "mean B": None})
    fid_m = create_metric("fid", MetricOptions())
    ok, why = fid_m.available()
    rows.append(na("FID clean vs legacy resize", "needs Inception weights: " + why.split(". Fix")[0]) if not ok else
                na("FID clean vs legacy resize", "measure with `bench score --fid-mode` on >= 2k images (FID on "
                                                  f"{len(imgs)} images is dominated by its bias)"))
    ids = {}
    for b in ("arcface", "arcface18", "dlib"):
        m = create_metric(f"ids_{b}", MetricOptions())
        ok, why = m.available()
        if ok:
            m.setup()
            refs = [[] for _ in imgs]
            out = m.compute(Batch(batch.image_ids, imgs, gts, refs, [[] for _ in imgs]))
            ids[b] = out[f"ids_{b}"]
        else:
            ids[b] = why.split(". Fix")[0]
    avail = [b for b, v in ids.items() if not isinstance(v, str)]
    for a_, b_ in (("arcface", "arcface18"), ("arcface", "dlib"), ("arcface18", "dlib")):
        if a_ in avail and b_ in avail:
            rows.append(row("IDS network", f"{a_} cosine", ids[a_], f"{b_} cosine", ids[b_]))
        else:
            miss = "; ".join(f"{k}: {ids[k]}" for k in (a_, b_) if isinstance(ids[k], str))
            rows.append(na(f"IDS network ({a_} vs {b_})", miss))
    for b in avail:
        rows.append({"switch": f"IDS value ({b})", "A": "", "B": "", "mean A": float(np.mean(ids[b])),
                     "mean B": None, "mean (B-A)": None, "max |B-A|": None, "unit": "cosine to the GT"})
    la, lv = create_metric("lpips_alex", MetricOptions()), create_metric("lpips_vgg", MetricOptions())
    oka, whya = la.available()
    okv, whyv = lv.available()
    if oka and okv:
        rows.append(row("LPIPS network", "alex", la.setup().compute(batch)["lpips_alex"], "vgg",
                        lv.setup().compute(batch)["lpips_vgg"]))
    else:
        rows.append(na("LPIPS alex vs vgg", "; ".join(w.split(". Fix")[0] for w in (whya, whyv) if w)))
    for r in rows:
        r["preset"] = preset
    return rows


def fmt(v, digits=4):
    if v is None:
        return ""
    return f"{v:+.{digits}f}" if digits < 0 else f"{v:.{digits}f}"


def to_markdown(rows: list[dict], n: int) -> str:
    out = ["| pairs | switch | A | mean A | B | mean B | mean (B−A) | max abs (B−A) | unit |",
           "|---|---|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        if "na" in r:
            out.append(f"| {r['preset']} ×{n} | {r['switch']} | n/a: {r['na']} | | | | | | |")
        else:
            out.append(f"| {r['preset']} ×{n} | {r['switch']} | {r['A']} | {fmt(r['mean A'])} | {r['B']} | "
                       f"{fmt(r['mean B'])} | {fmt(r['mean (B-A)'])} | {fmt(r['max |B-A|'])} | {r['unit']} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for preset in PRESETS:
        pred, gt, files = load_pairs(a.faces, a.n, preset)
        rows += measure(pred, gt, preset)
    md = to_markdown(rows, len(files))
    print(md)
    if a.out:
        a.out.write_text(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
