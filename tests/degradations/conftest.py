"""Fixtures for the degradation tests: a tiny synthetic dataset (64x64 faces-free images, no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import tiny_image

TINY_SIZE = 64


def tiny_dataset(root: Path, n_test: int = 6, corrupt: str | None = None) -> Path:
    """A bfrcore.dataset folder of smooth 64x64 RGB images: identity 'a' (test) and 'b' (train, 2 images).
    ``corrupt``: an image id whose file is replaced by garbage bytes after the manifest is written."""
    from bfrcore.dataset import image_id_for, relpath_for, write_dataset
    from bfrcore.imageio import file_sha256, write_png

    rows = []
    specs = [("a", n, "test") for n in range(n_test)] + [("b", n, "train") for n in range(2)]
    for ident, n, split in specs:
        rel = relpath_for(ident, n)
        img = tiny_image(TINY_SIZE, TINY_SIZE, seed=7 * n + (3 if ident == "b" else 0))
        img[..., 2] = (img[..., 2].astype(int) + 13 * n) % 256  # make every image different
        write_png(root / rel, img)
        rows.append({"face_id": f"{ident}-{n}", "kept": True, "reject_stage": None, "reject_reason": None,
                     "identity": ident, "image_id": image_id_for(ident, n), "path": rel,
                     "sha256": file_sha256(root / rel), "split": split, "landmarks": None,
                     "source_path": rel, "source_sha256": None})
    write_dataset(root, pd.DataFrame(rows), build_info={"params": {"size": TINY_SIZE}})
    if corrupt is not None:
        ident, n = corrupt.split("_")
        (root / relpath_for(ident, int(n))).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return root


@pytest.fixture(scope="session")
def tiny_ds(tmp_path_factory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("tiny_ds"))


@pytest.fixture
def face_rgb() -> np.ndarray:
    """A 96x96 structured RGB image (edges, gradients, texture) for op tests."""
    rng = np.random.default_rng(5)
    img = tiny_image(96, 96, seed=3).astype(np.float64)
    img += rng.normal(0, 12, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
