"""Training-time degradation: same code path as test sets, reproducible per (item, epoch), worker-independent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bfrcore.dataset import FaceDataset
from bfrcore.testset import TestSet
from degradations import testset as T
from degradations.training import DegradedFaceDataset, OnTheFlyDegrader, RandomDegradation


def test_degrader_reproduces_a_test_set(tiny_ds, tmp_path):
    T.generate_testset(tiny_ds, "refldm-moderate", 5, tmp_path / "ts")
    ts = TestSet.load(tmp_path / "ts")
    deg = OnTheFlyDegrader("refldm-moderate", 5)
    for iid in ts.image_ids:
        lq, params = deg(ts.read_gt(iid), iid, epoch=None)
        np.testing.assert_array_equal(lq, ts.read_lq(iid))
        assert params["noise_seed"] == ts.params_of(iid)["noise_seed"]


def test_epochs_and_items_get_their_own_degradation(tiny_ds):
    ds = FaceDataset.load(tiny_ds)
    deg = OnTheFlyDegrader("gfpgan", 0)
    hq = ds.read("a_0")
    e0, e0b, e1 = deg(hq, "a_0", 0)[0], deg(hq, "a_0", 0)[0], deg(hq, "a_0", 1)[0]
    np.testing.assert_array_equal(e0, e0b)
    assert not np.array_equal(e0, e1)
    assert deg.seed_for("a_0", 0) != deg.seed_for("a_1", 0) != deg.seed_for("a_0", None)


def test_dataset_items_and_worker_invariance(tiny_ds):
    ds = FaceDataset.load(tiny_ds)
    data = DegradedFaceDataset(ds, "celebref-x4", seed=2, split="test", return_params=True)
    assert len(data) == 6
    item = data[0]
    assert item["lq"].shape == (3, 64, 64) and item["lq"].dtype == torch.float32
    assert 0.0 <= float(item["lq"].min()) and float(item["lq"].max()) <= 1.0
    assert item["image_id"] == "a_0" and item["params"]["jpeg_quality"] == 80
    np.testing.assert_allclose(item["gt"].permute(1, 2, 0).numpy() * 255, ds.read("a_0"), atol=1e-4)

    data = DegradedFaceDataset(ds, "celebref-x4", seed=2, split="test")  # default collate: no params dict

    def collect(workers):
        loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=False, num_workers=workers)
        return torch.cat([b["lq"] for b in loader])

    serial = collect(0)
    assert torch.equal(serial, collect(2))
    data.set_epoch(1)
    assert not torch.equal(serial, collect(0))
    with pytest.raises(ValueError, match="no images"):
        DegradedFaceDataset(ds, "gfpgan", split="test", ids=[])


def test_random_degradation_transform():
    img = torch.rand(3, 40, 48)
    a = RandomDegradation("gfpgan", torch.Generator().manual_seed(0))
    b = RandomDegradation("gfpgan", torch.Generator().manual_seed(0))
    ya, yb = a(img), b(img)
    assert ya.shape == img.shape and ya.dtype == img.dtype and torch.equal(ya, yb)
    assert a.last_params[0]["seed"] == b.last_params[0]["seed"]
    assert not torch.equal(a(img), ya)  # the generator advanced
    u8 = (img * 255).round().to(torch.uint8)
    batch = torch.stack([u8, u8])
    out = RandomDegradation("celebref-x4", torch.Generator().manual_seed(1))(batch)
    assert out.shape == batch.shape and out.dtype == torch.uint8 and len(set(map(bytes, out.numpy()))) == 2
    with pytest.raises(ValueError):
        RandomDegradation("gfpgan")(torch.rand(40, 48))
