"""Module-level job functions for tests/test_executors.py.

They live in an importable module (not in the test file) because the workers of every
backend import the job function by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import numpy as np


def poison_path(run_dir: str | os.PathLike) -> Path:
    """A file whose presence makes the run of ``run_dir`` fail: the injected node fault."""
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + ".poison")


def result_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "result.json"


def is_done(item: dict) -> bool:
    return result_path(item["run_dir"]).exists()


def grid_job(item: dict | list[dict]) -> dict | list[dict]:
    """A deterministic stand-in for one training: compute from the seed, write the run dir atomically.

    An item is one run ``{"run_dir", "latent_size", "seed"}`` or a group of runs (a list
    of them, as the batched multi-model path sends), which returns one result per run.
    ``{"crash": True}`` kills the worker process outright, as a segfault or an OOM kill
    would; a poison file next to the run dir makes the run raise.
    """
    if isinstance(item, list):
        return [grid_job(run) for run in item]
    run_dir = Path(item["run_dir"])
    print(f"starting run latent_size={item['latent_size']} seed={item['seed']}")
    os.write(2, b"written to file descriptor 2, as native code and child processes do\n")
    if item.get("crash"):
        os.kill(os.getpid(), signal.SIGKILL)
    if poison_path(run_dir).exists():
        raise RuntimeError(f"injected failure in {run_dir.name}")
    rng = np.random.default_rng(item["seed"])
    codes = rng.standard_normal((200, item["latent_size"]))
    result = {"latent_size": item["latent_size"], "seed": item["seed"],
              "value": float(np.log(np.abs(codes).sum()))}
    _write_run_dir(run_dir, result)
    return result


def environment_job(item: object) -> dict:
    """What a worker was given: its GPU pinning and thread count."""
    import torch

    return {"item": item, "pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads()}


def large_result_job(n: int) -> bytes:
    """A result larger than a pipe buffer (64 KiB), to check nothing blocks on the way back."""
    return bytes(range(256)) * (n // 256)


def _write_run_dir(run_dir: Path, result: dict) -> None:
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.tmp-", dir=run_dir.parent))
    (tmp / "result.json").write_text(json.dumps(result, sort_keys=True))
    if run_dir.exists():
        shutil.rmtree(run_dir)
    os.replace(tmp, run_dir)
