"""The metric registry: every metric states its direction, convention and weights; missing weights are reported
with the fix and never computed; LMD against NumPy on the same dlib points."""

from __future__ import annotations

import numpy as np
import pytest

from bfrcore.imageio import read_image
from evaluation import metrics as M
from evaluation.lmd import LMD, dlib_landmarks, landmark_distance


def test_every_metric_describes_itself():
    for name in M.list_metrics():
        m = M.create_metric(name)
        assert m.name and m.columns and m.convention and m.version and m.reference, name
        assert all(isinstance(c.higher_is_better, bool) for c in m.columns)
        ok, why = m.available()
        assert ok or "Fix: `bench weights" in why, (name, why)


def test_default_set_with_nothing_downloaded_reports_every_missing_metric(isolated_weights):
    r = M.resolve_metrics(None)
    names = {m.name for m in r.metrics}
    assert names == {"psnr", "ssim", "ids_dlib", "lmd"}  # dlib models ship in a package
    for k in ("lpips_vgg", "lpips_alex", "fid", "niqe", "ids_arcface"):
        assert "Fix: `bench weights fetch" in r.unavailable[k], k
    assert "bench weights fetch niqe-basicsr" in r.unavailable["niqe"]
    # nothing requested is dropped: computed + unavailable covers the default list
    assert {"psnr", "ssim", "lmd", "niqe", "fid", "lpips_vgg", "lpips_alex"} <= names | set(r.unavailable)


def test_metric_names_are_validated():
    with pytest.raises(ValueError, match="unknown metric"):
        M.resolve_metrics(["psnr", "nope"])
    assert M.expand_names("default,psnr_y") == [*M.DEFAULT_METRICS, "psnr_y"]
    assert "ms_ssim" in M.expand_names(["all"])


def test_setup_refuses_missing_weights(isolated_weights):
    with pytest.raises(M.MetricUnavailable, match="niqe-basicsr"):
        M.create_metric("niqe").setup("cpu")


def test_lmd_equals_numpy_on_dlib_points(celebref_examples):
    files = sorted((celebref_examples / "RefsImg" / "00075").glob("*.png"))[:2]
    a, b = (read_image(f) for f in files)
    m = LMD().setup("cpu")
    out = m.compute(M.Batch(["a", "b"], [a, a], [b, a]))["lmd"]
    pa, pb = dlib_landmarks(a).astype(np.float64), dlib_landmarks(b).astype(np.float64)
    assert out[0] == pytest.approx(np.linalg.norm(pa - pb, axis=1).mean(), rel=1e-12)
    assert out[1] == 0.0
    # normalised to 512 px: the same faces at 256 give (about) the same distance
    half = [np.ascontiguousarray(x[::2, ::2]) for x in (a, b)]
    small = m.compute(M.Batch(["s"], [half[0]], [half[1]]))["lmd"][0]
    assert small == pytest.approx(out[0], rel=0.35)
    assert landmark_distance(pa, pa + 3.0, 256) == pytest.approx(3 * np.sqrt(2) * 2)
