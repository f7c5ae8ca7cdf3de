"""Seeded percentile-bootstrap confidence intervals for means of per-image metric values."""

from __future__ import annotations

import numpy as np

DEFAULT_RESAMPLES = 2000


def bootstrap_ci(values, *, level: float = 0.95, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                 chunk: int = 500) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean of the finite entries of ``values`` (NaN/inf are left out, like the
    mean they accompany). ``None`` for an empty input; (v, v) for a single value. Deterministic for a seed."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    n = x.size
    if n == 0:
        return None
    if n == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for s in range(0, n_resamples, chunk):
        e = min(s + chunk, n_resamples)
        idx = rng.integers(0, n, size=(e - s, n))
        means[s:e] = x[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def summarize(values, *, higher_is_better: bool, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES) -> dict:
    """{mean, ci95, n, n_nonfinite, higher_is_better} over finite values (PSNR of identical images is inf and is
    counted in ``n_nonfinite``, not averaged)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    finite = x[np.isfinite(x)]
    ci = bootstrap_ci(finite, seed=seed, n_resamples=n_resamples)
    return {
        "mean": float(finite.mean()) if finite.size else None,
        "ci95": list(ci) if ci is not None else None,
        "n": int(finite.size),
        "n_nonfinite": int(np.count_nonzero(~np.isfinite(x) & ~np.isnan(x))),
        "higher_is_better": bool(higher_is_better),
    }
