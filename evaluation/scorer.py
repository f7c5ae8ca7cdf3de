"""The metrics of one scoring run (:class:`Scorer`): per-image metrics on batches, distribution metrics at the end.

A metric that cannot start (weights missing, not installed, a crash while loading) is recorded in
:attr:`Scorer.unavailable` with the reason; one that fails on a batch gets NaN for those images and its first error
in :attr:`Scorer.errors`. Nothing is dropped silently: both go into summary.json.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from evaluation.metrics import Batch, Metric, MetricOptions, MetricUnavailable, resolve_metrics
from evaluation.summary import MetricOutcome

log = logging.getLogger("celebref.evaluate")


def _unavailable_reason(e: Exception) -> str:
    from bfrcore.weights import WeightsError

    if isinstance(e, WeightsError):
        return str(e)
    return f"could not start: {type(e).__name__}: {e}"


class Scorer:
    """The metrics of one run. ``names``: ``--metrics`` names (None: the defaults); ``extra_unavailable``: metrics
    known not to run before scoring starts (e.g. a protocol's metric this installation lacks), ``{name: reason}``."""

    def __init__(self, names: Sequence[str] | str | None, options: MetricOptions, device: str, *,
                 extra_unavailable: dict[str, str] | None = None):
        resolved = resolve_metrics(names, options)
        self.options = options
        self.device = device
        self.unavailable: dict[str, str] = dict(resolved.unavailable)
        self.notes: dict[str, str] = dict(resolved.notes)
        self.errors: dict[str, str] = {}
        self.metrics: list[Metric] = []
        for m in resolved.metrics:
            try:
                if m.kind != "distribution":
                    m.setup(device)
                self.metrics.append(m)
            except MetricUnavailable as e:
                self.unavailable[m.name] = str(e)
            except Exception as e:  # noqa: BLE001 - a metric that cannot start is reported, never dropped
                self.unavailable[m.name] = _unavailable_reason(e)
        self.per_image = [m for m in self.metrics if m.kind != "distribution"]
        self.distribution = [m for m in self.metrics if m.kind == "distribution"]
        self.unavailable.update(extra_unavailable or {})

    @property
    def columns(self) -> list[str]:
        """The per-image columns of metrics.parquet, in metric order."""
        return [c.name for m in self.per_image for c in m.columns]

    @property
    def needs_refs(self) -> bool:
        """True when a per-image metric compares with the person's reference images (identity metrics)."""
        return any(m.kind == "identity" for m in self.per_image)

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        """``{column: (len(batch),) float64}`` for every per-image metric (NaN where a metric failed)."""
        out: dict[str, np.ndarray] = {}
        for m in self.per_image:
            try:
                vals = m.compute(batch)
            except Exception as e:  # noqa: BLE001 - recorded per metric, the other metrics still run
                log.warning("metric %s failed on %s: %s", m.name, batch.image_ids, e)
                self.errors.setdefault(m.name, f"{type(e).__name__}: {e}")
                vals = {c.name: np.full(len(batch), np.nan) for c in m.columns}
            out.update({k: np.asarray(v, np.float64).reshape(-1) for k, v in vals.items()})
        return out

    def run_distribution(self, pred_items, real_items, *, quiet: bool = True) -> dict[str, dict]:
        """FID/KID over (content hash, loader) pairs of the restored and reference sets."""
        from evaluation import fid as fidmod

        results: dict[str, dict] = {}
        cache = fidmod.FeatureCache(self.options.cache_dir)
        for m in self.distribution:
            try:
                m.setup(self.device)
                m.reset()
                m.add_features(fidmod.compute_set_features(m, pred_items, cache, self.options.batch_size), False)
                if isinstance(m, fidmod.FID) and self.options.fid_stats:
                    mu, sigma, _ = fidmod.load_statistics(self.options.fid_stats)
                    m.set_reference_statistics(mu, sigma)
                else:
                    m.add_features(fidmod.compute_set_features(m, real_items, cache, self.options.batch_size), True)
                results[m.name] = m.compute_set()
            except MetricUnavailable as e:
                self.unavailable[m.name] = str(e)
            except Exception as e:  # noqa: BLE001
                from bfrcore.weights import WeightsError

                if isinstance(e, WeightsError):
                    self.unavailable[m.name] = str(e)
                else:
                    self.errors[m.name] = f"{type(e).__name__}: {e}"
        return results

    def outcome(self, set_results: dict[str, dict]) -> MetricOutcome:
        """What summary.json reports about the metrics, with the distribution metrics' ``set_results``."""
        return MetricOutcome(metrics=self.metrics, set_results=set_results, unavailable=self.unavailable,
                             notes=self.notes, errors=self.errors)
