"""Child process for the interrupted-sweep test: a sweep whose third training hangs until killed.

Usage: python -m tests._sweep_child MARKER_DIR -- <entropy-ae sweep arguments>
After two runs complete, the third call to run_training writes MARKER_DIR/hanging and sleeps, so
the parent can kill this process in the middle of a run, deterministically.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import entropy_ae.training as training
from analysis.cli import main

marker_dir = Path(sys.argv[1])
real_run_training = training.run_training
calls = {"n": 0}


def run_training(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == 3:
        (marker_dir / "hanging").write_text("third run started\n")
        time.sleep(600)
    return real_run_training(*args, **kwargs)


training.run_training = run_training
sys.exit(main(sys.argv[3:]))
