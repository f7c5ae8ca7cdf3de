"""FFHQ-recipe face alignment (Karras et al. 2019), as used for FFHQ, CelebA-HQ and the DMDNet authors' references.

Geometry from 68 landmarks: eye centres (36-41, 42-47), mouth corners (48, 54); an oriented square of side
2·max(2·|eye-to-eye|, 1.8·|eye-to-mouth|) centred at eye_avg + 0.1·eye_to_mouth. The image is optionally shrunk,
cropped with a 10% border, reflect-padded with blur (FFHQ's padding; off with ``padding='none'``), mapped with a
bilinear quad transform to ``transform_size`` and resized with Lanczos to ``size``.

Everything needed to redo the crop exactly is kept in :class:`AlignTransform` (quad, sizes, padding), including
the affine map from source pixels to aligned pixels, used to carry landmarks across.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.ndimage
from PIL import Image


@dataclass(frozen=True)
class AlignTransform:
    """How an aligned crop was made (all coordinates in source-image pixels, pixel-centre convention)."""

    quad: tuple[tuple[float, float], ...]  # 4 corners: top-left, bottom-left, bottom-right, top-right
    size: int  # output side (px)
    transform_size: int  # side of the quad render before the final Lanczos resize
    padding: str  # "reflect" (FFHQ) or "none"
    source_size: tuple[int, int]  # (width, height) of the source
    quad_side: float  # side of the quad in source pixels (the face's real resolution at this crop)
    eye_distance: float  # eye-centre distance in source pixels
    padded_fraction: float  # share of the output that lies outside the source (filled by padding / black)

    @property
    def upsample_factor(self) -> float:
        """> 1 when the aligned crop has more pixels than the face had in the source."""
        return self.size / self.quad_side

    @property
    def upsampled(self) -> bool:
        return self.upsample_factor > 1.0

    def matrix(self) -> np.ndarray:
        """2x3 affine map from source pixel coordinates to aligned-image pixel coordinates."""
        q = np.asarray(self.quad, dtype=np.float64)
        # aligned pixel p (centre convention) <- source: src = q0 + ((p+0.5)/S) * (q3-q0) + ((py+0.5)/S) * (q1-q0)
        a = np.stack([q[3] - q[0], q[1] - q[0]], axis=1) / self.size  # 2x2: columns = d src / d (px, py)
        b = q[0] + a @ np.array([0.5, 0.5])
        inv = np.linalg.inv(a)
        return np.concatenate([inv, (-inv @ b)[:, None]], axis=1)

    def to_aligned(self, pts: np.ndarray) -> np.ndarray:
        """Map (N, 2) source pixel points into the aligned image."""
        m = self.matrix()
        pts = np.asarray(pts, dtype=np.float64)
        return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)

    def to_source(self, pts: np.ndarray) -> np.ndarray:
        """Map (N, 2) aligned-image points back into the source (for pasting a restored face back)."""
        m = np.vstack([self.matrix(), [0, 0, 1]])
        inv = np.linalg.inv(m)
        pts = np.asarray(pts, dtype=np.float64)
        return (pts @ inv[:2, :2].T + inv[:2, 2]).astype(np.float32)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["quad"] = [list(map(float, c)) for c in self.quad]
        d["upsample_factor"] = self.upsample_factor
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AlignTransform":
        keys = {f for f in cls.__dataclass_fields__}
        d = {k: v for k, v in d.items() if k in keys}
        d["quad"] = tuple(tuple(float(v) for v in c) for c in d["quad"])
        d["source_size"] = tuple(d["source_size"])
        return cls(**d)


def ffhq_quad(lm68: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The FFHQ oriented square for 68 landmarks: (quad (4, 2), side length, eye distance)."""
    lm = np.asarray(lm68, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {lm.shape}")
    eye_left = lm[36:42].mean(0)
    eye_right = lm[42:48].mean(0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2), float(np.hypot(*eye_to_eye))


def _outside_fraction(quad: np.ndarray, w: int, h: int, grid: int = 128) -> float:
    """Share of the aligned square whose source position lies outside the source image."""
    t = (np.arange(grid) + 0.5) / grid
    u, v = np.meshgrid(t, t)
    src = quad[0] + u[..., None] * (quad[3] - quad[0]) + v[..., None] * (quad[1] - quad[0])
    inside = (src[..., 0] >= -0.5) & (src[..., 0] <= w - 0.5) & (src[..., 1] >= -0.5) & (src[..., 1] <= h - 0.5)
    return float(1.0 - inside.mean())


def align_face(
    img: np.ndarray,
    lm68: np.ndarray,
    size: int = 512,
    *,
    transform_size: int | None = None,
    padding: str = "reflect",
) -> tuple[np.ndarray, AlignTransform]:
    """Align one face. ``img``: RGB uint8 (H, W, 3); ``lm68``: (68, 2) source pixels.

    ``transform_size`` defaults to 2·size (the DMDNet/ASFFNet authors' tool renders 1024 for 512; FFHQ used 4x).
    Returns the aligned RGB uint8 (size, size, 3) image and its :class:`AlignTransform`.
    """
    quad, _, eye_dist = ffhq_quad(lm68)
    return align_quad(img, quad, size, transform_size=transform_size, padding=padding, eye_distance=eye_dist)


def align_quad(
    img: np.ndarray,
    quad0: np.ndarray,
    size: int = 512,
    *,
    transform_size: int | None = None,
    padding: str = "reflect",
    eye_distance: float = float("nan"),
) -> tuple[np.ndarray, AlignTransform]:
    """Render the oriented square ``quad0`` (4, 2) of ``img`` to (size, size) with the FFHQ steps."""
    if padding not in ("reflect", "none"):
        raise ValueError("padding must be 'reflect' or 'none'")
    transform_size = int(transform_size or 2 * size)
    if size > transform_size:
        raise ValueError("transform_size must be >= size")
    h0, w0 = img.shape[:2]
    quad0 = np.asarray(quad0, dtype=np.float64)
    qsize0 = float(np.hypot(*(quad0[3] - quad0[0])))
    quad = quad0.copy()
    qsize = qsize0
    pil = Image.fromarray(img)
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        new = (int(np.rint(float(pil.size[0]) / shrink)), int(np.rint(float(pil.size[1]) / shrink)))
        sx, sy = new[0] / pil.size[0], new[1] / pil.size[1]
        pil = pil.resize(new, Image.Resampling.LANCZOS)
        quad = (quad + 0.5) * [sx, sy] - 0.5
        qsize *= (sx + sy) / 2

    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, pil.size[0]), min(crop[3] + border, pil.size[1]))
    if crop[2] - crop[0] < pil.size[0] or crop[3] - crop[1] < pil.size[1]:
        pil = pil.crop(crop)
        quad = quad - crop[0:2]

    if padding == "reflect":
        pad = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
               int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
        pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0),
               max(pad[2] - pil.size[0] + border, 0), max(pad[3] - pil.size[1] + border, 0))
        if max(pad) > border - 4:
            pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
            arr = np.pad(np.float32(pil), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
            hh, ww, _ = arr.shape
            yy, xx, _ = np.ogrid[:hh, :ww, :1]
            mask = np.maximum(
                1.0 - np.minimum(np.float32(xx) / max(pad[0], 1), np.float32(ww - 1 - xx) / max(pad[2], 1)),
                1.0 - np.minimum(np.float32(yy) / max(pad[1], 1), np.float32(hh - 1 - yy) / max(pad[3], 1)),
            )
            blur = qsize * 0.02
            arr += (scipy.ndimage.gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
            arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
            pil = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
            quad = quad + pad[:2]

    out = pil.transform((transform_size, transform_size), Image.Transform.QUAD, (quad + 0.5).flatten(),
                        Image.Resampling.BILINEAR)
    if size < transform_size:
        out = out.resize((size, size), Image.Resampling.LANCZOS)
    tf = AlignTransform(
        quad=tuple(tuple(float(v) for v in c) for c in quad0),
        size=int(size),
        transform_size=transform_size,
        padding=padding,
        source_size=(int(w0), int(h0)),
        quad_side=qsize0,
        eye_distance=float(eye_distance),
        padded_fraction=_outside_fraction(quad0, w0, h0),
    )
    return np.asarray(out, dtype=np.uint8), tf




def realign(img: np.ndarray, transform: AlignTransform) -> np.ndarray:
    """Re-make an aligned crop exactly from its source image and stored transform."""
    if (img.shape[1], img.shape[0]) != tuple(transform.source_size):
        raise ValueError(f"source is {img.shape[1]}x{img.shape[0]}, transform expects {transform.source_size}")
    out, _ = align_quad(img, np.asarray(transform.quad), transform.size, transform_size=transform.transform_size,
                        padding=transform.padding, eye_distance=transform.eye_distance)
    return out
