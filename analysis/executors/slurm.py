"""The ``"slurm"`` backend: submitit's ``AutoExecutor.map_array``, the whole grid as one SLURM job array.

Needs ``pip install entropy-ae[slurm]`` and a machine where SLURM is installed (the login node of
a cluster); without SLURM it is an error, never a quiet local run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from analysis.executors import ExecutorUnavailable, require_package
from analysis.executors.logged import RunOutcome, died, finished, one_line, run_logged

DEFAULT_TIMEOUT_MIN = 120  # submitit's own default (5 min) would kill real trainings


def require_slurm() -> None:
    """Refuse to go on without SLURM: submitit would otherwise quietly run the array on this machine."""
    # submitit submits with sbatch and detects SLURM by srun; either one means a SLURM installation.
    if shutil.which("sbatch") is None and shutil.which("srun") is None:
        raise ExecutorUnavailable(
            "--executor slurm: SLURM was not found on this machine (no sbatch on PATH). Run the command on the "
            "login node of a SLURM cluster (after e.g. 'module load slurm'), or use --executor local to run "
            "on this machine.")


def slurm_executor(log_dir: str | os.PathLike, workers: int | None = None, cluster: str | None = None,
                   **parameters: Any):
    """A configured ``submitit.AutoExecutor`` writing its files to ``log_dir/submitit``.

    ``parameters`` go to ``update_parameters`` (``timeout_min`` defaults to 120,
    ``slurm_array_parallelism`` to ``workers``). ``cluster=None`` requires SLURM
    (:class:`ExecutorUnavailable` when there is no ``sbatch``); ``"local"`` runs without a
    cluster (tests), ``"debug"`` in this process.
    """
    submitit = require_package("submitit", "slurm")
    if cluster is None:
        require_slurm()
        cluster = "slurm"  # never submitit's automatic fallback to a local run
    executor = submitit.AutoExecutor(folder=Path(log_dir) / "submitit", cluster=cluster)
    parameters.setdefault("timeout_min", DEFAULT_TIMEOUT_MIN)
    parameters.setdefault("name", "entropy-ae")
    if workers is not None:
        parameters.setdefault("slurm_array_parallelism", workers)
    try:
        executor.update_parameters(**parameters)
    except (NameError, AssertionError) as err:  # submitit's way of rejecting a parameter
        raise ValueError(f"bad slurm option: {err}") from err
    return executor


def map_slurm(fn, items, log_paths, log_dir, workers, report, *, cluster: str | None = None,
              poll_s: float | None = None, **parameters) -> list[RunOutcome]:
    """Submit the items as one job array and collect each outcome as its job ends."""
    submitit = require_package("submitit", "slurm")
    executor = slurm_executor(log_dir, workers, cluster, **parameters)
    threads = executor.parameters.get("cpus_per_task") or 1
    jobs = executor.map_array(run_logged, [fn] * len(items), items, [str(p) for p in log_paths],
                              [threads] * len(items))
    if executor.cluster == "local" and hasattr(jobs[0], "_results_timeout_s"):
        for job in jobs:  # submitit waits 15 s for a dead job's result in case NFS lags; local disk does not
            job._results_timeout_s = 1
    index_of = {id(job): i for i, job in enumerate(jobs)}
    outcomes: list[RunOutcome | None] = [None] * len(items)
    poll = poll_s if poll_s is not None else (0.5 if executor.cluster == "local" else 30.0)
    try:
        for job in submitit.helpers.as_completed(jobs, poll_frequency=poll):
            i = index_of[id(job)]
            try:
                packed = job.result()
            except Exception as exc:  # the job itself died: time limit, preemption, OOM kill, node failure
                outcome = died(items[i], log_paths[i], f"slurm job {job.job_id} ended without a result: "
                                                       f"{one_line(exc)} (submitit logs: {job.paths.stderr})")
            else:
                outcome = finished(items[i], log_paths[i], packed)
            outcomes[i] = outcome
            report(outcome)
    except KeyboardInterrupt:  # Ctrl-C stops the grid, not just this process
        for i, job in enumerate(jobs):
            if outcomes[i] is None:
                job.cancel(check=False)
        raise
    return outcomes  # type: ignore[return-value]
