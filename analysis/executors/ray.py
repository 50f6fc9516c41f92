"""The ``"ray"`` backend: one Ray task per item, with per-item resources.

Fractional GPUs (``num_gpus=0.25``) let several small autoencoders share a GPU. Runs on an
existing cluster (``address="auto"`` or ``RAY_ADDRESS``) or a local ``ray.init()``. Needs
``pip install entropy-ae[ray]``.
"""

from __future__ import annotations

import math
import os
from collections import deque
from typing import Any

from analysis.executors import require_package
from analysis.executors.logged import RunOutcome, died, finished, one_line, run_logged


def map_ray(fn, items, log_paths, log_dir, workers, report, *, address: str | None = None,
            num_cpus: float = 1, num_gpus: float = 0, max_retries: int = 0,
            ray_init: dict | None = None) -> list[RunOutcome]:
    """Run every item as a Ray task, at most ``workers`` in flight; shut down a Ray started here."""
    ray = require_package("ray", "ray")
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
                outcome = died(items[i], log_paths[i], f"ray task ended without a result: {one_line(exc)}")
            else:
                outcome = finished(items[i], log_paths[i], packed)
            outcomes[i] = outcome
            report(outcome)
