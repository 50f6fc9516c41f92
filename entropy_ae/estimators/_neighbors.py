"""Nearest-neighbour searches shared by the k-NN entropy and KSG estimators.

Two back ends give the same numbers (up to floating-point rounding of the
distances):

* trees (scipy ``cKDTree`` for k-NN, scikit-learn ``KDTree`` for counting) for
  low dimension on the CPU, where they are fastest;
* brute force in torch, chunked so memory stays bounded: pairwise distances by
  matrix multiplication (Euclidean) or by ``torch.cdist(p=inf)`` (max-norm).
  It wins beyond about 20 dimensions and runs on the GPU when one is present.

``device=None`` picks automatically; ``device="cpu"`` or ``"cuda"`` forces the
torch path (the tests use ``"cpu"`` to exercise the GPU code on a CPU).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from sklearn.neighbors import KDTree

#: Above this dimension trees visit almost every leaf and brute force is faster
#: (measured break-even near d = 24 at n = 2e4 on 2 CPU cores).
TREE_MAX_DIM = 20
#: On the automatic path the GPU only pays off for large inputs.
GPU_MIN_SAMPLES = 20_000
#: Elements of one chunk of the distance matrix (float64: 8 bytes each): 128 MiB on the
#: CPU, 1 GiB on a GPU (fewer, larger kernels; untested on a GPU so far).
_CHUNK_ELEMENTS = {"cpu": 2**24, "cuda": 2**27}

_P = {"euclidean": 2.0, "chebyshev": np.inf}


def _torch_device(n: int, d: int, device: str | None) -> torch.device | None:
    """The torch device for the brute-force path, or None for the tree path."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available() and n >= GPU_MIN_SAMPLES:
        return torch.device("cuda")
    if d > TREE_MAX_DIM:
        return torch.device("cpu")
    return None


def _workers() -> int:
    # Follow torch's thread setting, the one knob users already set for the rest of the toolkit.
    return max(1, torch.get_num_threads())


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
    dev = _torch_device(n, d, device)
    if dev is None:
        dist, _ = cKDTree(x).query(x, k=k + 1, p=_P[metric], workers=_workers())
        # The point itself (distance 0) comes first; with duplicates another 0 may
        # come first instead, which is the same number.
        return np.asarray(dist[:, 1:], dtype=np.float64)
    out = np.empty((n, k))
    for start, stop, dist in _pairwise_chunks(x, metric, dev):
        out[start:stop] = torch.topk(dist, k, dim=1, largest=False).values.cpu().numpy()
    return np.sqrt(np.maximum(out, 0.0)) if metric == "euclidean" else out


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
    # Shrink the radius by a relative 1e-9 so that the neighbour that defines it (and exact
    # ties with it) is excluded on every back end, whatever the rounding of its distance.
    radius = radius * (1.0 - 1e-9)
    if dev is None and d == 1:
        # Exact and O(n log n): binary search on the sorted values.
        s = np.sort(x[:, 0])
        lo = np.searchsorted(s, x[:, 0] - radius, side="right")
        hi = np.searchsorted(s, x[:, 0] + radius, side="left")
        return (hi - lo - 1).astype(np.int64)
    if dev is None:
        # scikit-learn's count_only query counts whole nodes inside the ball without
        # visiting their points: 3-4x faster than scipy's query_ball_point here.
        tree = KDTree(x, metric=metric)
        return tree.query_radius(x, radius, count_only=True).astype(np.int64) - 1
    r_all = torch.as_tensor(radius ** 2 if metric == "euclidean" else radius, dtype=torch.float64, device=dev)
    out = np.empty(n, dtype=np.int64)
    for start, stop, dist in _pairwise_chunks(x, metric, dev):
        out[start:stop] = (dist < r_all[start:stop, None]).sum(1).cpu().numpy()
    return out
