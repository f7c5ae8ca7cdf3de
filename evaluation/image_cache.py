"""A small least-recently-used cache of decoded images, keyed by image id.

A scoring run reads the same dataset images many times: a person's references are the references of every test
image of that person, and the ground truth is read again for the distribution metrics at the end. One
:class:`ImageCache` per run (:class:`evaluation.context.EvalContext.images`) decodes each of them once while it is
among the ``capacity`` most recently used.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np


class ImageCache:
    """``cache(key)`` -> ``loader(key)``, remembered for the ``capacity`` most recently used keys.

    The cached array itself is returned (not a copy): callers must not modify it in place. ``capacity`` >= 1;
    64 dataset images of 512x512 RGB hold about 50 MB."""

    def __init__(self, loader: Callable[[str], np.ndarray], capacity: int = 64):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.loader = loader
        self.capacity = capacity
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, key: str) -> np.ndarray:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self.loader(key)
        self._items[key] = value
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
