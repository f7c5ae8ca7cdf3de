"""A NumPy/OpenCV transcription of BasicSR's ``basicsr.metrics.psnr_ssim`` (``calculate_psnr``,
``calculate_ssim``, ``_ssim``, ``to_y_channel``) on RGB uint8 HWC images: the reference the metric tests compare
against and the peer ``benchmarks/bench_metrics.py`` times (each call converts its inputs to float64, as BasicSR
does)."""

from __future__ import annotations

import cv2
import numpy as np


def _bgr2ycbcr_y(img_u8_rgb: np.ndarray) -> np.ndarray:
    """BasicSR metric_util.to_y_channel on an RGB uint8 image (BasicSR gets BGR and uses reversed weights)."""
    img = img_u8_rgb[:, :, ::-1].astype(np.float32) / 255.0  # BGR float32 in [0, 1]
    y = np.dot(img, [24.966, 128.553, 65.481]) + 16.0
    y = (y / 255.0).astype(np.float32)
    return (y[..., None] * 255.0)


def _prepare(a: np.ndarray, b: np.ndarray, crop_border: int, test_y_channel: bool):
    """BasicSR's common input handling: crop the border, optionally keep Y only, then float64."""
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        a, b = _bgr2ycbcr_y(a), _bgr2ycbcr_y(b)
    return a.astype(np.float64), b.astype(np.float64)


def basicsr_psnr(a: np.ndarray, b: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    a, b = _prepare(a, b, crop_border, test_y_channel)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 * 255.0 / mse)


def _basicsr_ssim_plane(img, img2):
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())
    mu1 = cv2.filter2D(img, -1, window)[5:-5, 5:-5]
    mu2 = cv2.filter2D(img2, -1, window)[5:-5, 5:-5]
    mu1_sq, mu2_sq, mu1_mu2 = mu1 ** 2, mu2 ** 2, mu1 * mu2
    sigma1_sq = cv2.filter2D(img ** 2, -1, window)[5:-5, 5:-5] - mu1_sq
    sigma2_sq = cv2.filter2D(img2 ** 2, -1, window)[5:-5, 5:-5] - mu2_sq
    sigma12 = cv2.filter2D(img * img2, -1, window)[5:-5, 5:-5] - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return ssim_map.mean()


def basicsr_ssim(a: np.ndarray, b: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    a, b = _prepare(a, b, crop_border, test_y_channel)
    return float(np.mean([_basicsr_ssim_plane(a[..., i], b[..., i]) for i in range(a.shape[2])]))
