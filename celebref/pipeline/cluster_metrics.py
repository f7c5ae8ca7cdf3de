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


def adjusted_rand_index(a, b) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) between two labelings: 1 = identical partitions, ~0 = chance."""
    joint, ca, cb, n = _contingency(a, b)
    if n < 2:
        return 1.0

    def comb2(v):
        return v * (v - 1) / 2.0

    index = sum(comb2(v) for v in joint.values())
    sa = sum(comb2(v) for v in ca.values())
    sb = sum(comb2(v) for v in cb.values())
    expected = sa * sb / comb2(n)
    maximum = (sa + sb) / 2.0
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def agreement(pred, reference) -> dict:
    """How closely a clustering reproduces a reference clustering (e.g. approximate vs exact): adjusted Rand
    index, BCubed precision/recall/F1 of ``pred`` against ``reference``, and the share of items whose cluster is
    exactly the same set of items in both."""
    s = cluster_scores(pred, reference)
    pred = [str(p) for p in pred]
    ref = [str(r) for r in reference]
    members_p: dict = {}
    members_r: dict = {}
    for k, (p, r) in enumerate(zip(pred, ref)):
        members_p.setdefault(p, []).append(k)
        members_r.setdefault(r, []).append(k)
    same = sum(1 for p, r in zip(pred, ref) if members_p[p] == members_r[r])
    return {"n": s["n"], "clusters": s["n_clusters"], "reference_clusters": s["n_labels"],
            "ari": adjusted_rand_index(pred, ref), "bcubed_precision": s["bcubed_precision"],
            "bcubed_recall": s["bcubed_recall"], "bcubed_f1": s["bcubed_f1"],
            "identical_cluster_share": same / max(1, len(pred))}


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
