"""Benchmark our batched metrics against the per-image loops people run, on real 512x512 faces, in one run.

    .venv/bin/python benchmarks/bench_metrics.py [--n 100] [--threads 1] [--repeat 7] [--faces ../shared/data/faces]

Pairs: the FFHQ-aligned 512x512 CelebRef-HQ / ASFFNet references of ``../shared/data/faces`` (kind
``hq_aligned_512``), each degraded on the fly with OpenCV (Gaussian blur σ ∈ [1, 3], Gaussian noise σ ∈ [2, 10],
JPEG quality ∈ [30, 90], seeded), cycled to ``--n`` pairs. Nothing is written to the repository.

PSNR and SSIM (RGB, BasicSR convention, crop_border 0), each timed on its own:

- ``ours``: ``bfrcore.metrics.functional.psnr`` / ``ssim`` on the whole batch, given as a zero-copy (N, 3, 512, 512)
  view of the same (N, 512, 512, 3) uint8 arrays the loops get (no layout copy outside the timing);
- ``BasicSR-style loop``: per image ``calculate_psnr`` / ``calculate_ssim`` exactly as BasicSR writes them (each
  converts its inputs to float64; SSIM per channel with ``cv2.filter2D`` and the 11x11 Gaussian, 'valid' crop),
  transcribed in peers/basicsr_metrics.py, the reference of the metric tests (BasicSR is not installed);
- ``scikit-image loop`` (unless ``--skip-skimage``; fewer repeats, it is slow): per image
  ``peak_signal_noise_ratio`` + ``structural_similarity`` (Gaussian weights, σ 1.5, population covariance,
  data_range 255, channel_axis 2) — the same quantities.

The machine is shared, so the rows are interleaved: every repeat times ours and the peer one after the other for
each metric (the order flips every repeat), after one untimed warm-up call of each. Reported: the median wall and
CPU seconds over ``--repeat`` repeats, the speed-up as the median of the per-repeat ratios (peer / ours, same
repeat) with its min-max, and the max |Δ| between the values. ``PSNR + SSIM`` sums the two timings of a repeat. The
load average (``os.getloadavg``) is printed before and after.

LPIPS (VGG, v0.1): ``lpips.LPIPS`` called pair by pair (the lpips package's own loop) vs ours batched
(``evaluation.lpips.lpips_distance``, batch 8) on the first ``--lpips-n`` pairs (4: VGG on 512x512 costs seconds
per pair on CPU), interleaved the same way. The
trunk is the registry's torchvision VGG16 when present; otherwise (offline machines) a seeded random VGG16 trunk
loaded identically into both models, so the timing and the |Δ| between the two implementations are meaningful but
the values are not LPIPS scores (the output says which). ``--skip-lpips`` leaves it out.

``--threads`` sets torch and OpenCV threads for every row alike.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from peers.basicsr_metrics import basicsr_psnr, basicsr_ssim  # the peer (the tests' reference)


def load_pairs(faces: Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    from bfrcore.imageio import read_image

    with open(faces / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "hq_aligned_512"]
    rows.sort(key=lambda r: r["sha256"])
    hq_imgs = []
    for r in rows:
        img = read_image(faces / r["source"] / r["path"])
        if img.shape == (512, 512, 3):
            hq_imgs.append(img)
    if not hq_imgs:
        raise SystemExit(f"no 512x512 aligned faces under {faces}")
    rng = np.random.default_rng(seed)
    hq, lq = [], []
    for k in range(n):
        img = hq_imgs[k % len(hq_imgs)]
        x = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(1, 3))).astype(np.float64)
        x = np.clip(x + rng.normal(0, rng.uniform(2, 10), x.shape), 0, 255).astype(np.uint8)
        _, enc = cv2.imencode(".jpg", x[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
        x = cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1]
        hq.append(img)
        lq.append(np.ascontiguousarray(x))
    return np.stack(hq), np.stack(lq)


# ----------------------------------------------------------------------------------------------- peers
def basicsr_psnr_loop(hq: np.ndarray, lq: np.ndarray) -> np.ndarray:
    return np.array([basicsr_psnr(a, b) for a, b in zip(lq, hq)])


def basicsr_ssim_loop(hq: np.ndarray, lq: np.ndarray) -> np.ndarray:
    return np.array([basicsr_ssim(a, b) for a, b in zip(lq, hq)])


def skimage_loop(hq: np.ndarray, lq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    ps, ss = [], []
    for a, b in zip(lq, hq):
        ps.append(peak_signal_noise_ratio(b, a, data_range=255))
        ss.append(structural_similarity(b.astype(np.float64), a.astype(np.float64), data_range=255, channel_axis=2,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
    return np.array(ps), np.array(ss)


# ----------------------------------------------------------------------------------------------- timing
def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def interleaved(pairs: dict[str, tuple], repeat: int) -> dict[str, dict]:
    """{metric: (ours_fn, peer_fn)} -> {metric: {"ours": [(wall, cpu)], "peer": [...], "ours_val", "peer_val"}}.
    One untimed warm-up call of each, then ``repeat`` rounds; within a round each metric's two rows run back to
    back, ours first in even rounds and the peer first in odd ones."""
    res = {m: {"ours": [], "peer": []} for m in pairs}
    for m, (f_ours, f_peer) in pairs.items():
        res[m]["ours_val"], res[m]["peer_val"] = f_ours(), f_peer()
    for r in range(repeat):
        for m, (f_ours, f_peer) in pairs.items():
            order = (("ours", f_ours), ("peer", f_peer))
            for who, f in (order if r % 2 == 0 else order[::-1]):
                w, c, _ = timed(f)
                res[m][who].append((w, c))
    return res


def summarise(name: str, ours: list, peer: list, n: int, dmax: float) -> str:
    ow, oc = [t[0] for t in ours], [t[1] for t in ours]
    pw, pc = [t[0] for t in peer], [t[1] for t in peer]
    ratios = [p / o for p, o in zip(pw, ow)]
    cpu_ratio = statistics.median(pc) / statistics.median(oc)
    return (f"| {name:<11} | {statistics.median(ow):6.3f} | {statistics.median(oc):6.3f} | "
            f"{statistics.median(pw):7.3f} | {statistics.median(pc):7.3f} | {n / statistics.median(ow):7.2f} | "
            f"{n / statistics.median(pw):6.2f} | **{statistics.median(ratios):.2f}x** ({min(ratios):.2f}-"
            f"{max(ratios):.2f}) | {cpu_ratio:5.2f}x | {dmax:.1e} |")


def load() -> str:
    return "load average {:.2f} / {:.2f} / {:.2f} (1 / 5 / 15 min)".format(*os.getloadavg())


# ----------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100, help="number of pairs (100)")
    ap.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads for every row (1)")
    ap.add_argument("--repeat", type=int, default=7, help="interleaved timing rounds; medians reported (7)")
    ap.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    ap.add_argument("--skip-skimage", action="store_true", help="leave out the (slowest) scikit-image row")
    ap.add_argument("--skimage-repeat", type=int, default=1, help="timings of the scikit-image row (1)")
    ap.add_argument("--skip-lpips", action="store_true", help="leave out the LPIPS comparison")
    ap.add_argument("--lpips-n", type=int, default=4, help="pairs for the LPIPS comparison (4)")
    ap.add_argument("--lpips-repeat", type=int, default=2, help="interleaved LPIPS rounds (2)")
    args = ap.parse_args(argv)

    import cv2
    import torch

    from bfrcore.metrics import functional as fn

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    hq, lq = load_pairs(args.faces, args.n)
    hq_t = torch.from_numpy(hq).permute(0, 3, 1, 2)  # zero-copy views of the arrays the loops get
    lq_t = torch.from_numpy(lq).permute(0, 3, 1, 2)
    print(f"{args.n} pairs of 512x512 faces, threads={args.threads}, {args.repeat} interleaved repeats (medians); "
          f"torch {torch.__version__}, OpenCV {cv2.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    print("before:", load())

    res = interleaved({"PSNR": (lambda: fn.psnr(lq_t, hq_t).numpy(), lambda: basicsr_psnr_loop(hq, lq)),
                       "SSIM": (lambda: fn.ssim(lq_t, hq_t).numpy(), lambda: basicsr_ssim_loop(hq, lq))},
                      args.repeat)
    both = {who: [(a[0] + b[0], a[1] + b[1]) for a, b in zip(res["PSNR"][who], res["SSIM"][who])]
            for who in ("ours", "peer")}
    dp = float(np.abs(res["PSNR"]["ours_val"] - res["PSNR"]["peer_val"]).max())
    ds = float(np.abs(res["SSIM"]["ours_val"] - res["SSIM"]["peer_val"]).max())
    print("after: ", load())
    print("\nRGB, BasicSR convention: ours (batched torch, float64) vs the BasicSR-style per-image loop "
          "(cv2.filter2D, float64)")
    print("| metric      | ours wall s | ours CPU s | loop wall s | loop CPU s | ours img/s | loop img/s | "
          "speed-up wall, median (min-max) | speed-up CPU | max abs diff |")
    print("|-------------|--------|--------|---------|---------|---------|--------|--------------------------|"
          "-------|---------|")
    print(summarise("PSNR", res["PSNR"]["ours"], res["PSNR"]["peer"], args.n, dp))
    print(summarise("SSIM", res["SSIM"]["ours"], res["SSIM"]["peer"], args.n, ds))
    print(summarise("PSNR + SSIM", both["ours"], both["peer"], args.n, max(dp, ds)))

    if not args.skip_skimage:
        ours_med = statistics.median(t[0] for t in both["ours"])
        runs = [timed(lambda: skimage_loop(hq, lq)) for _ in range(max(1, args.skimage_repeat))]
        p_s, s_s = runs[-1][2]
        w = statistics.median(r[0] for r in runs)
        print(f"\nscikit-image loop (PSNR + SSIM): {w:.2f} s wall ({args.n / w:.1f} img/s), "
              f"{w / ours_med:.2f}x ours' median; max abs diff PSNR "
              f"{np.abs(p_s - res['PSNR']['ours_val']).max():.1e}, SSIM {np.abs(s_s - res['SSIM']['ours_val']).max():.1e}"
              f" ({len(runs)} run(s); {load()})")

    if not args.skip_lpips:
        lpips_rows(args, lq_t, hq_t)
    return 0


def lpips_rows(args, lq_t, hq_t) -> None:
    import warnings

    import lpips
    import torch
    import torchvision

    from bfrcore import weights as wreg
    from evaluation.lpips import build_lpips, load_trunk, lpips_distance

    path = wreg.locate("torchvision-vgg16")
    if path is not None:
        trunk, what = torch.load(path, map_location="cpu", weights_only=True), "registry torchvision VGG16 trunk"
    else:
        torch.manual_seed(0)
        trunk = torchvision.models.vgg16(weights=None).state_dict()
        what = ("seeded RANDOM VGG16 trunk (the ImageNet trunk is not on this machine: timing and implementation "
                "agreement only, the values are not LPIPS scores)")
    ours_model = build_lpips("vgg", trunk_state=trunk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_model = lpips.LPIPS(net="vgg", version="0.1", pnet_rand=True, verbose=False)
    with torch.no_grad():
        load_trunk(ref_model, trunk)
    ref_model.eval()
    m = min(args.n, args.lpips_n)

    def per_pair():
        with torch.no_grad():
            return np.array([float(ref_model(lq_t[i:i + 1].float() / 255, hq_t[i:i + 1].float() / 255,
                                             normalize=True)) for i in range(m)])

    res = interleaved({"LPIPS": (lambda: lpips_distance(ours_model, lq_t[:m], hq_t[:m], batch_size=8).numpy(),
                                 per_pair)}, args.lpips_repeat)["LPIPS"]
    d = float(np.abs(res["ours_val"] - res["peer_val"]).max())
    print(f"\nLPIPS (VGG, v0.1), {m} pairs, {args.lpips_repeat} interleaved repeats: ours batched (batch 8) vs "
          f"lpips.LPIPS pair by pair; {what}; {load()}")
    print("| metric      | ours wall s | ours CPU s | loop wall s | loop CPU s | ours img/s | loop img/s | "
          "speed-up wall, median (min-max) | speed-up CPU | max abs diff |")
    print("|-------------|--------|--------|---------|---------|---------|--------|--------------------------|"
          "-------|---------|")
    print(summarise("LPIPS", res["ours"], res["peer"], m, d))


if __name__ == "__main__":
    raise SystemExit(main())
