"""Where the pending runs of a sweep go: the executor choice, the jobs handed to it, and progress lines.

A job is what to run (:mod:`analysis.sweep.jobs`: one grid point, or a group of them trained
together); the executor (:mod:`analysis.executors`) is where it runs. In this process
(``"sequential"``) the jobs use the data already loaded; other executors' workers rebuild it
from the data spec.
"""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

from entropy_ae.reproducibility import resolve_device

from analysis.executors import EXECUTORS, check_backend, map_runs
from analysis.sweep.jobs import log, train_group, train_one
from analysis.sweep.layout import LOGS
from analysis.sweep.plan import RunItem, deal_into_groups


class Progress:
    """One line per finished step, with an ETA from the mean time per step so far.

    ``sweep: 3/8 runs trained and saved: latent_size=4, seed=0; 5 left, ETA 40 s``
    """

    def __init__(self, total: int, what: str, enabled: bool):
        self.total, self.what, self.enabled = total, what, enabled
        self.done = 0
        self.start = time.perf_counter()

    def step(self, label: str) -> None:
        self.done += 1
        left = self.total - self.done
        eta = (time.perf_counter() - self.start) / self.done * left
        log(f"sweep: {self.done}/{self.total} {self.what}: {label}; {left} left, ETA {eta:.0f} s", self.enabled)


def cpu_default_is_batched(executor, workers, executor_options, device) -> bool:
    """Whether a grid given no executor runs batched in this process: yes on a CPU.

    There ``entropy_ae.training.batched`` trains one model per core in threads of this process,
    with the same numbers as one process per run (``--executor local``: each run at one thread
    too), but without starting a Python with torch for every run (about 6 s each on 2 cores).
    """
    if executor is not None or workers is not None or executor_options:
        return False
    return resolve_device(device).type == "cpu"


def resolve_executor(executor: str | None, batched: bool) -> str:
    """The executor a sweep uses: the one asked for, else batched in this process or the local pool."""
    if executor is None:
        # Batched training defaults to one group in this process: the point is one set of kernels.
        executor = "sequential" if batched else "local"
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {EXECUTORS}")
    return executor


def check_executor(executor: str | None, batched: bool, options: dict, progress: bool) -> None:
    """Refuse, before the reference is measured or anything trained, an executor that cannot run here."""
    executor = resolve_executor(executor, batched)
    check_backend(executor, **options)
    if executor == "ray" and not (options.get("address") or os.environ.get("RAY_ADDRESS")):
        log("sweep: no --ray-address and no RAY_ADDRESS: starting a local Ray instance on this machine only", progress)


def _run_label(item: RunItem) -> str:
    return f"latent_size={item.latent_size}, seed={item.seed}"


def dispatch(pending: list[RunItem], data, executor: str | None, workers: int | None, batched: bool, out: Path,
             progress: bool, options: dict) -> list[str]:
    """Run the pending grid points; returns one message per failed job (completed runs are kept).

    Batched, each job is a group of models trained together, ``workers`` groups (default 1);
    otherwise each job is one grid point.
    """
    executor = resolve_executor(executor, batched)
    here = executor == "sequential"
    if batched:
        jobs = deal_into_groups(pending, workers or 1)
        names = [f"group-{g}" for g in range(len(jobs))]
        saved = Progress(len(pending), "runs trained and saved", progress)
        fn = partial(train_group, data=data, on_saved=lambda item: saved.step(_run_label(item)))
        fn = fn if here else train_group
        log(f"sweep: training {len(pending)} models together (batched)" if len(jobs) == 1 else
            f"sweep: training {len(pending)} models in {len(jobs)} batched groups", progress)
    else:
        jobs = pending
        names = [str(Path(i.run_dir).relative_to(out)) for i in pending]
        fn = partial(train_one, data=data) if here else train_one
    log(f"sweep: running {len(pending)} runs as {len(jobs)} jobs with the {executor!r} executor", progress)
    finished = Progress(len(jobs), "jobs finished", progress)

    def report(outcome) -> None:
        state = "done" if outcome.ok else f"FAILED ({outcome.error}; log: {outcome.log_path})"
        finished.step(f"{names[jobs.index(outcome.item)]} {state}")

    start = time.perf_counter()
    outcomes = map_runs(fn, jobs, executor=executor, workers=workers, log_dir=str(out / LOGS), names=names,
                        callback=report, **options)
    failures = [f"{name}: {o.error} (log: {o.log_path})" for name, o in zip(names, outcomes) if not o.ok]
    log(f"sweep: {len(jobs) - len(failures)} jobs finished, {len(failures)} failed, "
        f"in {time.perf_counter() - start:.1f} s", progress)
    return failures
