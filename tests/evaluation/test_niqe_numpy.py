"""bfrcore.metrics.niqe_numpy (the torch-free NIQE for the build's quality stage) against the torch module on real
faces and edge cases, against the same oracles (BasicSR/MATLAB baboon, official MATLAB calibration values), and
that importing and running it never loads torch."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

from bfrcore.imageio import read_image
from bfrcore.metrics import functional as fn
from bfrcore.metrics import niqe as nq
from bfrcore.metrics import niqe_numpy as nn
from tests.helpers import PROJECT_ROOT

# numpy vs torch: only summation orders differ (numpy/OpenBLAS vs torch/MKL); measured max |Δ| 4.5e-13 on 110 real
# photos. Every discrete step (luma rounding, MSCN zero snap, gamma-grid argmin) must agree, or |Δ| is >= 1e-6.
TOL = 1e-9
BASICSR_BABOON = 5.7295763
MATLAB_BABOON = 5.72957338


def _torch_niqe(img: np.ndarray, params, **kw) -> float:
    return float(nq.niqe(torch.from_numpy(np.array(img)).permute(2, 0, 1)[None], params, **kw)[0])


def _assert_same(a: float, b: float, what: str = "") -> None:
    if math.isnan(a) or math.isnan(b):
        assert math.isnan(a) and math.isnan(b), (what, a, b)
    else:
        assert abs(a - b) <= TOL, (what, a, b, abs(a - b))


# ----------------------------------------------------------------------------------------------- no torch
def test_import_and_scoring_do_not_load_torch():
    """The point of the module: a worker that imports it and scores a face never imports torch (synthetic pristine
    parameters, so no weights file is needed)."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import bfrcore.metrics.niqe_numpy as m
        assert "torch" not in sys.modules, "import pulled torch"
        k = np.exp(-((np.arange(7) - 3.0) ** 2) / (2 * (7 / 6) ** 2)); k /= k.sum()
        params = {"mu_pris_param": np.zeros((1, 36)), "cov_pris_param": np.eye(36),
                  "gaussian_window": np.outer(k, k)}
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:200, 0:300]
        img = np.clip(np.stack([xx * 0.8, yy, (xx + yy) % 256], -1) + rng.normal(0, 8, (200, 300, 3)), 0, 255)
        v = m.niqe(img.astype(np.uint8), params)
        assert np.isfinite(v) and v > 0, v
        assert "torch" not in sys.modules, "scoring pulled torch"
        print("ok", v)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("ok")


# ----------------------------------------------------------------------------------------------- shared pieces
def test_both_modules_use_the_shared_helpers(niqe_params):
    from bfrcore.metrics import niqe_shared as ns

    for name in ("BLOCK", "WEIGHTS_NAME", "MSCN_ZERO_TOL", "matlab_resize_matrix", "load_pristine_params",
                 "_separable_factor", "niqe_from_features"):
        assert getattr(nn, name) is getattr(ns, name) is getattr(nq, name), name
    assert nn.BT601_Y == fn.BT601_Y
    for ours, theirs in zip(nn._gamma_tables(), nq._gamma_tables()):
        assert np.array_equal(ours, theirs.numpy())
    from bfrcore import weights as wreg

    loaded = nn.load_pristine_params(str(wreg.status("niqe-basicsr").path))
    assert all(np.array_equal(loaded[k], niqe_params[k]) for k in niqe_params)


def test_niqe_from_features_drops_nan_blocks_and_never_warns(niqe_params):
    mu, cov = niqe_params["mu_pris_param"], niqe_params["cov_pris_param"]
    rng = np.random.default_rng(5)
    feats = rng.normal(1, 0.3, (30, 36))
    feats[[3, 17], 5] = np.nan  # NaN blocks are dropped from the covariance, kept out of the mean
    rows = feats[~np.isnan(feats).any(axis=1)]
    d = mu - np.nanmean(feats, axis=0)
    expected = float(np.sqrt(np.squeeze(d @ np.linalg.pinv((cov + np.cov(rows, rowvar=False)) / 2) @ d.T)))
    assert nn.niqe_from_features(feats, mu, cov) == pytest.approx(expected, rel=1e-12)
    allnan = feats.copy()
    allnan[:, 2] = np.nan
    one_row = feats.copy()
    one_row[1:, 7] = np.nan
    for f in (allnan, one_row, feats[:1]):
        with warnings.catch_warnings():  # no "Mean of empty slice"
            warnings.simplefilter("error")
            assert math.isnan(nn.niqe_from_features(f, mu, cov))


def test_aggd_fit_and_grid_search_equal_the_torch_modules():
    rng = np.random.default_rng(3)
    blocks = np.stack([rng.standard_normal((48, 48)) * s + m for s, m in ((1, 0), (0.3, 0.2), (2, -0.5))]
                      + [np.abs(rng.laplace(size=(48, 48))) ** 0.7 * np.sign(rng.standard_normal((48, 48)))])
    ours = nn.block_features(blocks)
    theirs = nq.block_features(torch.from_numpy(blocks)).numpy()
    shape = [0, 2, 6, 10, 14]  # the AGGD shape parameters: grid values, must be the same grid point
    assert np.array_equal(ours[:, shape], theirs[:, shape])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    _, r_gam, _, _ = nn._gamma_tables()
    t = np.r_[rng.uniform(r_gam[0] - 0.1, r_gam[-1] + 0.1, 2000), r_gam[::97], np.nan]
    ref = np.nan_to_num((r_gam[None, :] - t[:, None]) ** 2, nan=np.inf).argmin(axis=1)
    assert np.array_equal(nn._nearest_index(r_gam, t), ref)


def test_y_luma_is_bit_equal_to_torch_on_every_rgb_colour():
    """All 2^24 colours: the rounded luma (the only discrete step before filtering) is identical."""
    for r0 in range(0, 256, 64):
        r, g, b = np.meshgrid(np.arange(r0, r0 + 64), np.arange(256), np.arange(256), indexing="ij")
        img = np.stack([r, g, b], -1).reshape(-1, 4096, 3).astype(np.uint8)
        ours = nn.luma_for_niqe(img)
        theirs = nq.luma_for_niqe(torch.from_numpy(img).permute(2, 0, 1)[None])[0].numpy()
        assert np.array_equal(ours, theirs), r0


# ----------------------------------------------------------------------------------------------- real photos
def _real_images(shared_faces, celebref_examples) -> list[tuple[str, np.ndarray]]:
    """10 aligned 512 crops (CelebRef-HQ examples, ASFFNet Obama) and 9 in-the-wild photos of several sizes
    (CelebA in the wild, LFW 250, an RGBA old photo, a 150 crop that has only one 96 block -> NaN)."""
    aligned = sorted((celebref_examples / "RefsImg").glob("*/*.png"))[::6][:8]
    aligned += sorted((shared_faces / "asffnet512_obama" / "TestExamples" / "HQReferences").glob("*/*.png"))[:2]
    wild = sorted((shared_faces / "celeba_wild_matush97" / "Celeb").glob("*.jpg"))[:5]
    wild += sorted((shared_faces / "lfw_krasserm" / "images").glob("*/*.jpg"))[:2]
    wild += sorted((shared_faces / "old_photos_bopb" / "test_images").glob("*/*.png"))[:1]
    wild += sorted((shared_faces / "five_celebrity" / "test").glob("*/*.jpg"))[:1]
    out = [(str(p.relative_to(shared_faces)), read_image(p)) for p in aligned + wild]
    assert len(out) >= 16, [n for n, _ in out]
    return out


@pytest.mark.shared_data
def test_numpy_niqe_equals_torch_niqe_on_real_faces(shared_faces, celebref_examples, niqe_params):
    finite = 0
    for name, img in _real_images(shared_faces, celebref_examples):
        if max(img.shape[:2]) > 1024:  # keep the test fast; the arithmetic does not depend on size
            continue
        a, b = nn.niqe(img, niqe_params), _torch_niqe(img, niqe_params)
        _assert_same(a, b, name)
        finite += not math.isnan(a)
    assert finite >= 12


@pytest.mark.shared_data
def test_options_equal_torch_on_a_real_face(celebref_examples, niqe_params):
    img = read_image(min((celebref_examples / "RefsImg").glob("*/*.png")))
    _assert_same(nn.niqe(img, niqe_params, crop_border=4), _torch_niqe(img, niqe_params, crop_border=4), "crop")
    unit = img.astype(np.float32) / 255
    _assert_same(nn.niqe(unit, niqe_params), _torch_niqe(unit, niqe_params), "float input")
    _assert_same(nn.niqe(img[:200, :300], niqe_params), _torch_niqe(img[:200, :300], niqe_params), "not whole")
    # 'gray' sums float32 products, so its rounding at exact .5 ties follows torch's GEMM order, which another CPU
    # may change: compare NIQE where the luma agrees, else check that only ties differ
    g_ours = nn.luma_for_niqe(img, convert_to="gray")
    g_theirs = nq.luma_for_niqe(torch.from_numpy(img.copy()).permute(2, 0, 1)[None], convert_to="gray")[0].numpy()
    if np.array_equal(g_ours, g_theirs):
        _assert_same(nn.niqe(img, niqe_params, convert_to="gray"),
                     _torch_niqe(img, niqe_params, convert_to="gray"), "gray")
    else:  # pragma: no cover - not on the CPUs measured
        assert np.abs(g_ours - g_theirs).max() == 1 and (g_ours != g_theirs).mean() < 1e-3


# ----------------------------------------------------------------------------------------------- edge cases
@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")  # the torch module's, on flat images
def test_edge_cases_like_torch(niqe_params):
    flat = np.full((512, 512, 3), 128, np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ours gives NaN quietly
        assert math.isnan(nn.niqe(flat, niqe_params))
    assert math.isnan(_torch_niqe(flat, niqe_params))
    # large exactly-flat areas: every MSCN zero there comes from the snap, in both implementations
    patch = flat.copy()
    patch[100:300, 200:260] = (30, 60, 90)
    patch[350:, :128] = 250
    a = nn.niqe(patch, niqe_params)
    assert np.isfinite(a)
    _assert_same(a, _torch_niqe(patch, niqe_params), "flat with patches")
    one_block = np.random.default_rng(0).integers(0, 256, (96, 150, 3), dtype=np.uint8)  # 1 block: no covariance
    assert math.isnan(nn.niqe(one_block, niqe_params)) and math.isnan(_torch_niqe(one_block, niqe_params))
    for bad in (np.zeros((95, 400, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)):
        with pytest.raises(ValueError, match="96x96"):
            nn.niqe(bad, niqe_params)
        with pytest.raises(ValueError, match="96x96"):
            _torch_niqe(bad, niqe_params)
    with pytest.raises(ValueError, match="RGB"):
        nn.niqe(np.zeros((128, 128), np.uint8), niqe_params)
    with pytest.raises(TypeError, match="uint8"):
        nn.niqe(np.zeros((128, 128, 3), np.int16), niqe_params)
    with pytest.raises(ValueError, match="convert_to"):
        nn.niqe(flat, niqe_params, convert_to="yuv")
    with pytest.raises(ValueError, match="crop_border"):
        nn.niqe(flat, niqe_params, crop_border=-1)


# ----------------------------------------------------------------------------------------------- oracles
def test_baboon_matches_basicsr_matlab_and_torch(baboon, niqe_params):
    v = nn.niqe(baboon, niqe_params)
    assert v == pytest.approx(BASICSR_BABOON, abs=1e-5)
    assert v == pytest.approx(MATLAB_BABOON, abs=1e-5)
    _assert_same(v, _torch_niqe(baboon, niqe_params), "baboon")


def _calibration_niqe_numpy(calibration, niqe_params) -> np.ndarray:
    gray = fn.rgb_to_y(calibration["dist"], "matlab")[:, 0].numpy()  # MATLAB rgb2gray, the official column's input
    return np.array([nn.niqe_from_features(nn.niqe_features(g, niqe_params["gaussian_window"]),
                                           niqe_params["mu_pris_param"], niqe_params["cov_pris_param"])
                     for g in gray])


def test_official_matlab_niqe_on_calibration_images(calibration, niqe_params):
    """The same bounds as the torch module's test (tests/evaluation/test_niqe.py), and the torch values to 1e-9
    (I19 has large flat regions: the MSCN zero snap must agree)."""
    vals = _calibration_niqe_numpy(calibration, niqe_params)
    official = calibration["official"]["niqe"]
    assert vals[1] == pytest.approx(official[1], abs=1e-9)
    np.testing.assert_allclose(vals, official, atol=0.06)
    gray = fn.rgb_to_y(calibration["dist"], "matlab")[:, 0]
    for i, v in enumerate(vals):
        t = nq.niqe_from_features(nq.niqe_features(gray[i:i + 1], niqe_params["gaussian_window"])[0].numpy(),
                                  niqe_params["mu_pris_param"], niqe_params["cov_pris_param"])
        _assert_same(v, t, f"calibration {i}")


def test_one_ulp_change_of_the_filter_does_not_move_niqe(calibration, niqe_params, monkeypatch):
    k = nn._separable_factor(niqe_params["gaussian_window"])
    a = _calibration_niqe_numpy(calibration, niqe_params)
    bumped = list(k)
    bumped[2] = float(np.nextafter(bumped[2], 1.0))
    bumped[4] = float(np.nextafter(bumped[4], 0.0))
    monkeypatch.setattr(nn, "_separable_factor", lambda w: tuple(bumped))
    b = _calibration_niqe_numpy(calibration, niqe_params)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
