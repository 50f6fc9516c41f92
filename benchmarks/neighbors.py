"""Timings behind the neighbour-search choices of entropy_ae.estimators, each a ratio within one run.

* ``kdtree``: the compiled kd-tree (``_kdtree.kdtree_knn``) against scipy's ``cKDTree``
  queried in tree order, k = 3, Gaussian points, Euclidean and max-norm.
* ``crossover``: KSG counts (BI-KSG, evenly split correlated Gaussians) by tree and grid
  against the compiled brute force, per joint dimension D and n: what ``KSG_BRUTE_MAX_N`` and
  ``KSG_BRUTE_MAX_N_MAX_NORM`` are set from.
* ``single``: the single-precision MI brute force (``_mi_brute.mi_counts_brute``) against the
  double-precision general kernel (``_kernels.ksg_counts_brute``), with the share of counts that differ.
* ``grid``: the grid counts (``_kernels.grid_counts``) within the joint k-NN radius of Gaussian
  d vs d (k = 3, one marginal) per cell side: what ``_CELL_PER_RADIUS`` (Euclidean) and
  ``_CELL_PER_RADIUS_MAX_NORM`` are set from.
* ``sweep``: the 2-D k-NN (k = 3) by the sorted sweep (``_grid_knn._sweep_kernel``, and its k = 3
  kernel ``_sweep_kernel_3``), by the grid (``grid_knn``) and by the kd-tree, on fresh correlated
  Gaussian points for every repeat (a kernel timed on the same points again and again runs faster
  than on new ones: the branch predictor learns them): what ``SWEEP_KNN_MAX_N`` is set from.
* ``minima``: the minima of the sets of a row in the MI brute force's k-th smallest, by halving the
  row and in one pass (``_mi_brute._halved_minima``, ``_one_pass_minima``), per row length: what
  ``_mi_brute._ONE_PASS_MIN_SETS`` is set from.

Usage (from the repository root; 1 thread, nothing else running)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/neighbors.py [kdtree] [crossover] [single] [grid] [sweep] [minima]
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from scipy.spatial import cKDTree

from entropy_ae.estimators import _kernels
from entropy_ae.estimators import _neighbors as neighbors
from entropy_ae.estimators import _grid_knn
from entropy_ae.estimators._kdtree import kdtree_knn
from entropy_ae.estimators import _mi_brute
from entropy_ae.estimators._mi_brute import mi_counts_brute
from entropy_ae.estimators._mutual_info import _prepare, _shape_for


def median_time(call, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def scipy_knn(x, k, p):
    tree = cKDTree(x)
    out = np.empty((len(x), k + 1))
    out[tree.indices] = tree.query(x[tree.indices], k=k + 1, p=p, workers=1)[0]
    return out[:, 1:]


def kdtree() -> None:
    print("| d | n | metric | ours s | scipy s | scipy / ours |\n|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for d, sizes in ((3, (1000, 10000, 100000)), (4, (1000, 10000, 100000)), (8, (1000, 10000, 100000)),
                     (12, (1000, 10000)), (20, (1000, 10000))):
        for n in sizes:
            x = rng.standard_normal((n, d))
            for euclidean in (True, False):
                kdtree_knn(x[:64], 3, euclidean, 1)  # compiled before timing
                repeats = 3 if n * d <= 1e5 else 1
                ours = median_time(lambda: kdtree_knn(x, 3, euclidean, 1), repeats)
                theirs = median_time(lambda: scipy_knn(x, 3, 2.0 if euclidean else np.inf), repeats)
                print(f"| {d} | {n:.0e} | {'euclidean' if euclidean else 'max'} | {ours:.4f} | {theirs:.4f} "
                      f"| {theirs / ours:.2f} |", flush=True)


def crossover() -> None:
    print("| D | n | metric | tree and grid s | brute force s |\n|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for dim, sizes in ((4, (1000, 3000, 10000)), (5, (1000, 3000, 10000)), (6, (3000, 10000, 30000)),
                       (7, (3000, 10000, 30000)), (8, (10000, 30000, 100000))):
        for n in sizes:
            x = rng.standard_normal((n, dim // 2))
            y = rng.standard_normal((n, dim - dim // 2))
            y[:, : dim // 2] = 0.6 * x + 0.8 * y[:, : dim // 2]  # correlated pairs
            for metric in ("euclidean", "chebyshev"):
                blocks = _prepare([x, y], ["x", "y"])
                if metric == "euclidean":
                    blocks = _shape_for("euclidean", blocks)
                saved = neighbors.KSG_BRUTE_MAX_N, neighbors.KSG_BRUTE_MAX_N_MAX_NORM, neighbors.KSG_TREE_MAX_DIM
                try:
                    neighbors.KSG_BRUTE_MAX_N, neighbors.KSG_BRUTE_MAX_N_MAX_NORM = {}, {}
                    neighbors.KSG_TREE_MAX_DIM = 99
                    repeats = 5 if n <= 10000 else 1
                    tree = median_time(lambda: neighbors.ksg_counts(blocks, [(0,), (1,)], 3, None, metric), repeats)
                    neighbors.KSG_BRUTE_MAX_N = neighbors.KSG_BRUTE_MAX_N_MAX_NORM = {dim: 10**9}
                    neighbors.KSG_TREE_MAX_DIM = 0
                    brute = median_time(lambda: neighbors.ksg_counts(blocks, [(0,), (1,)], 3, None, metric),
                                        repeats)
                finally:
                    neighbors.KSG_BRUTE_MAX_N, neighbors.KSG_BRUTE_MAX_N_MAX_NORM, neighbors.KSG_TREE_MAX_DIM = saved
                print(f"| {dim} | {n:.1e} | {metric} | {tree:.4f} | {brute:.4f} |", flush=True)


def single() -> None:
    print("| d per variable | n | metric | single s | double (general kernel) s | double / single "
          "| counts that differ |\n|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for d, n in ((4, 1000), (4, 3000), (4, 10000), (16, 1000), (16, 10000), (64, 1000), (64, 3000)):
        x = rng.standard_normal((n, d))
        y = 0.6 * x + 0.8 * rng.standard_normal((n, d))
        for euclidean in (True, False):
            shrink = (neighbors.EUCLIDEAN_INFLATE * neighbors.STRICT_SHRINK) ** 2 if euclidean else neighbors.STRICT_SHRINK
            mi_counts_brute(x[:64], y[:64], 3, euclidean, 1)  # compiled before timing
            _kernels.ksg_counts_brute([x[:64], y[:64]], [(0,), (1,)], 3, euclidean, shrink, 1)
            repeats = 3 if n <= 3000 else 1
            one = median_time(lambda: mi_counts_brute(x, y, 3, euclidean, 1), repeats)
            two = median_time(lambda: _kernels.ksg_counts_brute([x, y], [(0,), (1,)], 3, euclidean, shrink, 1),
                              repeats)
            single_counts = mi_counts_brute(x, y, 3, euclidean, 1)
            double_counts = _kernels.ksg_counts_brute([x, y], [(0,), (1,)], 3, euclidean, shrink, 1)
            differ = sum(int((a != b).sum()) for a, b in zip(single_counts, double_counts)) / (2 * n)
            print(f"| {d} | {n:.0e} | {'euclidean' if euclidean else 'max'} | {one:.4f} | {two:.4f} "
                  f"| {two / one:.2f} | {differ:.1e} |", flush=True)


def grid() -> None:
    sides = (0.5, 0.7, 0.8, 1.0, 1.2)
    print("| d | n | metric | " + " | ".join(f"side {side} s" for side in sides) + " |\n|---|---|---|"
          + "---|" * len(sides))
    rng = np.random.default_rng(0)
    saved = _kernels._CELL_PER_RADIUS, _kernels._CELL_PER_RADIUS_MAX_NORM
    for d, n in ((3, 30000), (3, 100000), (4, 10000), (4, 30000), (4, 100000)):
        x = rng.standard_normal((n, d))
        y = 0.6 * x + 0.8 * rng.standard_normal((n, d))
        blocks = _shape_for("euclidean", _prepare([x, y], ["x", "y"]))
        for euclidean in (True, False):
            radius = kdtree_knn(np.hstack(blocks), 3, euclidean, 1)[:, -1] * neighbors.STRICT_SHRINK
            _kernels.grid_counts(blocks[0][:64], radius[:64], euclidean, 1)  # compiled before timing
            times = []
            try:
                for side in sides:
                    _kernels._CELL_PER_RADIUS = _kernels._CELL_PER_RADIUS_MAX_NORM = side
                    times.append(median_time(lambda: _kernels.grid_counts(blocks[0], radius, euclidean, 1),
                                             3 if n <= 30000 else 1))
            finally:
                _kernels._CELL_PER_RADIUS, _kernels._CELL_PER_RADIUS_MAX_NORM = saved
            print(f"| {d} | {n:.0e} | {'euclidean' if euclidean else 'max'} | "
                  + " | ".join(f"{t:.4f}" for t in times) + " |", flush=True)


def sweep() -> None:
    names = ("sweep, general kernel", "sweep, k = 3 kernel", "grid", "kd-tree")
    print("| rho | n | " + " | ".join(f"{name} ms" for name in names) + " |\n|---|---|" + "---|" * len(names))

    def swept(kernel):
        def run(points):
            found = np.empty((len(points), 3))
            kernel(points, 3, True, found, 0, len(points))
            return found
        return run

    methods = (swept(_grid_knn._sweep_kernel), swept(_grid_knn._sweep_kernel_3),
               lambda points: _grid_knn.grid_knn(points, 3, True, 1), lambda points: kdtree_knn(points, 3, True, 1))
    for rho in (0.6, 0.93):
        for n in (1000, 3000, 5000, 10000, 20000, 50000):
            times = [[] for _ in methods]
            for seed in range(21 if n <= 10000 else 5):
                rng = np.random.default_rng(seed)
                x = rng.standard_normal(n)
                points = np.column_stack([x, rho * x + np.sqrt(1 - rho**2) * rng.standard_normal(n)])
                points = np.ascontiguousarray(points[np.argsort(points[:, 0])])  # the sweep's order
                for method, spent in zip(methods, times):
                    method(points[:64])  # compiled before timing
                    spent.append(median_time(lambda: method(points), 1))
            print(f"| {rho} | {n:.0e} | " + " | ".join(f"{np.median(t) * 1e3:.3f}" for t in times) + " |",
                  flush=True)


def minima() -> None:
    print("| n | sets | halving us per row | one pass us per row | halving / one pass |\n|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    calls = 2000
    for n in (1000, 3000, 5000, 8000, 10000, 30000):
        width = -(-n // _mi_brute._PAD) * _mi_brute._PAD
        dx, dy = (np.full(width, np.inf, np.float32) for _ in range(2))
        dx[:n], dy[:n] = rng.random(n), rng.random(n)  # the padding stays +inf, as in the kernel
        scratch = np.empty(width // 2, np.float32)
        per_row = []
        for fn in (_mi_brute._halved_minima, _mi_brute._one_pass_minima):
            fn(dx, dy, True, scratch)  # compiled before timing

            def rows():
                for _ in range(calls):
                    fn(dx, dy, True, scratch)
            per_row.append(median_time(rows) / calls * 1e6)
        print(f"| {n:.0e} | {width // _mi_brute._PAD} | {per_row[0]:.2f} | {per_row[1]:.2f} "
              f"| {per_row[0] / per_row[1]:.2f} |", flush=True)


PARTS = {"kdtree": kdtree, "crossover": crossover, "single": single, "grid": grid, "sweep": sweep, "minima": minima}


def main() -> None:
    torch.set_num_threads(1)
    chosen = sys.argv[1:] or list(PARTS)
    unknown = [name for name in chosen if name not in PARTS]
    if unknown:
        sys.exit(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    for name in chosen:
        print(f"## {name}", flush=True)
        PARTS[name]()


if __name__ == "__main__":
    main()
