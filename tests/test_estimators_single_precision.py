"""The single-precision brute force of the MI counts (``_mi_brute``) against exact double-precision counts.

Float32 distances differ from float64 ones by about 1e-7 relative, so a count
may differ only where a point lies within that of the radius; everything else
must agree exactly, and the k joint neighbours must be counted (BI-KSG) or the
one on the box excluded (KSG) whatever the rounding.
"""

import numpy as np
import pytest
import torch

from entropy_ae.estimators import _mi_brute
from entropy_ae.estimators._mi_brute import mi_counts_brute

torch.set_num_threads(1)

#: A float32 distance is within this relative error of the float64 one here (normal scores of order 1,
#: at most 64 squared terms summed: about 70 * 2^-24 = 4e-6); a count may change only for a point closer
#: to the radius than this.
ROUNDING = 1e-5


def exact_counts(x, y, k, euclidean):
    """The KSG counts from the definition, in float64, with each point's distances to the radius."""
    def dist(a):
        diff = a[:, None, :] - a[None, :, :]
        return (diff**2).sum(-1) if euclidean else np.abs(diff).max(-1)

    dx, dy = dist(x), dist(y)
    joint = dx + dy if euclidean else np.maximum(dx, dy)
    np.fill_diagonal(joint, np.inf)
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    eps = np.partition(joint, k - 1, axis=1)[:, k - 1]
    if euclidean:
        counts = [(d <= eps[:, None]).sum(1) for d in (dx, dy)]
    else:
        counts = [(d < eps[:, None]).sum(1) for d in (dx, dy)]
    near = [(np.abs(d - eps[:, None]) <= ROUNDING * eps[:, None]).any(1) for d in (dx, dy)]
    return counts, near


def check_against_exact(x, y, k, euclidean, workers=1):
    got = mi_counts_brute(x, y, k, euclidean, workers)
    want, near = exact_counts(x, y, k, euclidean)
    for g, w, close in zip(got, want, near):
        differ = g != w
        assert (~differ | close).all(), "a count differs where no point is within rounding of the radius"
        assert np.abs(g - w).max(initial=0) <= 1
    return got


@pytest.mark.parametrize("euclidean", [True, False])
@pytest.mark.parametrize("dims, n", [((4, 4), 700), ((3, 5), 333), ((1, 7), 257), ((16, 16), 300),
                                     ((1, 1), 64), ((2, 6), 17)])
def test_counts_equal_exact_counts_up_to_rounding(euclidean, dims, n):
    rng = np.random.default_rng(sum(dims) + n)
    x = rng.standard_normal((n, dims[0]))
    y = rng.standard_normal((n, dims[1]))
    y[:, :1] += 0.8 * x[:, :1]
    check_against_exact(x, y, 3, euclidean)


def test_neighbours_are_counted_whatever_the_rounding():
    # Repeated y values: a joint neighbour with dy = 0 sits exactly on the sphere in x (dx = eps). BI-KSG
    # counts it, so every count is at least k; KSG excludes it from the x count.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 2))
    y = np.repeat(rng.standard_normal((50, 2)), 4, axis=0)
    for k in (1, 3, 5):
        n_x, n_y = check_against_exact(x, y, k, euclidean=True)
        assert n_x.min() >= k and n_y.min() >= k
        check_against_exact(x, y, k, euclidean=False)


@pytest.mark.parametrize("n", [4, 5, 15, 16, 17, 33, 1000])
def test_sizes_around_the_padding_and_threads(n):
    # Rows are padded to a multiple of 16 with +inf; the padding must never be a neighbour or counted.
    rng = np.random.default_rng(n)
    x, y = rng.standard_normal((n, 3)), rng.standard_normal((n, 2))
    one = check_against_exact(x, y, 3, True, workers=1)
    two = mi_counts_brute(x, y, 3, True, 2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)  # threads split the rows only


@pytest.mark.parametrize("k", [1, 3, 7])
def test_kth_smallest_joint_distance(k):
    rng = np.random.default_rng(k)
    # Multiples of the padding (17 sets: one group of minima and one of a single set, for k = 3); the last two
    # find the sets' minima by halving and in one pass.
    sets = _mi_brute._ONE_PASS_MIN_SETS
    pad = _mi_brute._PAD
    for width, planted in [(w, p) for w in (pad, 2 * pad, 10 * pad, 1024, 17 * pad, (sets - 1) * pad, (sets + 3) * pad)
                           for p in (False, True)]:
        dx = rng.random(width).astype(np.float32)
        dy = np.round(rng.random(width), 1).astype(np.float32)  # ties in the joint distance
        dx[rng.integers(0, width, 3)] = np.inf
        if planted:  # the smallest entries all in one set (and one group of sets), the rest far larger
            dx += 10
            dx[rng.integers(0, width // pad) + (width // pad) * rng.choice(pad, 4, replace=False)] = [3, 1, 2, 0.5]
        minima = np.empty(width // 2, np.float32)
        best = np.empty(k, np.float32)
        for euclidean in (True, False):
            joint = dx + dy if euclidean else np.maximum(dx, dy)
            got = _mi_brute._kth_smallest(dx, dy, euclidean, minima, best)
            assert got == np.sort(joint)[k - 1]


@pytest.mark.parametrize("euclidean", [True, False])
def test_float32_counts_equal_int64_counts(euclidean):
    """The counts are float32 sums of ones (vectorised): the same numbers as int64 sums, ties on the radius
    included, and +inf (the point itself, the padding) never counted."""
    rng = np.random.default_rng(5)
    for n in (1, 7, 100, 4099):
        dx = rng.integers(0, 50, n).astype(np.float32)  # many entries exactly on any radius
        dy = rng.standard_normal(n).astype(np.float32) ** 2
        dx[::13] = np.inf
        for radius in (np.float32(0.0), np.float32(17.0), np.float32(0.5), np.float32(np.inf)):
            got = _mi_brute._counts(dx, dy, n, radius, euclidean)
            want = _mi_brute._wide_counts(dx, dy, n, radius, euclidean)
            inside = (lambda d: int((d <= radius).sum())) if euclidean else (lambda d: int((d < radius).sum()))
            assert got == want == (inside(dx), inside(dy))
