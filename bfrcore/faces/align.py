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
            pad = tuple(int(v) for v in np.maximum(pad, int(np.rint(qsize * 0.3))))
            pil = Image.fromarray(_reflect_pad_blur(np.asarray(pil), pad, qsize * 0.02), "RGB")
            quad = quad + pad[:2]

    out = _render_quad(np.asarray(pil), quad, transform_size)
    if size < transform_size:
        out = np.asarray(Image.fromarray(out).resize((size, size), Image.Resampling.LANCZOS))
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




def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage.gaussian_filter1d's kernel (radius int(truncate*sigma + 0.5), normalised)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 / (float(sigma) * float(sigma)) * x * x)
    return k / k.sum()


def _reflect_pad_blur(img: np.ndarray, pad: tuple[int, int, int, int], sigma: float) -> np.ndarray:
    """FFHQ's padding step on a uint8 RGB image: reflect-pad by ``pad`` (left, top, right, bottom), blend towards a
    Gaussian blur (sigma) near the borders and towards the median colour in the padding, round to uint8.

    Same arithmetic as the recipe's ``np.pad`` + ``scipy.ndimage.gaussian_filter`` + masks, made cheap: the blur
    weight clip(3*mask + 1, 0, 1) is zero deeper than 4/3 of the padding from each border, so the blur (the
    scipy kernel, applied with cv2.sepFilter2D, float32, BORDER_REFLECT = scipy's 'reflect') and the blend are only
    computed on the four border bands (each blurred with a kernel-radius margin so the band values are exact);
    the interior is left untouched. Differences to the scipy version are float32 summation order only."""
    p0, p1, p2, p3 = pad
    arr = np.pad(img.astype(np.float32), ((p1, p3), (p0, p2), (0, 0)), "reflect")
    hh, ww, _ = arr.shape
    xs = np.arange(ww, dtype=np.float32)
    ys = np.arange(hh, dtype=np.float32)
    mx = 1.0 - np.minimum(xs / max(p0, 1), (ww - 1 - xs) / max(p2, 1))  # (W,)
    my = 1.0 - np.minimum(ys / max(p1, 1), (hh - 1 - ys) / max(p3, 1))  # (H,)
    kernel = _gaussian_kernel(sigma).astype(np.float32)
    r = len(kernel) // 2
    row_in = my > -1.0 / 3.0  # rows/columns where the blur weight can be > 0 (mask > -1/3)
    col_in = mx > -1.0 / 3.0
    # regions (y0, y1, x0, x1) covering every pixel with a weight > 0 once: full-width horizontal bands, then the
    # vertical bands between them
    regions = [(y0, y1, 0, ww) for y0, y1 in _runs(row_in)]
    inner_rows = _runs(~row_in)
    for x0, x1 in _runs(col_in):
        regions += [(y0, y1, x0, x1) for y0, y1 in inner_rows]
    blurred = []
    for y0, y1, x0, x1 in regions:  # blur from the unblended array, with a kernel-radius margin
        a, b = max(y0 - r, 0), min(y1 + r, hh)
        c, d = max(x0 - r, 0), min(x1 + r, ww)
        blurred.append(_sep_blur(arr[a:b, c:d], kernel)[y0 - a:y1 - a, x0 - c:x1 - c])
    for (y0, y1, x0, x1), bl in zip(regions, blurred):
        m = np.maximum(mx[None, x0:x1], my[y0:y1, None])[..., None]
        view = arr[y0:y1, x0:x1]
        view += (bl - view) * np.clip(m * 3.0 + 1.0, 0.0, 1.0)
    med = np.median(arr, axis=(0, 1))
    # the median blend weight clip(mask, 0, 1) is > 0 only in the padding itself
    pad_rows = (my > 0)
    pad_cols = (mx > 0)
    for y0, y1, x0, x1 in [(y0, y1, 0, ww) for y0, y1 in _runs(pad_rows)] + [
            (y0, y1, x0, x1) for x0, x1 in _runs(pad_cols) for y0, y1 in _runs(~pad_rows)]:
        m = np.maximum(mx[None, x0:x1], my[y0:y1, None])[..., None]
        view = arr[y0:y1, x0:x1]
        view += (med - view) * np.clip(m, 0.0, 1.0)
    return np.uint8(np.clip(np.rint(arr), 0, 255))


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the runs of True in a 1-D bool array."""
    d = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _sep_blur(a: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable Gaussian of a float32 (H, W, 3) block; the rows/columns at the block's own edges use reflection
    (exact where the block edge is the image edge; elsewhere the caller discards a kernel-radius margin)."""
    import cv2

    return cv2.sepFilter2D(np.ascontiguousarray(a), cv2.CV_32F, kernel, kernel, borderType=cv2.BORDER_REFLECT)


def _render_quad(img: np.ndarray, quad: np.ndarray, out_size: int) -> np.ndarray:
    """Bilinear render of the oriented square ``quad`` (pixel-centre coordinates) to (out_size, out_size): the
    recipe's ``PIL.Image.transform(QUAD, BILINEAR)``. The FFHQ quad is a parallelogram, so PIL's bilinear quad map is
    affine and cv2.warpAffine computes the same sample positions (output pixel centre (x+.5, y+.5)/S along the
    quad's sides). Like PIL, a sample whose position falls outside the image is black and the others clamp to the
    edge, and the result is truncated to uint8. cv2 quantises sample positions to 1/32 pixel (PIL: double), so a
    few pixels differ by one level (measured: docs/build.md)."""
    import cv2

    q = np.asarray(quad, dtype=np.float64)
    s = float(out_size)
    a = np.stack([q[3] - q[0], q[1] - q[0]], axis=1) / s  # d src / d (x, y)
    t = q[0] + a @ np.array([0.5, 0.5])
    m = np.concatenate([a, t[:, None]], axis=1)
    h, w = img.shape[:2]
    # float32 in, truncated out: PIL's bilinear computes in double and truncates to uint8 (a cv2 uint8 warp would
    # round, +0.5 level on average); the epsilon keeps exact integers (flat regions) from flooring one level down
    out = cv2.warpAffine(img.astype(np.float32), m, (out_size, out_size),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    out = np.floor(out + 1e-3).clip(0, 255).astype(np.uint8)
    corners = q[[0, 1, 2, 3]]
    if (corners[:, 0].min() < -0.5 or corners[:, 1].min() < -0.5 or corners[:, 0].max() >= w - 0.5
            or corners[:, 1].max() >= h - 0.5):
        # PIL fills samples outside [-0.5, w-0.5) x [-0.5, h-0.5) (pixel-centre coordinates) with black
        g = np.arange(out_size, dtype=np.float64)
        sx = t[0] + a[0, 0] * g[None, :] + a[0, 1] * g[:, None]
        sy = t[1] + a[1, 0] * g[None, :] + a[1, 1] * g[:, None]
        outside = (sx < -0.5) | (sx >= w - 0.5) | (sy < -0.5) | (sy >= h - 0.5)
        out[outside] = 0
    return out


def realign(img: np.ndarray, transform: AlignTransform) -> np.ndarray:
    """Re-make an aligned crop exactly from its source image and stored transform."""
    if (img.shape[1], img.shape[0]) != tuple(transform.source_size):
        raise ValueError(f"source is {img.shape[1]}x{img.shape[0]}, transform expects {transform.source_size}")
    out, _ = align_quad(img, np.asarray(transform.quad), transform.size, transform_size=transform.transform_size,
                        padding=transform.padding, eye_distance=transform.eye_distance)
    return out
