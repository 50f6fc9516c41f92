"""What a sweep job runs: train, evaluate, save and measure one grid point (:func:`train_one`) or a
group of them trained together (:func:`train_group`); and the measurements they leave behind.

Jobs are module-level functions of their item, so any executor of :mod:`analysis.executors` can
run them. In this process they are given the loaded data; a worker elsewhere rebuilds it from
the item's data spec (once per process, :func:`load_cached`).

``entropy.json`` records the sha256 of the weights it was measured on (and the estimator and
sigma): it is reused only for those very weights, and measured again when the run has been
retrained since. ``reference.json`` is reused only for the data it was measured on.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

from entropy_ae.data import load_data
from entropy_ae.io import atomic_write_json
from entropy_ae.model import ADAPTIVE_KINDS
from entropy_ae import training
from entropy_ae.runs import WEIGHTS, is_complete, load_config, load_metrics
from entropy_ae.training.batched import run_trainings_batched

from analysis.measures import data_reference, run_measurements
from analysis.sweep.layout import ENTROPY, reference_path
from analysis.sweep.plan import RunItem
from analysis.sweep.settings import SettingsMismatch, canonical, describe, settings_differences

# What entropy.json and reference.json hold; raised when their keys (columns of the results table)
# change, so files written under other column names are measured again instead of mixed in.
MEASUREMENTS_VERSION = 3

_DATA_CACHE: dict = {}


def log(message: str, progress: bool) -> None:
    """A progress line of the sweep on stderr (when ``progress``)."""
    if progress:
        print(message, file=sys.stderr, flush=True)


def load_cached(spec, image_size: int, seed: int = 0):
    """Load data once per process (workers run many grid points of the same dataset)."""
    key = (json.dumps(spec, sort_keys=True) if isinstance(spec, dict) else str(spec), image_size, seed)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one dataset at a time keeps memory flat
        _DATA_CACHE[key] = load_data(spec, image_size=image_size, seed=seed)
    return _DATA_CACHE[key]


# ------------------------------------------------------------------------------ the reference


def read_reference(out, dataset: str) -> dict | None:
    """The stored normal-data reference of ``dataset``, or None when there is none."""
    path = reference_path(out, dataset)
    return json.loads(path.read_text()) if path.is_file() else None


def reference_for(out, data, progress: bool = False) -> dict:
    """Normal-data reference of a dataset (computed once, stored in ``out/<dataset>/reference.json``).

    Measured again when the stored one was made from other data (e.g. another image size) or
    holds other measurements (:data:`MEASUREMENTS_VERSION`).
    """
    path = reference_path(out, data.name)
    ref = read_reference(out, data.name)
    if ref is not None:
        if ref.get("data_spec") == canonical(data.spec) and ref.get("measurements_version") == MEASUREMENTS_VERSION:
            return ref
        log(f"sweep: {path} was measured on other data settings; measuring it again", progress)
    log(f"sweep: measuring the normal-data reference of {data.name} (intrinsic dimension, I_sigma)", progress)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # duplicate images are reported in the table instead
        ref = data_reference(data.train)
    ref.update(dataset=data.name, image_size=data.image_size, n_train=int(len(data.train)),
               data_spec=canonical(data.spec), measurements_version=MEASUREMENTS_VERSION,
               reference_seconds=time.perf_counter() - start)
    atomic_write_json(path, ref)
    return canonical(ref)


# ---------------------------------------------------------------------- measurements of a run


def weights_sha256(run_dir) -> str:
    """sha256 of a run's weights: changes whenever the run is trained again."""
    digest = hashlib.sha256()
    with open(Path(run_dir) / WEIGHTS, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def measurement_key(run_dir, sigma: float, method: str) -> dict:
    """What entropy.json must have been measured on to be reused: the weights, sigma and estimator."""
    return canonical({"weights_sha256": weights_sha256(run_dir), "sigma": sigma, "method": method,
                      "measurements_version": MEASUREMENTS_VERSION})


def stored_measurements(run_dir) -> dict | None:
    """The run's entropy.json as stored, whatever it was measured with, or None."""
    path = Path(run_dir) / ENTROPY
    return json.loads(path.read_text()) if path.is_file() else None


def cached_measurements(run_dir, sigma: float, method: str) -> dict | None:
    """The run's entropy.json when it was measured on these weights with this sigma and method, else None."""
    stored = stored_measurements(run_dir)
    if stored is None or stored.get("measured_with") != measurement_key(run_dir, sigma, method):
        return None
    return stored


def measure_run(run_dir, data, sigma: float, method: str = "knn", config: dict | None = None) -> dict:
    """Every entropy measurement of a completed run; cached in ``run_dir/entropy.json``.

    The cache is used only when it was measured on the run's current weights (sha256 of the
    weights file) with the same ``sigma`` and ``method``: a run retrained in place
    (``entropy-ae train --overwrite``) is measured again. ``data=None`` rebuilds the run's data
    from its config (``config``, else read from the run), only when a measurement is needed.
    """
    cached = cached_measurements(run_dir, sigma, method)
    if cached is not None:
        return cached
    key = measurement_key(run_dir, sigma, method)
    if data is None:
        config = load_config(run_dir) if config is None else config
        data = load_cached(config["data"], int(config["model"]["image_size"]))
    start = time.perf_counter()
    with warnings.catch_warnings():
        # High-dimensional k-NN warnings are expected for large codes: the table carries the
        # Gaussian reference beside every k-NN value instead.
        warnings.simplefilter("ignore")
        values = run_measurements(run_dir, data, sigma=sigma, method=method)
    values["entropy_seconds"] = time.perf_counter() - start
    values["measured_with"] = key
    atomic_write_json(Path(run_dir) / ENTROPY, values)
    return canonical(values)


# ------------------------------------------------------------------------------------- the jobs


def needs_training(item: RunItem) -> bool:
    """Not complete, or complete with other settings and marked for overwrite.

    A complete run with other settings and no overwrite is refused (the sweep checks this before
    dispatching; checking again here keeps a job that runs later from reusing a changed run).
    """
    if not is_complete(item.run_dir):
        return True
    differences = settings_differences(item.run_dir, item)
    if differences and not item.overwrite:
        raise SettingsMismatch(f"{item.run_dir} was trained with other settings ({describe(differences)}); "
                               "pass --overwrite to retrain it")
    return bool(differences)


def train_one(item: RunItem, data=None) -> dict:
    """Train, evaluate, save and measure one grid point; returns its metrics.

    Skips training when the run is already complete, so a retried job never recomputes it.
    ``data`` is the item's loaded data when the job runs where it was loaded; default: rebuilt
    from ``item.data_spec``.
    """
    if data is None:
        data = load_cached(item.data_spec, item.image_size)
    if needs_training(item):
        if os.environ.get("OMP_NUM_THREADS"):
            import torch

            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        # Looked up on the module when called, so a test can stand in for the training.
        if item.model in ADAPTIVE_KINDS:  # one training, its capacity chosen from normal data
            from analysis.adaptive import run_adaptive_training  # noqa: PLC0415 -- it imports the rules

            metrics = run_adaptive_training(data, item.train_config(), item.run_dir, progress=False,
                                            overwrite=item.overwrite)
        else:
            metrics = training.run_training(data, item.train_config(), item.run_dir, progress=False,
                                            overwrite=item.overwrite)
    else:
        metrics = load_metrics(item.run_dir)
    measure_run(item.run_dir, data, item.sigma, item.method)
    return metrics


def train_group(items: list[RunItem], data=None, on_saved=None) -> list[dict]:
    """Train a group of grid points together (``entropy_ae.training.batched``), then measure each.

    With ``--batched`` and an executor, each job is a group of models rather than one. Runs
    already complete are not retrained. ``on_saved(item)`` is called as each trained run is
    saved (in this process only: a callback cannot cross to a worker).
    """
    todo = [i for i in items if needs_training(i) and i.model not in ADAPTIVE_KINDS]  # those: in train_one
    if data is None:
        data = load_cached(items[0].data_spec, items[0].image_size)
    if todo:
        run_trainings_batched(data, [i.train_config() for i in todo], [i.run_dir for i in todo],
                              overwrite=any(i.overwrite for i in todo),
                              on_saved=None if on_saved is None else lambda k, _metrics: on_saved(todo[k]))
    # Measuring goes through the same per-run function, which skips the completed trainings.
    return [train_one(i, data) for i in items]
