"""baselines.dictionary + `bench dict build`: seeded K-means, dictionary files, loading them into DFDNet."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from baselines.dictionary import PARTS, kmeans, read_dictionary


def test_kmeans_recovers_separated_clusters_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 5.0], [-8.0, -8.0, 8.0]])
    x = torch.cat([c + 0.1 * torch.randn(30, 3, generator=g) for c in centres])
    c1, labels, inertia = kmeans(x, 4, seed=7)
    order = [int(torch.argmin((c1 - c).norm(dim=1))) for c in centres]
    assert sorted(order) == [0, 1, 2, 3]
    torch.testing.assert_close(c1[order], centres, atol=0.1, rtol=0)
    assert inertia < 30 * 4 * 3 * 0.1**2 * 2
    assert len(set(labels[:30].tolist())) == 1
    c2, _, _ = kmeans(x, 4, seed=7)
    assert torch.equal(c1, c2)
    with pytest.raises(ValueError, match="cannot make"):
        kmeans(x[:3], 4)


def test_kmeans_handles_duplicates_and_k_equal_n():
    x = torch.tensor([[1.0, 1.0]] * 5 + [[2.0, 2.0]] * 2)
    c, _labels, inertia = kmeans(x, 3, seed=0)
    assert c.shape == (3, 2) and torch.isfinite(c).all() and inertia == pytest.approx(0.0, abs=1e-9)
    c, _, inertia = kmeans(torch.eye(4), 4, seed=1)
    assert inertia == pytest.approx(0.0, abs=1e-9)


@pytest.fixture(scope="module")
def built(mini_dataset, tmp_path_factory):
    """`bench dict build` on the mini dataset (tiny config: learned extractor at 128), twice with one seed and
    once with another."""
    from bfrcli.bench import main

    out = tmp_path_factory.mktemp("dicts")
    args = ["dict", "build", "--dataset", str(mini_dataset), "--model-config", "tiny", "--atoms", "4",
            "--max-images", "8", "--iters", "20", "--device", "cpu", "-q"]
    rcs = [main(args + ["--out", str(out / "a"), "--seed", "3"]),
           main(args + ["--out", str(out / "b"), "--seed", "3"]),
           main(args + ["--out", str(out / "c"), "--seed", "4"])]
    assert rcs == [0, 0, 0]
    return out


def test_dict_build_writes_k_atoms_per_part_and_scale_deterministically(built, mini_dataset):
    from baselines.dfdnet import TINY, DFDNet

    model = DFDNet(TINY)
    info = json.loads((built / "a" / "dictionary.json").read_text())
    assert info["format"] == "celebref.dfdnet-dictionary/1"
    assert info["n_atoms"] == 4 and info["n_images"] == 8 and info["seed"] == 3
    assert info["feature_sizes"] == [64, 32, 16, 8] and info["feature_extractor"] == "learned"
    from bfrcore.dataset import FaceDataset

    assert info["dataset"]["hash"] == FaceDataset.load(mini_dataset).hash
    differs = 0
    for level, fsize in enumerate(info["feature_sizes"]):
        for part in PARTS:
            name = f"{part}_{fsize}_center.npy"
            a = np.load(built / "a" / name, allow_pickle=False)
            c, s = model.atom_shape(part, level)
            assert a.shape == (4, c, s, s) and a.dtype == np.float32 and np.isfinite(a).all()
            assert np.array_equal(a, np.load(built / "b" / name))  # same seed: identical
            differs += not np.array_equal(a, np.load(built / "c" / name))
            assert info["n_samples"][f"{part}_{fsize}"] == 8
    assert differs > 0  # another seed: other centres


def test_built_dictionary_loads_into_dfdnet(built):
    from baselines import create_model

    m = create_model("dfdnet", {"base": "tiny", "dictionary": str(built / "a"), "n_atoms": None})
    assert m.n_atoms == 4 and bool(m.dictionary_ready) and m.dictionary_info["seed"] == 3
    arr = np.load(built / "a" / "mouth_64_center.npy")
    torch.testing.assert_close(m.dict_mouth_0.detach(), torch.from_numpy(arr))
    assert m.generic_dictionary_init([])["skipped"]
    with pytest.raises(ValueError, match="holds 4 atoms"):
        create_model("dfdnet", {"base": "tiny", "dictionary": str(built / "a"), "n_atoms": 8})
    # the release's flat (K, C*s*s) layout reshapes the same way
    shapes = {("mouth", 0): (32, 13)}
    flat = built / "flat"
    flat.mkdir()
    np.save(flat / "mouth_64_center.npy", arr.reshape(4, -1))
    got = read_dictionary(flat, 128, shapes, {0: 64})
    assert torch.equal(got["mouth", 0], torch.from_numpy(arr))


def test_dict_build_usage_errors(mini_dataset, tmp_path):
    from bfrcli.bench import main

    base = ["dict", "build", "--dataset", str(mini_dataset), "--out", str(tmp_path / "x"), "--model-config", "tiny",
            "--max-images", "3", "-q"]
    assert main(base + ["--atoms", "5"]) == 2  # 3 faces cannot make 5 atoms
    assert main(base + ["--split", "nope"]) == 2
    assert main(["dict", "build", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "y"),
                 "--model-config", "tiny"]) == 2
    assert not (tmp_path / "x").exists()
