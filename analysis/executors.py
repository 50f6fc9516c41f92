"""Run a grid of independent jobs on a local process pool, a SLURM cluster or a Ray cluster.

One function, :func:`map_runs`, maps a picklable module-level function over a list of
items with one of three backends and returns one :class:`RunOutcome` per item, in the
items' order:

``"local"`` (default)
    A bounded pool of spawned processes, one fresh process per run so a crash (segfault,
    out of memory) takes down only its own run. On a GPU machine there is one slot per
    GPU and each run is pinned to its slot's GPU through ``CUDA_VISIBLE_DEVICES`` (so
    ``device="auto"`` inside the run means "my GPU"); on CPU each worker gets
    ``cpu_count // workers`` threads (``OMP_NUM_THREADS`` and ``torch.set_num_threads``)
    so workers do not fight over cores.
``"slurm"``
    submitit's ``AutoExecutor.map_array``: the whole grid is one SLURM job array.
    Needs ``pip install entropy-ae[slurm]`` and a machine where SLURM is installed (the
    login node of a cluster); without SLURM it is an error, never a quiet local run.
``"ray"``
    One Ray task per item with per-run resources (``num_cpus``, ``num_gpus``; fractional
    GPUs such as ``num_gpus=0.25`` let several small autoencoders share a GPU), on an
    existing cluster (``address="auto"`` or ``RAY_ADDRESS``) or a local ``ray.init()``.
    Needs ``pip install entropy-ae[ray]``.

Every run writes its stdout, stderr and, on failure, its traceback to its own log file
``log_dir/<name>.log``. A run that raises, crashes or times out is returned as
``RunOutcome(ok=False, error=..., log_path=...)``; :func:`map_runs` never raises because
of a run, so one bad node cannot stop the grid. Configuration errors (unknown executor,
bad option, missing optional dependency) are raised before anything runs.

The item type is opaque: an item can be one model's configuration or a group of them
(the batched multi-model path). Runs are expected to write only their own run directory,
atomically (``entropy_ae.runs.save_run`` does); results tables are gathered from
the run directories afterwards, never written by the runs, so a failed or repeated run
cannot corrupt finished results.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import multiprocessing.connection
import os
import pickle
import re
import shutil
import socket
import sys
import tempfile
import time
import traceback
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

EXECUTORS = ("local", "slurm", "ray")

_THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_DEFAULT_SLURM_TIMEOUT_MIN = 120  # submitit's own default (5 min) would kill real trainings


class ExecutorUnavailable(ValueError):
    """The chosen backend cannot run on this machine (no SLURM, optional package missing)."""


@dataclass
class RunOutcome:
    """What became of one item.

    Attributes
    ----------
    item : object
        The item, as passed to :func:`map_runs`.
    ok : bool
        True when ``fn(item)`` returned normally.
    result : object
        The return value of ``fn(item)`` (None on failure).
    error : str or None
        One line saying what went wrong (exception type and message, or how the worker
        died); the full traceback is in the log.
    log_path : pathlib.Path
        The run's log: its stdout, stderr and traceback.
    seconds : float or None
        Wall-clock time of ``fn(item)`` on the worker, in seconds (None when unknown,
        e.g. the worker died).
    """

    item: Any
    ok: bool
    result: Any = None
    error: str | None = None
    log_path: Path | None = None
    seconds: float | None = None


# --------------------------------------------------------------------------- public entry


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
    executor : {"local", "slurm", "ray"}
        The backend, see the module docstring.
    workers : int, optional
        How many runs at once. local: default one per GPU, else one per CPU core.
        slurm: the job array's parallelism (``%workers``). ray: the most tasks in flight
        (default: as many as the cluster's resources allow).
    log_dir : path, optional
        Folder for the per-run logs (and submitit's files under ``log_dir/submitit``).
        Must be on a filesystem every node can write for a cluster. Default: a new
        temporary folder (local and a local Ray only); required for ``"slurm"``.
    names : sequence of str, optional
        Log file name (relative path without extension) per item, e.g.
        ``"digits/latent_size=8/seed=0"``; default ``"run-00000"``, ``"run-00001"``...
        Give names that identify the run so a second invocation overwrites the log of
        the same run.
    callback : callable, optional
        Called in this process with each :class:`RunOutcome` as soon as it is known
        (completion order), e.g. to report progress.
    **options
        Backend options.

        local: ``gpus`` (list of GPU ids to use, ``[]`` for CPU only; default all
        visible), ``threads_per_worker`` (default ``cpu_count // workers``, at least 1),
        ``timeout_min`` (kill a run after this long), ``in_process`` (run the items one
        after another in this process: output stays on the terminal and a debugger
        works; only the traceback goes to the log; no crash isolation).

        slurm: any submitit ``AutoExecutor.update_parameters`` argument, e.g.
        ``slurm_partition``, ``slurm_gpus_per_node`` (or ``gpus_per_node``),
        ``timeout_min`` (default 120), ``slurm_array_parallelism`` (default
        ``workers``), ``cpus_per_task``, ``mem_gb`` or ``slurm_mem``,
        ``slurm_setup`` (shell lines run before the job, e.g. ``module load``);
        plus ``cluster`` (``None``: SLURM, an error when it is not installed here;
        ``"local"``: run the array locally without a cluster, as the tests do) and
        ``poll_s`` (status poll period, s).

        ray: ``address`` (``"auto"``/``"ray://host:10001"``; default ``RAY_ADDRESS``,
        else a local ``ray.init()``: a documented default, announced by the sweep; with
        an address and no cluster there, Ray raises rather than falling back), ``num_cpus`` (per run, default 1), ``num_gpus``
        (per run, default 0; fractions allowed), ``max_retries`` (Ray's retries of a run
        whose worker died, default 0: the next invocation retries instead),
        ``ray_init`` (extra ``ray.init`` keyword arguments).

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
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
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
    backend = {"local": _map_local, "slurm": _map_slurm, "ray": _map_ray}[executor]
    report = callback if callback is not None else (lambda outcome: None)
    return backend(fn, items, log_paths, log_dir, workers, report, **options)


_BACKEND_OPTIONS = {
    "local": ("gpus", "threads_per_worker", "timeout_min", "in_process"),
    "ray": ("address", "num_cpus", "num_gpus", "max_retries", "ray_init"),
}


def _check_options(executor: str, options: dict) -> None:
    """Refuse an option the backend does not know (slurm options are checked by submitit)."""
    known = _BACKEND_OPTIONS.get(executor)
    unknown = sorted(set(options) - set(known)) if known is not None else []
    if unknown:
        raise ValueError(f"option(s) {', '.join(unknown)} do not apply to the {executor!r} executor; "
                         f"its options are: {', '.join(known)}")


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


# --------------------------------------------------------------------------- command-line options

# dest -> (flag, executors it applies to, map_runs option name)
_CLI_OPTIONS = {
    "timeout_min": ("--timeout-min", ("local", "slurm"), "timeout_min"),
    "slurm_partition": ("--slurm-partition", ("slurm",), "slurm_partition"),
    "slurm_gpus_per_node": ("--slurm-gpus-per-node", ("slurm",), "slurm_gpus_per_node"),
    "slurm_cpus_per_task": ("--slurm-cpus-per-task", ("slurm",), "cpus_per_task"),
    "slurm_mem_gb": ("--slurm-mem-gb", ("slurm",), "mem_gb"),
    "slurm_account": ("--slurm-account", ("slurm",), "slurm_account"),
    "slurm_setup": ("--slurm-setup", ("slurm",), "slurm_setup"),
    "slurm_param": ("--slurm-param", ("slurm",), "slurm_additional_parameters"),
    "ray_address": ("--ray-address", ("ray",), "address"),
    "ray_num_cpus": ("--ray-num-cpus", ("ray",), "num_cpus"),
    "ray_num_gpus": ("--ray-num-gpus", ("ray",), "num_gpus"),
}


def add_executor_options(parser) -> None:
    """Add the backend options of :func:`map_runs` to an argparse parser (``entropy-ae sweep``).

    ``--executor`` and ``--workers`` are the caller's; :func:`executor_options` turns the
    parsed arguments into ``map_runs`` keyword arguments.
    """
    from entropy_ae.options import positive_int

    def non_negative_float(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value >= 0:
            raise ValueError(f"expected a non-negative number, got {text!r}")
        return value

    group = parser.add_argument_group("cluster options (for --executor slurm or ray)")
    group.add_argument("--timeout-min", type=positive_int, metavar="M",
                       help="time limit of one run in minutes (slurm: the job's --time, default 120; "
                            "local: the run is killed and reported as failed)")
    group.add_argument("--slurm-partition", metavar="P", help="SLURM partition of the job array")
    group.add_argument("--slurm-gpus-per-node", type=int, metavar="G", help="GPUs per run (e.g. 1)")
    group.add_argument("--slurm-cpus-per-task", type=positive_int, metavar="C",
                       help="CPU cores per run (also its torch threads)")
    group.add_argument("--slurm-mem-gb", type=non_negative_float, metavar="GB", help="memory per run, GB")
    group.add_argument("--slurm-account", metavar="A", help="SLURM account to charge")
    group.add_argument("--slurm-setup", action="append", metavar="LINE",
                       help="shell line run before each run, e.g. 'module load cuda' (repeatable)")
    group.add_argument("--slurm-param", action="append", metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. qos=high or constraint=a100 (repeatable)")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="Ray cluster to join ('auto', 'ray://head:10001'; default $RAY_ADDRESS, "
                            "else a local Ray instance)")
    group.add_argument("--ray-num-cpus", type=non_negative_float, metavar="C", help="CPUs per run (default 1)")
    group.add_argument("--ray-num-gpus", type=non_negative_float, metavar="F",
                       help="GPUs per run; a fraction such as 0.25 packs several runs on one GPU (default 0)")


def executor_options(args) -> dict:
    """``map_runs`` keyword arguments from arguments parsed with :func:`add_executor_options`.

    Raises ValueError when an option does not apply to ``args.executor`` (e.g.
    ``--slurm-partition`` with ``--executor local``), rather than ignoring it.
    """
    executor = getattr(args, "executor", None) or "local"
    options, misplaced = {}, []
    for dest, (flag, executors, name) in _CLI_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if executor not in executors:
            misplaced.append(flag)
            continue
        if dest == "slurm_param":
            value = dict(_key_value(text) for text in value)
        options[name] = value
    if misplaced:
        raise ValueError(f"{', '.join(misplaced)} do(es) not apply to --executor {executor}")
    return options


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--slurm-param expects KEY=VALUE (e.g. qos=high), got {text!r}")
    return key.strip(), value.strip()


# --------------------------------------------------------------------------- the job wrapper


def run_logged(fn: Callable[[Any], Any] | bytes, item: Any = None, log_path: str | os.PathLike = "",
               threads: int | None = None, capture: bool = True) -> tuple[bool, Any, str | None, float]:
    """Run ``fn(item)`` on a worker with its output in ``log_path``; return, never raise.

    This is what every backend executes on the worker. ``fn`` may also be
    ``pickle.dumps((fn, item))`` (the local backend sends it so, to set the environment
    before the function's module, and torch with it, are imported).

    Returns
    -------
    (ok, result, error, seconds)
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if threads is not None:
        for var in _THREAD_ENV_VARS:
            os.environ[var] = str(threads)
    with open(log_path, "w", buffering=1) as log, _redirect_output(log, capture):
        log.write(f"# entropy-ae run on {socket.gethostname()} pid {os.getpid()} at "
                  f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}; "
                  f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}, "
                  f"threads={threads}\n")
        start = time.perf_counter()
        try:
            if isinstance(fn, bytes):
                fn, item = pickle.loads(fn)  # our own payload from the parent process
            _set_torch_threads(threads)
            result = fn(item)
        except (Exception, SystemExit) as exc:
            seconds = time.perf_counter() - start
            sys.stdout.flush()
            log.write(traceback.format_exc())
            log.write(f"# FAILED after {seconds:.1f} s\n")
            return False, None, _one_line(exc), seconds
        seconds = time.perf_counter() - start
        sys.stdout.flush()
        log.write(f"# done in {seconds:.1f} s\n")
        return True, result, None, seconds


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _set_torch_threads(threads: int | None) -> None:
    # Only when torch is already in use: importing it just for this would slow down jobs
    # that never touch it. A later import of torch reads OMP_NUM_THREADS set above.
    if threads is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


@contextlib.contextmanager
def _redirect_output(log, capture: bool):
    """Point file descriptors 1 and 2 at the log, so C-level and child-process output land there too."""
    if not capture:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    log.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _append_to_log(log_path: Path, message: str) -> None:
    """Record in the run's log why it has no result when the worker could not (it died)."""
    with contextlib.suppress(OSError):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            log.write(f"\n# map_runs: {message}\n")


def _outcome(item: Any, log_path: Path, packed: tuple[bool, Any, str | None, float]) -> RunOutcome:
    ok, result, error, seconds = packed
    return RunOutcome(item=item, ok=ok, result=result, error=error, log_path=log_path, seconds=seconds)


def _died(item: Any, log_path: Path, message: str) -> RunOutcome:
    _append_to_log(log_path, message)
    return RunOutcome(item=item, ok=False, result=None, error=message, log_path=log_path, seconds=None)


# --------------------------------------------------------------------------- local


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
        env = {var: str(threads_per_worker) for var in _THREAD_ENV_VARS}
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
        _append_to_log(log_path, f"the result could not be sent back: {_one_line(exc)}")
        conn.send((False, None, f"result not picklable: {_one_line(exc)}", packed[3]))
    conn.close()


@dataclass
class _LocalJob:
    index: int
    process: Any
    conn: Any
    slot: int
    started: float


def _map_local(fn, items, log_paths, log_dir, workers, report, *, gpus=None, threads_per_worker=None,
               timeout_min: float | None = None, in_process: bool = False) -> list[RunOutcome]:
    slots = local_slots(workers, gpus, threads_per_worker)
    if in_process:
        return _map_in_process(fn, items, log_paths, report)
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
            return _outcome(item, log_path, packed)
        return _died(item, log_path, f"worker died with exit code {job.process.exitcode} before returning "
                                     "(killed, out of memory or a crash in native code)")
    if not alive:
        job.process.join()
        job.conn.close()
        return _died(item, log_path, f"worker died with exit code {job.process.exitcode} before returning "
                                     "(killed, out of memory or a crash in native code)")
    if timeout_min is not None and time.monotonic() - job.started > 60 * timeout_min:
        job.process.kill()
        job.process.join()
        job.conn.close()
        return _died(item, log_path, f"killed after the time limit of {timeout_min} min")
    return None


def _map_in_process(fn, items, log_paths, report) -> list[RunOutcome]:
    outcomes = []
    for item, log_path in zip(items, log_paths):
        outcome = _outcome(item, log_path, run_logged(fn, item, log_path, capture=False))
        outcomes.append(outcome)
        report(outcome)
    return outcomes


# --------------------------------------------------------------------------- optional backends


def _require(module: str, extra: str):
    """Import an optional backend, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"the {extra!r} executor needs the {module} package: "
                          f"pip install 'entropy-ae[{extra}]' (or pip install {module})") from err


def check_backend(executor: str, **options: Any) -> None:
    """Raise :class:`ExecutorUnavailable` when ``executor`` cannot run here; run nothing.

    For callers that prepare work before calling :func:`map_runs` (a sweep measures its data
    reference first), so a missing cluster or package is reported before that work.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    _check_options(executor, options)
    try:
        if executor == "slurm":
            _require("submitit", "slurm")
            if options.get("cluster") is None:
                _require_slurm()
        elif executor == "ray":
            _require("ray", "ray")
    except ImportError as err:
        raise ExecutorUnavailable(str(err)) from err


# --------------------------------------------------------------------------- slurm (submitit)


def _require_slurm() -> None:
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
    submitit = _require("submitit", "slurm")
    if cluster is None:
        _require_slurm()
        cluster = "slurm"  # never submitit's automatic fallback to a local run
    executor = submitit.AutoExecutor(folder=Path(log_dir) / "submitit", cluster=cluster)
    parameters.setdefault("timeout_min", _DEFAULT_SLURM_TIMEOUT_MIN)
    parameters.setdefault("name", "entropy-ae")
    if workers is not None:
        parameters.setdefault("slurm_array_parallelism", workers)
    try:
        executor.update_parameters(**parameters)
    except (NameError, AssertionError) as err:  # submitit's way of rejecting a parameter
        raise ValueError(f"bad slurm option: {err}") from err
    return executor


def _map_slurm(fn, items, log_paths, log_dir, workers, report, *, cluster: str | None = None,
               poll_s: float | None = None, **parameters) -> list[RunOutcome]:
    submitit = _require("submitit", "slurm")
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
                outcome = _died(items[i], log_paths[i], f"slurm job {job.job_id} ended without a result: "
                                                        f"{_one_line(exc)} (submitit logs: {job.paths.stderr})")
            else:
                outcome = _outcome(items[i], log_paths[i], packed)
            outcomes[i] = outcome
            report(outcome)
    except KeyboardInterrupt:  # Ctrl-C stops the grid, not just this process
        for i, job in enumerate(jobs):
            if outcomes[i] is None:
                job.cancel(check=False)
        raise
    return outcomes  # type: ignore[return-value]


# --------------------------------------------------------------------------- ray


def _map_ray(fn, items, log_paths, log_dir, workers, report, *, address: str | None = None,
             num_cpus: float = 1, num_gpus: float = 0, max_retries: int = 0,
             ray_init: dict | None = None) -> list[RunOutcome]:
    ray = _require("ray", "ray")
    if not num_cpus >= 0 or not num_gpus >= 0:
        raise ValueError(f"num_cpus and num_gpus must be >= 0, got {num_cpus!r}, {num_gpus!r}")
    started_here = False
    if not ray.is_initialized():
        init = {"include_dashboard": False, **(ray_init or {})}
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, **init)
        else:  # a local instance sized for the requested concurrency
            if workers is not None:
                init.setdefault("num_cpus", max(1, math.ceil(workers * max(num_cpus, 1))))
            ray.init(**init)
        started_here = True
    try:
        task = ray.remote(run_logged).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries)
        threads = max(1, int(num_cpus))
        outcomes: list[RunOutcome | None] = [None] * len(items)
        pending = deque(range(len(items)))
        in_flight: dict[Any, int] = {}
        limit = workers or len(items)
        try:
            _ray_loop(ray, task, fn, items, log_paths, threads, limit, pending, in_flight, outcomes, report)
        except KeyboardInterrupt:  # Ctrl-C stops the grid, not just this process
            for ref in in_flight:
                ray.cancel(ref, force=True)
            raise
        return outcomes  # type: ignore[return-value]
    finally:
        if started_here:
            ray.shutdown()


def _ray_loop(ray, task, fn, items, log_paths, threads, limit, pending, in_flight, outcomes, report) -> None:
    """Keep at most ``limit`` tasks in flight; turn each finished one into its outcome."""
    while pending or in_flight:
        while pending and len(in_flight) < limit:
            i = pending.popleft()
            in_flight[task.remote(fn, items[i], str(log_paths[i]), threads)] = i
        done, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in done:
            i = in_flight.pop(ref)
            try:
                packed = ray.get(ref)
            except Exception as exc:  # worker or node died, task cancelled, object lost
                outcome = _died(items[i], log_paths[i], f"ray task ended without a result: {_one_line(exc)}")
            else:
                outcome = _outcome(items[i], log_paths[i], packed)
            outcomes[i] = outcome
            report(outcome)
