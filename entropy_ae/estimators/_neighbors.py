"""Nearest-neighbour searches shared by the k-NN entropy and KSG estimators.

Three back ends give the same numbers (up to floating-point rounding of the
distances):

* trees at low dimension on the CPU: a compiled kd-tree for k-NN
  (:func:`._kdtree.kdtree_knn`; in 2-D a grid or a sorted sweep,
  :mod:`._grid_knn`), and for counts a uniform grid in up to 4 (Euclidean) or 7
  (max-norm) dimensions (:func:`._kernels.grid_counts`), scipy's ``cKDTree``
  above and binary search in 1-D;
* compiled brute force for KSG counts at higher joint dimension on the CPU
  (:func:`._kernels.ksg_counts_brute`): per row, one pass gives the joint
  k-NN radius and every marginal count, nothing stored;
* brute force in torch, chunked so memory stays bounded: pairwise distances by
  matrix multiplication (Euclidean; wins beyond about 12 dimensions) or by
  ``torch.cdist(p=inf)``. It runs on the GPU when one is present. For KSG one
  pass over per-variable distance chunks gives the joint k-NN radius and every
  marginal count (:func:`ksg_counts`).

The compiled kernels release the GIL and run in threads, like scipy's queries;
nothing forks.

``device=None`` picks automatically; ``device="cpu"`` or ``"cuda"`` forces the
torch path (the tests use ``"cpu"`` to exercise the GPU code on a CPU).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from ._grid_knn import GRID_KNN_MAX_DIM, GRID_KNN_MIN_N, grid_knn, sweep_knn, sweeps
from ._kdtree import kdtree_knn
from ._kernels import GRID_MAX_DIM, GRID_MAX_DIM_MAX_NORM, grid_counts, ksg_counts_brute
from ._mi_brute import mi_counts_brute
from ._threads import workers

#: Above this dimension max-norm trees visit almost every leaf and brute force is faster.
TREE_MAX_DIM = 20
#: KSG counts by the compiled brute-force kernel above this joint dimension ...
KSG_TREE_MAX_DIM = 8
#: ... but the kernel's cost grows as n^2: from ``KSG_LARGE_N`` samples on, trees up to this joint
#: dimension.
KSG_TREE_MAX_DIM_LARGE_N = 12
KSG_LARGE_N = 50_000
#: Small samples take the compiled brute force at a joint dimension D of 4 to 8, up to this many points
#: (Euclidean balls, BI-KSG) ...: the measured crossover with the compiled kd-tree and the grid counts
#: (``benchmarks/neighbors.py crossover``, interpolated on log n). The MI brute force (``_mi_brute``) handles
#: four dimensions of a variable per pass, so its cost barely grows up to D = 8 ...
KSG_BRUTE_MAX_N = {4: 3_500, 5: 6_500, 6: 10_000, 7: 26_000, 8: 43_000}
#: ... and with max-norm boxes, whose grid counts are faster.
KSG_BRUTE_MAX_N_MAX_NORM = {4: 2_100, 5: 3_300, 6: 4_300, 7: 10_500, 8: 22_000}
#: On the automatic path the GPU only pays off for large inputs.
GPU_MIN_SAMPLES = 20_000
#: Euclidean k-NN by matrix products beats the tree from a lower dimension.
#: (Timings behind these constants: the estimators benchmark page, "Timings behind the tuned constants".)
EUCLIDEAN_TREE_MAX_DIM = 12
#: Elements of one chunk of the distance matrix (float64: 8 bytes each): 128 MiB on the
#: CPU, 1 GiB on a GPU (fewer, larger kernels; untested on a GPU so far).
_CHUNK_ELEMENTS = {"cpu": 2**24, "cuda": 2**27}

_P = {"euclidean": 2.0, "chebyshev": np.inf}
#: Counts are strict: every radius is shrunk by this factor first, so that the neighbour that defines it
#: (and exact ties with it) is excluded on every back end, whatever the rounding of its distance ...
STRICT_SHRINK = 1.0 - 1e-9
#: ... and Euclidean KSG radii are first widened by this one, which turns the strict count into "inside or
#: on the sphere" (BI-KSG) whatever the rounding of the distances.
EUCLIDEAN_INFLATE = 1.0 + 2e-9


def _torch_device(n: int, d: int, device: str | None, tree_max_dim: int = TREE_MAX_DIM) -> torch.device | None:
    """The torch device for the brute-force path, or None for the tree path."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available() and n >= GPU_MIN_SAMPLES:
        return torch.device("cuda")
    if d > tree_max_dim:
        return torch.device("cpu")
    return None


def _pairwise_chunks(x: np.ndarray, metric: str, device: torch.device):
    """Yield ``(start, stop, dist)`` for row chunks of the (n, n) distance matrix, self set to inf.

    Euclidean distances come squared (one pass fewer over the matrix); callers square radii.
    """
    xt = torch.as_tensor(x, dtype=torch.float64, device=device)
    n = xt.shape[0]
    step = max(1, _CHUNK_ELEMENTS.get(device.type, 2**24) // max(n, 1))
    sq = (xt * xt).sum(1) if metric == "euclidean" else None
    for start in range(0, n, step):
        stop = min(n, start + step)
        block = xt[start:stop]
        if metric == "euclidean":
            # |a-b|^2 = |a|^2 + |b|^2 - 2ab: one matrix product, the fast path at high d.
            dist = sq[start:stop, None] + sq[None, :] - 2.0 * (block @ xt.T)
        else:
            dist = torch.cdist(block, xt, p=float("inf"))
        rows = torch.arange(start, stop, device=device)
        dist[rows - start, rows] = float("inf")
        yield start, stop, dist


def _euclidean_knn_brute(x: np.ndarray, k: int, device: torch.device) -> np.ndarray:
    """Squared Euclidean distances to the k nearest other points by chunked matrix products."""
    xt = torch.as_tensor(x, dtype=torch.float64, device=device)
    n = xt.shape[0]
    step = max(1, _CHUNK_ELEMENTS.get(device.type, 2**24) // max(n, 1))
    sq = (xt * xt).sum(1)
    xt_t = xt.T.contiguous()
    # One buffer reused for every chunk: allocating a fresh (step, n) block each time costs
    # more in page faults than the matrix product itself.
    buf = torch.empty((step, n), dtype=torch.float64, device=device)
    out = torch.empty((n, k), dtype=torch.float64, device=device)
    for start in range(0, n, step):
        stop = min(n, start + step)
        dist = buf[: stop - start]
        # |a-b|^2 - |a|^2 = |b|^2 - 2ab: one fused matrix product; |a|^2 is added after the
        # selection, which does not change the order within a row.
        torch.addmm(sq[None, :].expand(stop - start, n), xt[start:stop], xt_t, beta=1.0, alpha=-2.0, out=dist)
        rows = torch.arange(stop - start, device=device)
        dist[rows, rows + start] = float("inf")
        out[start:stop] = torch.topk(dist, k, dim=1, largest=False).values + sq[start:stop, None]
    return out.cpu().numpy()


def knn_distances(x: np.ndarray, k: int, metric: str = "euclidean", device: str | None = None) -> np.ndarray:
    """Distances from every point to its 1st, ..., k-th nearest other point.

    Parameters
    ----------
    x : ndarray, shape (n, d)
    k : int
        Number of neighbours, ``k < n``.
    metric : {"euclidean", "chebyshev"}
    device : str or None
        None: trees at low dimension, torch at high dimension or on a GPU.

    Returns
    -------
    ndarray, shape (n, k), sorted ascending along axis 1.
    """
    n, d = x.shape
    dev = _torch_device(n, d, device, EUCLIDEAN_TREE_MAX_DIM if metric == "euclidean" else TREE_MAX_DIM)
    if dev is None:
        return kdtree_knn(x, k, metric == "euclidean", workers())
    if metric == "euclidean":
        return np.sqrt(np.maximum(_euclidean_knn_brute(x, k, dev), 0.0))
    out = np.empty((n, k))
    for start, stop, dist in _pairwise_chunks(x, metric, dev):
        out[start:stop] = torch.topk(dist, k, dim=1, largest=False).values.cpu().numpy()
    return out


def count_within(x: np.ndarray, radius: np.ndarray, metric: str = "chebyshev", device: str | None = None) -> np.ndarray:
    """For every point i, the number of other points j with ``dist(x_i, x_j) < radius[i]``.

    The inequality is strict, as KSG requires (the neighbour that defines the
    radius must not be counted).

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    n, d = x.shape
    dev = _torch_device(n, d, device)
    radius = radius * STRICT_SHRINK
    if dev is None and d == 1:
        # Exact and O(n log n): binary search on the sorted values, the queries in sorted order too
        # (numpy narrows each search from the previous one).
        order = np.argsort(x[:, 0])
        s, r = x[order, 0], radius[order]
        out = np.empty(n, dtype=np.int64)
        out[order] = np.searchsorted(s, s + r, side="left") - np.searchsorted(s, s - r, side="right") - 1
        return out
    if dev is None and d <= (GRID_MAX_DIM if metric == "euclidean" else GRID_MAX_DIM_MAX_NORM):
        return grid_counts(x, radius, metric == "euclidean", workers())
    if dev is None:
        # scipy's tree, its queries parallel over threads, in tree order as in knn_distances. Leaves of 64
        # points, not 16: this query visits every point in the ball anyway, and fewer, larger leaves mean
        # less traversal (n = 1e5, 4-D Euclidean, ~880 points per ball: 25 % faster; 128 is no better).
        tree = cKDTree(x, leafsize=64)
        order = tree.indices
        out = np.empty(n, dtype=np.int64)
        out[order] = tree.query_ball_point(x[order], radius[order], p=_P[metric], return_length=True,
                                           workers=workers())
        return out - 1
    r_all = torch.as_tensor(radius ** 2 if metric == "euclidean" else radius, dtype=torch.float64, device=dev)
    out = np.empty(n, dtype=np.int64)
    for start, stop, dist in _pairwise_chunks(x, metric, dev):
        out[start:stop] = (dist < r_all[start:stop, None]).sum(1).cpu().numpy()
    return out


def ksg_counts(blocks: list[np.ndarray], subsets: list[tuple[int, ...]], k: int,
               device: str | None = None, metric: str = "chebyshev") -> list[np.ndarray]:
    """Neighbour counts of the KSG / Frenzel-Pompe estimators.

    For every point i, eps_i is the distance to its k-th nearest other point in the
    joint space of all ``blocks``; for every subset of blocks the result holds the
    number of other points within eps_i in the space of that subset.

    ``metric="chebyshev"`` (max-norm, classic KSG) counts strictly inside eps_i:
    the neighbour that defines it lies on the boundary of one marginal box and
    must not be counted. ``metric="euclidean"`` (the l2 balls of Gao, Oh &
    Viswanath's BI-KSG) counts inside or on the sphere, so every count includes
    the k joint neighbours (their marginal distances are at most their joint
    distance) and is at least k.

    Up to a joint dimension of ``KSG_TREE_MAX_DIM`` on the CPU (``KSG_TREE_MAX_DIM_LARGE_N``
    from ``KSG_LARGE_N`` samples on): a tree (in 2-D from ``GRID_KNN_MIN_N`` points on, a
    grid, below ``SWEEP_KNN_MAX_N`` or, for k = 3, ``SWEEP_KNN_MAX_N_K3`` a sorted sweep) for
    the joint k-NN, then :func:`count_within` per subset. Above it, for small
    samples (``KSG_BRUTE_MAX_N``, ``KSG_BRUTE_MAX_N_MAX_NORM``), or with
    ``device=``) brute force, where one pass serves all: the joint max-norm
    distance is the maximum of the per-block distances (the joint squared
    Euclidean distance their sum), so each block's distances are computed once
    and reused for the joint k-NN and for every count; compiled on the CPU when
    ``device`` is None, torch otherwise (GPU, or ``device="cpu"``).
    """
    if metric not in _P:
        raise ValueError(f"metric must be one of {tuple(_P)}; got {metric!r}.")
    joint = np.hstack(blocks)
    dev = _ksg_device(joint.shape, device, metric)
    if dev is None:
        eps = _tree_radius(joint, k, metric)
        return [count_within(np.hstack([blocks[p] for p in parts]), eps, metric) for parts in subsets]
    inflate = 1.0 if metric == "chebyshev" else EUCLIDEAN_INFLATE
    if device is None and dev.type == "cpu" and len(blocks) == 2 and [tuple(p) for p in subsets] == [(0,), (1,)]:
        return list(mi_counts_brute(blocks[0], blocks[1], k, metric == "euclidean", workers()))  # MI, float32
    if device is None and dev.type == "cpu":
        # The comparisons of _ksg_counts_brute (and its shrink of the radius), compiled.
        shrink = (inflate * STRICT_SHRINK) ** (2 if metric == "euclidean" else 1)
        return ksg_counts_brute(blocks, subsets, k, metric == "euclidean", shrink, workers())
    return _ksg_counts_brute(blocks, subsets, k, dev, metric, inflate)


def sampled_mi_counts(x: np.ndarray, y: np.ndarray, k: int, sampled: np.ndarray,
                      metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(eps, n_x, n_y) of the tree path of :func:`ksg_counts` for two variables, with the counts of the
    points where ``sampled`` is True only (0 elsewhere) and eps of every point. Counts left out cost
    nothing: a radius of 0 counts nothing. Meant for the tree path (:func:`ksg_tree_path`): on the
    brute force the counts come with the search at little extra cost."""
    joint = np.hstack([x, y])
    eps = _tree_radius(joint, k, metric)
    radius = np.where(sampled, eps, 0.0)
    return eps, count_within(x, radius, metric), count_within(y, radius, metric)


def ksg_tree_path(shape: tuple[int, int], metric: str) -> bool:
    """Whether :func:`ksg_counts` (on the CPU, ``device=None``) searches a joint space of ``shape`` (n, d) by a
    tree or a grid, not by brute force."""
    return _ksg_device(shape, None, metric) is None


def _ksg_device(shape: tuple[int, int], device: str | None, metric: str) -> torch.device | None:
    """The torch device of the one-pass brute force of :func:`ksg_counts`, or None for the tree path."""
    n, d = shape
    dev = _torch_device(n, d, device, KSG_TREE_MAX_DIM_LARGE_N if n >= KSG_LARGE_N else KSG_TREE_MAX_DIM)
    if dev is None and n <= (KSG_BRUTE_MAX_N if metric == "euclidean" else KSG_BRUTE_MAX_N_MAX_NORM).get(d, 0):
        dev = torch.device("cpu")  # the compiled brute force
    return dev


def _tree_radius(joint: np.ndarray, k: int, metric: str) -> np.ndarray:
    """eps_i of the tree path of :func:`ksg_counts`: the joint k-NN distance (a sorted sweep or a grid in 2-D,
    a grid in low dimension, else the kd-tree), widened by ``EUCLIDEAN_INFLATE`` if Euclidean."""
    n, d = joint.shape
    euclidean = metric == "euclidean"
    if d == 2 and sweeps(n, k):
        eps = sweep_knn(joint, k, euclidean, workers())[:, -1]
    elif d <= GRID_KNN_MAX_DIM and n >= GRID_KNN_MIN_N:
        eps = grid_knn(joint, k, euclidean, workers())[:, -1]
    else:
        eps = knn_distances(joint, k, metric)[:, -1]
    return eps * (EUCLIDEAN_INFLATE if euclidean else 1.0)


def _ksg_counts_brute(blocks, subsets, k, dev, metric, inflate) -> list[np.ndarray]:
    """The one-pass brute-force path of :func:`ksg_counts` (squared distances when Euclidean)."""
    n = len(blocks[0])
    xs = [torch.as_tensor(b, dtype=torch.float64, device=dev) for b in blocks]
    step = max(1, _CHUNK_ELEMENTS.get(dev.type, 2**24) // (len(blocks) + 2) // max(n, 1))
    euclidean = metric == "euclidean"
    combine = torch.add if euclidean else torch.maximum
    counts = [np.empty(n, dtype=np.int64) for _ in subsets]
    for start in range(0, n, step):
        stop = min(n, start + step)
        dist = [torch.cdist(x[start:stop], x, p=_P[metric]) for x in xs]
        if euclidean:
            dist = [block.square_() for block in dist]
        rows = torch.arange(stop - start, device=dev)
        for block in dist:
            block[rows, rows + start] = float("inf")  # a point is not its own neighbour
        full = combine(dist[0], dist[1]) if len(dist) > 1 else dist[0]  # read-only below when aliased
        for block in dist[2:]:
            combine(full, block, out=full)
        eps = torch.topk(full, k, dim=1, largest=False).values[:, -1:]
        # The same relative shrink as count_within: the neighbour on the radius is excluded (max-norm),
        # or included with a margin (Euclidean; squared distances, hence the squared factors).
        eps = eps * ((inflate * STRICT_SHRINK) ** (2 if euclidean else 1))
        for out, parts in zip(counts, subsets):
            sub = dist[parts[0]] if len(parts) == 1 else _combined([dist[p] for p in parts], euclidean)
            out[start:stop] = torch.count_nonzero(sub < eps, dim=1).cpu().numpy()  # 1.5x faster than .sum
    return counts


def _combined(blocks: list[torch.Tensor], euclidean: bool) -> torch.Tensor:
    stacked = torch.stack(blocks)
    return stacked.sum(0) if euclidean else stacked.amax(0)
