"""Start-up time of ``entropy-ae --help`` and of every ``entropy-ae COMMAND --help``.

Help must not import torch or scikit-learn (``tests/test_layout.py`` checks the modules; this
script measures the time). Each command line runs ``--repeats`` times in a fresh interpreter
(``python -m analysis.cli ...``, the same code as the ``entropy-ae`` script); the table gives the
median wall time and its ratio to two references measured in the same run:

* ``python -c pass``: the interpreter's own start-up, the floor;
* ``python -c "import torch, sklearn"``: what help cost while it imported the whole stack.

Usage::

    .venv/bin/python benchmarks/cli_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("train", "evaluate", "sweep", "entropy", "report", "recommend", "study")


def wall_time(argv: list[str], repeats: int) -> float:
    """Median wall time (s) of running ``argv`` ``repeats`` times; fails loudly if it fails."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per command line (default: 7)")
    args = parser.parse_args(argv)
    python = sys.executable
    floor = wall_time([python, "-c", "pass"], args.repeats)
    stack = wall_time([python, "-c", "import torch, sklearn"], args.repeats)
    rows = [("python -c pass", floor), ('python -c "import torch, sklearn"', stack)]
    for extra in [[]] + [[command] for command in COMMANDS]:
        rows.append((" ".join(["entropy-ae", *extra, "--help"]),
                     wall_time([python, "-m", "analysis.cli", *extra, "--help"], args.repeats)))
    print(f"median of {args.repeats} runs each; python {sys.version.split()[0]}")
    print("| command | wall s | / python -c pass | / import torch, sklearn |")
    print("|---|---:|---:|---:|")
    for name, seconds in rows:
        print(f"| `{name}` | {seconds:.3f} | {seconds / floor:.1f} | {seconds / stack:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
