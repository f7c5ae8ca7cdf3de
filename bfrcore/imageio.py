"""Safe image reading and lossless writing, used by every package of the suite.

`read_image` returns an RGB ``uint8`` array of shape (H, W, 3) for any JPEG/PNG/WebP/BMP/TIFF/GIF/MPO input, with
the EXIF orientation applied and palette, grey, grey+alpha, CMYK, 16-bit and alpha images converted to RGB. Anything
else raises :class:`ImageReadError` whose ``reason`` is one of :data:`REASONS`, so batch jobs can skip and record.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from bfrcore.errors import InputError

#: Default decompression-bomb limit, in pixels (width x height). 100 MP covers any camera in use today.
DEFAULT_MAX_PIXELS = 100_000_000
#: Largest encoded file accepted, in bytes.
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
#: Container formats we decode (Pillow format names).
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO"})
#: Every value ImageReadError.reason can take.
REASONS = ("missing", "empty", "too_large", "not_an_image", "unsupported_format", "truncated", "corrupt")

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview]


class ImageReadError(InputError):
    """An input that is not a usable image (bad input: the CLIs exit 2). ``reason`` is a short machine-readable code from :data:`REASONS`."""

    def __init__(self, reason: str, message: str, source: str = "<bytes>"):
        assert reason in REASONS, reason
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {reason}: {message}")


@dataclass(frozen=True)
class ImageInfo:
    """What was found while decoding (recorded in manifests)."""

    format: str
    mode: str  # original Pillow mode, e.g. "P", "I;16", "CMYK", "RGBA"
    width: int  # after EXIF orientation
    height: int
    exif_transposed: bool
    had_alpha: bool
    icc_converted: bool


# ------------------------------------------------------------------------ per-call decompression-bomb limit
# Pillow checks every size it decodes (open, GIF/MPO frames, TIFF tiles, crop) against the process-wide
# Image.MAX_IMAGE_PIXELS (89.5 MP: warning, 179 MP: error). read_image must honour its caller's ``max_pixels``
# instead, above or below that, without changing the limit for other code or other threads: the check is wrapped
# once, and the wrapper applies a limit set for the current thread only (by :func:`pixel_limit`); everywhere else
# Pillow's own check runs unchanged.
_thread_limit = threading.local()
_pillow_bomb_check = getattr(Image, "_decompression_bomb_check", None)
_pillow_bomb_check = getattr(_pillow_bomb_check, "__celebref_original__", _pillow_bomb_check)


def _bomb_check(size, *args, **kwargs):
    limit = getattr(_thread_limit, "max_pixels", None)
    if limit is None:
        return _pillow_bomb_check(size, *args, **kwargs)
    pixels = max(1, size[0]) * max(1, size[1])
    if pixels > limit:
        raise Image.DecompressionBombError(f"{size[0]}x{size[1]} = {pixels} pixels > limit {limit}")
    return None


if _pillow_bomb_check is not None:  # a Pillow without the hook keeps its own limit (images above it: too_large)
    _bomb_check.__celebref_original__ = _pillow_bomb_check  # type: ignore[attr-defined]
    Image._decompression_bomb_check = _bomb_check


@contextmanager
def pixel_limit(max_pixels: int):
    """Within this block, in this thread only, Pillow's decompression-bomb check allows up to ``max_pixels``
    (width x height) and rejects anything larger, whatever ``Image.MAX_IMAGE_PIXELS`` says."""
    prev = getattr(_thread_limit, "max_pixels", None)
    _thread_limit.max_pixels = int(max_pixels)
    try:
        yield
    finally:
        _thread_limit.max_pixels = prev


def _open_bytes(src: ImageSource, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        name = "<bytes>"
    else:
        path = Path(src)
        name = str(path)
        if not path.is_file():
            raise ImageReadError("missing", "no such file", name)
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageReadError("too_large", f"{size} bytes > limit {max_bytes}", name)
        data = path.read_bytes()
    if len(data) == 0:
        raise ImageReadError("empty", "zero bytes", name)
    if len(data) > max_bytes:
        raise ImageReadError("too_large", f"{len(data)} bytes > limit {max_bytes}", name)
    return data, name


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> tuple[np.ndarray, bool]:
    """Convert any decoded Pillow image to RGB uint8; returns (array, had_alpha)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        if mode == "I" and arr.max(initial=0) <= 255:
            grey = arr.astype(np.uint8)
        else:  # 16-bit: map 0..65535 -> 0..255 with rounding
            grey = np.clip(np.round(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), False
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        grey = np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), False
    if mode == "1":
        img = img.convert("L")
        mode = "L"
    had_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info)
    if had_alpha:
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, background + (255,))
        img = Image.alpha_composite(base, rgba)
    out = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(out), had_alpha


def _apply_icc(img: Image.Image) -> tuple[Image.Image, bool]:
    """Convert an embedded ICC profile to sRGB (e.g. Adobe RGB or Display P3 photos). Best effort."""
    profile = img.info.get("icc_profile")
    if not profile or img.mode not in ("RGB", "RGBA", "CMYK"):
        return img, False
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        dst = ImageCms.createProfile("sRGB")
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(img, src, dst, outputMode=out_mode), True
    except Exception:  # a broken profile must not reject an otherwise fine image
        return img, False


def read_image_with_info(
    src: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    background: tuple[int, int, int] = (255, 255, 255),
    apply_icc: bool = True,
) -> tuple[np.ndarray, ImageInfo]:
    """Decode ``src`` (path or encoded bytes) to an RGB uint8 array (H, W, 3) plus what was done to it.

    Alpha is composited onto ``background``. ``max_pixels`` (width x height) replaces Pillow's own decompression-bomb
    limit for this decode (above or below its 89.5 MP default; other threads keep Pillow's): larger images are
    ``too_large``. Raises :class:`ImageReadError` for anything unusable.
    """
    data, name = _open_bytes(src, max_bytes)
    try:
        with warnings.catch_warnings(), pixel_limit(max_pixels):
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "?"
            if fmt not in SUPPORTED_FORMATS:
                raise ImageReadError("unsupported_format", f"format {fmt} is not accepted", name)
            w, h = img.size
            if w <= 0 or h <= 0:
                raise ImageReadError("corrupt", f"invalid size {w}x{h}", name)
            if w * h > max_pixels:
                raise ImageReadError("too_large", f"{w}x{h} = {w * h} pixels > limit {max_pixels}", name)
            original_mode = img.mode
            img.load()
            exif_done = _has_orientation(img)
            img = ImageOps.exif_transpose(img)
            icc_done = False
            if apply_icc:
                img, icc_done = _apply_icc(img)
            arr, had_alpha = _to_rgb(img, background)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError("too_large", str(e), name) from e
    except UnidentifiedImageError as e:
        raise ImageReadError("not_an_image", "not a recognised image file", name) from e
    except OSError as e:
        msg = str(e)
        reason = "truncated" if "truncated" in msg.lower() or "premature" in msg.lower() else "corrupt"
        raise ImageReadError(reason, msg, name) from e
    except (ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, MemoryError) as e:
        raise ImageReadError("corrupt", f"{type(e).__name__}: {e}", name) from e
    info = ImageInfo(fmt, original_mode, arr.shape[1], arr.shape[0], bool(exif_done), had_alpha, icc_done)
    return arr, info


def _has_orientation(img: Image.Image) -> bool:
    try:
        return img.getexif().get(0x0112, 1) not in (1, None)
    except Exception:
        return False


def read_image(src: ImageSource, **kwargs) -> np.ndarray:
    """Decode ``src`` to RGB uint8 (H, W, 3). See :func:`read_image_with_info` for options and errors."""
    return read_image_with_info(src, **kwargs)[0]


# Never let Pillow silently accept truncated files.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def encode_png(arr: np.ndarray, compress_level: int = 6) -> bytes:
    """Lossless PNG bytes of an RGB/grey uint8 array, with no timestamps or other metadata (deterministic)."""
    arr = _check_uint8_image(arr)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def write_png(path: str | os.PathLike, arr: np.ndarray, compress_level: int = 6) -> Path:
    """Write ``arr`` (uint8, (H, W, 3) RGB or (H, W) grey) as a lossless PNG, atomically (temp file + rename)."""
    return write_bytes_atomic(path, encode_png(arr, compress_level))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _check_uint8_image(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {arr.dtype}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4))):
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return np.ascontiguousarray(arr)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def pixel_sha256(arr: np.ndarray) -> str:
    """Hex sha256 of decoded pixels (shape, dtype and raw C-order bytes): equal pixels, equal hash, any container."""
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{arr.dtype.str}:{'x'.join(map(str, arr.shape))}:".encode())
    h.update(arr.tobytes())
    return h.hexdigest()
