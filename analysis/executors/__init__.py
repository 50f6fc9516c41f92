"""Run a grid of independent jobs here, on a local process pool, a SLURM cluster or a Ray cluster.

One function, :func:`map_runs`, maps a picklable module-level function over a list of items
with one of the backends of :data:`EXECUTORS` and returns one :class:`RunOutcome` per item, in
the items' order:

``"sequential"``
    One item after another in this process (:mod:`.local`): output stays on the terminal and
    a debugger works; only a failure's traceback goes to the log; no crash isolation.
``"local"`` (default)
    A bounded pool of spawned processes, one fresh process per item (:mod:`.local`), so a
    crash (segfault, out of memory) takes down only its own run. On a GPU machine there is one
    slot per GPU and each run is pinned to its slot's GPU through ``CUDA_VISIBLE_DEVICES`` (so
    ``device="auto"`` inside the run means "my GPU"); on CPU each worker gets
    ``cpu_count // workers`` threads.
``"slurm"``
    submitit's ``AutoExecutor.map_array``: the whole grid is one SLURM job array
    (:mod:`.slurm`). Needs ``pip install entropy-ae[slurm]`` and SLURM on this machine.
``"ray"``
    One Ray task per item with per-run resources (:mod:`.ray`). Needs ``pip install entropy-ae[ray]``.

Every run writes its stdout, stderr and, on failure, its traceback to its own log file
``log_dir/<name>.log`` (:func:`.logged.run_logged`). A run that raises, crashes or times out is
returned as ``RunOutcome(ok=False, error=..., log_path=...)``; :func:`map_runs` never raises
because of a run, so one bad node cannot stop the grid. Configuration errors (unknown executor,
bad option, missing optional dependency) are raised before anything runs.

The item type is opaque: the caller decides what a job is (one model's configuration or a group
of them); this package only decides where it runs. Runs are expected to write only their own
run directory, atomically; results are gathered from the run directories afterwards.

Importing this package is cheap (no torch, no scikit-learn, no pandas): the command line reads
:data:`EXECUTORS` and the options before it parses its arguments.
"""

from __future__ import annotations

import importlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from analysis.executors.logged import RunOutcome
from analysis.executors.options import add_executor_options, executor_options

EXECUTORS = ("sequential", "local", "slurm", "ray")
# Options each backend takes; None: checked by the backend itself (submitit for slurm).
BACKEND_OPTIONS = {
    "sequential": (),
    "local": ("gpus", "threads_per_worker", "timeout_min"),
    "slurm": None,
    "ray": ("address", "num_cpus", "num_gpus", "max_retries", "ray_init"),
}

__all__ = ["EXECUTORS", "ExecutorUnavailable", "RunOutcome", "add_executor_options", "check_backend",
           "executor_options", "map_runs"]


class ExecutorUnavailable(ValueError):
    """The chosen backend cannot run on this machine (no SLURM, optional package missing)."""


def map_runs(fn: Callable[[Any], Any], items: Sequence[Any], executor: str = "local",
             workers: int | None = None, log_dir: str | os.PathLike | None = None, *,
             names: Sequence[str] | None = None,
             callback: Callable[[RunOutcome], None] | None = None,
             **options: Any) -> list[RunOutcome]:
    """Run ``fn(item)`` for every item on the chosen backend; capture failures, never raise them.

    Parameters
    ----------
    fn : callable
        A picklable module-level function of one item (pickled by reference, so its
        module must be importable on the workers).
    items : sequence
        The runs. Each item must be picklable; its type is up to ``fn`` (one config, a
        group of configs, ...).
    executor : {"sequential", "local", "slurm", "ray"}
        The backend, see the module docstring.
    workers : int, optional
        How many runs at once. sequential: ignored (one). local: default one per GPU, else
        one per CPU core. slurm: the job array's parallelism (``%workers``). ray: the most
        tasks in flight (default: as many as the cluster's resources allow).
    log_dir : path, optional
        Folder for the per-run logs (and submitit's files under ``log_dir/submitit``).
        Must be on a filesystem every node can write for a cluster. Default: a new
        temporary folder (sequential, local and a local Ray only); required for ``"slurm"``.
    names : sequence of str, optional
        Log file name (relative path without extension) per item, e.g.
        ``"digits/latent_size=8/seed=0"``; default ``"run-00000"``, ``"run-00001"``...
        Give names that identify the run so a second invocation overwrites the log of
        the same run.
    callback : callable, optional
        Called in this process with each :class:`RunOutcome` as soon as it is known
        (completion order), e.g. to report progress.
    **options
        Backend options (:data:`BACKEND_OPTIONS`).

        local: ``gpus`` (list of GPU ids to use, ``[]`` for CPU only; default all
        visible), ``threads_per_worker`` (default ``cpu_count // workers``, at least 1),
        ``timeout_min`` (kill a run after this long).

        slurm: any submitit ``AutoExecutor.update_parameters`` argument, e.g.
        ``slurm_partition``, ``slurm_gpus_per_node`` (or ``gpus_per_node``),
        ``timeout_min`` (default 120), ``slurm_array_parallelism`` (default
        ``workers``), ``cpus_per_task``, ``mem_gb`` or ``slurm_mem``,
        ``slurm_setup`` (shell lines run before the job, e.g. ``module load``);
        plus ``cluster`` (``None``: SLURM, an error when it is not installed here;
        ``"local"``: run the array locally without a cluster, as the tests do) and
        ``poll_s`` (status poll period, s).

        ray: ``address`` (``"auto"``/``"ray://host:10001"``; default ``RAY_ADDRESS``,
        else a local ``ray.init()``; with an address and no cluster there, Ray raises
        rather than falling back), ``num_cpus`` (per run, default 1), ``num_gpus`` (per
        run, default 0; fractions allowed), ``max_retries`` (Ray's retries of a run whose
        worker died, default 0: the next invocation retries instead), ``ray_init`` (extra
        ``ray.init`` keyword arguments).

    Returns
    -------
    list of RunOutcome
        One per item, in the items' order.

    Raises
    ------
    ValueError
        Unknown executor, bad ``workers``, ``names`` or option.
    ImportError
        The backend's optional dependency is missing (with the pip command to fix it).
    ExecutorUnavailable
        ``"slurm"`` on a machine without SLURM.
    """
    _check_executor(executor)
    if not callable(fn):
        raise ValueError(f"fn must be a callable of one item, got {fn!r}")
    if getattr(fn, "__name__", "") == "<lambda>" or "<locals>" in getattr(fn, "__qualname__", ""):
        raise ValueError(f"fn must be a module-level function (workers import it by name); got {fn!r}")
    items = list(items)
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    _check_options(executor, options)
    if not items:
        return []
    if log_dir is None:
        if executor == "slurm":
            raise ValueError("log_dir is required for the slurm executor: pass a folder every node can write "
                             "(shared filesystem), e.g. <sweep dir>/logs")
        log_dir = tempfile.mkdtemp(prefix="entropy-ae-logs-")
    log_dir = Path(log_dir).absolute()
    log_paths = _log_paths(log_dir, names, len(items))
    report = callback if callback is not None else (lambda outcome: None)
    return _backend(executor)(fn, items, log_paths, log_dir, workers, report, **options)


def _backend(executor: str) -> Callable[..., list[RunOutcome]]:
    """The backend's map function, imported only when it runs."""
    if executor in ("sequential", "local"):
        from analysis.executors import local

        return local.map_sequential if executor == "sequential" else local.map_local
    if executor == "slurm":
        from analysis.executors.slurm import map_slurm

        return map_slurm
    from analysis.executors.ray import map_ray

    return map_ray


def check_backend(executor: str, **options: Any) -> None:
    """Raise :class:`ExecutorUnavailable` when ``executor`` cannot run here; run nothing.

    For callers that prepare work before calling :func:`map_runs` (a sweep measures its data
    reference first), so a missing cluster or package is reported before that work.
    """
    _check_executor(executor)
    _check_options(executor, options)
    try:
        if executor == "slurm":
            require_package("submitit", "slurm")
            if options.get("cluster") is None:
                from analysis.executors.slurm import require_slurm

                require_slurm()
        elif executor == "ray":
            require_package("ray", "ray")
    except ImportError as err:
        raise ExecutorUnavailable(str(err)) from err


def require_package(module: str, extra: str):
    """Import an optional backend's package, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"the {extra!r} executor needs the {module} package: "
                          f"pip install 'entropy-ae[{extra}]' (or pip install {module})") from err


def _check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")


def _check_options(executor: str, options: dict) -> None:
    """Refuse an option the backend does not know (slurm options are checked by submitit)."""
    known = BACKEND_OPTIONS[executor]
    unknown = sorted(set(options) - set(known)) if known is not None else []
    if unknown:
        allowed = f"its options are: {', '.join(known)}" if known else "it takes no options"
        raise ValueError(f"option(s) {', '.join(unknown)} do not apply to the {executor!r} executor; {allowed}")


def _log_paths(log_dir: Path, names: Sequence[str] | None, n: int) -> list[Path]:
    if names is None:
        names = [f"run-{i:05d}" for i in range(n)]
    names = [str(name) for name in names]
    if len(names) != n:
        raise ValueError(f"names must give one log name per item: {len(names)} names for {n} items")
    if len(set(names)) != n:
        raise ValueError("names must be unique: two runs would write the same log file")
    paths = []
    for name in names:
        parts = Path(name).parts
        if not name or Path(name).is_absolute() or ".." in parts:
            raise ValueError(f"log name {name!r} must be a relative path inside log_dir (no '..')")
        safe = [re.sub(r"[^A-Za-z0-9._=+-]", "_", part) for part in parts]
        paths.append(log_dir.joinpath(*safe).with_name(safe[-1] + ".log"))
    return paths
