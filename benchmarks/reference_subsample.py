"""The Gaussian reference of the default MI counts neighbours for a sample of its points only: what it costs in noise.

Behind ``_mutual_info.REFERENCE_COUNT_SHARE`` (the estimators benchmark page, "The reference's
counts sampled"). On the tree path (4 vs 4 from n = 43001) one BI-KSG pass is a joint k-NN search and two
marginal counts, and the counts take about half of it. The reference's estimate is the mean over all
n points of t_i = log n_x(i) + log n_y(i); with the k-NN radius eps_i of every point known, the mean
can be estimated from the counts of a random m of them and a control variate known at every point,

    mean_all(c) + mean_subset(t - c),   c_i = log P_x(ball(x_i, eps_i)) + log P_y(ball(y_i, eps_i)),

where P is the standard normal the prepared reference's marginals follow, so that P(ball) is a
noncentral chi-square CDF. It is unbiased over the draw of the subset and adds a variance of
var(t - c) (1/m - 1/n). This script measures var(t - c), the sd it would add at m = n/4 and n/8,
and the times of the search and of the counts it saves (1 thread, k = 3, nats).

Usage (from the repository root; nothing else running)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reference_subsample.py
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from entropy_ae.estimators._neighbors import EUCLIDEAN_INFLATE, count_within, knn_distances  # noqa: E402
from entropy_ae.estimators._mutual_info import _prepare, _shape_for, ball_log_probabilities  # noqa: E402

#: (d per variable, n, I of the Gaussian pair in nats).
CASES = ((4, 10_000, 1.0), (4, 30_000, 1.0), (4, 100_000, 1.0), (4, 30_000, 3.0), (2, 30_000, 1.0),
         (1, 200, 1.0), (1, 1_000, 1.0), (2, 1_000, 1.0), (2, 4_000, 1.0), (2, 10_000, 1.0))
K = 3


def reference_blocks(d: int, n: int, info: float, seed: int = 0) -> list[np.ndarray]:
    """A Gaussian d vs d pair carrying ``info`` nats, prepared as the default call prepares its reference."""
    rng = np.random.default_rng(seed)
    rho = math.sqrt(-math.expm1(-2.0 * info / d))
    x = rng.standard_normal((n, d))
    y = rho * x + math.sqrt(1.0 - rho * rho) * rng.standard_normal((n, d))
    return _shape_for("euclidean", _prepare([x, y], ["x", "y"]))


def main() -> None:
    torch.set_num_threads(1)
    knn_distances(np.zeros((64, 2)) + np.arange(64)[:, None], K)  # compiled before timing
    print("| d | n | I | search s | counts s | var t | var (t - c) | added sd m = n/4 | added sd m = n/8 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d, n, info in CASES:
        x, y = reference_blocks(d, n, info)
        start = time.perf_counter()
        eps = knn_distances(np.hstack([x, y]), K)[:, -1] * EUCLIDEAN_INFLATE
        searched = time.perf_counter()
        n_x, n_y = count_within(x, eps, "euclidean"), count_within(y, eps, "euclidean")
        counted = time.perf_counter()
        t = np.log(n_x) + np.log(n_y)
        c = ball_log_probabilities([x, y], eps)
        residual = float((t - c).var())
        added = [math.sqrt(residual * (1.0 / (n // f) - 1.0 / n)) for f in (4, 8)]
        print(f"| {d} vs {d} | {n:.0e} | {info:.1f} | {searched - start:.3f} | {counted - searched:.3f} "
              f"| {t.var():.3f} | {residual:.4f} | {added[0]:.4f} | {added[1]:.4f} |", flush=True)


if __name__ == "__main__":
    main()
