"""Does the Gaussian-reference correction of the default MI depend only on I_G, or on how it is spread?

The default ``mutual_information`` corrects BI-KSG with I_G - E[I_hat(G)] for a Gaussian G with the
data's covariance. After per-variable whitening G is fixed by its canonical correlations, so the
correction is c(n, k, d_x, d_y, rho_1..rho_d). At 1 vs 1 it is tabulated (one rho); this script
measures, at 4 vs 4, whether a table in (n, I_G) alone, or a sum over canonical pairs, could stand in
for the direct reference pass. Mean and standard error over reference samples, k = 3, nats.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reference_spread.py [--n 3000 --reps 40]
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from entropy_ae.estimators._mutual_info import _reference_term  # noqa: E402

#: Information (nats) per canonical pair of each case; d = 4 per variable.
CASES = {"zero": [0.0] * 4, "one pair 0.25": [0.25, 0, 0, 0], "one pair 0.5": [0.5, 0, 0, 0],
         "one pair 1.0": [1.0, 0, 0, 0], "two pairs 0.5": [0.5, 0.5, 0, 0], "equal 4 x 0.25": [0.25] * 4}


def cholesky_root(infos: list[float]) -> np.ndarray:
    """Root of the covariance of whitened x, y (d each) whose i-th canonical pair carries infos[i] nats."""
    d = len(infos)
    cov = np.eye(2 * d)
    for i, info in enumerate(infos):
        cov[i, d + i] = cov[d + i, i] = math.sqrt(-math.expm1(-2.0 * info))
    return np.linalg.cholesky(cov)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    mean = {}
    for name, infos in CASES.items():
        rng = np.random.default_rng(2)
        terms = np.array([_reference_term(cholesky_root(infos), [4, 4], args.n, rng, "ksg", 3, None, "euclidean")
                          for _ in range(args.reps)])
        mean[name] = terms.mean()
        print(f"{name:16s} I_G = {sum(infos):.2f}  correction {terms.mean():+.4f} +- "
              f"{terms.std(ddof=1) / math.sqrt(args.reps):.4f}", flush=True)
    zero = mean["zero"]
    print(f"sum over pairs predicts: equal 4 x 0.25 {zero + 4 * (mean['one pair 0.25'] - zero):+.4f}, "
          f"two pairs 0.5 {zero + 2 * (mean['one pair 0.5'] - zero):+.4f}")


if __name__ == "__main__":
    main()
