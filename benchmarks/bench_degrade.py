"""Benchmark: degradation throughput (images/s at 512x512) of our GFPGAN preset vs BasicSR's functions.

    .venv/bin/python benchmarks/bench_degrade.py [--images 24] [--repeats 3] [--basicsr-sdist PATH] [--no-download]

The peer is BasicSR 1.4.2's ``basicsr/data/degradations.py`` driven exactly as GFPGAN's FFHQDegradationDataset
drives it (train_gfpgan_v1.yml settings, research/oracles.md §6). The sdist is fetched from PyPI into a temporary
folder (sha256-checked; nothing of it is kept or committed) and the one module is imported by path, with a shim for
``torchvision.transforms.functional_tensor`` (removed from torchvision). Without it, a faithful OpenCV/NumPy loop
of the same steps is used and the table says so. JPEG quality is drawn as ``int(U(60, 100))`` on both sides
(OpenCV 5 rejects BasicSR's float quality, oracles.md §8).

Both sides get the same decoded uint8 RGB faces and return uint8 RGB LQ images of the same size; timings are
interleaved image by image (order alternating per repeat) in one process, so machine load hits both alike.
Rows: the full GFPGAN pipeline (blur, resize, noise, JPEG, resize back, colour shift, grey, torchvision colour
jitter) and the core steps 1-5 (no colour ops; what oracles.md §8 measured at ~60 images/s).

A fidelity check follows: for sampled parameters with noise off, our ``apply_params`` vs BasicSR's
``bivariate_Gaussian`` + ``cv2.filter2D`` + ``cv2.resize`` + ``add_jpg_compression`` + ``cv2.resize``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import math
import os
import platform
import random
import sys
import tarfile
import tempfile
import time
import types
import urllib.request
from pathlib import Path


def _threads_from_argv(argv) -> int:
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 1


# Thread pools must be sized before numpy/torch/cv2 load (a DataLoader worker runs single-threaded; idle OpenMP and
# OpenBLAS threads spinning on a 2-core machine otherwise slow down whichever side runs next).
THREADS = _threads_from_argv(sys.argv[1:])
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

import cv2
import numpy as np

cv2.setNumThreads(THREADS)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from degradations.pipeline import degrade_image, item_seed
from degradations.presets import get_preset
from degradations.sampling import apply_params, sample_params

BASICSR_URL = ("https://files.pythonhosted.org/packages/86/41/00a6b000f222f0fa4c6d9e1d6dcc9811a374cabb8abb9d408b77de"
               "39648c/basicsr-1.4.2.tar.gz")
BASICSR_SHA256 = "b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87"
FACES = ROOT.parent / "shared" / "data" / "faces" / "dmdnet_celebrefhq" / "TestExamples" / \
    "TestSpecificRestoration" / "RefsImg"


# ----------------------------------------------------------------------------------------------- inputs
def load_faces(n: int) -> tuple[list[np.ndarray], str]:
    from bfrcore.imageio import read_image

    files = sorted(FACES.glob("*/*.png")) if FACES.is_dir() else []
    imgs = [read_image(f) for f in files[:n]]
    imgs = [im for im in imgs if im.shape == (512, 512, 3)]
    if imgs:
        return imgs, f"{len(imgs)} CelebRef-HQ faces ({FACES.relative_to(ROOT.parent)})"
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8), (0, 0), 3)
    return [np.roll(base, 7 * i, axis=1) for i in range(n)], f"{n} synthetic 512x512 images (faces not found)"


# ----------------------------------------------------------------------------------------------- the peer
def load_basicsr(sdist: Path | None, download: bool):
    """BasicSR's degradations module imported by path from the 1.4.2 sdist, or (None, reason)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_degrade_basicsr_"))
    try:
        if sdist is None:
            if not download:
                return None, "basicsr not loaded (--no-download)"
            sdist = tmp / "basicsr-1.4.2.tar.gz"
            urllib.request.urlretrieve(BASICSR_URL, sdist)
        digest = hashlib.sha256(Path(sdist).read_bytes()).hexdigest()
        if digest != BASICSR_SHA256:
            return None, f"basicsr sdist sha256 mismatch ({digest[:12]}…)"
        with tarfile.open(sdist) as tf:
            member = tf.getmember("basicsr-1.4.2/basicsr/data/degradations.py")
            src = tf.extractfile(member).read()
        path = tmp / "basicsr_degradations.py"
        path.write_bytes(src)
        if "torchvision.transforms.functional_tensor" not in sys.modules:
            try:
                import torchvision.transforms.functional_tensor  # noqa: F401
            except ImportError:  # removed in torchvision >= 0.17: shim the one function it imports
                from torchvision.transforms import functional as tvf

                shim = types.ModuleType("torchvision.transforms.functional_tensor")
                shim.rgb_to_grayscale = tvf.rgb_to_grayscale
                sys.modules["torchvision.transforms.functional_tensor"] = shim
        old_err = np.geterr()
        spec = importlib.util.spec_from_file_location("basicsr_degradations", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        np.seterr(**old_err)  # the module sets np.seterr(divide='ignore', invalid='ignore') globally
        return mod, "BasicSR 1.4.2 basicsr/data/degradations.py (sdist from PyPI, imported by path)"
    except Exception as e:  # noqa: BLE001 - any failure means: use the OpenCV loop
        return None, f"basicsr unavailable ({type(e).__name__}: {e})"
    finally:
        for p in sorted(tmp.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        tmp.rmdir()


class OpenCVPeer:
    """Fallback: the same steps as BasicSR's functions, transcribed with cv2/NumPy and the global RNG."""

    @staticmethod
    def random_mixed_kernels(kernel_list, kernel_prob, kernel_size, sx_range, sy_range, rot_range, noise_range=None):
        ktype = random.choices(kernel_list, kernel_prob)[0]
        ax = np.arange(-kernel_size // 2 + 1., kernel_size // 2 + 1.)
        xx, yy = np.meshgrid(ax, ax)
        grid = np.stack([xx, yy], axis=2)
        sx = np.random.uniform(*sx_range)
        if ktype == "iso":
            sigma = np.array([[sx ** 2, 0], [0, sx ** 2]])
        else:
            sy = np.random.uniform(*sy_range)
            th = np.random.uniform(*rot_range)
            d = np.array([[sx ** 2, 0], [0, sy ** 2]])
            u = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
            sigma = np.dot(u, np.dot(d, u.T))
        inv = np.linalg.inv(sigma)
        k = np.exp(-0.5 * np.sum(np.dot(grid, inv) * grid, 2))
        return k / np.sum(k)

    @staticmethod
    def random_add_gaussian_noise(img, sigma_range=(0, 1.0)):
        sigma = np.random.uniform(sigma_range[0], sigma_range[1])
        noise = np.float32(np.random.randn(*img.shape)) * sigma / 255.
        return np.clip(img + noise, 0, 1)

    @staticmethod
    def add_jpg_compression(img, quality=90):
        img = np.clip(img, 0, 1)
        _, enc = cv2.imencode(".jpg", img * 255., [int(cv2.IMWRITE_JPEG_QUALITY), quality])
        return np.float32(cv2.imdecode(enc, 1)) / 255.


def make_peer(deg, colour: bool):
    """GFPGAN FFHQDegradationDataset.__getitem__ (LQ part), train_gfpgan_v1.yml settings, uint8 RGB in and out."""
    import torch
    from torchvision.transforms.functional import (
        adjust_brightness,
        adjust_contrast,
        adjust_hue,
        adjust_saturation,
    )

    def color_jitter_pt(img):
        for fn_id in torch.randperm(4):
            if fn_id == 0:
                img = adjust_brightness(img, torch.tensor(1.0).uniform_(0.5, 1.5).item())
            elif fn_id == 1:
                img = adjust_contrast(img, torch.tensor(1.0).uniform_(0.5, 1.5).item())
            elif fn_id == 2:
                img = adjust_saturation(img, torch.tensor(1.0).uniform_(0, 1.5).item())
            else:
                img = adjust_hue(img, torch.tensor(1.0).uniform_(-0.1, 0.1).item())
        return img

    def peer(hq_rgb: np.ndarray) -> np.ndarray:
        img_gt = hq_rgb[:, :, ::-1].astype(np.float32) / 255.  # imfrombytes(float32=True): BGR
        h, w, _ = img_gt.shape
        kernel = deg.random_mixed_kernels(["iso", "aniso"], [0.5, 0.5], 41, [0.1, 10], [0.1, 10],
                                          [-math.pi, math.pi], noise_range=None)
        img_lq = cv2.filter2D(img_gt, -1, kernel)
        scale = np.random.uniform(0.8, 8)
        img_lq = cv2.resize(img_lq, (int(w // scale), int(h // scale)), interpolation=cv2.INTER_LINEAR)
        img_lq = deg.random_add_gaussian_noise(img_lq, [0, 20])
        img_lq = deg.add_jpg_compression(img_lq, int(np.random.uniform(60, 100)))
        img_lq = cv2.resize(img_lq, (w, h), interpolation=cv2.INTER_LINEAR)
        if colour:
            if np.random.uniform() < 0.3:
                img_lq = np.clip(img_lq + np.random.uniform(-20 / 255., 20 / 255., 3).astype(np.float32), 0, 1)
            if np.random.uniform() < 0.01:
                img_lq = np.tile(cv2.cvtColor(img_lq, cv2.COLOR_BGR2GRAY)[:, :, None], [1, 1, 3])
            t = torch.from_numpy(np.ascontiguousarray(img_lq[:, :, ::-1].transpose(2, 0, 1)))
            if np.random.uniform() < 0.3:
                t = color_jitter_pt(t)
            t = torch.clamp((t * 255.0).round(), 0, 255)
            return t.to(torch.uint8).permute(1, 2, 0).numpy()
        return np.clip(np.rint(img_lq[:, :, ::-1] * 255.0), 0, 255).astype(np.uint8)

    return peer


# ----------------------------------------------------------------------------------------------- timing
def interleaved(imgs, fns: dict, repeats: int) -> dict:
    """Seconds per side; the sides alternate image by image, their order flipping every repeat."""
    totals = {k: 0.0 for k in fns}
    names = list(fns)
    for name in names:  # warm-up (imports, caches, FFT plans)
        fns[name](imgs[0], 0)
    for rep in range(repeats):
        order = names if rep % 2 == 0 else names[::-1]
        for i, img in enumerate(imgs):
            for name in order:
                t0 = time.perf_counter()
                out = fns[name](img, rep * len(imgs) + i)
                totals[name] += time.perf_counter() - t0
                assert out.shape == img.shape and out.dtype == np.uint8
    return totals


def fidelity(deg, imgs, n: int = 12) -> dict:
    """Max |ours − BasicSR| (8-bit levels) and fraction of differing values with identical parameters, noise and
    colour off (the deterministic steps 1, 2, 4, 5)."""
    preset = dataclasses.replace(get_preset("gfpgan"), noise=None, color_shift=None, gray_prob=0.0,
                                 color_jitter=None)
    rng = np.random.default_rng(123)
    worst, differing, total = 0, 0, 0
    for i in range(n):
        hq = imgs[i % len(imgs)]
        p = sample_params(preset, rng)
        ours = apply_params(hq, p)
        gt = hq[:, :, ::-1].astype(np.float32) / 255.
        iso = p["kernel_type"] == "iso"
        k = deg.bivariate_Gaussian(41, p["sigma_x"], p["sigma_y"], p["theta"], isotropic=iso)
        x = cv2.filter2D(gt, -1, k)
        x = cv2.resize(x, (int(512 // p["scale"]), int(512 // p["scale"])), interpolation=cv2.INTER_LINEAR)
        x = deg.add_jpg_compression(x, p["jpeg_quality"])
        x = cv2.resize(x, (512, 512), interpolation=cv2.INTER_LINEAR)
        theirs = np.clip(np.rint(x[:, :, ::-1] * 255.0), 0, 255).astype(np.uint8)
        d = np.abs(ours.astype(int) - theirs.astype(int))
        worst = max(worst, int(d.max()))
        differing += int(np.count_nonzero(d))
        total += d.size
    return {"max_abs_diff": worst, "frac_differing": differing / total, "n": n}


def kernel_fidelity(deg, n: int = 50) -> float:
    """Max |ours − BasicSR| over random kernels of every type BasicSR builds (same parameters)."""
    from degradations import kernels as K

    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(n):
        k = int(rng.choice([7, 13, 21, 41]))
        sx, sy, th, beta = rng.uniform(0.2, 10), rng.uniform(0.2, 10), rng.uniform(-math.pi, math.pi), \
            rng.uniform(0.5, 4)
        cut = rng.uniform(math.pi / 5, math.pi)
        with np.errstate(divide="ignore", invalid="ignore"):  # BasicSR's sinc divides 0/0 at the centre
            pairs = [
                (K.bivariate_gaussian(k, sx, sy, th, isotropic=True),
                 deg.bivariate_Gaussian(k, sx, sy, th, isotropic=True)),
                (K.bivariate_gaussian(k, sx, sy, th, isotropic=False),
                 deg.bivariate_Gaussian(k, sx, sy, th, isotropic=False)),
                (K.bivariate_generalized_gaussian(k, sx, sy, th, beta, isotropic=False),
                 deg.bivariate_generalized_Gaussian(k, sx, sy, th, beta, isotropic=False)),
                (K.bivariate_plateau(k, sx, sy, th, beta, isotropic=False),
                 deg.bivariate_plateau(k, sx, sy, th, beta, isotropic=False)),
                (K.circular_lowpass_kernel(cut, k, pad_to=45), deg.circular_lowpass_kernel(cut, k, pad_to=45)),
            ]
        worst = max(worst, max(float(np.abs(a - b).max()) for a, b in pairs))
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=24, help="number of 512x512 faces (default 24)")
    ap.add_argument("--repeats", type=int, default=3, help="passes over the images (default 3)")
    ap.add_argument("--basicsr-sdist", type=Path, default=None, help="a local basicsr-1.4.2.tar.gz (no download)")
    ap.add_argument("--no-download", action="store_true", help="do not fetch BasicSR; use the OpenCV loop")
    ap.add_argument("--threads", type=int, default=THREADS,
                    help="threads for OpenCV, torch, OpenMP and OpenBLAS on both sides (default 1)")
    args = ap.parse_args(argv)

    imgs, source = load_faces(args.images)
    deg, peer_desc = load_basicsr(args.basicsr_sdist, download=not args.no_download)
    if deg is None:
        peer_desc = f"faithful OpenCV loop of BasicSR's steps — {peer_desc}"
        deg = OpenCVPeer
    np.random.seed(0)
    random.seed(0)
    import torch

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    full = get_preset("gfpgan")
    core = dataclasses.replace(full, name="gfpgan-core", color_shift=None, gray_prob=0.0, color_jitter=None)
    rows = []
    for label, preset, colour in (("gfpgan (full: steps 1-9)", full, True), ("gfpgan core (steps 1-5)", core, False)):
        peer = make_peer(deg, colour)
        fns = {"ours": lambda im, i, P=preset: degrade_image(im, P, item_seed(0, str(i)))[0],
               "peer": lambda im, i, f=peer: f(im)}
        secs = interleaved(imgs, fns, args.repeats)
        n = len(imgs) * args.repeats
        ours_ips, peer_ips = n / secs["ours"], n / secs["peer"]
        rows.append((label, ours_ips, peer_ips, ours_ips / peer_ips, n))
    fid = fidelity(deg, imgs) if hasattr(deg, "bivariate_Gaussian") else None
    kfid = kernel_fidelity(deg) if hasattr(deg, "bivariate_plateau") else None

    print(f"# bench_degrade: {source}; {args.repeats} interleaved passes")
    print(f"# peer: {peer_desc}")
    print(f"# machine: {platform.processor() or platform.machine()}, cv2 {cv2.__version__} "
          f"({cv2.getNumThreads()} threads), torch threads {torch.get_num_threads()}, numpy {np.__version__}, python {platform.python_version()}")
    print()
    print("| pipeline | images | ours (img/s) | BasicSR (img/s) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for label, o, p, r, n in rows:
        print(f"| {label} | {n} | {o:.1f} | {p:.1f} | {r:.2f}x |")
    if fid is not None:
        print()
        print(f"fidelity (same params, noise/colour off, {fid['n']} images): max |ours - BasicSR| = "
              f"{fid['max_abs_diff']} level(s), {100 * fid['frac_differing']:.4f}% of values differ")
    if kfid is not None:
        print(f"kernels (iso, aniso, generalized, plateau, sinc; 50 random parameter sets each): "
              f"max |ours - BasicSR| = {kfid:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
