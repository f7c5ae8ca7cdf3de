"""68-point landmarks for the models that need them (DMDNet, ASFFNet, GFRNet, DFDNet), with a recorded source.

Policy (:class:`LandmarkProvider`), per image:

1. ``manifest``: landmarks stored in the dataset manifest (computed on the HQ aligned face when the dataset was
   built) are used when given;
2. ``detected``: otherwise the offline detector (``bfrcore.faces.detect_landmarks68``, dlib HOG by default) runs
   on the image as given, i.e. on the *degraded* input at test time;
3. ``mean_face``: when detection finds no face, the mean 68-point layout of FFHQ-aligned faces is used (a fixed
   template, :func:`mean_face_landmarks`), so the model still runs; the result is then only as good as the
   alignment.

Every result carries its source ("manifest" | "detected" | "mean_face") so result files can report it. All
landmarks are clamped to [margin, size - margin] (margin 8 px; the DMDNet authors clamp to [8, 504] at 512).

The mean-face template (``baselines/data/mean_face_68_512.npz``) is the per-point mean of 70 real FFHQ-aligned
512 faces: the authors' landmark files of the CelebRef-HQ examples (DMDNet ``RefsLandmark``, 61 faces of 5
identities) and of ASFFNet512's ``HQReferences_Landmarks`` (9 faces). Rebuild with
``python -m baselines.landmarks --rebuild-mean-face OUT.npz FILE_OR_DIR...``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

SOURCES = ("manifest", "detected", "mean_face")
MEAN_FACE_FILE = Path(__file__).resolve().parent / "data" / "mean_face_68_512.npz"
MEAN_FACE_SIZE = 512
DEFAULT_MARGIN = 8.0

DetectFn = Callable[[np.ndarray], "np.ndarray | None"]


# ------------------------------------------------------------------------------------------ mean-face template
def read_landmark_txt(path: str | Path) -> np.ndarray:
    """The authors' landmark file format (68 lines "x y") -> (68, 2) float64."""
    pts = np.loadtxt(Path(path), dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"{path}: expected 68 'x y' lines, got shape {pts.shape}")
    return pts


def build_mean_face_template(files: Sequence[str | Path], out: str | Path, *, size: int = MEAN_FACE_SIZE) -> np.ndarray:
    """Mean of the landmark files (68 'x y' lines each, aligned ``size`` faces); writes ``out`` (.npz)."""
    files = sorted(Path(f) for f in files)
    if not files:
        raise ValueError("no landmark files given")
    pts = np.stack([read_landmark_txt(f) for f in files])
    mean = pts.mean(axis=0).astype(np.float32)
    sources = np.array([f"{f.parent.name}/{f.name}" for f in files])
    np.savez(Path(out), landmarks=mean, size=np.int64(size), n_faces=np.int64(len(files)), sources=sources)
    return mean


@lru_cache(maxsize=1)
def _mean_face_512() -> np.ndarray:
    with np.load(MEAN_FACE_FILE, allow_pickle=False) as z:
        pts = np.asarray(z["landmarks"], dtype=np.float32)
        if int(z["size"]) != MEAN_FACE_SIZE or pts.shape != (68, 2):
            raise ValueError(f"{MEAN_FACE_FILE}: not a (68, 2) template at {MEAN_FACE_SIZE}")
    pts.setflags(write=False)
    return pts


def mean_face_landmarks(size: int | tuple[int, int] = MEAN_FACE_SIZE) -> np.ndarray:
    """Mean 68-point landmarks of FFHQ-aligned faces, (68, 2) float32, for an image of ``size`` (side, or (H, W))."""
    h, w = (size, size) if isinstance(size, int) else size
    return (_mean_face_512() * np.array([w / MEAN_FACE_SIZE, h / MEAN_FACE_SIZE], np.float32)).astype(np.float32)


# ------------------------------------------------------------------------------------------------- provider
@dataclass(frozen=True)
class LandmarkResult:
    """Landmarks (68, 2) float32 in pixels of the image, the source used, and why (for fallbacks)."""

    points: np.ndarray
    source: str
    detail: str = ""


def clamp_to_image(points: np.ndarray, shape_hw: tuple[int, int], margin: float = DEFAULT_MARGIN) -> np.ndarray:
    h, w = shape_hw
    pts = np.asarray(points, dtype=np.float32).copy()
    pts[:, 0] = np.clip(pts[:, 0], margin, w - margin)
    pts[:, 1] = np.clip(pts[:, 1], margin, h - margin)
    return pts


def to_uint8_image(img) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a uint8 array, a float array in [0, 1] or a (3, H, W) tensor in [0, 1]."""
    if hasattr(img, "detach"):
        t = img.detach().float().cpu()
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) tensor, got {tuple(t.shape)}")
        img = t.permute(1, 2, 0).numpy()
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    return np.ascontiguousarray(np.clip(np.round(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8))


def _default_detect_fn(detector: str) -> DetectFn:
    from bfrcore.faces import detect_landmarks68  # imported lazily: dlib is only loaded when detection runs

    def detect(img: np.ndarray) -> np.ndarray | None:
        return detect_landmarks68(img, detector=detector)

    return detect


class LandmarkProvider:
    """Landmarks for an image: manifest, else detector, else mean face (see the module docstring).

    ``detect_fn(img uint8 (H, W, 3)) -> (68, 2) | None`` replaces the detector (tests, other backends).
    ``on_detector_error``: "raise" (default; e.g. a missing dlib model file is a setup error to fix, not a
    reason to silently use the template) or "mean_face" (record the error and fall back)."""

    def __init__(self, *, detector: str = "dlib-hog", margin: float = DEFAULT_MARGIN,
                 detect_fn: DetectFn | None = None, on_detector_error: str = "raise"):
        if on_detector_error not in ("raise", "mean_face"):
            raise ValueError("on_detector_error must be 'raise' or 'mean_face'")
        self.detector = detector
        self.margin = float(margin)
        self._detect_fn = detect_fn
        self.on_detector_error = on_detector_error

    def _detect(self, img: np.ndarray) -> np.ndarray | None:
        if self._detect_fn is None:
            self._detect_fn = _default_detect_fn(self.detector)
        return self._detect_fn(img)

    def __call__(self, image, landmarks=None, *, landmarks_size: int | None = None) -> LandmarkResult:
        """``image``: (H, W, 3) uint8 / float [0, 1] array or (3, H, W) tensor in [0, 1]. ``landmarks``: manifest
        landmarks (68, 2) or None; ``landmarks_size``: side of the image they were computed on when it is not
        this image's (they are rescaled)."""
        img = to_uint8_image(image)
        h, w = img.shape[:2]
        if landmarks is not None:
            pts = np.asarray(landmarks.detach().cpu() if hasattr(landmarks, "detach") else landmarks, np.float32)
            if pts.shape != (68, 2):
                raise ValueError(f"manifest landmarks must be (68, 2), got {pts.shape}")
            if not np.all(np.isfinite(pts)):
                raise ValueError("manifest landmarks contain NaN or inf")
            if landmarks_size is not None and landmarks_size != w:
                pts = pts * np.array([w / landmarks_size, h / landmarks_size], np.float32)
            return LandmarkResult(clamp_to_image(pts, (h, w), self.margin), "manifest")
        try:
            pts = self._detect(img)
        except Exception as e:  # the policy decides: raise or record and fall back
            if self.on_detector_error == "raise":
                raise
            return LandmarkResult(clamp_to_image(mean_face_landmarks((h, w)), (h, w), self.margin), "mean_face",
                                  f"detector error: {type(e).__name__}: {e}")
        if pts is not None:
            pts = np.asarray(pts, np.float32)
            if pts.shape == (68, 2) and np.all(np.isfinite(pts)):
                return LandmarkResult(clamp_to_image(pts, (h, w), self.margin), "detected", self.detector)
        return LandmarkResult(clamp_to_image(mean_face_landmarks((h, w)), (h, w), self.margin), "mean_face",
                              f"no face found by {self.detector}")

    def batch(self, images, landmarks=None, *, landmarks_size: int | None = None):
        """Landmarks for a batch: ``images`` (B, 3, H, W) tensor in [0, 1] or a list of images; ``landmarks`` None,
        a (B, 68, 2) tensor/array or a list with None where the manifest has none. Returns ((B, 68, 2) float32
        tensor on the images' device — or CPU —, [LandmarkResult] per image)."""
        import torch

        n = len(images)
        if landmarks is None:
            landmarks = [None] * n
        if len(landmarks) != n:
            raise ValueError(f"{n} images but {len(landmarks)} landmark entries")
        results = [self(images[i], landmarks[i], landmarks_size=landmarks_size) for i in range(n)]
        device = images.device if hasattr(images, "device") else None
        pts = torch.from_numpy(np.stack([r.points for r in results])).to(device)
        return pts, results


# ------------------------------------------------------------------------------------------ models
class LandmarkFallback:
    """Mixin of the models that need 68-point landmarks (DMDNet, ASFFNet, DFDNet): what ``restore()`` is not given
    is found with a :class:`LandmarkProvider` built on first use (``landmark_provider``), and where each came from
    is kept in ``last_landmark_sources``: ``{"lq": [source per image], "refs": [[source per reference] per
    sample]}`` with only the parts that had to be found, or None when everything was given."""

    _landmark_provider: LandmarkProvider | None = None
    last_landmark_sources: dict[str, Any] | None = None

    @property
    def landmark_provider(self) -> LandmarkProvider:
        if self._landmark_provider is None:
            self._landmark_provider = LandmarkProvider()
        return self._landmark_provider

    def fill_landmarks(self, lq, landmarks=None, refs=None, ref_landmarks=None):
        """``(landmarks, ref_landmarks)`` with the missing ones found: the input's when ``landmarks`` is None (and
        ``lq`` is a (B, 3, H, W) batch), each reference set's when ``refs`` is a non-empty list and
        ``ref_landmarks`` is None. Sets ``last_landmark_sources``."""
        sources: dict[str, Any] = {}
        if landmarks is None and lq.ndim == 4:
            landmarks, res = self.landmark_provider.batch(lq)
            sources["lq"] = [r.source for r in res]
        if refs and ref_landmarks is None:
            ref_landmarks, sources["refs"] = [], []
            for r in refs:
                pts, res = self.landmark_provider.batch(r)
                ref_landmarks.append(pts)
                sources["refs"].append([x.source for x in res])
        self.last_landmark_sources = sources or None
        return landmarks, ref_landmarks

def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m baselines.landmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--rebuild-mean-face", metavar="OUT", required=True, help="write the template (.npz) here")
    ap.add_argument("inputs", nargs="+", help="landmark files (68 'x y' lines) or folders searched for *.txt")
    ap.add_argument("--size", type=int, default=MEAN_FACE_SIZE)
    args = ap.parse_args(argv)
    files: list[Path] = []
    for p in map(Path, args.inputs):
        files += sorted(p.rglob("*.txt")) if p.is_dir() else [p]
    mean = build_mean_face_template(files, args.rebuild_mean_face, size=args.size)
    print(f"wrote {args.rebuild_mean_face}: mean of {len(files)} faces; eyes at y={mean[36:48, 1].mean():.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
