"""The KSG counts of two variables by brute force in single precision (numba, threaded).

For every row i: its distances to every point in x and in y, the k-th smallest
joint distance eps_i, and the counts n_x(i), n_y(i) within eps_i; nothing
of size n x n is stored. It serves mutual information wherever the compiled
brute force is chosen (``_neighbors.ksg_counts``).

Why single precision, and why the counts stay exact. The prepared variables
are normal scores of order 1, so float32 keeps their distances to about 1e-7
relative, far below the spacing of distinct samples. Every comparison is made
on the same float32 numbers: the joint distance is ``dx + dy`` (squared
Euclidean) or ``max(dx, dy)``, so a point's marginal distance never exceeds
its joint one, and the k joint neighbours are counted ("inside or on the
sphere", BI-KSG) or the one on the box excluded ("strictly inside", KSG)
exactly, without the relative margins the double-precision back ends need.
Against those back ends only a point within rounding of the radius can be
counted differently (measured: about 1 count in 10^4 differs by one).

Speed: two rows at a time share each load of a column; the distance loops, the
k-th smallest (vertical minima over sets of 32 entries of the row, then only
the few sets that can hold it) and the counts are written so that the compiler
vectorises them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._kernels import keep_smallest, three_smallest
from ._threads import in_threads

#: The row buffers are padded to a multiple of this many entries (+inf): the k-th smallest joint distance
#: is found from the minima of len / _PAD sets of _PAD entries each, {s + q * len / _PAD} (32: the fastest
#: of sets of 8 to 128 at 4 vs 4 dimensions, n = 1e4 and 3e4) ...
_PAD = 32
#: ... computed in one pass over the row from this many sets on, by halving the row below
#: (``benchmarks/neighbors.py minima``; timings: the estimators benchmark page, "Timings behind the tuned
#: constants").
_ONE_PASS_MIN_SETS = 256
#: For k = 3 the set minima are searched through the minima of groups of this many (``_kth_from_minima_3``):
#: the scalar scan of three smallest is a chain of dependent min/max, so fewer entries in it is faster.
_GROUP = 16
# Vectorisable arithmetic: no NaN or inf reaches the distance loops (inputs are validated as finite), the
# sign of a zero difference does not matter, and a * b + c may be fused.
_FASTMATH = {"nnan", "ninf", "nsz", "contract"}
# ... and for the loops over joint distances, which meet +inf (the point itself, the padding): no NaN only.
_FASTMATH_INF = {"nnan", "nsz"}
# ... and for the counts, whose sums of ones may be reordered (exact, see ``_counts``).
_FASTMATH_COUNTS = {"nnan", "nsz", "reassoc"}
#: Rows up to this length are counted in float32 (``_counts``): float32 holds every integer up to 2^24.
_FLOAT_COUNT_MAX = 2**24


def mi_counts_brute(x: np.ndarray, y: np.ndarray, k: int, euclidean: bool, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """n_x, n_y: for every row, the number of other rows within its joint k-NN distance in x and in y.

    Euclidean (BI-KSG): inside or on the sphere of the joint k-th neighbour
    (each count is at least k). Max-norm (KSG): strictly inside it.
    """
    n = len(x)
    width = -(-n // _PAD) * _PAD
    rows = np.zeros((x.shape[1] + y.shape[1], width), dtype=np.float32)  # one row per dimension
    rows[:x.shape[1], :n] = x.T
    rows[x.shape[1]:, :n] = y.T
    out = np.empty((2, n), dtype=np.int64)
    in_threads(_kernel, n, workers, rows, x.shape[1], k, euclidean, out)
    return out[0], out[1]


@njit(nogil=True, cache=True)
def _kernel(rows, split, k, euclidean, out, start, stop):
    n = out.shape[1]
    width = rows.shape[1]
    inf = np.float32(np.inf)
    dx = np.full((2, width), inf, np.float32)  # the padding stays +inf: never a neighbour, never counted
    dy = np.full((2, width), inf, np.float32)
    minima = np.empty(width // 2, np.float32)
    best = np.empty(k, np.float32)
    for i0 in range(start, stop, 2):
        i1 = min(i0 + 1, stop - 1)
        _block_distances(dx[0], dx[1], rows, 0, split, i0, i1, n, euclidean)
        _block_distances(dy[0], dy[1], rows, split, rows.shape[0], i0, i1, n, euclidean)
        for r in range(2 if i1 > i0 else 1):
            i = i0 + r
            ox, oy = dx[r], dy[r]
            ox[i] = inf  # a point is not its own neighbour
            oy[i] = inf
            radius = _kth_smallest(ox, oy, euclidean, minima, best)
            out[0, i], out[1, i] = _counts(ox, oy, n, radius, euclidean)


@njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _block_distances(o0, o1, rows, first, stop, i0, i1, n, euclidean):
    """o0[j], o1[j] <- distance (squared if Euclidean) of rows i0 and i1 to every j < n over dimensions
    first..stop-1, four dimensions per pass."""
    a = first
    while a < stop:
        fresh = a == first
        if stop - a >= 4:
            _four(o0, o1, rows[a], rows[a + 1], rows[a + 2], rows[a + 3], i0, i1, n, euclidean, fresh)
            a += 4
        else:
            _one(o0, o1, rows[a], i0, i1, n, euclidean, fresh)
            a += 1


@njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _four(o0, o1, r0, r1, r2, r3, i0, i1, n, euclidean, fresh):
    p0, p1, p2, p3 = r0[i0], r1[i0], r2[i0], r3[i0]
    q0, q1, q2, q3 = r0[i1], r1[i1], r2[i1], r3[i1]
    if euclidean:
        for j in range(n):
            v0, v1, v2, v3 = r0[j], r1[j], r2[j], r3[j]
            t0, t1, t2, t3 = v0 - p0, v1 - p1, v2 - p2, v3 - p3
            u0, u1, u2, u3 = v0 - q0, v1 - q1, v2 - q2, v3 - q3
            s0 = (t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3)
            s1 = (u0 * u0 + u1 * u1) + (u2 * u2 + u3 * u3)
            o0[j] = s0 if fresh else o0[j] + s0
            o1[j] = s1 if fresh else o1[j] + s1
    else:
        for j in range(n):
            v0, v1, v2, v3 = r0[j], r1[j], r2[j], r3[j]
            s0 = max(max(abs(v0 - p0), abs(v1 - p1)), max(abs(v2 - p2), abs(v3 - p3)))
            s1 = max(max(abs(v0 - q0), abs(v1 - q1)), max(abs(v2 - q2), abs(v3 - q3)))
            o0[j] = s0 if fresh else max(o0[j], s0)
            o1[j] = s1 if fresh else max(o1[j], s1)


@njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _one(o0, o1, r0, i0, i1, n, euclidean, fresh):
    p0, q0 = r0[i0], r0[i1]
    if euclidean:
        for j in range(n):
            t0, u0 = r0[j] - p0, r0[j] - q0
            o0[j] = t0 * t0 if fresh else o0[j] + t0 * t0
            o1[j] = u0 * u0 if fresh else o1[j] + u0 * u0
    else:
        for j in range(n):
            t0, u0 = abs(r0[j] - p0), abs(r0[j] - q0)
            o0[j] = t0 if fresh else max(o0[j], t0)
            o1[j] = u0 if fresh else max(o1[j], u0)


@njit(nogil=True, cache=True, fastmath=_FASTMATH_INF, inline="always")
def _joint(dx, dy, j, euclidean):
    return dx[j] + dy[j] if euclidean else max(dx[j], dy[j])


@njit(nogil=True, cache=True, fastmath=_FASTMATH_INF)
def _halve_joint(dx, dy, euclidean, target, half):
    """target[j] <- min of the joint distances at j and j + half."""
    if euclidean:
        for j in range(half):
            a, b = dx[j] + dy[j], dx[j + half] + dy[j + half]
            target[j] = a if a < b else b
    else:
        for j in range(half):
            a, b = max(dx[j], dy[j]), max(dx[j + half], dy[j + half])
            target[j] = a if a < b else b


@njit(nogil=True, cache=True, fastmath=_FASTMATH_INF)
def _halve(source, half):
    for j in range(half):
        a, b = source[j], source[j + half]
        source[j] = a if a < b else b


@njit(nogil=True, cache=True)
def _set_minima(dx, dy, euclidean, minima):
    """minima[s] <- the minimum joint distance over the set {s + q * sets}, q < _PAD, s < sets = len / _PAD.

    ``minima`` has length len / 2: short rows are halved into it, longer ones take one pass.
    """
    if len(dx) // _PAD < _ONE_PASS_MIN_SETS:
        _halved_minima(dx, dy, euclidean, minima)
    else:
        _one_pass_minima(dx, dy, euclidean, minima)


@njit(nogil=True, cache=True)
def _halved_minima(dx, dy, euclidean, minima):
    """:func:`_set_minima` by halving the row log2(_PAD) times (short loops stay long)."""
    sets = len(dx) // _PAD
    half = len(dx) // 2
    _halve_joint(dx, dy, euclidean, minima, half)
    while half > sets:
        half //= 2
        _halve(minima, half)


@njit(nogil=True, cache=True, fastmath=_FASTMATH_INF)
def _one_pass_minima(dx, dy, euclidean, minima):
    """:func:`_set_minima` as running minima over the _PAD blocks of the row: one read of it, no writes
    beyond the minima."""
    sets = len(dx) // _PAD
    minima[:sets] = np.inf
    for block in range(_PAD):
        b = block * sets
        if euclidean:
            for s in range(sets):
                v = dx[b + s] + dy[b + s]
                minima[s] = v if v < minima[s] else minima[s]
        else:
            for s in range(sets):
                v = max(dx[b + s], dy[b + s])
                minima[s] = v if v < minima[s] else minima[s]


@njit(nogil=True, cache=True)
def _kth_smallest(dx, dy, euclidean, minima, best):
    """The len(best)-th smallest joint distance (dx, dy of a length that is a multiple of _PAD), exactly.

    ``minima`` is scratch space of length len(dx) // 2.
    """
    _set_minima(dx, dy, euclidean, minima)
    sets = len(dx) // _PAD
    if len(best) == 3:
        return _kth_from_minima_3(dx, dy, euclidean, minima[:sets], minima[sets:])
    return _kth_from_minima(dx, dy, euclidean, minima[:sets], best)


@njit(nogil=True, cache=True)
def _kth_from_minima(dx, dy, euclidean, minima, best):
    """The len(best)-th smallest joint distance, given the minima of its sets (:func:`_set_minima`).

    The k smallest minima are k entries, so the k-th smallest entry is at most
    the k-th smallest minimum, and every entry up to it lies in a set whose
    minimum is at most that too: only those sets are searched.
    """
    sets = len(minima)
    best[:] = np.inf
    for s in range(sets):
        keep_smallest(best, minima[s])
    limit = best[-1]
    best[:] = np.inf
    for s in range(sets):
        if minima[s] <= limit:
            for q in range(_PAD):
                v = _joint(dx, dy, s + q * sets, euclidean)
                if v <= limit:  # no larger entry can be among the k smallest
                    keep_smallest(best, v)
    return best[-1]


@njit(nogil=True, cache=True)
def _kth_from_minima_3(dx, dy, euclidean, minima, groups):
    """:func:`_kth_from_minima` for k = 3, the three smallest held in scalars (``three_smallest``), with
    the minima searched in two levels: ``groups`` (scratch, at least len(minima) / _GROUP long) takes the
    minimum of every _GROUP consecutive set minima.

    The same argument one level up: the third smallest group minimum bounds the
    third smallest set minimum, and every set minimum up to it lies in a group
    whose minimum is at most that too.
    """
    sets = len(minima)
    n_groups = -(-sets // _GROUP)
    inf = np.float32(np.inf)
    for g in range(n_groups):
        low = inf
        for s in range(g * _GROUP, min(sets, (g + 1) * _GROUP)):
            low = minima[s] if minima[s] < low else low
        groups[g] = low
    b0, b1, b2 = inf, inf, inf
    for g in range(n_groups):
        b0, b1, b2 = three_smallest(b0, b1, b2, groups[g])
    bound = b2
    b0, b1, b2 = inf, inf, inf
    for g in range(n_groups):
        if groups[g] <= bound:
            for s in range(g * _GROUP, min(sets, (g + 1) * _GROUP)):
                b0, b1, b2 = three_smallest(b0, b1, b2, minima[s])
    limit = b2
    b0, b1, b2 = inf, inf, inf
    for g in range(n_groups):
        if groups[g] <= limit:
            for s in range(g * _GROUP, min(sets, (g + 1) * _GROUP)):
                if minima[s] <= limit:
                    for q in range(_PAD):
                        b0, b1, b2 = three_smallest(b0, b1, b2, _joint(dx, dy, s + q * sets, euclidean))
    return b2


@njit(nogil=True, cache=True, fastmath=_FASTMATH_COUNTS)
def _counts(dx, dy, n, radius, euclidean):
    """The entries of dx and of dy within ``radius`` (inside or on it if Euclidean, else strictly inside).

    Summed as float32 ones and zeros, which the compiler vectorises eight to a
    register (int64 sums take four). Every partial sum is an integer of at most
    n, and float32 holds every integer up to 2^24, so the sums are exact in any
    order; longer rows take :func:`_wide_counts`.
    """
    if n > _FLOAT_COUNT_MAX:
        return _wide_counts(dx, dy, n, radius, euclidean)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    count_x = np.float32(0.0)
    count_y = np.float32(0.0)
    if euclidean:
        for j in range(n):
            count_x += one if dx[j] <= radius else zero
            count_y += one if dy[j] <= radius else zero
    else:
        for j in range(n):
            count_x += one if dx[j] < radius else zero
            count_y += one if dy[j] < radius else zero
    return int(count_x), int(count_y)


@njit(nogil=True, cache=True, fastmath=_FASTMATH_INF)
def _wide_counts(dx, dy, n, radius, euclidean):
    """:func:`_counts` with int64 sums, for any n."""
    count_x = 0
    count_y = 0
    if euclidean:
        for j in range(n):
            count_x += dx[j] <= radius
            count_y += dy[j] <= radius
    else:
        for j in range(n):
            count_x += dx[j] < radius
            count_y += dy[j] < radius
    return count_x, count_y
