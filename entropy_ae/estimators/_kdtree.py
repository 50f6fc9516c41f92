"""Exact k-nearest-neighbour distances with a compiled kd-tree (numba, threaded), for low to moderate dimension.

The tree splits each node at the median of its widest coordinate and keeps
the tight bounding box of every node. A query walks it depth first, the
nearer child first, and skips every node whose box is at least its current
k-th distance away, so the result is that of a brute-force search. Points and
queries are stored in tree order (neighbouring queries share the nodes they
visit). Distances are summed over the axes in order (Euclidean) or maximised
(max-norm), the same arithmetic as the grid and the sweep of
:mod:`._grid_knn`. It replaces scipy's ``cKDTree`` queries in
``_neighbors.knn_distances``, where it is faster at the sizes measured
(tight boxes, and no per-query overhead; ``benchmarks/neighbors.py kdtree``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._kernels import keep_smallest
from ._threads import in_threads

#: Points per leaf: the fastest of 8, 16 and 32 at d = 8 (timings: the estimators benchmark page,
#: "Timings behind the tuned constants").
LEAF_SIZE = 16
#: Depth-first stack of a query: more than twice the depth of any tree that fits in memory.
_STACK = 256


def kdtree_knn(x: np.ndarray, k: int, euclidean: bool, workers: int) -> np.ndarray:
    """Distances (n, k) from every row of ``x`` (n, d) to its 1st..k-th nearest other row, ascending.

    Exact; duplicates give distance 0 (a point is never its own neighbour, but
    a copy of it is).
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = len(x)
    order, start, stop, left, lo, hi = _build(x, LEAF_SIZE)
    points = np.ascontiguousarray(x[order])
    found = np.empty((n, k))
    in_threads(_query_kernel, n, workers, points, start, stop, left, lo, hi, k, euclidean, found)
    out = np.empty((n, k))
    out[order] = np.sqrt(found) if euclidean else found
    return out


@njit(nogil=True, cache=True)
def _select(index, values, lo, hi, kth):
    """Reorder index[lo:hi] so that values[index[kth]] is its kth smallest, no larger ones before it."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        a, b, c = values[index[lo]], values[index[mid]], values[index[hi - 1]]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        i, j = lo, hi - 1
        while i <= j:
            while values[index[i]] < pivot:
                i += 1
            while values[index[j]] > pivot:
                j -= 1
            if i <= j:
                index[i], index[j] = index[j], index[i]
                i += 1
                j -= 1
        if kth <= j:
            hi = j + 1
        elif kth >= i:
            lo = i
        else:
            return


@njit(nogil=True, cache=True)
def _build(x, leaf):
    """(order, start, stop, left, lo, hi): node i holds points order[start[i]:stop[i]] in the box lo[i]..hi[i];
    its children are left[i] and left[i] + 1, or left[i] = -1 for a leaf. Node 0 is the root."""
    n, d = x.shape
    capacity = 4 * (n // leaf + 1) + 1
    start = np.empty(capacity, np.int64)
    stop = np.empty(capacity, np.int64)
    left = np.full(capacity, -1, np.int64)
    lo = np.empty((capacity, d))
    hi = np.empty((capacity, d))
    order = np.arange(n)
    column = np.empty(n)
    pending = np.empty(_STACK, np.int64)
    start[0], stop[0], count, top, pending[0] = 0, n, 1, 0, 0
    while top >= 0:
        node = pending[top]
        top -= 1
        a, b = start[node], stop[node]
        for axis in range(d):
            low, high = np.inf, -np.inf
            for p in range(a, b):
                v = x[order[p], axis]
                low, high = min(low, v), max(high, v)
            lo[node, axis], hi[node, axis] = low, high
        widest, spread = 0, 0.0
        for axis in range(d):
            if hi[node, axis] - lo[node, axis] > spread:
                widest, spread = axis, hi[node, axis] - lo[node, axis]
        if b - a <= leaf or spread == 0.0:  # small, or all points equal: a leaf
            continue
        for p in range(a, b):
            column[order[p]] = x[order[p], widest]
        middle = (a + b) // 2
        _select(order, column, a, b, middle)
        child = count
        count += 2
        left[node] = child
        start[child], stop[child], start[child + 1], stop[child + 1] = a, middle, middle, b
        pending[top + 1], pending[top + 2] = child + 1, child
        top += 2
    return order, start[:count], stop[:count], left[:count], lo[:count].copy(), hi[:count].copy()


@njit(nogil=True, cache=True)
def _query_kernel(points, start, stop, left, lo, hi, k, euclidean, out, first, last):
    d = points.shape[1]
    best = np.empty(k)
    pending = np.empty(_STACK, np.int64)
    bound = np.empty(_STACK)
    for i in range(first, last):
        best[:] = np.inf
        top, pending[0], bound[0] = 0, 0, 0.0
        while top >= 0:
            node, near = pending[top], bound[top]
            top -= 1
            if near >= best[k - 1]:
                continue
            a = left[node]
            if a >= 0:
                # Distances from the query to the boxes of both children (squared if Euclidean, 0 inside);
                # the farther child is pushed first, so the nearer one is searched first.
                b = a + 1
                near_a = 0.0
                near_b = 0.0
                for axis in range(d):
                    v = points[i, axis]
                    gap_a = max(lo[a, axis] - v, v - hi[a, axis], 0.0)
                    gap_b = max(lo[b, axis] - v, v - hi[b, axis], 0.0)
                    if euclidean:
                        near_a += gap_a * gap_a
                        near_b += gap_b * gap_b
                    else:
                        near_a = max(near_a, gap_a)
                        near_b = max(near_b, gap_b)
                if near_a > near_b:
                    a, b, near_a, near_b = b, a, near_b, near_a
                pending[top + 1], bound[top + 1] = b, near_b
                pending[top + 2], bound[top + 2] = a, near_a
                top += 2
                continue
            for j in range(start[node], stop[node]):
                if j == i:
                    continue
                dist = 0.0
                if euclidean:
                    for axis in range(d):
                        t = points[j, axis] - points[i, axis]
                        dist += t * t
                else:
                    for axis in range(d):
                        dist = max(dist, abs(points[j, axis] - points[i, axis]))
                keep_smallest(best, dist)
        out[i, :] = best
