"""Split rules of the build: identity-disjoint (default) and per-image (personal-album protocol)."""

from __future__ import annotations

import numpy as np

from celebref.pipeline import splits
from celebref.pipeline.config import SplitsConfig


def test_identity_split_is_disjoint_and_order_free():
    keys = {f"{i:05d}": f"face{i}" for i in range(20)}
    cfg = SplitsConfig(test_fraction=0.25)
    a = splits.split_identities(keys, 7, cfg)
    b = splits.split_identities(dict(reversed(list(keys.items()))), 7, cfg)
    assert a == b and sum(v == "test" for v in a.values()) == 5
    assert splits.split_identities(keys, 8, cfg) != a


def test_image_split_holds_out_part_of_each_person():
    cfg = SplitsConfig(mode="image", test_fraction=0.3)
    members = [(f"00000_{n}", f"f{n}") for n in range(5)]
    s = splits.split_images(members, 0, cfg)
    assert sorted(s.values()).count("test") == 2 and sorted(s.values()).count("train") == 3
    assert s == splits.split_images(list(reversed(members)), 0, cfg)
    assert splits.split_images(members[:1], 0, cfg) == {"00000_0": "train"}
    # never the whole identity in test, never none of a multi-image identity
    for n in range(2, 8):
        m = members[:2] + [(f"00000_{k}", f"g{k}") for k in range(n - 2)]
        vals = list(splits.split_images(m, 3, SplitsConfig(mode="image", test_fraction=0.99)).values())
        assert vals.count("train") >= 1 and vals.count("test") >= 1


def test_references_for_targets_only_never_self():
    members = [(f"00000_{n}", f"f{n}") for n in range(4)]
    rng = np.random.default_rng(0)
    emb = {f"f{n}": rng.normal(size=8) for n in range(4)}
    rows = splits.references(members, emb, "euclidean", None, targets={"00000_2"})
    assert {r[0] for r in rows} == {"00000_2"}
    assert {r[1] for r in rows} == {"00000_0", "00000_1", "00000_3"}
    dists = [r[3] for r in rows]
    assert dists == sorted(dists) and [r[2] for r in rows] == [0, 1, 2]
