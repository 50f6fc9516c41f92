"""The default MI's two KSG passes (data and Gaussian reference) at once or one after the other, in one run.

On two or more threads ``mutual_information`` runs the data's pass and the
reference's at once, each on its share of the threads, or one after the other,
each on all of them (``_mutual_info._passes_at_once``: one after the other on the
tree path from ``SEQUENTIAL_MIN_JOINT_DIM`` on, at once elsewhere). This script
times the default call on Gaussian d vs d pairs (I = 1 nat) with the choice
forced each way, interleaved per repeat, median of the repeats, and prints what
the rule picks. The estimate is the same either way (checked).

Usage (from the repository root; nothing else running)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/pass_order.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
import torch

from entropy_ae.estimators import _mutual_info, mutual_information

#: (d per variable, n): the tree path around SEQUENTIAL_MIN_JOINT_DIM, and the brute force where the two
#: passes' float32 coordinates (2 x 4 n D bytes: 64 vs 64 at 1e4 is 10 MB, at 3e4 31 MB) outgrow a cache.
CELLS = [(2, 100_000), (3, 100_000), (4, 50_000), (4, 100_000),
         (16, 30_000), (32, 30_000), (32, 50_000), (64, 10_000), (64, 20_000), (64, 30_000)]


def gaussian_pair(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    rho = math.sqrt(1 - math.exp(-2.0 / d))
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))


def timed(x, y, at_once: bool) -> tuple[float, float]:
    rule = _mutual_info._passes_at_once
    _mutual_info._passes_at_once = lambda *args: at_once
    try:
        start = time.perf_counter()
        value = mutual_information(x, y)
        return time.perf_counter() - start, value
    finally:
        _mutual_info._passes_at_once = rule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    mutual_information(*gaussian_pair(2000, 4))  # load the compiled kernels, untimed
    print(f"# default mutual_information, {args.threads} threads, median of {args.repeats} interleaved repeats")
    print("| d | n | 2 x 4 n D MB | at once s | one after the other s | at once / after | rule picks |")
    print("|---|---|---|---|---|---|---|")
    for d, n in CELLS:
        x, y = gaussian_pair(n, d)
        times = {True: [], False: []}
        values = set()
        for _ in range(args.repeats):
            for at_once in (True, False):
                seconds, value = timed(x, y, at_once)
                times[at_once].append(seconds)
                values.add(value)
        assert len(values) == 1, values  # the order of the passes never changes the number
        together, apart = float(np.median(times[True])), float(np.median(times[False]))
        picks = _mutual_info._passes_at_once("ksg", "euclidean" if 2 * d <= 12 else "max", 2, (n, 2 * d), None)
        print(f"| {d} vs {d} | {n:.0e} | {8 * n * 2 * d / 1e6:.0f} | {together:.2f} | {apart:.2f} "
              f"| {together / apart:.2f} | {'at once' if picks else 'one after the other'} |", flush=True)


if __name__ == "__main__":
    main()
