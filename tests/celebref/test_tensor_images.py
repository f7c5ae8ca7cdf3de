"""The shared image <-> tensor conversions and the one resize of evaluate / score / restore / training."""

from __future__ import annotations

import numpy as np

from bfrcore.tensor_images import resize_uint8, to_tensor, to_uint8
from tests.helpers import tiny_image


def test_uint8_round_trip_is_exact():
    imgs = [tiny_image(24, 24, seed=s) for s in range(3)]
    t = to_tensor(imgs)
    assert t.shape == (3, 3, 24, 24) and float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    assert all(np.array_equal(to_uint8(x), img) for x, img in zip(t, imgs))


def test_resize_same_size_is_the_image_and_constants_stay_constant():
    img = tiny_image(32, 32, seed=1)
    assert resize_uint8(img, 32) is img
    flat = np.full((40, 40, 3), 77, np.uint8)
    for size in (16, 64):
        assert (resize_uint8(flat, size) == 77).all()


def test_shrinking_is_antialiased():
    """A 1-pixel checkerboard shrunk 4x becomes mid-grey (a plain bicubic resample would alias to the pattern)."""
    board = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    small = resize_uint8(board, 16)
    assert small.shape == (16, 16, 3) and abs(float(small[2:-2, 2:-2].mean()) - 127.5) < 3
    assert small[2:-2, 2:-2].std() < 3
