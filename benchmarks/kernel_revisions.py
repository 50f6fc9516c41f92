"""A neighbour-count kernel of a git revision against the working tree's, in one run.

* ``grid``: the grid counts (``_kernels.grid_counts``) within the joint k-NN radius (k = 3) of
  Gaussian d vs d pairs, one marginal, each revision with its own defaults (cell side included).
* ``kdtree``: the k-NN distances (``_kdtree.kdtree_knn``, k = 3) in the joint space of the same pairs.
* ``brute``: the MI brute force (``_mi_brute.mi_counts_brute``, both marginals, k = 3) on the
  prepared d vs d pairs of the default call (Euclidean: radially Gaussianised) and of max-norm KSG.

1 thread; the table gives the best of the repeats, the ratio, and whether every count (or distance) is
equal.

Usage (from the repository root; nothing else running)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kernel_revisions.py grid 39be744
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kernel_revisions.py brute 13f1286
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kernel_revisions.py kdtree 7f1e7f7
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

from entropy_ae.estimators import _kdtree, _kernels, _mi_brute
from entropy_ae.estimators._kdtree import kdtree_knn
from entropy_ae.estimators._mutual_info import _prepare, _shape_for

ROOT = Path(__file__).resolve().parents[1]
#: Per part: the module, its (d per variable, n) cases, and the call timed.
PARTS = {
    "grid": ("_kernels", ((2, 30000), (3, 30000), (3, 100000), (4, 30000), (4, 100000)),
             lambda module, blocks, radius, euclidean: module.grid_counts(blocks[0], radius, euclidean, 1)),
    "kdtree": ("_kdtree", ((2, 30000), (2, 100000), (4, 30000), (4, 100000), (6, 30000)),
               lambda module, blocks, radius, euclidean: module.kdtree_knn(np.hstack(blocks), 3, euclidean, 1)),
    "brute": ("_mi_brute", ((4, 3000), (4, 10000), (4, 30000), (8, 10000)),
              lambda module, blocks, radius, euclidean: np.stack(module.mi_counts_brute(*blocks, 3, euclidean, 1))),
}


def module_at(revision: str, name: str):
    """``entropy_ae/estimators/<name>.py`` of ``revision`` as a module of the installed package (its relative
    imports resolve to the working tree's modules), compiled afresh, not cached."""
    source = subprocess.run(["git", "show", f"{revision}:entropy_ae/estimators/{name}.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"{name}_then.py"
    path.write_text(source.replace("cache=True", "cache=False"))
    spec = importlib.util.spec_from_file_location(f"entropy_ae.estimators.{name}_then", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in PARTS:
        sys.exit(f"usage: kernel_revisions.py {{{','.join(PARTS)}}} REVISION")
    part, revision = sys.argv[1:]
    torch.set_num_threads(1)
    name, cases, call = PARTS[part]
    modules = (module_at(revision, name), {"_kernels": _kernels, "_mi_brute": _mi_brute, "_kdtree": _kdtree}[name])
    print(f"| d | n | metric | {revision} s | now s | then / now | counts equal |\n|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for d, n in cases:
        x = rng.standard_normal((n, d))
        y = 0.6 * x + 0.8 * rng.standard_normal((n, d))
        for euclidean in (True, False):
            blocks = _prepare([x, y], ["x", "y"])
            blocks = _shape_for("euclidean", blocks) if euclidean else blocks
            radius = kdtree_knn(np.hstack(blocks), 3, euclidean, 1)[:, -1] * (1.0 - 1e-9)
            results = []
            for module in modules:
                call(module, [b[:64] for b in blocks], radius[:64], euclidean)  # compiled before timing
                times = []
                for _ in range(3 if n <= 30000 else 1):
                    start = time.perf_counter()
                    counts = call(module, blocks, radius, euclidean)
                    times.append(time.perf_counter() - start)
                results.append((min(times), counts))
            (t_then, c_then), (t_now, c_now) = results
            print(f"| {d} vs {d} | {n:.0e} | {'euclidean' if euclidean else 'max'} | {t_then:.4f} | {t_now:.4f} "
                  f"| {t_then / t_now:.2f} | {bool((c_then == c_now).all())} |", flush=True)


if __name__ == "__main__":
    main()
