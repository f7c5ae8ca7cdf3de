"""Cluster quality against truth labels: pairwise precision/recall/F1 and BCubed precision/recall/F1.

Pairwise: over all pairs of items, a "positive" is a pair put in the same cluster; precision = same-cluster pairs
that share a truth label / same-cluster pairs, recall = same-label pairs put together / same-label pairs.
BCubed (Bagga & Baldwin 1998; Amigo et al. 2009): per item, precision = share of its cluster with its label,
recall = share of its label in its cluster; averaged over items. F1 is the harmonic mean of each pair.
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def _contingency(pred, truth):
    pred = [str(p) for p in pred]
    truth = [str(t) for t in truth]
    if len(pred) != len(truth):
        raise ValueError("pred and truth differ in length")
    return Counter(zip(pred, truth)), Counter(pred), Counter(truth), len(pred)


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def cluster_scores(pred, truth) -> dict:
    """{"n", "n_clusters", "n_labels", "pairwise_precision", "pairwise_recall", "pairwise_f1",
    "bcubed_precision", "bcubed_recall", "bcubed_f1"}."""
    joint, cp, ct, n = _contingency(pred, truth)
    if n == 0:
        return {"n": 0}
    bp = sum(v * v / cp[c] for (c, _), v in joint.items()) / n
    br = sum(v * v / ct[t] for (_, t), v in joint.items()) / n
    tp = sum(v * (v - 1) / 2 for v in joint.values())
    pp = sum(v * (v - 1) / 2 for v in cp.values())
    tt = sum(v * (v - 1) / 2 for v in ct.values())
    prec = tp / pp if pp else 1.0
    rec = tp / tt if tt else 1.0
    return {
        "n": n, "n_clusters": len(cp), "n_labels": len(ct),
        "pairwise_precision": float(prec), "pairwise_recall": float(rec), "pairwise_f1": float(_f1(prec, rec)),
        "bcubed_precision": float(bp), "bcubed_recall": float(br), "bcubed_f1": float(_f1(bp, br)),
    }


def reference_bcubed(pred, truth) -> tuple[float, float, float]:
    """Direct O(n^2) BCubed from the definition (used by the tests as the reference)."""
    pred = np.asarray([str(p) for p in pred])
    truth = np.asarray([str(t) for t in truth])
    p = r = 0.0
    for i in range(len(pred)):
        c, t = pred == pred[i], truth == truth[i]
        p += (c & t).sum() / c.sum()
        r += (c & t).sum() / t.sum()
    p, r = p / len(pred), r / len(pred)
    return p, r, _f1(p, r)
