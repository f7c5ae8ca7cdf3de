"""Kernels: normalisation, the analytic formulas (BasicSR's, re-derived independently here), symmetry, moments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from degradations import kernels as K

sizes = st.sampled_from([3, 5, 7, 11, 21, 41])
sigmas = st.floats(0.05, 12.0)
thetas = st.floats(-math.pi, math.pi)
betas = st.floats(0.5, 4.0)


def _reference_q(k, sx, sy, theta, iso):
    """BasicSR: x^T inv(Σ) x with Σ = R diag(σx², σy²) Rᵀ, the grid from mesh_grid (2x2 inverse by hand)."""
    ax = np.arange(-k // 2 + 1.0, k // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    if iso:
        sig = np.array([[sx ** 2, 0], [0, sx ** 2]])
    else:
        d = np.array([[sx ** 2, 0], [0, sy ** 2]])
        u = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        sig = u.dot(d).dot(u.T)
    a, b, c, e = sig[0, 0], sig[0, 1], sig[1, 0], sig[1, 1]
    det = a * e - b * c
    inv = np.array([[e, -b], [-c, a]]) / det
    return inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy


@settings(max_examples=60, deadline=None)
@given(k=sizes, sx=st.floats(0.3, 12.0), sy=st.floats(0.3, 12.0), theta=thetas, iso=st.booleans())
def test_gaussian_matches_formula_and_sums_to_one(k, sx, sy, theta, iso):
    ker = K.bivariate_gaussian(k, sx, sy, theta, isotropic=iso)
    ref = np.exp(-0.5 * _reference_q(k, sx, sy, theta, iso))
    ref /= ref.sum()
    assert ker.shape == (k, k) and ker.dtype == np.float64
    assert ker.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(ker, ref, rtol=1e-9, atol=1e-15)
    # point symmetry: correlation == convolution
    np.testing.assert_allclose(ker, ker[::-1, ::-1], rtol=1e-12, atol=1e-18)


@settings(max_examples=40, deadline=None)
@given(k=sizes, sx=st.floats(0.3, 8.0), sy=st.floats(0.3, 8.0), theta=thetas, beta=betas, iso=st.booleans())
def test_generalized_and_plateau_match_formula(k, sx, sy, theta, beta, iso):
    q = _reference_q(k, sx, sy, theta, iso)
    gen = np.exp(-0.5 * np.power(q, beta))
    plat = 1.0 / (np.power(q, beta) + 1.0)
    np.testing.assert_allclose(K.bivariate_generalized_gaussian(k, sx, sy, theta, beta, isotropic=iso),
                               gen / gen.sum(), rtol=1e-8, atol=1e-15)
    np.testing.assert_allclose(K.bivariate_plateau(k, sx, sy, theta, beta, isotropic=iso),
                               plat / plat.sum(), rtol=1e-8, atol=1e-15)


def test_generalized_with_beta_one_is_gaussian():
    np.testing.assert_allclose(K.bivariate_generalized_gaussian(21, 2.0, 3.5, 0.4, 1.0, isotropic=False),
                               K.bivariate_gaussian(21, 2.0, 3.5, 0.4, isotropic=False), rtol=1e-12)


def test_isotropic_gaussian_is_outer_product_of_1d():
    for k, s in ((41, 0.3), (41, 7.0), (13, 2.0)):
        g = K.gaussian_1d(k, s)
        np.testing.assert_allclose(K.bivariate_gaussian(k, s), np.outer(g, g), rtol=1e-12, atol=1e-18)
        # and the 1-D kernel is the sampled normal density, normalised
        ax = np.arange(k) - k // 2
        ref = np.exp(-ax ** 2 / (2 * s * s))
        np.testing.assert_allclose(g, ref / ref.sum(), rtol=1e-12)


def test_aniso_orientation_and_covariance():
    # theta = 0, σx > σy: spread along x (columns); the empirical covariance approaches diag(σx², σy²)
    ker = K.bivariate_gaussian(61, 4.0, 1.5, 0.0, isotropic=False)
    xx, yy = K.mesh_grid(61)
    assert (ker * xx ** 2).sum() == pytest.approx(16.0, rel=1e-3)
    assert (ker * yy ** 2).sum() == pytest.approx(2.25, rel=1e-3)
    assert abs((ker * xx * yy).sum()) < 1e-9
    # rotating by 90 degrees swaps the axes
    rot = K.bivariate_gaussian(61, 4.0, 1.5, math.pi / 2, isotropic=False)
    np.testing.assert_allclose(rot, ker.T, atol=1e-12)
    # theta = 45 degrees: positive xy covariance = (σx² − σy²)/2
    diag = K.bivariate_gaussian(61, 4.0, 1.5, math.pi / 4, isotropic=False)
    assert (diag * xx * yy).sum() == pytest.approx((16.0 - 2.25) / 2, rel=1e-3)


def test_zero_sigma_is_a_delta():
    for s in (0.0, 1e-9):
        ker = K.bivariate_gaussian(7, s)
        expect = np.zeros((7, 7))
        expect[3, 3] = 1
        np.testing.assert_array_equal(ker, expect)
    assert np.isfinite(K.bivariate_gaussian(9, 0.0, 3.0, 0.7, isotropic=False)).all()


@pytest.mark.parametrize("k", [1, 2, 4, 0, -3, 3.5])
def test_bad_size_rejected(k):
    if k == 1:
        assert K.bivariate_gaussian(1, 2.0).tolist() == [[1.0]]
        return
    with pytest.raises(ValueError):
        K.bivariate_gaussian(k, 2.0)


@settings(max_examples=30, deadline=None)
@given(k=st.sampled_from([7, 9, 13, 21]), cutoff=st.floats(0.2, math.pi))
def test_sinc_matches_formula(k, cutoff):
    ker = K.circular_lowpass_kernel(cutoff, k)
    c = (k - 1) / 2
    yy, xx = np.mgrid[0:k, 0:k]
    r = np.hypot(xx - c, yy - c)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
    ref[k // 2, k // 2] = cutoff ** 2 / (4 * np.pi)
    np.testing.assert_allclose(ker, ref / ref.sum(), rtol=1e-10, atol=1e-15)
    assert ker.sum() == pytest.approx(1.0, abs=1e-12)


def test_sinc_padding_keeps_the_kernel_in_the_centre():
    small = K.circular_lowpass_kernel(1.5, 9)
    padded = K.circular_lowpass_kernel(1.5, 9, pad_to=21)
    assert padded.shape == (21, 21)
    np.testing.assert_array_equal(padded[6:15, 6:15], small)
    assert padded.sum() == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(length=st.floats(0.0, 20.0), angle=st.floats(0.0, 180.0))
def test_motion_kernel_moments(length, angle):
    k = 2 * math.ceil(length / 2) + 1
    ker = K.motion_kernel(k, length, angle)
    assert ker.sum() == pytest.approx(1.0, abs=1e-12)
    assert (ker >= 0).all()
    np.testing.assert_allclose(ker, ker[::-1, ::-1], atol=1e-15)
    xx, yy = K.mesh_grid(k)
    assert (ker * xx).sum() == pytest.approx(0.0, abs=1e-9)
    assert (ker * yy).sum() == pytest.approx(0.0, abs=1e-9)
    # second moment along the motion direction: a uniform segment (L²/12), widened a little by bilinear splatting
    a = math.radians(angle)
    along = xx * math.cos(a) - yy * math.sin(a)
    m2 = (ker * along ** 2).sum()
    assert length ** 2 / 12 - 1e-6 <= m2 <= length ** 2 / 12 + 0.5


def test_horizontal_motion_is_a_row():
    ker = K.motion_kernel(11, 8.0, 0.0)
    assert ker[5].sum() == pytest.approx(1.0)
    interior = ker[5, 2:9]
    np.testing.assert_allclose(interior, interior.mean(), rtol=0.02)  # flat inside the segment


def test_build_kernel_dispatch_and_hash():
    a = K.build_kernel("aniso", 21, sigma_x=2.0, sigma_y=4.0, theta=0.3)
    np.testing.assert_array_equal(a, K.bivariate_gaussian(21, 2.0, 4.0, 0.3, isotropic=False))
    assert K.build_kernel("sinc", 9, omega_c=1.2, pad_to=21).shape == (21, 21)
    with pytest.raises(ValueError, match="unknown kernel type"):
        K.build_kernel("skew", 21, sigma_x=1.0)
    h = K.kernel_sha256(a)
    assert h == K.kernel_sha256(a.copy()) and len(h) == 64
    assert h != K.kernel_sha256(K.build_kernel("aniso", 21, sigma_x=2.0, sigma_y=4.0, theta=0.30001))
    assert K.kernel_sha256(None) is None
