"""Is the default MI as accurate as at another git revision? Bias and spread over seeds, side by side.

A change that only speeds the estimators up can still move single results: the
Gaussian reference is seeded from the bytes of the prepared data, so a change of
rounding in the preparation draws another reference sample. What must not change
is the distribution of the estimate. This script runs the default call
``mutual_information(x, y)`` on the same Gaussian pairs (I = 1 nat, seeds
0..S-1) with the working tree and with a git revision (checked out in a
temporary worktree), and prints per cell the mean bias with its standard error,
the sd over seeds, and the paired difference (now minus then, same data) with
its standard error; and the time of each cell's calls (summed over the seeds) at
each revision, with their ratio. The two revisions run one after the other in one
run: the times compare only within it, and only with nothing else running.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compare_revisions.py 5d8573b [--seeds 20]
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/compare_revisions.py 5d8573b --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: (d per variable, n) cells: the small and middle cells of the speed grid, and cells just above the crossovers
#: of ``_neighbors.KSG_BRUTE_MAX_N`` (2 vs 2 at 4000, 4 vs 4 at 40000), where trees and the single-precision
#: brute force take turns; 2 vs 2 at 30000, 3 vs 3 at 20000 and 4 vs 4 at 50000 are on the tree path with
#: n >= ``_mutual_info.REFERENCE_SAMPLING_MIN_N``, where the reference counts a sample of its points.
CELLS = [(1, 1000), (1, 10000), (2, 4000), (2, 30000), (3, 20000), (4, 1000), (4, 10000), (4, 30000), (4, 40000),
         (4, 50000), (16, 1000), (16, 3000)]


def worker(root: str, seeds: int, threads: int) -> None:
    """Print {cell: [[estimates over seeds], seconds]} as JSON, with entropy_ae imported from ``root``."""
    sys.path.insert(0, root)
    import warnings

    import numpy as np
    import torch

    import entropy_ae
    from entropy_ae.estimators import mutual_information

    assert Path(entropy_ae.__file__).resolve().is_relative_to(Path(root).resolve()), entropy_ae.__file__
    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")
    out = {}
    for d, n in CELLS:
        values, seconds = [], 0.0
        for seed in [0, *range(seeds)]:  # seed 0 twice: the first, untimed, compiles (a fresh worktree) or loads
            rng = np.random.default_rng(seed)
            x = rng.standard_normal((n, d))
            rho = math.sqrt(1 - math.exp(-2.0 / d))
            y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))
            start = time.perf_counter()
            values.append(mutual_information(x, y))
            seconds += (time.perf_counter() - start) * (len(values) > 1)
        values = values[1:]
        out[f"{d} vs {d}, n = {n}"] = [values, seconds]
    print(json.dumps(out))


def run(root: Path, seeds: int, threads: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", str(root), "--seeds", str(seeds),
                           "--threads", str(threads)],
                          capture_output=True, text=True, check=True, cwd=root)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(values: list[float]) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean - 1.0, sd / math.sqrt(n), sd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revision", nargs="?", help="git revision to compare the working tree with")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both revisions' calls")
    parser.add_argument("--worker", metavar="ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.seeds, args.threads)
        return
    if not args.revision:
        parser.error("give a git revision, e.g. HEAD~3")
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(other), args.revision], cwd=ROOT, check=True)
        try:
            old, new = run(other, args.seeds, args.threads), run(ROOT, args.seeds, args.threads)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=True)
    print(f"# default mutual_information, Gaussian pairs with I = 1 nat, seeds 0..{args.seeds - 1}, "
          f"{args.threads} thread(s)")
    print(f"| cell | bias at {args.revision} (se) | sd | bias now (se) | sd | paired difference (se) "
          f"| {args.revision} s | now s | then / now |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cell in old:
        (then, then_s), (now, now_s) = old[cell], new[cell]
        b0, se0, sd0 = summary(then)
        b1, se1, sd1 = summary(now)
        diff, diff_se, _ = summary([1.0 + b - a for a, b in zip(then, now)])
        print(f"| {cell} | {b0:+.4f} ({se0:.4f}) | {sd0:.4f} | {b1:+.4f} ({se1:.4f}) | {sd1:.4f} "
              f"| {diff:+.4f} ({diff_se:.4f}) | {then_s:.2f} | {now_s:.2f} | {then_s / now_s:.2f} |")


if __name__ == "__main__":
    main()
