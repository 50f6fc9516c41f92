"""Threads of the estimators: how many, how the compiled kernels split rows over them, and BLAS kept out.

* :func:`workers` -- the threads a kernel may use: torch's thread setting (the
  one knob users already set for the rest of the toolkit), or a share of it
  inside :func:`alongside`.
* :func:`in_threads` -- a kernel over rows 0..n in items of rows, on a thread
  pool kept for later calls. The kernels release the GIL, so plain threads run
  them in parallel; nothing forks. Threads split rows only, so the numbers do not
  depend on the thread count.
* :func:`alongside` -- two independent computations at once, each on its share
  of the threads (the data's KSG pass and its Gaussian reference).
* :func:`one_blas_thread` -- BLAS single-threaded during an estimator call.
  Every BLAS call of the estimators is on n x d arrays with small d
  (covariances, whitening, reference draws), which one thread does quickly;
  a threaded BLAS would leave its threads spinning after each call on the
  cores the kernels need next.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

#: Work items per thread: the cost per row varies (denser regions, larger balls), so more, smaller items
#: keep the threads equally busy ...
_ITEMS_PER_THREAD = 8
#: ... of at least this many rows each, so that small inputs are not split into items shorter than the cost of
#: handing one to a thread ...
_MIN_ROWS_PER_ITEM = 256
#: ... and at most this many rows per item: compiled code cannot be interrupted, so Ctrl-C (or an error in
#: another thread) waits for the items already running (a fraction of a second to about 1 s here).
_MAX_ROWS_PER_ITEM = 1024

_SHARE = threading.local()  # .workers: the threads of the part of alongside() this thread runs
_BLAS = {"depth": 0}  # estimator calls running now in the main thread


def workers() -> int:
    """The threads a kernel may use: torch's thread count, or this thread's share inside :func:`alongside`."""
    count = max(1, torch.get_num_threads())
    share = getattr(_SHARE, "workers", None)
    return count if share is None else min(count, share)


def in_threads(kernel, n: int, workers: int, *args) -> None:
    """``kernel(*args, start, stop)`` over rows 0..n in items of rows, in ``workers`` threads."""
    if workers < 2:
        for start in range(0, n, _MAX_ROWS_PER_ITEM):  # Python checks for Ctrl-C between items
            kernel(*args, start, min(n, start + _MAX_ROWS_PER_ITEM))
        return
    items = max(workers, min(workers * _ITEMS_PER_THREAD, n // _MIN_ROWS_PER_ITEM), -(-n // _MAX_ROWS_PER_ITEM))
    edges = np.unique(np.linspace(0, n, items + 1).astype(np.int64))
    futures = [_pool(workers, os.getpid()).submit(kernel, *args, start, stop)
               for start, stop in zip(edges[:-1], edges[1:])]
    try:
        for future in futures:
            future.result()  # re-raises the first exception of any item
    finally:
        # On an error or Ctrl-C, drop the items not yet started, and wait for the running ones (they
        # write into the caller's arrays).
        for future in futures:
            future.cancel()
        wait(futures)


def alongside(first, second, workers: int):
    """``(first(), second())``; with ``workers`` > 1 the two run at once, each on its share of the threads.

    Each on its own core beats each split over all cores, whose items cost a
    hand-off each. ``first`` runs in a helper thread (never in the kernels'
    pool, so the items of both share the pool without waiting on each other),
    ``second`` in the caller's; :func:`workers` gives each its share.
    The numbers are those of running them one after the other.
    """
    if workers < 2:
        return first(), second()
    future = _helper(os.getpid()).submit(_with_share, first, workers // 2)
    try:
        other = _with_share(second, workers - workers // 2)
    finally:
        wait([future])  # on an error here, first() still finishes before the caller goes on
    return future.result(), other


def one_blas_thread(function):
    """Decorate an estimator: BLAS (numpy's and scipy's, through threadpoolctl) runs on one thread during a call.

    As scikit-learn does around its k-means loops. The limit is process-wide
    while it lasts, and set and restored by the main thread only: some OpenBLAS
    builds ignore thread counts set from other threads, and concurrent calls
    from several threads could restore each other's limits in the wrong order.
    A nested call leaves the outer call's limit in place.
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            return function(*args, **kwargs)
        limiter = _controller().limit(limits=1, user_api="blas") if _BLAS["depth"] == 0 else None
        _BLAS["depth"] += 1
        try:
            return function(*args, **kwargs)
        finally:
            _BLAS["depth"] -= 1
            if limiter is not None:
                limiter.restore_original_limits()
    return wrapper


def _with_share(function, share: int):
    previous = getattr(_SHARE, "workers", None)
    _SHARE.workers = share
    try:
        return function()
    finally:
        _SHARE.workers = previous


@functools.lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    """The BLAS and OpenMP libraries loaded in this process, found once (a search costs about 0.2 ms)."""
    return ThreadpoolController()


@functools.lru_cache(maxsize=4)
def _pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """One thread pool per worker count and process, kept for later calls (new threads cost about 1 ms a
    call). Keyed by the process id because a forked child inherits the pool without its threads."""
    return ThreadPoolExecutor(workers, thread_name_prefix="entropy-ae")


@functools.lru_cache(maxsize=2)
def _helper(pid: int) -> ThreadPoolExecutor:
    """The helper threads of :func:`alongside`, per process (keyed as :func:`_pool`): as many as there are
    CPUs, started as needed, so that estimator calls made at once from several threads do not queue behind
    one helper (one caller reuses one idle thread)."""
    return ThreadPoolExecutor(max(2, os.cpu_count() or 1), thread_name_prefix="entropy-ae-alongside")
