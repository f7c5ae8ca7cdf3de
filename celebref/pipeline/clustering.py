"""Identity clustering of face embeddings.

- ``agglomerative`` (default): hierarchical clustering, ``average`` linkage on the embedder's own distance
  (Euclidean for dlib, cosine distance for ArcFace), cut at ``threshold``: two groups merge while the mean
  distance between their members is below the threshold. Deterministic.
- ``chinese_whispers``: dlib's graph clustering (edges between faces closer than ``threshold``), the method of
  dlib's face clustering example; fed in sorted face order so it is deterministic.

Neighbour search (``neighbors``):

- ``exact``: all pairs (scipy ``pdist`` + ``linkage``): O(n^2) memory, about 1.6 GB at 20k faces.
- ``faiss``: an approximate k-nearest-neighbour graph (FAISS ``IndexHNSWFlat``, or ``IndexFlatL2`` for an exact
  kNN graph), edge lengths recomputed exactly in float64. The *same* algorithms then run on that graph:

  * agglomerative: with single, average or complete linkage, two clusters can only merge at a height <= t if
    some pair across them is closer than t (every such linkage is >= the smallest pair distance). So the exact
    clustering cut at t is the union of exact clusterings of the connected components of the graph of pairs
    closer than t. We take those components from the kNN graph's edges below t and run exact scipy linkage
    inside each component; the result equals the exact clustering whenever the kNN graph keeps those
    components connected (it misses an edge only when a face has more than ``k`` neighbours closer than t *and*
    the missing edge is a component's only bridge, or when HNSW misses a neighbour). Components larger than
    ``max_exact_component`` faces (chained look-alikes at huge scale) fall back to a sparse average linkage on
    the graph's edges (see :func:`sparse_average_linkage`).
  * chinese_whispers: dlib's ``chinese_whispers`` on the kNN edges below t.

  HNSW is built single-threaded (its insertion order, hence the graph, is then deterministic); searching uses
  every thread (queries are independent). The accuracy against exact clustering is measured in docs/build.md.

Labels are canonical: numbered 0.. in the order of first appearance in the input (which the identity stage sorts by
face id), so the same faces always get the same labels.
"""

from __future__ import annotations

import heapq
import time

import numpy as np

#: per-embedder default cut distances: the median of the purity-first cuts chosen on tuning identities only
#: (tuning BCubed P >= 0.995, purity 1.0) over 12 identity-disjoint folds, checked on the test folds
#: (benchmarks/bench_cluster_purity.py; docs/build.md "Clustering on unseen people"). arcface: not measured (no
#: weights offline), kept at its earlier value
DEFAULT_THRESHOLDS = {"dlib": 0.59, "dlib-flip": 0.63, "arcface": 0.65}
#: largest connected component clustered exactly on the faiss path (scipy linkage needs n^2/2 doubles)
MAX_EXACT_COMPONENT = 5000


def canonical(labels) -> np.ndarray:
    out, seen = np.empty(len(labels), dtype=np.int64), {}
    for i, lab in enumerate(labels):
        out[i] = seen.setdefault(lab, len(seen))
    return out


def resolve_neighbors(neighbors: str, n: int, faiss_min_faces: int) -> str:
    if neighbors == "auto":
        return "faiss" if n >= faiss_min_faces else "exact"
    if neighbors not in ("exact", "faiss"):
        raise ValueError(f"unknown neighbour search {neighbors!r}")
    return neighbors


def cluster(x: np.ndarray, *, metric: str, threshold: float, algorithm: str = "agglomerative",
            linkage: str = "average", neighbors: str = "exact", knn_k: int = 48, faiss_index: str = "hnsw",
            max_exact_component: int = MAX_EXACT_COMPONENT, stats: dict | None = None) -> np.ndarray:
    """Cluster labels (canonical) for the rows of ``x``. ``stats`` (optional dict) receives what was done."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if stats is not None:
        stats.update(n=n, neighbors=neighbors)
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"unknown metric {metric!r}")
    if algorithm not in ("agglomerative", "chinese_whispers"):
        raise ValueError(f"unknown clustering algorithm {algorithm!r}")
    if neighbors == "faiss":
        return _cluster_knn(x, metric=metric, threshold=threshold, algorithm=algorithm, linkage=linkage, k=knn_k,
                            index=faiss_index, max_exact_component=max_exact_component, stats=stats)
    if algorithm == "agglomerative":
        return canonical(_exact_linkage(x, metric, threshold, linkage))
    import dlib

    if metric == "cosine":  # unit vectors: |a-b|^2 = 2 (1 - cos)
        x = _unit(x)
        thr = float(np.sqrt(2.0 * threshold))
    else:
        thr = float(threshold)
    vecs = [dlib.vector([float(v) for v in row]) for row in x]
    return canonical(dlib.chinese_whispers_clustering(vecs, thr))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _exact_linkage(x: np.ndarray, metric: str, threshold: float, linkage: str) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster
    from scipy.cluster.hierarchy import linkage as scipy_linkage
    from scipy.spatial.distance import pdist

    if len(x) == 1:
        return np.ones(1, dtype=np.int64)
    d = np.maximum(pdist(x, metric=metric), 0.0)
    z = scipy_linkage(d, method=linkage)
    return fcluster(z, t=threshold, criterion="distance")


# ------------------------------------------------------------------------------------------------ kNN graph
def knn_graph(x: np.ndarray, metric: str, k: int, index: str = "hnsw", *, hnsw_m: int = 32,
              ef_construction: int = 80, ef_search: int | None = None):
    """Symmetric k-nearest-neighbour graph of the rows of ``x`` with FAISS.

    Returns ``(i, j, d, kth)``: edges i < j (each pair once), their exact float64 distances in ``metric``, and
    for every row the distance to its farthest returned neighbour (a lower bound for the distance to any row not
    in its list, when the search is exact)."""
    import faiss

    n, dim = x.shape
    xs = _unit(x) if metric == "cosine" else x
    x32 = np.ascontiguousarray(xs, dtype=np.float32)
    k = int(min(k, n - 1))
    if index == "flat":
        idx = faiss.IndexFlatL2(dim)
        idx.add(x32)
    elif index == "hnsw":
        idx = faiss.IndexHNSWFlat(dim, hnsw_m)
        idx.hnsw.efConstruction = ef_construction
        idx.hnsw.efSearch = int(ef_search or max(2 * k, 64))
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # deterministic insertion order -> the same graph every run
        try:
            idx.add(x32)
        finally:
            faiss.omp_set_num_threads(threads)
    else:
        raise ValueError(f"unknown faiss index {index!r}")
    _, nb = idx.search(x32, k + 1)
    rows = np.repeat(np.arange(n), nb.shape[1])
    cols = nb.reshape(-1)
    ok = (cols >= 0) & (cols != rows)
    rows, cols = rows[ok], cols[ok]
    a, b = np.minimum(rows, cols), np.maximum(rows, cols)
    pairs = np.unique(a.astype(np.int64) * n + b)
    i, j = pairs // n, pairs % n
    d = _pair_distance(x, i, j, metric)
    # per row: distance to its farthest returned neighbour (exact lengths)
    dd = _pair_distance(x, rows, cols, metric)
    kth = np.zeros(n)
    np.maximum.at(kth, rows, dd)
    return i, j, d, kth


def _pair_distance(x: np.ndarray, i: np.ndarray, j: np.ndarray, metric: str, chunk: int = 1 << 20) -> np.ndarray:
    out = np.empty(len(i))
    xs = _unit(x) if metric == "cosine" else x
    for s in range(0, len(i), chunk):
        a, b = xs[i[s:s + chunk]], xs[j[s:s + chunk]]
        if metric == "cosine":
            out[s:s + chunk] = 1.0 - (a * b).sum(1)
        else:
            out[s:s + chunk] = np.sqrt(((a - b) ** 2).sum(1))
    return np.maximum(out, 0.0)


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    return connected_components(g, directed=False)[1]


def _cluster_knn(x, *, metric, threshold, algorithm, linkage, k, index, max_exact_component, stats):
    t0 = time.perf_counter()
    n = len(x)
    i, j, d, _ = knn_graph(x, metric, k, index)
    t_graph = time.perf_counter() - t0
    close = d <= threshold
    if algorithm == "chinese_whispers":
        import dlib

        edges = [(int(a), int(b)) for a, b in zip(i[close], j[close])]
        labels = np.asarray(dlib.chinese_whispers(edges), dtype=np.int64) if edges else np.zeros(0, np.int64)
        if len(labels) < n:  # dlib numbers only the nodes that appear in an edge
            full = np.empty(n, dtype=np.int64)
            full[: len(labels)] = labels
            full[len(labels):] = np.arange(n - len(labels)) + (labels.max() + 1 if len(labels) else 0)
            labels = full
        if stats is not None:
            stats.update(graph_s=round(t_graph, 3), edges=int(len(i)), edges_below_threshold=int(close.sum()),
                         k=k, index=index)
        return canonical(labels)
    comp = _components(n, i[close], j[close])
    if linkage == "single":  # single linkage cut at t == connected components of the pairs closer than t
        labels = comp
        n_exact, n_sparse, largest = n, 0, int(np.bincount(comp).max())
    else:
        labels = np.empty(n, dtype=np.int64)
        order = np.argsort(comp, kind="stable")
        bounds = np.flatnonzero(np.diff(comp[order])) + 1
        next_label, n_exact, n_sparse, largest = 0, 0, 0, 0
        for members in np.split(order, bounds):
            largest = max(largest, len(members))
            if len(members) == 1:
                labels[members] = next_label
                next_label += 1
                continue
            if len(members) <= max_exact_component:
                sub = _exact_linkage(x[members], metric, threshold, linkage)
                n_exact += len(members)
            else:
                sel = np.isin(i, members) & np.isin(j, members)
                pos = np.full(n, -1)
                pos[members] = np.arange(len(members))
                sub = sparse_average_linkage(x[members], pos[i[sel]], pos[j[sel]], d[sel], threshold,
                                             metric=metric, linkage=linkage)
                n_sparse += len(members)
            sub = canonical(sub)
            labels[members] = sub + next_label
            next_label += int(sub.max()) + 1
    if stats is not None:
        stats.update(graph_s=round(t_graph, 3), edges=int(len(i)), edges_below_threshold=int(close.sum()), k=k,
                     index=index, components=int(comp.max()) + 1, largest_component=int(largest),
                     faces_in_exact_components=int(n_exact), faces_in_sparse_components=int(n_sparse),
                     cluster_s=round(time.perf_counter() - t0, 3))
    return canonical(labels)


def sparse_average_linkage(x: np.ndarray, i: np.ndarray, j: np.ndarray, d: np.ndarray, threshold: float, *,
                           metric: str = "euclidean", linkage: str = "average") -> np.ndarray:
    """Agglomerative clustering on a sparse graph (for components too large for the all-pairs linkage).

    Only clusters joined by at least one graph edge are candidates (a cluster pair with no pair closer than t can
    never merge at a cut t). ``average``: the mean over *all* |A||B| pairs, not only the edges, from per-cluster
    sums: with cosine distance on unit vectors the sum over all pairs is |A||B| - S_A.S_B (S = sum of the
    vectors), so the linkage is exact; with Euclidean distance the sum of *squared* distances over all pairs is
    exact (|B|Q_A + |A|Q_B - 2 S_A.S_B, Q = sum of squared norms); the graph's edges contribute their exact
    distances and the pairs that are not edges their root-mean-square (exact for one pair, an upper bound
    otherwise). ``complete``: merges only when every pair across is an edge and the largest is <= t.
    ``single``: connected components of the edges <= t. Merges happen closest first while the linkage is <= t.
    Returns labels (not canonical)."""
    n = len(x)
    if linkage == "single":
        close = d <= threshold
        return _components(n, i[close], j[close])
    cos = metric == "cosine"
    xs = _unit(x) if cos else np.asarray(x, np.float64)
    vsum = xs.copy()
    sq = (xs * xs).sum(1)
    size = np.ones(n, dtype=np.float64)
    # nbr[c][o] = [sum of edge distances, sum of their squares, number of edges, largest edge]
    nbr: list[dict[int, list[float]]] = [dict() for _ in range(n)]
    for a, b, dist in zip(i.tolist(), j.tolist(), d.tolist()):
        nbr[a][b] = [dist, dist * dist, 1, dist]
        nbr[b][a] = [dist, dist * dist, 1, dist]

    def link(c: int, o: int, st: list[float]) -> float:
        pairs = size[c] * size[o]
        if linkage == "complete":
            return st[3] if st[2] == pairs else float("inf")
        dot = float(vsum[c] @ vsum[o])
        if cos:
            return (pairs - dot) / pairs
        missing = pairs - st[2]
        if missing <= 0:
            return st[0] / pairs
        total_sq = size[o] * sq[c] + size[c] * sq[o] - 2.0 * dot
        rest_sq = max(total_sq - st[1], 0.0)
        return (st[0] + missing * np.sqrt(rest_sq / missing)) / pairs

    version = np.zeros(n, dtype=np.int64)
    heap = [(link(c, o, st), c, o, 0, 0) for c in range(n) for o, st in nbr[c].items() if c < o]
    heapq.heapify(heap)
    parent = np.arange(n)
    while heap:
        h, a, b, va, vb = heapq.heappop(heap)
        if h > threshold:
            break
        if version[a] != va or version[b] != vb or parent[a] != a or parent[b] != b:
            continue  # stale: one side has merged since
        if size[a] < size[b]:
            a, b = b, a
        parent[b] = a  # merge b into a
        del nbr[a][b], nbr[b][a]
        for o, st in nbr[b].items():
            nbr[o].pop(b)
            cur = nbr[a].get(o)
            new = list(st) if cur is None else [cur[0] + st[0], cur[1] + st[1], cur[2] + st[2], max(cur[3], st[3])]
            nbr[a][o] = new
            nbr[o][a] = list(new)
        nbr[b] = {}
        size[a] += size[b]
        vsum[a] += vsum[b]
        sq[a] += sq[b]
        version[a] += 1
        for o, st in nbr[a].items():
            c1, c2 = (a, o) if a < o else (o, a)
            heapq.heappush(heap, (link(a, o, st), c1, c2, version[c1], version[c2]))
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt
