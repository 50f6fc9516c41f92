"""The grid counts (``_kernels.grid_counts``) of a git revision against the working tree's, in one run.

Both kernels count within the joint k-NN radius (k = 3) of Gaussian d vs d pairs, one marginal,
1 thread, each with its own defaults (cell side included); the table gives the best of the
repeats, the ratio, and whether every count is equal.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/grid_revisions.py 39be744
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from entropy_ae.estimators import _kernels
from entropy_ae.estimators._kdtree import kdtree_knn
from entropy_ae.estimators._mutual_info import _prepare, _shape_for

ROOT = Path(__file__).resolve().parents[1]
CASES = ((2, 30000), (3, 30000), (3, 100000), (4, 30000), (4, 100000))


def kernels_at(revision: str):
    """``entropy_ae/estimators/_kernels.py`` of ``revision`` as a module (compiled afresh, not cached)."""
    source = subprocess.run(["git", "show", f"{revision}:entropy_ae/estimators/_kernels.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "kernels_then.py"
    path.write_text(source.replace("cache=True", "cache=False"))
    spec = importlib.util.spec_from_file_location("kernels_then", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: grid_revisions.py REVISION")
    torch.set_num_threads(1)
    then = kernels_at(sys.argv[1])
    print(f"| d | n | metric | {sys.argv[1]} s | now s | then / now | counts equal |\n|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for d, n in CASES:
        x = rng.standard_normal((n, d))
        y = 0.6 * x + 0.8 * rng.standard_normal((n, d))
        blocks = _shape_for("euclidean", _prepare([x, y], ["x", "y"]))
        for euclidean in (True, False):
            radius = kdtree_knn(np.hstack(blocks), 3, euclidean, 1)[:, -1] * (1.0 - 1e-9)
            results = []
            for module in (then, _kernels):
                module.grid_counts(blocks[0][:64], radius[:64], euclidean, 1)  # compiled before timing
                times = []
                for _ in range(3 if n <= 30000 else 1):
                    start = time.perf_counter()
                    counts = module.grid_counts(blocks[0], radius, euclidean, 1)
                    times.append(time.perf_counter() - start)
                results.append((min(times), counts))
            (t_then, c_then), (t_now, c_now) = results
            print(f"| {d} | {n:.0e} | {'euclidean' if euclidean else 'max'} | {t_then:.4f} | {t_now:.4f} "
                  f"| {t_then / t_now:.2f} | {bool((c_then == c_now).all())} |", flush=True)


if __name__ == "__main__":
    main()
