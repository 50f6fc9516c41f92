"""One column against one: the default MI of two tie-free columns on their ranks, with two sorts in all.

For one column without ties every preparation step of ``mutual_information``
(normal scores, whitening, the radial map) is a fixed increasing function of
the rank, so the prepared column is one vector per sample size read at the
ranks (:func:`scores_at`; cached per n). The one sort that gives the ranks
then also serves the neighbour searches: the joint 2-D points come sorted by
their first coordinate (the sorted sweep, or the grid, of :mod:`._grid_knn`),
and both sorted marginals are the same vector, so each 1-D count is a search
that starts at the point's own rank (:func:`one_vs_one_counts`). The counts
are those of the general path (:func:`._neighbors.ksg_counts`) bit for bit;
only the sorts, copies and covariance steps of that path are saved.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from ._grid_knn import grid_knn, sweep_kernel, sweeps
from ._neighbors import EUCLIDEAN_INFLATE, STRICT_SHRINK
from ._threads import in_threads
from ._validation import _normal_scores, radial_gaussianise, whiten

#: Below this many rows the searches run in the calling thread: a second thread did not pay on the project's
#: 2-core VM (timings: the estimators benchmark page, "Timings behind the tuned constants").
THREADS_MIN_N = 50_000


def tie_free_order(column: np.ndarray) -> np.ndarray | None:
    """The argsort of a 1-D column, or None when it holds a tie (the general path handles ties)."""
    order = np.argsort(column, kind="stable")
    if (np.diff(column[order]) == 0).any():
        return None
    return order


@functools.lru_cache(maxsize=6)  # three forms of two sample sizes: 48 MB at n = 1e6
def _form(n: int, form: str) -> np.ndarray | None:
    """The prepared column in rank order, read-only; None if the shaped form is not strictly increasing."""
    if form == "scores":
        vector = _normal_scores(n)
    elif form == "whitened":
        vector = whiten(_normal_scores(n)[:, None], subspace=True)[0][:, 0]
    else:
        vector = radial_gaussianise(_form(n, "whitened")[:, None])[:, 0]
        if not (np.diff(vector) > 0).all():
            return None  # never seen; the callers then take the general path
    vector.flags.writeable = False
    return vector


def scores_at(order: np.ndarray, form: str) -> np.ndarray | None:
    """A tie-free column prepared as ``form``, from its argsort ``order``, shape (n, 1).

    ``"scores"``: normal scores (``copula_normal``); ``"whitened"``: then centred
    and scaled to unit variance (``whiten``); ``"shaped"``: then radially
    Gaussianised (``radial_gaussianise``). The same numbers as those functions
    give on the column, since each of them is a function of the ranks here.
    """
    vector = _form(len(order), form)
    if vector is None:
        return None
    out = np.empty((len(order), 1))
    out[order, 0] = vector
    return out


def one_vs_one_counts(order_x: np.ndarray, order_y: np.ndarray, k: int, workers: int):
    """BI-KSG counts (n_x, n_y) of two tie-free columns from their argsorts, in the rows' order.

    The same numbers as ``ksg_counts`` on the shaped columns with ``metric="euclidean"``;
    None when the shaped form is unavailable (the caller then takes the general path).
    """
    n = len(order_x)
    workers = workers if n >= THREADS_MIN_N else 1
    s = _form(n, "shaped")
    if s is None:
        return None
    rank_y = np.empty(n, dtype=np.int64)
    rank_y[order_y] = np.arange(n)
    pos_y = rank_y[order_x]  # the y rank of the point at each x position
    points = np.ascontiguousarray(np.column_stack([s, s[pos_y]]))  # sorted by x, as the sweep needs
    if sweeps(n, k):
        found = np.empty((n, k))
        in_threads(sweep_kernel(k), n, workers, points, k, True, found)
        eps = np.sqrt(found[:, -1])
    else:
        eps = grid_knn(points, k, True, workers)[:, -1]
    radius = (eps * EUCLIDEAN_INFLATE) * STRICT_SHRINK
    if not radius.min() > 0:
        return None  # only for coincident points, which tie-free columns cannot have
    counts = np.empty((2, n), dtype=np.int64)
    in_threads(_sorted_counts, n, workers, s, np.arange(n), pos_y, radius, counts)
    out = np.empty((2, n), dtype=np.int64)
    out[:, order_x] = counts
    return out[0], out[1]


@njit(nogil=True, cache=True)
def _sorted_counts(s, pos_x, pos_y, radius, out, start, stop):
    """out[0, i], out[1, i]: points of ``s`` strictly within radius[i] of s[pos_x[i]], s[pos_y[i]], less one.

    numpy's ``searchsorted(s, v + r, "left") - searchsorted(s, v - r, "right") - 1``,
    with each search galloping out from the point's own position.
    """
    for i in range(start, stop):
        r = radius[i]
        out[0, i] = _count_around(s, pos_x[i], r)
        out[1, i] = _count_around(s, pos_y[i], r)


@njit(nogil=True, cache=True)
def _count_around(s, p, r):
    n = len(s)
    v = s[p]
    upper, lower = v + r, v - r
    # First index a with s[a] >= upper; s[p] = v < upper when r > 0 (the callers guarantee it).
    lo, step = p, 1
    while lo + step < n and s[lo + step] < upper:
        lo += step
        step *= 2
    a, b = lo + 1, min(lo + step, n)
    while a < b:
        m = (a + b) // 2
        if s[m] < upper:
            a = m + 1
        else:
            b = m
    right = a
    # First index a with s[a] > lower; s[p] > lower.
    hi, step = p, 1
    while hi - step >= 0 and s[hi - step] > lower:
        hi -= step
        step *= 2
    a, b = max(hi - step, -1) + 1, hi
    while a < b:
        m = (a + b) // 2
        if s[m] > lower:
            b = m
        else:
            a = m + 1
    return right - a - 1
