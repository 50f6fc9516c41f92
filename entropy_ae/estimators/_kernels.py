"""Compiled inner loops of the neighbour searches (numba), split over threads.

Both kernels are exact: they count with the same comparisons as a brute-force
numpy count, only faster.

* :func:`grid_counts` -- points within a radius of every point, in low
  dimension (``GRID_MAX_DIM``, ``GRID_MAX_DIM_MAX_NORM``). The points are
  sorted into a uniform grid of cubic cells; for each query the cells the ball
  (Euclidean) or box (max-norm) covers entirely are counted whole, and only the
  points of the cells on its boundary are compared one by one. Runs of cells along the last axis are
  contiguous in memory, so each is one slice.
* :func:`ksg_counts_brute` -- the KSG counts by brute force for high
  dimension: for each row, its distances to every point per variable, the
  joint k-th neighbour distance and every marginal count, in one pass and
  without storing the distance matrix. The loops are written so that the
  compiler vectorises them (four dimensions per pass over a row).

The kernels release the GIL and run on threads (:mod:`._threads`). Compiled
code is cached next to this file (first use compiles, in about 8 s; later
processes load it in well under a second).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._threads import in_threads

#: Up to this dimension :func:`grid_counts` beats the trees for Euclidean balls ...
GRID_MAX_DIM = 4
#: ... and with max-norm boxes up to this one. Below n = 5e4 KSG takes the tree path only up to a joint
#: dimension of 8, so its max-norm counts are 7-D at most.
GRID_MAX_DIM_MAX_NORM = 7
#: Cell side as a fraction of the median radius, Euclidean and max-norm: the fastest in
#: ``benchmarks/neighbors.py grid`` ...
_CELL_PER_RADIUS = 0.7
_CELL_PER_RADIUS_MAX_NORM = 1.0
#: ... but at most this many cells (an int64 offset each: 32 MiB), which coarsens cells in sparse data.
_MAX_CELLS = 2**22
# (Timings behind these constants: the estimators benchmark page, "Timings behind the tuned constants".)
# Vectorisable min/max in the distance loops (:func:`_add_distances` only): no NaN or inf reaches them
# (inputs are validated as finite; the self-distance is set to inf after them, in code compiled without
# these flags), and the sign of a zero difference does not matter.
_FASTMATH = {"nnan", "ninf", "nsz"}


@njit(nogil=True, cache=True, inline="always")
def keep_smallest(best, value):
    """Insert ``value`` into the ascending array ``best`` (the smallest distances so far) if it belongs there."""
    if value < best[-1]:
        r = len(best) - 1
        while r > 0 and best[r - 1] > value:
            best[r] = best[r - 1]
            r -= 1
        best[r] = value


@njit(nogil=True, cache=True, inline="always")
def three_smallest(b0, b1, b2, value):
    """The three smallest of the ascending b0 <= b1 <= b2 and ``value``, ascending: :func:`keep_smallest`
    for k = 3 on scalars, by minima and maxima. Without its branch, which is mispredicted whenever
    the values come in no learnable order, scans of fresh data run several times faster
    (``benchmarks/neighbors.py sweep``)."""
    upper = b1 if b1 > value else value
    middle = b0 if b0 > value else value
    return (b0 if b0 < value else value), (b1 if b1 < middle else middle), (b2 if b2 < upper else upper)


# --- counts within a radius, low dimension ------------------------------------------------------------


def grid_counts(x: np.ndarray, radius: np.ndarray, euclidean: bool, workers: int) -> np.ndarray:
    """For every row i of ``x`` (n, d), the number of other rows j with dist(x_i, x_j) < radius[i].

    Max-norm unless ``euclidean``. Exact: whole cells are counted only where
    they lie inside the ball with a margin that covers the rounding of the cell
    assignment; everything else is compared point by point.
    """
    n, d = x.shape
    origin = x.min(0)
    span = x.max(0) - origin
    positive = radius[radius > 0]
    side = (_CELL_PER_RADIUS if euclidean else _CELL_PER_RADIUS_MAX_NORM) * float(np.median(positive)) \
        if len(positive) else 1.0
    side = max(side, float(span.max()) / _MAX_CELLS ** (1.0 / d), 1e-300)
    while np.prod(np.floor(span / side) + 1) > _MAX_CELLS:
        side *= 1.25
    shape = (np.floor(span / side) + 1).astype(np.int64)
    strides = np.ones(d, dtype=np.int64)
    for axis in range(d - 2, -1, -1):
        strides[axis] = strides[axis + 1] * shape[axis + 1]
    cell = np.minimum(np.floor((x - origin) / side).astype(np.int64), shape - 1) @ strides
    # Queries in cell order as well: consecutive queries then touch the same cells (cache-friendly).
    order = np.argsort(cell, kind="stable")
    points = np.ascontiguousarray(x[order], dtype=np.float64)
    starts = np.zeros(int(np.prod(shape)) + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell, minlength=len(starts) - 1), out=starts[1:])
    # The cell of a point is floor((x - origin) / side), rounded: a point may sit a few ulps outside it.
    margin = max(1e-7 * side, 16 * np.finfo(np.float64).eps * float(np.abs(x).max()))
    counts = np.empty(n, dtype=np.int64)
    in_threads(_grid_kernel, n, workers, points, starts, shape, strides, origin.astype(np.float64), side,
               margin, np.ascontiguousarray(radius[order], dtype=np.float64), euclidean, counts)
    out = np.empty(n, dtype=np.int64)
    out[order] = counts
    return out


@njit(nogil=True, cache=True)
def _grid_kernel(points, starts, shape, strides, origin, side, margin, radius, euclidean, out, start, stop):
    n, d = points.shape
    last = d - 1
    lo = np.empty(d, np.int64)
    hi = np.empty(d, np.int64)
    cur = np.empty(d, np.int64)
    for i in range(start, stop):
        r = radius[i]
        if not r > 0.0:
            out[i] = 0  # nothing is strictly closer than 0
            continue
        limit = r * r if euclidean else r
        for axis in range(d):  # cells the box [q - r, q + r] touches (widened by the margin)
            lo[axis] = max(0, int(math.floor((points[i, axis] - r - margin - origin[axis]) / side)))
            hi[axis] = min(shape[axis] - 1, int(math.floor((points[i, axis] + r + margin - origin[axis]) / side)))
            cur[axis] = lo[axis]
        q_last = points[i, last] - origin[last]
        total = 0
        while True:
            # Over the leading axes of this run of cells: the nearest and farthest distance of its cells
            # from the query (squared and summed if Euclidean, else their maximum).
            near = 0.0
            far = 0.0
            base = 0
            for axis in range(last):
                low = origin[axis] + cur[axis] * side - margin
                high = low + side + 2.0 * margin
                v = points[i, axis]
                gap = max(low - v, v - high, 0.0)
                reach = max(v - low, high - v)
                if euclidean:
                    near += gap * gap
                    far += reach * reach
                else:
                    near = max(near, gap)
                    far = max(far, reach)
                base += cur[axis] * strides[axis]
            if near < limit:
                # Along the last axis: cells within the ball's extent there, and the inner ones wholly inside.
                half = math.sqrt(limit - near) if euclidean else r
                c0 = max(lo[last], int(math.floor((q_last - half - margin) / side)))
                c1 = min(hi[last], int(math.floor((q_last + half + margin) / side)))
                c0 = min(c0, c1 + 1)  # an empty run if the ball misses the grid here
                i0, i1 = c1 + 1, c1
                if far < limit:
                    inner = math.sqrt(limit - far) if euclidean else r
                    i0 = max(c0, int(math.floor((q_last - inner + margin) / side)) + 1)
                    i1 = min(c1, int(math.ceil((q_last + inner - margin) / side)) - 2)
                if i0 <= i1:
                    total += starts[base + i1 + 1] - starts[base + i0]
                else:
                    i0, i1 = c1 + 1, c1
                for a, b in ((starts[base + c0], starts[base + min(i0, c1 + 1)]),
                             (starts[base + i1 + 1], starts[base + c1 + 1])):
                    total += _run_count(points, i, a, b, limit, euclidean)
            axis = last - 1  # next run of cells (odometer over the leading axes)
            while axis >= 0:
                cur[axis] += 1
                if cur[axis] <= hi[axis]:
                    break
                cur[axis] = lo[axis]
                axis -= 1
            if axis < 0:
                break
        out[i] = total - 1  # the query itself (distance 0 < r) was counted


@njit(nogil=True, cache=True, inline="always")
def _run_count(points, i, a, b, limit, euclidean):
    """Points a..b-1 of ``points`` (n, d) closer to point i than ``limit`` (the squared radius if Euclidean,
    else the radius of the max-norm box). Differences point minus query; squares summed from axis 0, or the
    largest magnitude. Written out for 2, 3 and 4 axes, the same arithmetic as the loop over axes, which the
    compiler runs much slower (the documentation's estimators benchmark page)."""
    d = points.shape[1]
    count = 0
    if d == 4:
        q0, q1, q2, q3 = points[i, 0], points[i, 1], points[i, 2], points[i, 3]
        if euclidean:
            for j in range(a, b):
                t0, t1, t2, t3 = points[j, 0] - q0, points[j, 1] - q1, points[j, 2] - q2, points[j, 3] - q3
                count += ((((0.0 + t0 * t0) + t1 * t1) + t2 * t2) + t3 * t3) < limit
        else:
            for j in range(a, b):
                far = max(max(abs(points[j, 0] - q0), abs(points[j, 1] - q1)),
                          max(abs(points[j, 2] - q2), abs(points[j, 3] - q3)))
                count += far < limit
    elif d == 3:
        q0, q1, q2 = points[i, 0], points[i, 1], points[i, 2]
        if euclidean:
            for j in range(a, b):
                t0, t1, t2 = points[j, 0] - q0, points[j, 1] - q1, points[j, 2] - q2
                count += (((0.0 + t0 * t0) + t1 * t1) + t2 * t2) < limit
        else:
            for j in range(a, b):
                far = max(max(abs(points[j, 0] - q0), abs(points[j, 1] - q1)), abs(points[j, 2] - q2))
                count += far < limit
    elif d == 2:
        q0, q1 = points[i, 0], points[i, 1]
        if euclidean:
            for j in range(a, b):
                t0, t1 = points[j, 0] - q0, points[j, 1] - q1
                count += ((0.0 + t0 * t0) + t1 * t1) < limit
        else:
            for j in range(a, b):
                count += max(abs(points[j, 0] - q0), abs(points[j, 1] - q1)) < limit
    else:
        for j in range(a, b):
            acc = 0.0
            for axis in range(d):
                t = points[j, axis] - points[i, axis]
                acc = acc + t * t if euclidean else max(acc, abs(t))
            count += acc < limit
    return count


# --- KSG counts by brute force, high dimension --------------------------------------------------------


def ksg_counts_brute(blocks: list[np.ndarray], subsets: list[tuple[int, ...]], k: int, euclidean: bool,
                     shrink: float, workers: int) -> list[np.ndarray]:
    """KSG counts (see ``_neighbors.ksg_counts``) by brute force, one row at a time.

    ``shrink`` multiplies the joint k-th neighbour distance before the strict
    comparisons (squared distances when ``euclidean``).
    """
    rows = np.ascontiguousarray(np.hstack(blocks).T, dtype=np.float64)  # (D, n): one row per dimension
    edges = np.cumsum([0] + [b.shape[1] for b in blocks]).astype(np.int64)
    members = np.zeros((len(subsets), len(blocks)), dtype=np.bool_)
    for s, parts in enumerate(subsets):
        members[s, list(parts)] = True
    n = rows.shape[1]
    out = np.empty((len(subsets), n), dtype=np.int64)
    in_threads(_ksg_kernel, n, workers, rows, edges, members, k, euclidean, shrink, out)
    return list(out)


@njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _add_distances(dist, rows, first, stop, i, euclidean):
    """dist[j] <- dist[j] (+ or max) distance of row i to j over dimensions first..stop-1, four per pass."""
    n = dist.shape[0]
    a = first
    while a < stop:
        m = min(4, stop - a)
        r0 = rows[a]
        v0 = r0[i]
        if m == 4:
            r1, r2, r3 = rows[a + 1], rows[a + 2], rows[a + 3]
            v1, v2, v3 = r1[i], r2[i], r3[i]
            if euclidean:
                for j in range(n):
                    t0, t1, t2, t3 = r0[j] - v0, r1[j] - v1, r2[j] - v2, r3[j] - v3
                    dist[j] += (t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3)
            else:
                for j in range(n):
                    t0, t1, t2, t3 = abs(r0[j] - v0), abs(r1[j] - v1), abs(r2[j] - v2), abs(r3[j] - v3)
                    dist[j] = max(max(dist[j], max(t0, t1)), max(t2, t3))
        else:
            m = 1
            if euclidean:
                for j in range(n):
                    t0 = r0[j] - v0
                    dist[j] += t0 * t0
            else:
                for j in range(n):
                    dist[j] = max(dist[j], abs(r0[j] - v0))
        a += m


@njit(nogil=True, cache=True)
def _ksg_kernel(rows, edges, members, k, euclidean, shrink, out, start, stop):
    n_blocks = len(edges) - 1
    n = rows.shape[1]
    dist = np.empty((n_blocks, n))
    combined = np.empty(n)
    best = np.empty(k)
    every_block = np.ones(n_blocks, dtype=np.bool_)
    for i in range(start, stop):
        for b in range(n_blocks):
            dist[b, :] = 0.0
            _add_distances(dist[b], rows, edges[b], edges[b + 1], i, euclidean)
            dist[b, i] = np.inf  # a point is not its own neighbour
        _combine(combined, dist, every_block, euclidean)
        best[:] = np.inf
        for j in range(n):  # the k smallest joint distances, by insertion
            keep_smallest(best, combined[j])
        radius = best[k - 1] * shrink
        for s in range(members.shape[0]):
            if members[s].sum() == 1:  # one block: count on its distances, no copy
                source = dist[np.argmax(members[s])]
            else:
                _combine(combined, dist, members[s], euclidean)
                source = combined
            c = 0
            for j in range(n):
                c += source[j] < radius
            out[s, i] = c


@njit(nogil=True, cache=True)
def _combine(out, dist, use, euclidean):
    """out <- the distance over the blocks in ``use`` (sum of squares, or maximum)."""
    first = True
    for b in range(dist.shape[0]):
        if not use[b]:
            continue
        if first:
            out[:] = dist[b]
            first = False
        elif euclidean:
            out += dist[b]
        else:
            d = dist[b]
            for j in range(len(out)):
                if d[j] > out[j]:  # a compare and select: vectorised without fast-math flags
                    out[j] = d[j]
