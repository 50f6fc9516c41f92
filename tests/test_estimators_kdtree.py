"""The compiled kd-tree of the k-NN searches (``_kdtree``): exact against brute force and scipy's tree."""

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from entropy_ae.estimators._kdtree import LEAF_SIZE, kdtree_knn

torch.set_num_threads(1)


def brute_force(x, k, euclidean):
    diff = np.abs(x[:, None, :] - x[None, :, :])
    dist = np.sqrt((diff ** 2).sum(-1)) if euclidean else diff.max(-1)
    np.fill_diagonal(dist, np.inf)
    return np.sort(dist, axis=1)[:, :k]


def datasets(n, d, rng):
    return {
        "gaussian": rng.standard_normal((n, d)),
        "clusters at different scales": np.vstack([rng.standard_normal((n // 2, d)) * 1e-3,
                                                   rng.standard_normal((n - n // 2, d)) * 1e3 + 5.0]),
        "quantised (ties in every coordinate)": np.round(rng.standard_normal((n, d)) * 2),
        "one long axis": rng.standard_normal((n, d)) * np.logspace(0, 6, d),
    }


@pytest.mark.parametrize("d", [1, 3, 8, 20])
@pytest.mark.parametrize("euclidean", [True, False])
def test_kdtree_equals_brute_force(d, euclidean):
    rng = np.random.default_rng(d)
    for name, x in datasets(600, d, rng).items():
        got = kdtree_knn(x, 4, euclidean, 1)
        np.testing.assert_allclose(got, brute_force(x, 4, euclidean), rtol=1e-13, atol=0, err_msg=name)


@pytest.mark.parametrize("euclidean", [True, False])
def test_kdtree_equals_scipy_at_larger_n_in_threads(euclidean):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((20_000, 5)) @ rng.standard_normal((5, 5))
    tree = cKDTree(x)
    want = tree.query(x, k=4, p=2.0 if euclidean else np.inf)[0][:, 1:]
    one = kdtree_knn(x, 3, euclidean, 1)
    np.testing.assert_allclose(one, want, rtol=1e-13, atol=0)
    np.testing.assert_array_equal(kdtree_knn(x, 3, euclidean, 2), one)  # threads change nothing


def test_kdtree_duplicates_and_identical_points():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 3))
    doubled = np.vstack([x, x])
    got = kdtree_knn(doubled, 2, True, 1)
    assert (got[:, 0] == 0).all()  # each point's copy, never the point itself
    np.testing.assert_allclose(got[:, 1], np.tile(brute_force(x, 1, True)[:, 0], 2), rtol=1e-13)
    same = np.ones((5 * LEAF_SIZE, 2))  # one leaf that cannot be split
    np.testing.assert_array_equal(kdtree_knn(same, 3, False, 1), np.zeros((5 * LEAF_SIZE, 3)))
