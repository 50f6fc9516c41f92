"""Running one item with its output in its own log file, and what became of it (:class:`RunOutcome`).

:func:`run_logged` is what every backend executes on its worker: it never raises because of the
item, so one bad run cannot stop a grid. The helpers below turn its packed return value, or a
worker that died before returning, into a :class:`RunOutcome`.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class RunOutcome:
    """What became of one item.

    Attributes
    ----------
    item : object
        The item, as passed to :func:`analysis.executors.map_runs`.
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


def run_logged(fn: Callable[[Any], Any] | bytes, item: Any = None, log_path: str | os.PathLike = "",
               threads: int | None = None, capture: bool = True) -> tuple[bool, Any, str | None, float]:
    """Run ``fn(item)`` on a worker with its output in ``log_path``; return, never raise.

    ``fn`` may also be ``pickle.dumps((fn, item))`` (the local backend sends it so, to set the
    environment before the function's module, and torch with it, are imported). With
    ``capture=False`` the output stays on the terminal and only the traceback goes to the log
    (the sequential backend: a debugger works).

    Returns
    -------
    (ok, result, error, seconds)
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if threads is not None:
        for var in THREAD_ENV_VARS:
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
            return False, None, one_line(exc), seconds
        seconds = time.perf_counter() - start
        sys.stdout.flush()
        log.write(f"# done in {seconds:.1f} s\n")
        return True, result, None, seconds


def one_line(exc: BaseException) -> str:
    """``"Type: first line of the message"``: how a failure is named in an outcome."""
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


def finished(item: Any, log_path: Path, packed: tuple[bool, Any, str | None, float]) -> RunOutcome:
    """The outcome of an item whose worker returned :func:`run_logged`'s packed result."""
    ok, result, error, seconds = packed
    return RunOutcome(item=item, ok=ok, result=result, error=error, log_path=log_path, seconds=seconds)


def died(item: Any, log_path: Path, message: str) -> RunOutcome:
    """The outcome of an item whose worker died before returning; the reason is added to its log."""
    append_to_log(log_path, message)
    return RunOutcome(item=item, ok=False, result=None, error=message, log_path=log_path, seconds=None)


def append_to_log(log_path: Path, message: str) -> None:
    """Record in the run's log why it has no result when the worker could not (it died)."""
    with contextlib.suppress(OSError):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            log.write(f"\n# map_runs: {message}\n")
