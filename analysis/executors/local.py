"""This machine's backends: ``"sequential"`` (one item after another, in this process) and
``"local"`` (a bounded pool of spawned processes, one fresh process per item).

The local pool gives every worker slot its own GPU (``CUDA_VISIBLE_DEVICES``) when there are
GPUs, and ``cpu_count // workers`` threads, so workers do not fight over cores. A crash of one
item (segfault, out-of-memory kill) takes down only its own process.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from analysis.executors.logged import THREAD_ENV_VARS, RunOutcome, append_to_log, died, finished, one_line, run_logged


def map_sequential(fn, items, log_paths, log_dir, workers, report) -> list[RunOutcome]:
    """Run the items one after another in this process.

    Output stays on the terminal and a debugger works; only each failure's traceback goes to
    its log. No crash isolation: a crash in native code ends this process. ``workers`` is
    ignored (one at a time).
    """
    outcomes = []
    for item, log_path in zip(items, log_paths):
        outcome = finished(item, log_path, run_logged(fn, item, log_path, capture=False))
        outcomes.append(outcome)
        report(outcome)
    return outcomes


# ------------------------------------------------------------------------------- the process pool


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _visible_gpus() -> list[str]:
    """GPU ids to pin workers to, as CUDA_VISIBLE_DEVICES entries (honours an existing one)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [gpu.strip() for gpu in visible.split(",") if gpu.strip() and gpu.strip() != "-1"]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def local_slots(workers: int | None, gpus: Sequence[int | str] | None = None,
                threads_per_worker: int | None = None) -> list[dict[str, str]]:
    """The environment of each local worker slot: its GPU and its thread count.

    With GPUs, ``workers`` defaults to one per GPU and slot ``k`` uses GPU
    ``gpus[k % len(gpus)]`` (more workers than GPUs share them round-robin). Threads per
    worker default to ``cpu_count // workers`` (at least 1).
    """
    gpus = _visible_gpus() if gpus is None else [str(gpu) for gpu in gpus]
    if workers is None:
        workers = len(gpus) if gpus else _cpu_count()
    if threads_per_worker is None:
        threads_per_worker = max(1, _cpu_count() // workers)
    elif not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise ValueError(f"threads_per_worker must be a positive integer, got {threads_per_worker!r}")
    slots = []
    for k in range(workers):
        env = {var: str(threads_per_worker) for var in THREAD_ENV_VARS}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[k % len(gpus)]
        slots.append(env)
    return slots


def _local_child(payload: bytes, log_path: Path, env: dict[str, str], conn) -> None:
    """Entry point of a spawned worker: set the slot's environment, then run and send back."""
    os.environ.update(env)
    packed = run_logged(payload, None, log_path, threads=int(env["OMP_NUM_THREADS"]))
    try:
        conn.send(packed)
    except Exception as exc:  # the result cannot be pickled
        append_to_log(log_path, f"the result could not be sent back: {one_line(exc)}")
        conn.send((False, None, f"result not picklable: {one_line(exc)}", packed[3]))
    conn.close()


@dataclass
class _LocalJob:
    index: int
    process: Any
    conn: Any
    slot: int
    started: float


def map_local(fn, items, log_paths, log_dir, workers, report, *, gpus=None, threads_per_worker=None,
              timeout_min: float | None = None) -> list[RunOutcome]:
    """Run every item in its own spawned process, at most one per worker slot at a time."""
    slots = local_slots(workers, gpus, threads_per_worker)
    if timeout_min is not None and not timeout_min > 0:
        raise ValueError(f"timeout_min must be positive, got {timeout_min!r}")
    payloads = [pickle.dumps((fn, item)) for item in items]  # fails here, before anything runs
    ctx = multiprocessing.get_context("spawn")
    outcomes: list[RunOutcome | None] = [None] * len(items)
    pending = deque(range(len(items)))
    free = list(range(len(slots)))
    running: dict[int, _LocalJob] = {}
    try:
        while pending or running:
            while pending and free:
                index, slot = pending.popleft(), free.pop(0)
                receiver, sender = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_local_child, daemon=True, name=f"entropy-ae-run-{index}",
                                      args=(payloads[index], log_paths[index], slots[slot], sender))
                process.start()
                sender.close()  # so the receiver sees EOF when the child dies
                running[index] = _LocalJob(index, process, receiver, slot, time.monotonic())
            waitables = [job.conn for job in running.values()] + [job.process.sentinel for job in running.values()]
            multiprocessing.connection.wait(waitables, timeout=1.0)
            for job in list(running.values()):
                outcome = _poll_local(job, items[job.index], log_paths[job.index], timeout_min)
                if outcome is not None:
                    del running[job.index]
                    free.append(job.slot)
                    outcomes[job.index] = outcome
                    report(outcome)
    finally:
        for job in running.values():  # interrupted (Ctrl-C): leave no orphan behind
            job.process.kill()
            job.process.join()
            job.conn.close()
    return outcomes  # type: ignore[return-value]


def _poll_local(job: _LocalJob, item, log_path: Path, timeout_min: float | None) -> RunOutcome | None:
    """The job's outcome when it has finished, died or run out of time; else None."""
    alive = job.process.is_alive()
    if job.conn.poll():
        try:
            packed = job.conn.recv()
        except (EOFError, OSError):
            packed = None
        job.process.join()
        job.conn.close()
        if packed is not None:
            return finished(item, log_path, packed)
        return died(item, log_path, f"worker died with exit code {job.process.exitcode} before returning "
                                    "(killed, out of memory or a crash in native code)")
    if not alive:
        job.process.join()
        job.conn.close()
        return died(item, log_path, f"worker died with exit code {job.process.exitcode} before returning "
                                    "(killed, out of memory or a crash in native code)")
    if timeout_min is not None and time.monotonic() - job.started > 60 * timeout_min:
        job.process.kill()
        job.process.join()
        job.conn.close()
        return died(item, log_path, f"killed after the time limit of {timeout_min} min")
    return None
