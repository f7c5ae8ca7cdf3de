"""Safe image I/O on every odd input (files made by the tests) and on real photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bfrcore.imageio import (
    ImageReadError,
    encode_png,
    file_sha256,
    pixel_sha256,
    read_image,
    read_image_with_info,
    write_png,
)
from tests.helpers import tiny_image


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_formats_roundtrip_exactly(fmt):
    arr = tiny_image()
    kw = {"lossless": True} if fmt == "WEBP" else {}
    out, info = read_image_with_info(_save(Image.fromarray(arr), fmt, **kw))
    assert out.dtype == np.uint8 and out.shape == arr.shape
    assert info.format == fmt
    np.testing.assert_array_equal(out, arr)
    assert pixel_sha256(out) == pixel_sha256(arr)


def test_jpeg_decodes_like_pillow():
    arr = tiny_image()
    data = _save(Image.fromarray(arr), "JPEG", quality=95)
    out = read_image(data)
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert np.abs(out.astype(int) - arr).mean() < 8


def test_grey_and_bilevel_become_rgb():
    grey = np.arange(32 * 48, dtype=np.uint32).reshape(32, 48) % 256
    grey = grey.astype(np.uint8)
    out = read_image(_save(Image.fromarray(grey, "L"), "PNG"))
    assert out.shape == (32, 48, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)
    bw = Image.fromarray(grey > 127)
    out = read_image(_save(bw.convert("1"), "PNG"))
    assert set(np.unique(out)) <= {0, 255}


def test_palette_and_palette_with_transparency():
    arr = tiny_image()
    pal = Image.fromarray(arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    expected = np.asarray(pal.convert("RGB"))
    out, info = read_image_with_info(_save(pal, "PNG"))
    assert info.mode == "P" and not info.had_alpha
    np.testing.assert_array_equal(out, expected)
    # index 0 transparent -> composited onto white
    pal.info["transparency"] = 0
    data = _save(pal, "PNG", transparency=0)
    out, info = read_image_with_info(data)
    assert info.had_alpha
    mask = np.asarray(pal) == 0
    assert mask.any()
    assert (out[mask] == 255).all()


def test_alpha_composited_on_background():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent
    rgba[:4, :, 3] = 255  # top half opaque red
    out = read_image(_save(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert (out[:4] == [200, 0, 0]).all()
    assert (out[4:] == 255).all()
    out_black = read_image(_save(Image.fromarray(rgba, "RGBA"), "PNG"), background=(0, 0, 0))
    assert (out_black[4:] == 0).all()
    la = Image.fromarray(rgba[..., 0]).convert("LA")
    assert read_image(_save(la, "PNG")).shape == (8, 8, 3)


def test_cmyk_jpeg():
    arr = tiny_image()
    cmyk = Image.fromarray(arr).convert("CMYK")
    data = _save(cmyk, "JPEG", quality=98)
    out, info = read_image_with_info(data)
    assert info.mode == "CMYK" and out.shape == arr.shape
    np.testing.assert_array_equal(out, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_16bit_grey_png_scaled_with_rounding():
    vals = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)  # -> 0, 1, 255, 128
    img = Image.fromarray(vals)  # mode I;16
    out, info = read_image_with_info(_save(img, "PNG"))
    assert info.mode.startswith("I")
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 128])


def test_exif_orientation_applied():
    arr = tiny_image(20, 30)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW to display
    data = _save(img, "PNG", exif=exif.tobytes())
    out, info = read_image_with_info(data)
    assert info.exif_transposed
    assert out.shape == (30, 20, 3)
    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(arr).transpose(Image.Transpose.ROTATE_270)))


def test_gif_first_frame():
    arr = tiny_image()
    out = read_image(_save(Image.fromarray(arr).convert("P"), "GIF"))
    assert out.shape == arr.shape


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"this is not an image at all" * 10, "not_an_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not_an_image"),
    ],
)
def test_bad_bytes_rejected_with_reason(data, reason):
    with pytest.raises(ImageReadError) as e:
        read_image(data)
    assert e.value.reason == reason


def test_truncated_files_rejected():
    arr = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    for fmt in ("PNG", "JPEG"):
        data = _save(Image.fromarray(arr), fmt)
        with pytest.raises(ImageReadError) as e:
            read_image(data[: len(data) // 2])
        assert e.value.reason in ("truncated", "corrupt"), fmt


def test_corrupt_body_rejected():
    data = bytearray(_save(Image.fromarray(tiny_image()), "PNG"))
    data[60:90] = b"\xff" * 30  # inside the IDAT stream
    with pytest.raises(ImageReadError) as e:
        read_image(bytes(data))
    assert e.value.reason in ("corrupt", "truncated")


def test_decompression_bomb_limit():
    data = _save(Image.new("L", (4000, 3000)), "PNG")
    with pytest.raises(ImageReadError) as e:
        read_image(data, max_pixels=1_000_000)
    assert e.value.reason == "too_large"
    assert read_image(data).shape == (3000, 4000, 3)


def test_byte_size_limit_and_missing(tmp_path):
    p = tmp_path / "x.png"
    write_png(p, tiny_image())
    with pytest.raises(ImageReadError) as e:
        read_image(p, max_bytes=10)
    assert e.value.reason == "too_large"
    with pytest.raises(ImageReadError) as e:
        read_image(tmp_path / "nope.png")
    assert e.value.reason == "missing" and "nope.png" in str(e.value)


def test_unsupported_container_rejected():
    data = _save(Image.fromarray(tiny_image()), "PPM")
    with pytest.raises(ImageReadError) as e:
        read_image(data)
    assert e.value.reason == "unsupported_format"


def test_write_png_atomic_deterministic_lossless(tmp_path):
    arr = tiny_image(17, 23)
    p1 = write_png(tmp_path / "a" / "1.png", arr)
    p2 = write_png(tmp_path / "b.png", arr)
    assert file_sha256(p1) == file_sha256(p2)
    assert encode_png(arr) == p1.read_bytes()
    np.testing.assert_array_equal(read_image(p1), arr)
    assert not [f for f in (tmp_path / "a").iterdir() if f.name.endswith(".tmp")]
    with pytest.raises(TypeError):
        write_png(tmp_path / "c.png", arr.astype(np.float32))


def test_pixel_hash_ignores_container():
    arr = tiny_image()
    a = read_image(_save(Image.fromarray(arr), "PNG"))
    b = read_image(_save(Image.fromarray(arr), "BMP"))
    assert pixel_sha256(a) == pixel_sha256(b)
    assert pixel_sha256(a) != pixel_sha256(a[:, ::-1])


@pytest.mark.shared_data
def test_real_photos_every_format_in_shared_data(shared_faces):
    """Every file listed as an image in the shared manifest decodes (jpg, jfif, png, bmp) to its stated size."""
    import pandas as pd

    man = pd.read_csv(shared_faces / "manifest.csv")
    man = man[man["path"].str.lower().str.endswith((".png", ".jpg", ".jpeg", ".jfif", ".bmp"))]
    sample = man.groupby("source").head(3)
    for _, row in sample.iterrows():
        arr = read_image(shared_faces / row["source"] / row["path"])
        assert arr.shape[2] == 3 and arr.dtype == np.uint8
        assert {arr.shape[0], arr.shape[1]} == {row["height"], row["width"]} or (
            arr.shape[1], arr.shape[0]) == (row["width"], row["height"])


def test_max_pixels_above_pillows_limit_is_honoured(monkeypatch):
    """``max_pixels`` above Pillow's process-wide limit decodes (in both of Pillow's bands: warning and error),
    below it still rejects; the global limit and other threads are untouched. Pillow's limit is lowered to 1 MP so
    the images stay small (the real case: 89.5 MP limit, a 95 MP PNG with max_pixels=200 MP)."""
    import threading

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    warn_band = _save(Image.new("1", (1200, 1000)), "PNG")  # 1.2 MP: Pillow warns (we treat as an error)
    error_band = _save(Image.new("1", (2500, 1000)), "PNG")  # 2.5 MP: Pillow raises DecompressionBombError
    for data, shape in ((warn_band, (1000, 1200, 3)), (error_band, (1000, 2500, 3))):
        assert read_image(data, max_pixels=3_000_000).shape == shape
        with pytest.raises(ImageReadError) as e:
            read_image(data, max_pixels=1_100_000)
        assert e.value.reason == "too_large" and "> limit 1100000" in str(e.value)
    assert Image.MAX_IMAGE_PIXELS == 1_000_000
    with pytest.raises(Image.DecompressionBombError):  # plain Pillow elsewhere keeps its own limit
        Image.open(io.BytesIO(error_band))
    seen = []

    def other_thread():
        try:
            Image.open(io.BytesIO(error_band))
            seen.append("opened")
        except Image.DecompressionBombError:
            seen.append("refused")

    from bfrcore.imageio import pixel_limit

    with pixel_limit(10_000_000):  # raised in this thread only
        Image.open(io.BytesIO(error_band))
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert seen == ["refused"]
