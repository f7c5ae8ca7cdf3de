"""FID / KID: the math against pytorch-fid, scipy and pyiqa; the network path against pytorch-fid's own resize;
never a number without the verified Inception weights.

The real Inception weights are not available offline here, so the network wiring is tested with a seeded random
state dict of exactly pytorch-fid's architecture (passed explicitly; the registry path refuses to run)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import linalg

from bfrcore import weights as wreg
from evaluation import fid as fidmod
from evaluation.metrics import MetricOptions, resolve_metrics


def _pytorch_fid_distance(*args):
    from pytorch_fid.fid_score import calculate_frechet_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy 1.17 deprecates sqrtm(disp=)
        return calculate_frechet_distance(*args)


def _random_stats(rng, d, n):
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.3 + rng.standard_normal(d)
    return x.mean(0), np.cov(x, rowvar=False)


# ----------------------------------------------------------------------------------------------- Fréchet distance
def test_pytorch_fid_test_vector():
    """pytorch-fid tests/test_fid_score.py: μ1 = 0, μ2 = 1, Σ1 = Σ2 = I, d = 2048 -> 2048."""
    d = 2048
    val = fidmod.frechet_distance(np.zeros(d), np.eye(d), np.ones(d), np.eye(d))
    assert val == pytest.approx(2048.0, abs=1e-6)  # (pytorch-fid itself is compared below on random statistics)


def test_frechet_matches_pytorch_fid_and_scipy_on_random_statistics():
    rng = np.random.default_rng(0)
    for d, n in ((16, 200), (64, 500)):
        mu1, s1 = _random_stats(rng, d, n)
        mu2, s2 = _random_stats(rng, d, n)
        ours = fidmod.frechet_distance(mu1, s1, mu2, s2)
        assert ours == pytest.approx(_pytorch_fid_distance(mu1, s1, mu2, s2), rel=1e-10, abs=1e-9)
        # independent: Tr((Σ1Σ2)^½) = Σ sqrt(eigvals(Σ1Σ2)) (torch-fidelity's formulation)
        eig = linalg.eigvals(s1 @ s2)
        ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).real.sum()
        assert ours == pytest.approx(ref, rel=1e-8)


def test_frechet_analytic_cases():
    rng = np.random.default_rng(1)
    mu1, s1 = _random_stats(rng, 32, 300)
    mu2 = mu1 + rng.standard_normal(32)
    assert fidmod.frechet_distance(mu1, s1, mu2, s1) == pytest.approx(((mu1 - mu2) ** 2).sum(), rel=1e-6)
    assert fidmod.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6)


def test_singular_covariances_use_the_eps_retry_like_pytorch_fid():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 40))  # 10 samples in 40-D: rank-deficient covariances
    y = rng.standard_normal((12, 40)) + 0.5
    args = (x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    ours = fidmod.frechet_distance(*args)
    assert np.isfinite(ours)
    assert ours == pytest.approx(_pytorch_fid_distance(*args), rel=1e-6)


# ----------------------------------------------------------------------------------------------- KID
def _unbiased_mmd2(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean())


def test_kid_equals_unbiased_mmd_and_pyiqa():
    rng = np.random.default_rng(3)
    f1 = rng.standard_normal((60, 32))
    f2 = rng.standard_normal((60, 32)) * 1.2 + 0.1
    # one subset of every sample: the estimator is the plain unbiased MMD² (permutation-invariant)
    mean, std = fidmod.kernel_inception_distance(f1, f2, num_subsets=1, max_subset_size=1000)
    assert mean == pytest.approx(_unbiased_mmd2(f2, f1), rel=1e-10)
    assert std == 0.0
    # seeded subsets: the same draws as clean-fid / pyiqa with np.random.seed
    fid_arch = pytest.importorskip("pyiqa.archs.fid_arch")
    np.random.seed(7)
    ref = fid_arch.mmd_polynomial_kernel(f1, f2, num_subsets=20, max_subset_size=25)
    ours, _ = fidmod.kernel_inception_distance(f1, f2, num_subsets=20, max_subset_size=25, seed=7)
    assert ours == pytest.approx(ref, rel=1e-10)


# ----------------------------------------------------------------------------------------------- honesty
def test_no_inception_weights_means_unavailable_never_a_number(isolated_weights):
    r = resolve_metrics(["fid", "kid"])
    assert not r.metrics
    for k in ("fid", "kid"):
        assert "bench weights fetch pytorch-fid-inception" in r.unavailable[k]
    with pytest.raises(wreg.MissingWeightsError, match="pytorch-fid-inception"):
        fidmod.build_inception()
    with pytest.raises(Exception, match="pytorch-fid-inception"):
        fidmod.FID().setup("cpu")
    opts = MetricOptions(fid_stats="ffhq512-fid-stats-clean")
    r = resolve_metrics(["fid"], opts)
    assert "ffhq512-fid-stats-clean" in r.unavailable["fid"]
    with pytest.raises(ValueError, match="legacy_pytorch"):
        fidmod.FID(MetricOptions(fid_stats="ffhq512-fid-stats-basicsr"))  # computed with the other resize


# ----------------------------------------------------------------------------------------------- network wiring
@pytest.fixture(scope="module")
def random_inception_state():
    """A seeded random state dict with exactly pytorch-fid's FID-Inception architecture."""
    from pytorch_fid import inception as pfi

    torch.manual_seed(0)
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return net.state_dict()


@pytest.fixture(scope="module")
def small_faces(face_pairs):
    hq, lq = face_pairs
    return [np.ascontiguousarray(i[::4, ::4]) for i in hq[:3]], [np.ascontiguousarray(i[::4, ::4]) for i in lq[:3]]


def test_legacy_mode_equals_pytorch_fid_resize(random_inception_state, small_faces):
    """Our legacy_pytorch preprocessing + InceptionV3(resize_input=False) == pytorch-fid's own
    InceptionV3(resize_input=True, normalize_input=True) on ToTensor input, same weights."""
    from pytorch_fid import inception as pfi

    model = fidmod.build_inception(state_dict=random_inception_state)
    ours = fidmod.inception_features(model, small_faces[0], mode="legacy_pytorch")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: random_inception_state)
        ref_model = pfi.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    x = torch.from_numpy(np.stack(small_faces[0])).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        ref = ref_model(x)[0].reshape(len(x), -1).double().numpy()
    assert ours.shape == (3, 2048)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_clean_mode_equals_pyiqa_clean_resize(small_faces, tmp_path):
    fid_arch = pytest.importorskip("pyiqa.archs.fid_arch")
    from bfrcore.imageio import write_png

    files = []
    for k, img in enumerate(small_faces[1]):
        files.append(write_png(tmp_path / f"{k}.png", img))
    ds = fid_arch.ResizeDataset(files, mode="clean")
    ref = (torch.stack([ds[i] for i in range(len(files))]) - 128) / 128
    ours = fidmod.preprocess(small_faces[1], "clean")
    assert torch.equal(ours, ref)


def test_update_in_batches_gives_the_same_features(random_inception_state, small_faces):
    real, fake = small_faces
    model = fidmod.build_inception(state_dict=random_inception_state)
    sets = []
    for chunks in ((fake,), (fake[:1], fake[1:])):
        m = fidmod.FID()
        m._model, m._ready = model, True
        for c in chunks:
            m.update(c, real=False)
        m.update(real, real=True)
        sets.append((m._stack(False), m._stack(True)))
    np.testing.assert_allclose(sets[0][0], sets[1][0], atol=1e-5)
    np.testing.assert_array_equal(sets[0][1], sets[1][1])
    assert sets[0][0].shape == (3, 2048) and np.isfinite(sets[0][0]).all()


def test_stateful_fid_kid_batches_equal_all_at_once():
    """torchmetrics pattern: accumulating features batch by batch == everything at once == the formulas."""
    rng = np.random.default_rng(4)
    fake = rng.standard_normal((40, 16))
    real = rng.standard_normal((30, 16)) * 1.1 + 0.2
    opts = MetricOptions(kid_subsets=10, kid_subset_size=20, seed=3)
    out = []
    for cuts in ((0, 40), (0, 7, 19, 40)):
        fid, kid = fidmod.FID(opts), fidmod.KID(opts)
        for m in (fid, kid):
            for a, b in zip(cuts[:-1], cuts[1:]):
                m.add_features(fake[a:b], real=False)
            m.add_features(real[:10], real=True)
            m.add_features(real[10:], real=True)
        out.append((fid.compute_set(), kid.compute_set()))
    (f1, k1), (f2, k2) = out
    assert f1["fid"] == f2["fid"] and k1["kid"] == k2["kid"]
    mu1, s1 = fake.mean(0), np.cov(fake, rowvar=False)
    mu2, s2 = real.mean(0), np.cov(real, rowvar=False)
    assert f1["fid"] == pytest.approx(_pytorch_fid_distance(mu1, s1, mu2, s2), rel=1e-10)
    ref_kid, _ = fidmod.kernel_inception_distance(fake, real, 10, 20, 3)
    assert k1["kid"] == ref_kid
    assert (f1["n"], f1["n_real"]) == (40, 30)
    fid = fidmod.FID(opts)
    fid.add_features(fake)
    fid.set_reference_statistics(mu2, s2)  # a statistics file instead of reference images
    assert fid.compute_set()["fid"] == pytest.approx(f1["fid"], rel=1e-12)


def test_strict_loading_refuses_a_wrong_state_dict(random_inception_state):
    bad = dict(random_inception_state)
    bad.pop("Mixed_7c.branch_pool.conv.weight")
    with pytest.raises(RuntimeError, match="Mixed_7c"):
        fidmod.build_inception(state_dict=bad)


# ----------------------------------------------------------------------------------------------- cache
def test_feature_cache_is_keyed_by_content(tmp_path):
    cache = fidmod.FeatureCache(tmp_path)
    k1 = cache.key(["b", "a"], "clean", "w")
    assert k1 == cache.key(["a", "b"], "clean", "w")  # order-free
    assert k1 != cache.key(["a", "b"], "legacy_pytorch", "w")
    assert k1 != cache.key(["a", "c"], "clean", "w")
    assert k1 != cache.key(["a", "b"], "clean", "w2")
    feats = np.arange(6.0).reshape(3, 2)
    cache.put(k1, feats)
    assert np.array_equal(cache.get(k1), feats)
    assert cache.get("0" * 64) is None


def test_compute_set_features_uses_the_cache(tmp_path, monkeypatch):
    class Fake(fidmod._InceptionMetric):
        name = "fake"
        weights_sha256 = "w"

        def features(self, images):
            return np.stack([np.full(fidmod.DIMS, float(i[0, 0, 0])) for i in images])

    m = Fake()
    calls = []

    def item(v):
        def load():
            calls.append(v)
            return np.full((4, 4, 3), v, np.uint8)
        return (f"h{v}", load)

    cache = fidmod.FeatureCache(tmp_path)
    a = fidmod.compute_set_features(m, [item(3), item(1), item(2)], cache, batch_size=2)
    assert a[:, 0].tolist() == [1.0, 2.0, 3.0]  # sorted by content hash
    n = len(calls)
    b = fidmod.compute_set_features(m, [item(2), item(3), item(1)], cache)
    assert np.array_equal(a, b) and len(calls) == n  # served from the cache
