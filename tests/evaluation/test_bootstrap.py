"""Bootstrap CIs: seeded, deterministic, sensible coverage; NaN/inf handling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.bootstrap import bootstrap_ci, summarize


def test_seeded_and_deterministic():
    x = np.random.default_rng(0).normal(10, 2, 50)
    a = bootstrap_ci(x, seed=1)
    assert a == bootstrap_ci(x, seed=1)
    assert a != bootstrap_ci(x, seed=2)
    lo, hi = a
    assert lo < x.mean() < hi


def test_width_matches_the_normal_approximation():
    x = np.random.default_rng(3).normal(0, 1, 400)
    lo, hi = bootstrap_ci(x, n_resamples=4000)
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_coverage_of_the_true_mean():
    rng = np.random.default_rng(5)
    hits = 0
    for k in range(200):
        x = rng.exponential(1.0, 40)
        lo, hi = bootstrap_ci(x, n_resamples=500, seed=k)
        hits += lo <= 1.0 <= hi
    assert 0.85 <= hits / 200 <= 0.99  # percentile bootstrap on skewed data: roughly nominal


def test_edge_cases():
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([np.nan]) is None
    assert bootstrap_ci([3.0]) == (3.0, 3.0)
    s = summarize([1.0, 2.0, np.nan, np.inf], higher_is_better=True)
    assert s["mean"] == 1.5 and s["n"] == 2 and s["n_nonfinite"] == 1 and s["higher_is_better"] is True
