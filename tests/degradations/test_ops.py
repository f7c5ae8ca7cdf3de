"""Ops: the fast blur equals cv2.filter2D, resampling sizes, noise and JPEG statistics, colour ops vs torchvision."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from degradations import kernels as K
from degradations import ops


def _reference_blur(img_u8: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """BasicSR: cv2.filter2D on the float32 [0, 1] image (reflect-101 borders), direct spatial filtering in float64
    (cv2.filter2D with CV_64F keeps the reference free of float32 FFT rounding)."""
    return cv2.filter2D(img_u8.astype(np.float64) / 255.0, cv2.CV_64F, kernel.astype(np.float64))


KERNELS = {
    "iso41": K.bivariate_gaussian(41, 6.0),
    "iso41_tiny_sigma": K.bivariate_gaussian(41, 0.4),
    "aniso41_diag": K.bivariate_gaussian(41, 9.0, 0.8, math.pi / 4, isotropic=False),
    "aniso41_axis": K.bivariate_gaussian(41, 9.0, 2.0, 0.0, isotropic=False),
    "aniso21": K.bivariate_gaussian(21, 2.0, 0.5, 1.0, isotropic=False),
    "generalized": K.bivariate_generalized_gaussian(21, 2.0, 3.0, 0.5, 0.6, isotropic=False),
    "plateau": K.bivariate_plateau(21, 2.0, 1.0, 2.0, 1.5, isotropic=False),
    "sinc": K.circular_lowpass_kernel(1.0, 21),
    "motion": K.motion_kernel(15, 13.0, 30.0),
    "small7": K.bivariate_gaussian(7, 1.0, 0.6, 0.3, isotropic=False),
    "delta": K.bivariate_gaussian(9, 0.0),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
@pytest.mark.parametrize("method", ["auto", "fft", "direct"])
def test_blur_equals_filter2d(face_rgb, name, method):
    kernel = KERNELS[name]
    ref = _reference_blur(face_rgb, kernel)
    out = ops.blur(face_rgb, kernel, scale=1 / 255.0, method=method)
    assert out.dtype == np.float32 and out.shape == face_rgb.shape
    assert np.abs(out - ref).max() < 2e-6
    # float32 input gives the same result
    out_f = ops.blur(ops.to_float(face_rgb), kernel, method=method)
    assert np.abs(out_f - ref).max() < 2e-6


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), k=st.sampled_from([3, 9, 21, 41]),
       sx=st.floats(0.1, 10), sy=st.floats(0.1, 10), theta=st.floats(-math.pi, math.pi), seed=st.integers(0, 99))
def test_blur_any_size_any_kernel(h, w, k, sx, sy, theta, seed):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    kernel = K.bivariate_gaussian(k, sx, sy, theta, isotropic=False)
    out = ops.blur(img, kernel, scale=1 / 255.0)
    assert np.abs(out - _reference_blur(img, kernel)).max() < 2e-6


def test_separable_factors_error_bound():
    rng = np.random.default_rng(0)
    dense = rng.random((15, 15))
    dense /= dense.sum()
    f = ops.separable_factors(dense)
    assert f is not None and len(f) <= 15
    approx = sum(np.outer(a, b) for a, b in f)
    assert np.abs(approx - dense).sum() <= ops.BLUR_TOLERANCE / 2
    assert len(ops.separable_factors(K.bivariate_gaussian(41, 3.0))) == 1  # rank 1
    assert ops.separable_factors(dense, max_rank=2) is None
    cropped = ops.crop_kernel(K.bivariate_gaussian(41, 1.0))
    assert cropped.shape[0] < 41 and cropped.shape[0] % 2 == 1
    assert 1.0 - cropped.sum() <= ops.BLUR_TOLERANCE / 2


def test_blur_rejects_bad_kernels(face_rgb):
    with pytest.raises(ValueError):
        ops.blur(face_rgb, np.ones((4, 4)) / 16)
    with pytest.raises(ValueError):
        ops.blur(face_rgb[:, :, :2], K.bivariate_gaussian(5, 1.0))


def test_resize_sizes_and_modes(face_rgb):
    x = ops.to_float(face_rgb)
    assert ops.downscaled_size(512, 512, 0.8) == (640, 640)
    assert ops.downscaled_size(512, 512, 3.7) == (int(512 // 3.7),) * 2
    assert ops.downscaled_size(64, 64, 100.0) == (1, 1)
    for mode in ops.RESIZE_MODES:
        y = ops.resize(x, (24, 30), mode)
        assert y.shape == (24, 30, 3) and y.dtype == np.float32
    assert ops.resize(x, x.shape[:2], "bicubic") is x
    np.testing.assert_array_equal(ops.resize(x, (24, 24), "bilinear"),
                                  cv2.resize(x, (24, 24), interpolation=cv2.INTER_LINEAR))
    with pytest.raises(ValueError, match="unknown resize mode"):
        ops.resize(x, (10, 10), "lanczos7")


def test_pil_bicubic_matches_pillow_on_uint8():
    from PIL import Image

    img = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    ours = ops.to_uint8(ops.resize(ops.to_float(img), (17, 17), "pil_bicubic"))
    pil = np.asarray(Image.fromarray(img).resize((17, 17), Image.Resampling.BICUBIC))
    assert np.abs(ours.astype(int) - pil.astype(int)).max() <= 1  # PIL's 8-bit path rounds per pass


@pytest.mark.parametrize("sigma", [0.0, 5.0, 20.0])
def test_gaussian_noise_statistics(sigma):
    rng = np.random.default_rng(0)
    n = ops.gaussian_noise((200, 200, 3), sigma, rng)
    assert n.dtype == np.float32
    assert abs(n.mean()) < 4 * sigma / 255 / math.sqrt(n.size) + 1e-12
    assert n.std() == pytest.approx(sigma / 255, rel=0.01, abs=1e-12)
    # channels independent
    if sigma:
        assert abs(np.corrcoef(n[..., 0].ravel(), n[..., 1].ravel())[0, 1]) < 0.02
    g = ops.gaussian_noise((50, 50, 3), sigma, rng, gray=True)
    np.testing.assert_array_equal(g[..., 0], g[..., 2])


def test_add_gaussian_noise_clips_and_replays():
    img = np.full((64, 64, 3), 0.99, np.float32)
    a = ops.add_gaussian_noise(img, 30.0, np.random.default_rng(3))
    b = ops.add_gaussian_noise(img, 30.0, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.max() <= 1.0 and a.min() >= 0.0 and (a == 1.0).any()
    assert not np.array_equal(a, ops.add_gaussian_noise(img, 30.0, np.random.default_rng(4)))


def test_poisson_noise_statistics():
    img = np.full((300, 300, 3), 0.5, np.float32)
    img[:, :150] = 0.2  # two levels -> vals = 2
    rng = np.random.default_rng(0)
    scale = 1.5
    n = ops.poisson_noise(img, scale, rng)
    q = np.clip(np.rint(img * 255), 0, 255) / 255
    vals = 2.0
    # E[noise] = 0, Var[noise] = scale² · q / vals
    for sl in (np.s_[:, :150], np.s_[:, 150:]):
        lam = q[sl].mean()
        assert abs(n[sl].mean()) < 5 * scale * math.sqrt(lam / vals / n[sl].size)
        assert n[sl].var() == pytest.approx(scale ** 2 * lam / vals, rel=0.05)
    g = ops.poisson_noise(img, 1.0, rng, gray=True)
    np.testing.assert_array_equal(g[..., 0], g[..., 1])


def test_jpeg_matches_opencv_and_quality_orders_error(face_rgb):
    face_rgb = cv2.GaussianBlur(face_rgb, (0, 0), 2.0)  # JPEG's domain: smooth content
    bgr = cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR)
    _, enc = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), 55])
    ref = cv2.cvtColor(cv2.imdecode(enc, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(ops.jpeg_uint8(face_rgb, 55), ref)
    errs = [np.abs(ops.jpeg_uint8(face_rgb, q).astype(float) - face_rgb).mean() for q in (10, 40, 70, 95)]
    assert errs == sorted(errs, reverse=True) and errs[0] > 2 * errs[-1]
    assert np.abs(ops.jpeg_uint8(face_rgb, 100).astype(int) - face_rgb).mean() < errs[-1]
    f = ops.jpeg(ops.to_float(face_rgb), 55)
    assert f.dtype == np.float32
    np.testing.assert_array_equal(ops.to_uint8(f), ref)
    for bad in (55.5, 101, -1):
        with pytest.raises(ValueError):
            ops.jpeg_uint8(face_rgb, bad)


def test_to_uint8_rounds_half_to_even_and_clips():
    x = np.array([[[-0.1, 0.5 / 255, 1.5 / 255], [2.5 / 255, 1.0, 1.2]]], np.float32)
    assert ops.to_uint8(x).tolist() == [[[0, 0, 2], [2, 255, 255]]]


def test_colour_ops_match_torchvision():
    torch = pytest.importorskip("torch")
    tvf = pytest.importorskip("torchvision.transforms.functional")
    img = np.random.default_rng(2).random((32, 32, 3)).astype(np.float32)
    img[:4] = 0.5  # grey pixels (hue undefined)
    t = torch.from_numpy(img).permute(2, 0, 1)

    def tv(fn, f):
        return fn(t, f).permute(1, 2, 0).numpy()

    for f in (0.0, 0.5, 1.4):
        np.testing.assert_allclose(ops.adjust_brightness(img, f), tv(tvf.adjust_brightness, f), atol=1e-6)
        np.testing.assert_allclose(ops.adjust_contrast(img, f), tv(tvf.adjust_contrast, f), atol=1e-6)
        np.testing.assert_allclose(ops.adjust_saturation(img, f), tv(tvf.adjust_saturation, f), atol=1e-6)
    for h in (-0.5, -0.1, 0.0, 0.08, 0.5):
        np.testing.assert_allclose(ops.adjust_hue(img, h), tv(tvf.adjust_hue, h), atol=1e-5)
    order = [2, 0, 3, 1]
    ours = ops.color_jitter(img, order, 1.2, 0.7, 1.3, 0.05)
    ref = t
    for i in order:
        ref = (tvf.adjust_brightness, tvf.adjust_contrast, tvf.adjust_saturation, tvf.adjust_hue)[i](
            ref, (1.2, 0.7, 1.3, 0.05)[i])
    np.testing.assert_allclose(ours, ref.permute(1, 2, 0).numpy(), atol=1e-5)


def test_gray_and_shift():
    img = np.random.default_rng(3).random((8, 8, 3)).astype(np.float32)
    g = ops.to_gray(img)
    np.testing.assert_allclose(g[..., 0], 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2],
                               atol=1e-6)
    s = ops.color_shift(img, (0.1, -0.2, 0.0))
    np.testing.assert_allclose(s, np.clip(img + np.array([0.1, -0.2, 0.0], np.float32), 0, 1))
