"""Benchmark our batched metrics against the per-image loops people run, on real 512x512 faces, in one run.

    .venv/bin/python benchmarks/bench_metrics.py [--n 100] [--threads 1] [--repeat 3] [--faces ../shared/data/faces]

Pairs: the FFHQ-aligned 512x512 CelebRef-HQ / ASFFNet references of ``../shared/data/faces`` (kind
``hq_aligned_512``), each degraded on the fly with OpenCV (Gaussian blur σ ∈ [1, 3], Gaussian noise σ ∈ [2, 10],
JPEG quality ∈ [30, 90], seeded), cycled to ``--n`` pairs. Nothing is written to the repository.

Rows (PSNR + SSIM, RGB, BasicSR convention, crop_border 0):

- ``ours``: ``evaluation.functional.psnr`` + ``ssim`` on the whole (N, 3, 512, 512) uint8 batch;
- ``BasicSR-style loop``: per image ``calculate_psnr`` + ``calculate_ssim`` as BasicSR writes them (float64,
  ``cv2.filter2D`` with the 11x11 Gaussian, per channel), transcribed here (BasicSR is not installed);
- ``scikit-image loop``: per image ``peak_signal_noise_ratio`` + ``structural_similarity`` (Gaussian weights,
  σ 1.5, population covariance, data_range 255, channel_axis 2) — the same quantities.

LPIPS (VGG, v0.1): ``lpips.LPIPS`` called pair by pair vs ours batched — only when the torchvision trunk is
present (otherwise the row says why). Each timing is the best of ``--repeat`` runs (the machine is shared);
wall and CPU seconds are both printed. ``--threads`` sets torch and OpenCV threads for every row alike.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_pairs(faces: Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    from celebref.imageio import read_image

    rows = [r for r in csv.DictReader(open(faces / "manifest.csv", newline="")) if r["kind"] == "hq_aligned_512"]
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
        ok, enc = cv2.imencode(".jpg", x[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
        x = cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1]
        hq.append(img)
        lq.append(np.ascontiguousarray(x))
    return np.stack(hq), np.stack(lq)


# ----------------------------------------------------------------------------------------------- peers
def basicsr_loop(hq: np.ndarray, lq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())

    def _ssim(img, img2):
        mu1 = cv2.filter2D(img, -1, window)[5:-5, 5:-5]
        mu2 = cv2.filter2D(img2, -1, window)[5:-5, 5:-5]
        mu1_sq, mu2_sq, mu1_mu2 = mu1 ** 2, mu2 ** 2, mu1 * mu2
        sigma1_sq = cv2.filter2D(img ** 2, -1, window)[5:-5, 5:-5] - mu1_sq
        sigma2_sq = cv2.filter2D(img2 ** 2, -1, window)[5:-5, 5:-5] - mu2_sq
        sigma12 = cv2.filter2D(img * img2, -1, window)[5:-5, 5:-5] - mu1_mu2
        m = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
        return m.mean()

    ps, ss = [], []
    for a, b in zip(lq, hq):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        mse = np.mean((a64 - b64) ** 2)
        ps.append(float("inf") if mse == 0 else 10.0 * np.log10(255.0 * 255.0 / mse))
        ss.append(np.array([_ssim(a64[..., i], b64[..., i]) for i in range(3)]).mean())
    return np.array(ps), np.array(ss)


def skimage_loop(hq: np.ndarray, lq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    ps, ss = [], []
    for a, b in zip(lq, hq):
        ps.append(peak_signal_noise_ratio(b, a, data_range=255))
        ss.append(structural_similarity(b.astype(np.float64), a.astype(np.float64), data_range=255, channel_axis=2,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
    return np.array(ps), np.array(ss)


def ours(hq_t, lq_t) -> tuple[np.ndarray, np.ndarray]:
    from evaluation import functional as fn

    return fn.psnr(lq_t, hq_t).numpy(), fn.ssim(lq_t, hq_t).numpy()


def timed(fn, repeat: int):
    best_wall, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, out


# ----------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100, help="number of pairs (100)")
    ap.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads for every row (1)")
    ap.add_argument("--repeat", type=int, default=3, help="timings per row; the best is kept (3)")
    ap.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    ap.add_argument("--skip-skimage", action="store_true", help="leave out the (slowest) scikit-image row")
    args = ap.parse_args(argv)

    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    hq, lq = load_pairs(args.faces, args.n)
    hq_t = torch.from_numpy(hq).permute(0, 3, 1, 2).contiguous()
    lq_t = torch.from_numpy(lq).permute(0, 3, 1, 2).contiguous()
    print(f"{args.n} pairs of 512x512 faces, threads={args.threads}, best of {args.repeat}; "
          f"torch {torch.__version__}, OpenCV {cv2.__version__}")

    rows = []
    w, c, (p_ours, s_ours) = timed(lambda: ours(hq_t, lq_t), args.repeat)
    rows.append(("ours (batched torch, float64)", w, c, 0.0, 0.0))
    w, c, (p_b, s_b) = timed(lambda: basicsr_loop(hq, lq), args.repeat)
    rows.append(("BasicSR-style loop (cv2.filter2D)", w, c, np.abs(p_b - p_ours).max(), np.abs(s_b - s_ours).max()))
    if not args.skip_skimage:
        w, c, (p_s, s_s) = timed(lambda: skimage_loop(hq, lq), max(1, args.repeat - 1))
        rows.append(("scikit-image loop", w, c, np.abs(p_s - p_ours).max(), np.abs(s_s - s_ours).max()))

    base_wall, base_cpu = rows[0][1], rows[0][2]
    print("\nPSNR + SSIM (RGB, BasicSR convention)")
    print(f"| {'implementation':<36} | wall s | CPU s | images/s (wall) | ours faster (wall / CPU) | "
          f"max abs dPSNR | max abs dSSIM |")
    print(f"|{'-' * 38}|--------|-------|-----------------|--------------------------|---------------|---------------|")
    for name, w, c, dp, ds in rows:
        print(f"| {name:<36} | {w:6.2f} | {c:5.2f} | {args.n / w:15.1f} | {w / base_wall:10.2f}x / {c / base_cpu:5.2f}x "
              f"      | {dp:13.2e} | {ds:13.2e} |")

    print("\nLPIPS (VGG, v0.1)")
    from celebref import weights as wreg

    if wreg.locate("torchvision-vgg16") is None:
        print("skipped: the VGG16 ImageNet trunk is not on this machine "
              "(fix: `bench weights fetch torchvision-vgg16`); per-pair lpips vs ours not measured")
        return 0
    import lpips

    from evaluation.lpips import build_lpips, lpips_distance

    ours_model = build_lpips("vgg")
    ref_model = lpips.LPIPS(net="vgg", version="0.1", verbose=False).eval()
    m = min(args.n, 32)

    def per_pair():
        with torch.no_grad():
            return np.array([float(ref_model(lq_t[i:i + 1].float() / 255, hq_t[i:i + 1].float() / 255,
                                             normalize=True)) for i in range(m)])

    w1, c1, ref = timed(per_pair, 1)
    w2, c2, got = timed(lambda: lpips_distance(ours_model, lq_t[:m], hq_t[:m], batch_size=8).numpy(), 1)
    print(f"| lpips per pair | {w1:.2f} s | ours batched {w2:.2f} s | ratio {w1 / w2:.2f}x | "
          f"max abs diff {np.abs(ref - got).max():.2e} | {m} pairs |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
