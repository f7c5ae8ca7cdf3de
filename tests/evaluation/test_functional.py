"""PSNR / SSIM / MS-SSIM against independent references on real images.

References: the pyiqa calibration oracles (official implementations and pyiqa's own values, oracles.md §1), pyiqa's
metrics themselves, scikit-image, and a small NumPy/OpenCV transcription of BasicSR's ``calculate_psnr`` /
``calculate_ssim`` / ``to_y_channel`` written here (BasicSR itself is not installed)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bfrcore.metrics import functional as fn
from peers.basicsr_metrics import basicsr_psnr, basicsr_ssim


# ----------------------------------------------------------------------------------------------- helpers
def _hwc(t: torch.Tensor) -> list[np.ndarray]:
    return [x.permute(1, 2, 0).numpy() for x in t]


# ----------------------------------------------------------------------------------------------- oracles
def test_psnr_matches_official_and_pyiqa_calibration(calibration):
    d, r = calibration["dist"], calibration["ref"]
    ours = fn.psnr(d, r).numpy()  # BasicSR convention, RGB == the official skimage RGB PSNR
    np.testing.assert_allclose(ours, calibration["pyiqa"]["psnr(ours)"], atol=1e-4)
    np.testing.assert_allclose(ours, calibration["official"]["psnr"], atol=6e-3)  # official quoted to 2 decimals
    ours_pyiqa = fn.psnr(d.float() / 255, r.float() / 255, convention="pyiqa").numpy()
    np.testing.assert_allclose(ours_pyiqa, calibration["pyiqa"]["psnr(ours)"], atol=1e-4)


def test_ssim_matches_official_matlab_and_pyiqa_calibration(calibration):
    d, r = calibration["dist"], calibration["ref"]
    matlab = fn.ssim(d, r, test_y_channel=True, convention="matlab").numpy()
    np.testing.assert_allclose(matlab, calibration["official"]["ssim"], atol=5e-5)  # 4 decimals quoted
    ours_pyiqa = fn.ssim(d.float() / 255, r.float() / 255, test_y_channel=True, convention="pyiqa").numpy()
    np.testing.assert_allclose(ours_pyiqa, calibration["pyiqa"]["ssim(ours)"], atol=5e-5)


def test_ms_ssim_matches_pyiqa_calibration(calibration):
    d, r = calibration["dist"].float() / 255, calibration["ref"].float() / 255
    ours = fn.ms_ssim(d, r).numpy()
    np.testing.assert_allclose(ours, calibration["pyiqa"]["ms_ssim(ours)"], atol=5e-5)
    # pyiqa's own tolerance against the official MATLAB MS-SSIM (rtol 1e-2)
    np.testing.assert_allclose(ours, calibration["official"]["ms_ssim"], rtol=1e-2)


@pytest.fixture(scope="module")
def pyiqa_metrics():
    pyiqa = pytest.importorskip("pyiqa")
    return {n: pyiqa.create_metric(n, device="cpu") for n in ("psnr", "psnry", "ssim", "ssimc", "ms_ssim")}


def test_against_pyiqa_metrics_on_calibration_pairs(calibration, pyiqa_metrics):
    # 192x256 crops keep pyiqa's float64 convolutions affordable; the full images are covered by the oracles above
    d = calibration["dist"][..., 96:288, 128:384].float() / 255
    r = calibration["ref"][..., 96:288, 128:384].float() / 255
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # pyiqa's float64 depthwise convs crawl with 2 threads on shared cores
    try:
        ref = {n: torch.cat([m(d[i:i + 1], r[i:i + 1]).reshape(-1) for i in range(len(d))]).double().numpy()
               for n, m in pyiqa_metrics.items()}
    finally:
        torch.set_num_threads(threads)
    # pyiqa PSNR runs in float32: agreement to float32 precision
    np.testing.assert_allclose(fn.psnr(d, r, convention="pyiqa").numpy(), ref["psnr"], atol=1e-4)
    np.testing.assert_allclose(fn.psnr(d, r, convention="pyiqa", test_y_channel=True).numpy(), ref["psnry"],
                               atol=1e-4)
    # pyiqa's window is fspecial cast to float32; ours is float64: agreement ~3e-7
    np.testing.assert_allclose(fn.ssim(d, r, convention="pyiqa", test_y_channel=True).numpy(), ref["ssim"],
                               atol=1e-6)
    np.testing.assert_allclose(fn.ssim(d, r, convention="pyiqa").numpy(), ref["ssimc"], atol=1e-6)
    np.testing.assert_allclose(fn.ms_ssim(d, r).numpy(), ref["ms_ssim"], atol=1e-6)


# ----------------------------------------------------------------------------------------------- BasicSR / skimage
@pytest.mark.parametrize("crop_border", [0, 4])
@pytest.mark.parametrize("y", [False, True])
def test_basicsr_convention_matches_numpy_reference(face_pairs, crop_border, y):
    hq, lq = face_pairs
    p, t = torch.from_numpy(lq).permute(0, 3, 1, 2), torch.from_numpy(hq).permute(0, 3, 1, 2)
    ours_p = fn.psnr(p, t, crop_border=crop_border, test_y_channel=y).numpy()
    ours_s = fn.ssim(p, t, crop_border=crop_border, test_y_channel=y).numpy()
    ref_p = [basicsr_psnr(a, b, crop_border, y) for a, b in zip(lq, hq)]
    ref_s = [basicsr_ssim(a, b, crop_border, y) for a, b in zip(lq, hq)]
    np.testing.assert_allclose(ours_p, ref_p, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours_s, ref_s, rtol=0, atol=1e-9)


def test_rgb_psnr_ssim_match_scikit_image(face_pairs):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    hq, lq = face_pairs
    p, t = torch.from_numpy(lq).permute(0, 3, 1, 2), torch.from_numpy(hq).permute(0, 3, 1, 2)
    ours_p = fn.psnr(p, t).numpy()
    ours_s = fn.ssim(p, t).numpy()
    for i in range(len(hq)):
        assert ours_p[i] == pytest.approx(peak_signal_noise_ratio(hq[i], lq[i], data_range=255), abs=1e-9)
        # skimage with the Wang et al. settings and per-channel mean over the cropped 'valid' map is the same
        # quantity; skimage averages over the full map minus a 5-pixel border (= valid for an 11x11 window)
        sk = structural_similarity(hq[i].astype(np.float64), lq[i].astype(np.float64), data_range=255,
                                   channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert ours_s[i] == pytest.approx(sk, abs=1e-6)


def test_y_channel_is_matlab_bt601_unrounded():
    x = torch.tensor([[[[0]], [[0]], [[0]]], [[[255]], [[255]], [[255]]], [[[255]], [[0]], [[0]]]],
                     dtype=torch.uint8)
    y = fn.rgb_to_y(x, "basicsr").reshape(-1).numpy()
    np.testing.assert_allclose(y, [16.0, 235.0, 16.0 + 65.481], atol=2e-5)
    assert y[2] != round(y[2])  # not rounded


# ----------------------------------------------------------------------------------------------- analytic + API
def test_psnr_closed_form_and_identical_images():
    a = torch.full((2, 3, 16, 16), 100, dtype=torch.uint8)
    b = a.clone()
    b[1] += 10  # constant offset of 10 grey levels: MSE 100 -> 10 log10(255²/100)
    v = fn.psnr(b, a)
    assert math.isinf(float(v[0]))
    assert float(v[1]) == pytest.approx(10 * math.log10(255 ** 2 / 100), abs=1e-12)
    s = fn.ssim(a.float() / 255, a.float() / 255)
    assert torch.allclose(s, torch.ones(2, dtype=torch.float64))


def test_uint8_and_float_inputs_agree_and_batch_equals_single(face_pairs):
    hq, lq = face_pairs
    p = torch.from_numpy(lq).permute(0, 3, 1, 2)
    t = torch.from_numpy(hq).permute(0, 3, 1, 2)
    whole = fn.ssim(p, t)
    assert torch.equal(whole, fn.ssim(p.float() / 255, t.float() / 255))
    single = torch.cat([fn.ssim(p[i:i + 1], t[i:i + 1]) for i in range(len(p))])
    assert torch.equal(whole, single)
    assert torch.equal(fn.psnr(p, t), torch.cat([fn.psnr(p[i:i + 1], t[i:i + 1]) for i in range(len(p))]))


def test_gaussian_filter_matches_conv2d_and_opencv():
    g = fn.gaussian_window_1d(11, 1.5)
    x = torch.rand(2, 3, 70, 90, dtype=torch.float64) * 255
    ours = fn.gaussian_filter_valid(x, g)
    w2 = torch.outer(torch.tensor(g, dtype=torch.float64), torch.tensor(g, dtype=torch.float64))
    ref = F.conv2d(x.reshape(6, 1, 70, 90), w2[None, None]).reshape(2, 3, 60, 80)
    assert torch.allclose(ours, ref, atol=1e-10, rtol=0)
    cv = cv2.filter2D(x[0, 0].numpy(), -1, np.outer(cv2.getGaussianKernel(11, 1.5), cv2.getGaussianKernel(11, 1.5)))
    np.testing.assert_allclose(ours[0, 0].numpy(), cv[5:-5, 5:-5], atol=1e-9)


def test_conventions_are_validated():
    a = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match="convention"):
        fn.psnr(a, a, convention="matlab")
    with pytest.raises(ValueError, match="shapes differ"):
        fn.ssim(a, torch.zeros(1, 3, 32, 30))
    with pytest.raises(ValueError, match="176"):
        fn.ms_ssim(a, a)
    with pytest.raises(ValueError, match="crop_border"):
        fn.psnr(a, a, crop_border=16)


# ----------------------------------------------------------------------------------------------- code paths
def test_thread_pool_path_equals_single_thread(face_pairs):
    """With torch threads > 1 each image is one task of a Python thread pool: same values, bit for bit."""
    hq, lq = face_pairs
    p, t = torch.from_numpy(lq).permute(0, 3, 1, 2), torch.from_numpy(hq).permute(0, 3, 1, 2)
    pf, tf = p[..., :200, :256].float() / 255, t[..., :200, :256].float() / 255
    fns = [lambda: fn.psnr(p, t), lambda: fn.ssim(p, t), lambda: fn.ssim(p, t, test_y_channel=True, crop_border=3),
           lambda: fn.ssim(pf, tf, convention="pyiqa", test_y_channel=True), lambda: fn.ms_ssim(pf, tf)]
    single = [f() for f in fns]
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pooled = [f() for f in fns]
    finally:
        torch.set_num_threads(n)
    for a, b in zip(single, pooled):
        assert torch.equal(a, b)


@pytest.mark.parametrize("rows", [None, 11, 100])
def test_batched_device_path_on_cpu(face_pairs, monkeypatch, rows):
    """The path CUDA (any non-CPU device) takes — whole chunks at once, whole-image strips, 32-row band GEMMs,
    batched PSNR — forced on CPU: it must give the BasicSR / pyiqa values too (also with other strip heights, a
    chunk that does not divide the batch, and odd image sizes)."""
    hq, lq = face_pairs
    p, t = torch.from_numpy(lq).permute(0, 3, 1, 2)[:5], torch.from_numpy(hq).permute(0, 3, 1, 2)[:5]
    pf, tf = p[..., :203, :250].float() / 255, t[..., :203, :250].float() / 255
    cpu = {"p": fn.psnr(p, t), "s": fn.ssim(p, t, chunk=2), "sy": fn.ssim(p, t, test_y_channel=True, crop_border=2),
           "sq": fn.ssim(pf, tf, convention="pyiqa"), "ms": fn.ms_ssim(pf, tf)}
    monkeypatch.setattr(fn, "_CPU_TASKS", False)
    monkeypatch.setitem(fn._SSIM_ROWS, "gpu", rows)
    assert fn._ssim_tiling(torch.device("cpu")) == (rows, 32)
    dev = {"p": fn.psnr(p, t), "s": fn.ssim(p, t, chunk=2), "sy": fn.ssim(p, t, test_y_channel=True, crop_border=2),
           "sq": fn.ssim(pf, tf, convention="pyiqa"), "ms": fn.ms_ssim(pf, tf)}
    assert torch.equal(dev["p"], cpu["p"])  # exact integer arithmetic on both paths
    for key in ("s", "sy", "sq", "ms"):
        assert torch.allclose(dev[key], cpu[key], atol=1e-12, rtol=0), key
    ref_s = [basicsr_ssim(a, b) for a, b in zip(lq[:5], hq[:5])]
    np.testing.assert_allclose(dev["s"].numpy(), ref_s, rtol=0, atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(face_pairs):  # pragma: no cover - runs where a GPU exists
    hq, lq = face_pairs
    p, t = torch.from_numpy(lq).permute(0, 3, 1, 2), torch.from_numpy(hq).permute(0, 3, 1, 2)
    for f in (fn.psnr, fn.ssim):
        assert torch.allclose(f(p.cuda(), t.cuda()).cpu(), f(p, t), atol=1e-9, rtol=0)
