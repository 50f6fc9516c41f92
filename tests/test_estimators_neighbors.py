"""Neighbour counts of the KSG estimators against a brute-force numpy count, and the radial map."""

import math
import time

import numpy as np
import pytest
import torch
from scipy.stats import chi, kstest

import entropy_ae.estimators._kernels as kernels
import entropy_ae.estimators._neighbors as neighbors
import entropy_ae.estimators._threads as _threads
from entropy_ae.estimators._grid_knn import SWEEP_KNN_MAX_N_K3
from entropy_ae.estimators._neighbors import count_within, ksg_counts
from entropy_ae.estimators._validation import radial_gaussianise

torch.set_num_threads(1)


def brute_counts(blocks, subsets, k, metric):
    """KSG counts by definition: strictly inside the joint k-NN radius (max-norm), inside or on it (Euclidean)."""
    def dist(parts):
        diff = np.concatenate([blocks[p] for p in parts], axis=1)
        diff = np.abs(diff[:, None, :] - diff[None, :, :])
        return diff.max(-1) if metric == "chebyshev" else np.sqrt((diff**2).sum(-1))

    joint = dist(range(len(blocks)))
    np.fill_diagonal(joint, np.inf)
    eps = np.sort(joint, axis=1)[:, k - 1]
    out = []
    for parts in subsets:
        sub = dist(parts)
        np.fill_diagonal(sub, np.inf)
        inside = sub < eps[:, None] if metric == "chebyshev" else sub <= eps[:, None]
        out.append(inside.sum(1))
    return out


def grid_blocks(rng, n=60):
    # Integer coordinates: distances tie exactly, many of them at the radius itself, which is where
    # strict and inclusive counting differ. Joint rows are distinct (no zero radius).
    cells = rng.choice(4**3, size=n, replace=False)
    grid = np.stack([cells // 16, (cells // 4) % 4, cells % 4], axis=1).astype(float)
    return [grid[:, :2], grid[:, 2:]]


@pytest.mark.parametrize("metric", ["chebyshev", "euclidean"])
# "trees": trees, grid and 1-D binary search; "compiled": the numba brute-force kernel (chosen
# automatically at high joint dimension, here forced); "torch": the GPU code, on the CPU.
@pytest.mark.parametrize("path", ["trees", "compiled", "torch"])
@pytest.mark.parametrize("data", ["ties", "continuous"])
@pytest.mark.parametrize("threads", [1, 2])  # 2: threaded trees and kernels
def test_ksg_counts_match_brute_force(metric, path, data, threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setattr(_threads, "_ITEMS_PER_THREAD", 2)  # several work items even for these few rows
    if path == "compiled":
        monkeypatch.setattr(neighbors, "KSG_TREE_MAX_DIM", 0)
    device = "cpu" if path == "torch" else None
    rng = np.random.default_rng(0)
    if data == "ties":
        blocks = grid_blocks(rng)
        subsets = [(0,), (1,)]
        # The test is only meaningful if some marginal distances sit exactly on a radius.
        joint = brute_counts(blocks, [(0, 1)], 3, metric)[0]
        assert (joint != 3).any(), "expected ties at the joint radius in the grid data"
    else:
        blocks = [rng.standard_normal((80, 2)), rng.standard_normal((80, 1)), rng.standard_normal((80, 2))]
        subsets = [(0, 2), (1, 2), (2,)]
    for k in (1, 3):
        got = ksg_counts(blocks, subsets, k, device, metric=metric)
        for g, want in zip(got, brute_counts(blocks, subsets, k, metric)):
            np.testing.assert_array_equal(g, want)


@pytest.mark.parametrize("euclidean", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_grid_counts_are_exact(euclidean, threads, monkeypatch):
    """The grid counts whole cells only where they lie inside the ball: exact at any scale, with ties."""
    monkeypatch.setattr(_threads, "_ITEMS_PER_THREAD", 2)
    rng = np.random.default_rng(5)
    for trial in range(16):
        d = 1 + trial % 4
        if trial % 2:  # integer points and radii: many distances exactly on a radius; radius 0 counts nothing
            x = rng.integers(0, 5, (300, d)).astype(float)
            radius = rng.integers(0, 3, 300).astype(float)
        else:  # continuous points at scales from 1e-3 to 1e3 and far from the origin
            scale = 10 ** rng.uniform(-3, 3)
            x = rng.standard_normal((300, d)) * scale + rng.choice([0.0, 1e3 * scale])
            radius = rng.uniform(0.05, 1.5, 300) * scale
        diff = x[:, None, :] - x[None, :, :]
        dist = np.sqrt((diff**2).sum(-1)) if euclidean else np.abs(diff).max(-1)
        np.fill_diagonal(dist, np.inf)
        want = (dist < radius[:, None]).sum(1)
        np.testing.assert_array_equal(kernels.grid_counts(x, radius, euclidean, threads), want)


@pytest.mark.parametrize("metric", ["chebyshev", "euclidean"])
@pytest.mark.parametrize("threads", [1, 2])
def test_count_within_matches_numpy_in_every_dimension(metric, threads, monkeypatch):
    """1-D binary search, the grid (to 4-D Euclidean, 7-D max-norm) and scipy's tree beyond: same counts."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    rng = np.random.default_rng(4)
    for d in (1, 2, 4, 5, 7, 8):
        x = rng.standard_normal((400, d))
        radius = rng.uniform(0.3, 1.5, 400) * math.sqrt(d if metric == "euclidean" else 1)
        diff = x[:, None, :] - x[None, :, :]
        dist = np.sqrt((diff**2).sum(-1)) if metric == "euclidean" else np.abs(diff).max(-1)
        np.fill_diagonal(dist, np.inf)
        want = (dist < radius[:, None] * (1 - 1e-9)).sum(1)
        np.testing.assert_array_equal(count_within(x, radius, metric), want, err_msg=f"d = {d}")


def test_ksg_counts_rejects_unknown_metric():
    with pytest.raises(ValueError, match="metric"):
        ksg_counts([np.zeros((5, 1)), np.ones((5, 1))], [(0,)], 1, metric="manhattan")


def test_radial_gaussianise_keeps_directions_and_order_of_radii():
    rng = np.random.default_rng(1)
    # Whitened Student-t (nu = 2) in 4-D: a heavy-tailed scale mixture of Gaussians.
    x = rng.standard_normal((3000, 4)) * np.sqrt(2 / rng.chisquare(2, 3000))[:, None]
    z = radial_gaussianise(x)
    r_x, r_z = np.linalg.norm(x, axis=1), np.linalg.norm(z, axis=1)
    np.testing.assert_allclose(z / r_z[:, None], x / r_x[:, None], atol=1e-12)   # same directions
    assert (np.diff(r_z[np.argsort(r_x)]) > 0).all()                               # radii keep their order
    # The new radii are chi(4) quantiles of the ranks: a KS test cannot tell them from chi(4)
    # (the p-value of an exact grid of quantiles is ~1; a wrong d or scale gives p < 1e-6).
    assert kstest(r_z, chi(4).cdf).pvalue > 0.5
    assert kstest(r_x, chi(4).cdf).pvalue < 1e-6
    assert math.isclose(np.cov(z, rowvar=False).trace(), 4.0, rel_tol=0.1)        # E|z|^2 = d


@pytest.mark.parametrize("workers", [1, 2])
def test_threaded_kernels_stop_at_the_first_error(workers):
    """An error (or Ctrl-C) in one item stops the work: items not yet started are dropped, not run."""
    started = []

    def kernel(start, stop):
        started.append(start)
        time.sleep(0.01)
        if start == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _threads.in_threads(kernel, 64 * _threads._MAX_ROWS_PER_ITEM, workers)
    # Without the cancel all 64 items would run; a busy machine may let the other thread start a few more.
    assert 1 <= len(started) < 32, f"{len(started)} of 64 items ran despite the interrupt"


@pytest.mark.parametrize("workers", [1, 2])
def test_threaded_kernels_cover_every_row_once_in_short_items(workers):
    spans = []
    _threads.in_threads(lambda start, stop: spans.append((start, stop)), 10_000, workers)
    rows = np.concatenate([np.arange(a, b) for a, b in sorted(spans)])
    np.testing.assert_array_equal(rows, np.arange(10_000))
    assert max(b - a for a, b in spans) <= _threads._MAX_ROWS_PER_ITEM  # Ctrl-C is checked between items


EUCLIDEAN_MAX, MAX_NORM_MAX = neighbors.KSG_BRUTE_MAX_N, neighbors.KSG_BRUTE_MAX_N_MAX_NORM


@pytest.mark.parametrize("n, joint_dim, metric, want", [
    (60_000, 8, "chebyshev", "trees"), (49_999, 10, "chebyshev", "compiled"), (50_000, 10, "chebyshev", "trees"),
    (60_000, 10, "chebyshev", "trees"), (60_000, 14, "chebyshev", "compiled"),
    *[(MAX_NORM_MAX[d] + step, d, "chebyshev", want)
      for d in (4, 6, 8) for step, want in ((0, "compiled"), (1, "trees"))],
    *[(EUCLIDEAN_MAX[d] + step, d, "euclidean", want)
      for d in (4, 8) for step, want in ((0, "compiled"), (1, "trees"))],
    (1_000, 2, "chebyshev", "sweep"), (SWEEP_KNN_MAX_N_K3 - 1, 2, "chebyshev", "sweep"),
    (SWEEP_KNN_MAX_N_K3, 2, "chebyshev", "grid")])
def test_ksg_counts_choose_trees_or_compiled_by_dimension_and_size(n, joint_dim, metric, want, monkeypatch):
    """The compiled brute force grows as n^2: above 8 joint dimensions it is chosen only below KSG_LARGE_N,
    from 4 on for small n (KSG_BRUTE_MAX_N, KSG_BRUTE_MAX_N_MAX_NORM); the 2-D joint k-NN sweeps below
    SWEEP_KNN_MAX_N_K3 (k = 3) and takes the grid from there on."""
    used = []
    monkeypatch.setattr(neighbors, "grid_knn", lambda *a: used.append("grid") or np.ones((n, 3)))
    monkeypatch.setattr(neighbors, "sweep_knn", lambda *a: used.append("sweep") or np.ones((n, 3)))
    monkeypatch.setattr(neighbors, "ksg_counts_brute", lambda *a: used.append("compiled") or [np.zeros(n)] * 2)
    monkeypatch.setattr(neighbors, "mi_counts_brute", lambda *a: used.append("compiled") or [np.zeros(n)] * 2)
    monkeypatch.setattr(neighbors, "knn_distances", lambda *a: used.append("trees") or np.ones((n, 3)))
    monkeypatch.setattr(neighbors, "count_within", lambda *a: np.zeros(n))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    half = joint_dim // 2
    blocks = [np.zeros((n, half)), np.zeros((n, joint_dim - half))]
    ksg_counts(blocks, [(0,), (1,)], 3, metric=metric)
    assert used == [want]
