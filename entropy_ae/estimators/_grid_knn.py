"""Exact k-nearest-neighbour distances on a uniform grid of cells, for low dimension (compiled, threaded).

The points are sorted into cubic cells about as wide as a typical k-th
neighbour distance. Each query visits the cells ring by ring (Chebyshev
rings of cells around its own) and stops once every point outside the visited
block is provably farther than its current k-th neighbour, so the result is
the exact k-NN distance of a brute-force search, whatever the data. It beats
scipy's tree in 2-D (the joint space of 1 vs 1 KSG), where a query touches
about a dozen points (``GRID_KNN_MAX_DIM``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy.spatial import cKDTree

from ._kernels import keep_smallest, three_smallest
from ._threads import in_threads

#: Up to this dimension and from this many points on, :func:`grid_knn` replaces the tree for the joint
#: k-NN of KSG: where it was faster (in 3-D and 4-D it loses to the tree; timings: the estimators
#: benchmark page, "Timings behind the tuned constants").
GRID_KNN_MAX_DIM = 2
GRID_KNN_MIN_N = 2000
#: Below this many points a 2-D k-NN sweeps along the sorted first axis instead (:func:`sweep_knn`), the
#: fastest of sweep, grid and tree there (``benchmarks/neighbors.py sweep``; same page) ...
SWEEP_KNN_MAX_N = 5000
#: ... and below this many for k = 3, whose sweep has a faster kernel (:func:`_sweep_kernel_3`).
SWEEP_KNN_MAX_N_K3 = 15_000
#: Points sampled to set the cell side: their k-th neighbour distance among themselves, rescaled to n ...
_SIDE_SAMPLE = 512
#: ... times this factor, the fastest of those timed (same page).
_SIDE_PER_DISTANCE = 1.4
#: At most this many cells (an int64 offset each: 32 MiB).
_MAX_CELLS = 2**22


def sweep_knn(x: np.ndarray, k: int, euclidean: bool, workers: int) -> np.ndarray:
    """Distances (n, k) from every row of a 2-D ``x`` to its 1st..k-th nearest other row, ascending.

    Exact, like :func:`grid_knn`: the points are sorted by their first coordinate
    and each query walks outwards in both directions until the gap along that
    axis alone reaches its current k-th distance. The distances are summed over
    the axes in order, as scipy does, so they equal its tree's to the bit.
    """
    order = np.argsort(x[:, 0], kind="stable")
    points = np.ascontiguousarray(x[order], dtype=np.float64)
    found = np.empty((len(x), k), dtype=np.float64)
    in_threads(sweep_kernel(k), len(x), workers, points, k, euclidean, found)
    out = np.empty((len(x), k), dtype=np.float64)
    out[order] = np.sqrt(found) if euclidean else found
    return out


@njit(nogil=True, cache=True)
def _sweep_kernel(points, k, euclidean, out, start, stop):
    n = points.shape[0]
    best = np.empty(k)
    for p in range(start, stop):
        best[:] = np.inf
        for step in (-1, 1):
            q = p + step
            while 0 <= q < n:
                t = points[q, 0] - points[p, 0]
                gap = t * t if euclidean else abs(t)
                if gap >= best[k - 1]:  # this point and every later one along the axis are no closer
                    break
                u = points[q, 1] - points[p, 1]
                dist = gap + u * u if euclidean else max(gap, abs(u))
                keep_smallest(best, dist)
                q += step
        out[p, :] = best


def sweeps(n: int, k: int) -> bool:
    """Whether the 2-D k-NN of n points takes the sweep (:func:`sweep_knn`) rather than the grid."""
    return n < (SWEEP_KNN_MAX_N_K3 if k == 3 else SWEEP_KNN_MAX_N)


def sweep_kernel(k: int):
    """The compiled sweep for k neighbours: :func:`_sweep_kernel_3` for k = 3 (the estimators' default),
    else :func:`_sweep_kernel`; both take (points, k, euclidean, out, start, stop)."""
    return _sweep_kernel_3 if k == 3 else _sweep_kernel


@njit(nogil=True, cache=True)
def _sweep_kernel_3(points, k, euclidean, out, start, stop):
    """:func:`_sweep_kernel` for k = 3, its three smallest distances held in scalars
    (:func:`._kernels.three_smallest`). The same three numbers."""
    n = points.shape[0]
    inf = np.inf
    for p in range(start, stop):
        b0, b1, b2 = inf, inf, inf  # ascending
        x0, y0 = points[p, 0], points[p, 1]
        for step in (-1, 1):
            q = p + step
            while 0 <= q < n:
                t = points[q, 0] - x0
                gap = t * t if euclidean else abs(t)
                if gap >= b2:  # this point and every later one along the axis are no closer
                    break
                u = points[q, 1] - y0
                v = gap + u * u if euclidean else max(gap, abs(u))
                b0, b1, b2 = three_smallest(b0, b1, b2, v)
                q += step
        out[p, 0], out[p, 1], out[p, 2] = b0, b1, b2


def _cell_side(x: np.ndarray, k: int, euclidean: bool) -> float:
    """About the median k-th neighbour distance of the n points, from an evenly spaced subsample."""
    n, d = x.shape
    sample = x[:: max(1, n // _SIDE_SAMPLE)]
    kk = min(k, len(sample) - 1)
    dist = cKDTree(sample).query(sample, k=kk + 1, p=2.0 if euclidean else np.inf)[0][:, -1]
    positive = dist[dist > 0]
    if not len(positive):
        return 1.0
    # The k-th neighbour distance of m points from a density scales as m^(-1/d).
    return _SIDE_PER_DISTANCE * float(np.median(positive)) * (len(sample) / n) ** (1.0 / d)


def grid_knn(x: np.ndarray, k: int, euclidean: bool, workers: int) -> np.ndarray:
    """Distances (n, k) from every row of ``x`` to its 1st..k-th nearest other row, ascending.

    Euclidean (sqrt of the sum of squared differences, summed over the axes in
    order, as scipy does) or max-norm. Exact; duplicates give distance 0.
    """
    n, d = x.shape
    origin = x.min(0)
    span = x.max(0) - origin
    side = max(_cell_side(x, k, euclidean), float(span.max()) / _MAX_CELLS ** (1.0 / d), 1e-300)
    while np.prod(np.floor(span / side) + 1) > _MAX_CELLS:
        side *= 1.25
    shape = (np.floor(span / side) + 1).astype(np.int64)
    strides = np.ones(d, dtype=np.int64)
    for axis in range(d - 2, -1, -1):
        strides[axis] = strides[axis + 1] * shape[axis + 1]
    cells = np.minimum(np.floor((x - origin) / side).astype(np.int64), shape - 1)
    flat = cells @ strides
    order = np.argsort(flat)  # any order within a cell: the k smallest distances are the same
    points = np.ascontiguousarray(x[order], dtype=np.float64)
    starts = np.zeros(int(np.prod(shape)) + 1, dtype=np.int64)
    np.cumsum(np.bincount(flat, minlength=len(starts) - 1), out=starts[1:])
    # A point's cell is floor((x - origin) / side), rounded: it may sit a few ulps outside it.
    margin = max(1e-7 * side, 16 * np.finfo(np.float64).eps * float(np.abs(x).max()))
    found = np.empty((n, k), dtype=np.float64)
    in_threads(_knn_kernel, n, workers, points, np.ascontiguousarray(cells[order]), starts, shape, strides,
               origin.astype(np.float64), side, margin, k, euclidean, found)
    out = np.empty((n, k), dtype=np.float64)
    out[order] = np.sqrt(found) if euclidean else found
    return out


@njit(nogil=True, cache=True)
def _knn_kernel(points, cells, starts, shape, strides, origin, side, margin, k, euclidean, out, start, stop):
    n, d = points.shape
    last = d - 1
    best = np.empty(k)
    lo = np.empty(d, np.int64)
    hi = np.empty(d, np.int64)
    cur = np.empty(d, np.int64)
    for i in range(start, stop):
        best[:] = np.inf
        ring = 0
        while True:
            covers_all = True
            for axis in range(d):
                lo[axis] = max(0, cells[i, axis] - ring)
                hi[axis] = min(shape[axis] - 1, cells[i, axis] + ring)
                covers_all = covers_all and lo[axis] == 0 and hi[axis] == shape[axis] - 1
                cur[axis] = lo[axis]
            while True:  # the cells of this ring: runs along the last axis, whole or their two ends
                base = 0
                on_ring = False
                for axis in range(last):
                    base += cur[axis] * strides[axis]
                    on_ring = on_ring or abs(cur[axis] - cells[i, axis]) == ring
                c_lo, c_hi = cells[i, last] - ring, cells[i, last] + ring
                for run in range(2):
                    if on_ring or ring == 0:
                        a, b = max(c_lo, 0), min(c_hi, shape[last] - 1)
                        if run == 1:
                            break
                    else:
                        a = c_lo if run == 0 else c_hi
                        b = a
                        if a < 0 or a > shape[last] - 1:
                            continue
                    for j in range(starts[base + a], starts[base + b + 1]):
                        if j == i:
                            continue
                        dist = 0.0
                        for axis in range(d):
                            t = points[j, axis] - points[i, axis]
                            if euclidean:
                                dist += t * t
                            else:
                                dist = max(dist, abs(t))
                        keep_smallest(best, dist)
                axis = last - 1  # next run (odometer over the leading axes)
                while axis >= 0:
                    cur[axis] += 1
                    if cur[axis] <= hi[axis]:
                        break
                    cur[axis] = lo[axis]
                    axis -= 1
                if axis < 0:
                    break
            if covers_all:
                break
            # Every unvisited point lies outside the block of cells within `ring`: at least this far (max-norm,
            # hence also Euclidean) from the query.
            gap = math.inf
            for axis in range(d):
                low = origin[axis] + (cells[i, axis] - ring) * side
                high = origin[axis] + (cells[i, axis] + ring + 1) * side
                gap = min(gap, points[i, axis] - low, high - points[i, axis])
            gap = max(gap - margin, 0.0)
            if best[k - 1] <= (gap * gap if euclidean else gap):
                break
            ring += 1
        out[i, :] = best
