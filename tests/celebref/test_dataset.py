"""The DATASET folder format: writing, loading, views, hashes, validation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bfrcore.dataset import FaceDataset, dataset_hash, image_id_for, landmarks_to_list, write_dataset
from bfrcore.imageio import file_sha256, write_png
from bfrcore.safepath import UnsafePathError
from tests.helpers import tiny_image


def _manifest(tmp_path, n_ids=2, n_per=3):
    rows = []
    for i in range(n_ids):
        ident = f"{i:05d}"
        for n in range(n_per):
            rel = f"images/{ident}/{n}.png"
            write_png(tmp_path / rel, tiny_image(16, 16, seed=i * 10 + n + 1))
            rows.append(dict(face_id=f"f{i}{n}", kept=True, reject_stage=None, reject_reason=None, identity=ident,
                             image_id=image_id_for(ident, n), path=rel, sha256=file_sha256(tmp_path / rel),
                             split="test" if i == 0 else "train", landmarks=None, source_path="x",
                             source_sha256="y"))
    rows.append(dict(face_id="rej", kept=False, reject_stage="faces", reject_reason="no_face", identity=None,
                     image_id=None, path=None, sha256=None, split=None, landmarks=None, source_path="z",
                     source_sha256="w"))
    return pd.DataFrame(rows)


def test_roundtrip_and_views(tmp_path):
    man = _manifest(tmp_path)
    write_dataset(tmp_path, man, build_info={"params": {"size": 16}})
    ds = FaceDataset.load(tmp_path)
    assert len(ds.manifest) == 7 and len(ds.images) == 6
    assert ds.image_size == 16
    assert ds.image_ids("test") == ["00000_0", "00000_1", "00000_2"]
    assert ds.same_identity("00000_1") == ["00000_0", "00000_2"]
    assert ds.references_of("00000_1") == ["00000_0", "00000_2"]  # falls back to same identity
    assert ds.read("00001_2").shape == (16, 16, 3)
    assert ds.landmarks("00001_2") is None
    info = json.loads((tmp_path / "build.json").read_text())
    assert info["dataset_hash"] == ds.hash and info["counts"]["kept_images"] == 6
    ids = set(ds.identities["identity"])
    assert ids == {"00000", "00001"}


def test_hash_changes_with_content_not_order(tmp_path):
    a = dataset_hash(["x_1", "x_2"], ["aa", "bb"])
    assert a == dataset_hash(["x_2", "x_1"], ["bb", "aa"])
    assert a != dataset_hash(["x_1", "x_2"], ["aa", "bc"])


def test_mini_dataset_fixture_is_real(mini_dataset):
    ds = FaceDataset.load(mini_dataset)
    assert len(ds.images) == 49 and ds.images["identity"].nunique() == 5
    test = ds.image_ids("test")
    assert {ds.identity_of(i) for i in test} == {"00075", "00146"}
    for iid in test:
        refs = ds.references_of(iid)
        assert refs and iid not in refs and {ds.identity_of(r) for r in refs} == {ds.identity_of(iid)}
    lm = ds.landmarks(test[0])
    assert lm.shape == (68, 2) and (lm > 0).all() and (lm < 512).all()
    assert ds.read(test[0]).shape == (512, 512, 3)


def test_write_validation(tmp_path):
    man = _manifest(tmp_path)
    dup = pd.concat([man, man.iloc[[0]]])
    with pytest.raises(ValueError, match="duplicate"):
        write_dataset(tmp_path, dup)
    bad = man.copy()
    bad.loc[0, "path"] = "../../etc/passwd"
    with pytest.raises(UnsafePathError):
        write_dataset(tmp_path, bad)
    with pytest.raises(ValueError, match="lacks column"):
        write_dataset(tmp_path, man.drop(columns=["sha256"]))
    with pytest.raises(FileNotFoundError, match="celebref build"):
        FaceDataset.load(tmp_path / "nothing")


def test_landmark_conversion():
    pts = np.arange(136, dtype=np.float32).reshape(68, 2)
    assert landmarks_to_list(pts)[:3] == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError):
        landmarks_to_list(np.zeros((5, 2)))
    with pytest.raises(UnsafePathError):
        image_id_for("../x", 1)
