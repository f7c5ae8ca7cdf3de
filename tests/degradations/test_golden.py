"""Golden outputs: any change to sampling or ops that changes what a preset produces fails here (regenerate with
tests/degradations/regenerate_golden.py only for an intended change, bumping IMPLEMENTATION_VERSION)."""

from __future__ import annotations

import numpy as np
import pytest

from degradations.presets import list_presets
from degradations.sampling import IMPLEMENTATION_VERSION
from tests.degradations.regenerate_golden import GOLDEN, compute


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as z:
        return {k: z[k] for k in z.files}


def test_golden_covers_every_preset(golden):
    assert str(golden["implementation"]) == IMPLEMENTATION_VERSION
    assert set(golden) - {"implementation"} == set(list_presets())


def test_outputs_match_golden(golden):
    for name, lq in compute().items():
        ref = golden[name]
        assert lq.shape == ref.shape
        diff = np.abs(lq.astype(int) - ref.astype(int))
        # identical on the machine that wrote them; another CPU's float rounding may flip a rare 8-bit level
        assert diff.max() <= 1 and np.count_nonzero(diff) <= 0.005 * diff.size, (
            f"{name}: {np.count_nonzero(diff)} values differ (max {diff.max()})")
