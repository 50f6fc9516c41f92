"""Latent-size sweeps: one autoencoder per (latent size, seed), resumable, with a results table.

The package, in the order a sweep uses it:

* :mod:`.layout` -- the files of a sweep directory (one name each);
* :mod:`.plan` -- the grid (:class:`RunItem` per grid point) and its checks;
* :mod:`.settings` -- recorded against requested settings (:class:`SettingsMismatch`,
  :func:`mixed_settings`);
* :mod:`.jobs` -- what a job runs: train and measure one grid point or a group, the normal-data
  reference, the cached measurements;
* :mod:`.dispatch` -- where the jobs run (:mod:`analysis.executors`) and the progress lines;
* :mod:`.results` -- the results table gathered from the run directories.

Every file is written atomically (``entropy_ae.io``; run directories by ``entropy_ae.runs.save_run``),
so killing a sweep at any moment loses at most the runs in flight, and the same command resumes
it, skipping every completed run.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from entropy_ae.options import parse_int_list
from entropy_ae.runs import is_complete

from analysis.sweep.dispatch import check_executor, cpu_default_is_batched, dispatch, resolve_executor
from analysis.sweep.jobs import (
    load_cached,
    log,
    measure_run,
    reference_for,
    train_group,
    train_one,
    weights_sha256,
)
from analysis.sweep.layout import run_dir_for
from analysis.sweep.plan import RunItem, check_grid, plan_sweep
from analysis.sweep.results import RESULT_KEYS, collect_results, completed_runs, load_results
from analysis.sweep.settings import (
    SETTING_COLUMNS,
    MixedSettingsWarning,
    SettingsMismatch,
    check_completed_runs,
    mixed_settings,
)

__all__ = [
    "RESULT_KEYS", "SETTING_COLUMNS", "MixedSettingsWarning", "RunItem", "SettingsMismatch", "SweepError",
    "check_executor", "check_grid", "collect_results", "completed_runs", "cpu_default_is_batched",
    "load_results", "measure_run", "mixed_settings", "plan_sweep", "reference_for", "resolve_executor",
    "run_dir_for", "run_sweep", "train_group", "train_one", "weights_sha256",
]


class SweepError(RuntimeError):
    """Some runs of a sweep failed; the completed ones are kept and a re-run retries the rest."""


def run_sweep(data, latent_sizes, seeds, epochs: int, out, *, image_size: int = 64, data_seed: int = 0,
              batch_size: int = 64, lr: float = 1e-3, device: str = "auto", executor: str | None = None,
              workers: int | None = None, batched: bool = False, method: str = "knn", progress: bool = True,
              overwrite: bool = False, model: str = "ae", model_options: dict | None = None,
              **executor_options) -> pd.DataFrame:
    """Train every (latent size, seed) of ``model`` not yet done, then collect ``out/results.csv``.

    Parameters
    ----------
    data : AnomalyData or spec
        The dataset (``entropy_ae.data.load_data`` spec, loaded at ``image_size`` with split seed
        ``data_seed``, or loaded data).
    latent_sizes, seeds : list of int or "1,2,4"
    epochs : int
    out : path
        Sweep directory (see :mod:`analysis.sweep.layout`).
    executor : {'sequential', 'local', 'slurm', 'ray'}, optional
        Where the grid's runs go (:data:`analysis.executors.EXECUTORS`). Default: on a CPU (and
        without ``workers`` or executor options) batched in this process; else ``'local'``.
    device : str
        ``'auto'`` (a GPU when there is one; the local executor pins each worker to its own GPU),
        ``'cpu'``, ``'cuda'`` or ``'cuda:<i>'``.
    batched : bool
        Train the pending models together with ``entropy_ae.training.batched.run_trainings_batched``
        (``workers`` groups, default one).
    overwrite : bool
        Retrain completed runs of the grid whose recorded settings differ from the requested ones
        (default: refuse with :class:`SettingsMismatch` before training anything).
    model : str, default "ae"
        The model kind (:data:`entropy_ae.model.MODEL_KINDS`); its runs go under
        ``<dataset>/model=<kind>/`` except the plain AE's, and the results table gathers all kinds.
    model_options : dict, optional
        The kind's settings (defaults: the kind's own).
    **executor_options
        Backend options of :func:`analysis.executors.map_runs`.

    Returns
    -------
    pandas.DataFrame
        The results table, one row per completed run (also written to ``out/results.csv``).

    Raises
    ------
    SweepError
        When some runs failed. Completed runs and the results table are written first.
    SettingsMismatch
        Completed runs were trained with other settings (before anything is trained).
    ValueError
        A latent size, image size or training setting the model cannot take, or an executor
        that cannot run here (before anything is trained).
    """
    latent_sizes = parse_int_list(latent_sizes, "latent_sizes")
    seeds = parse_int_list(seeds, "seeds")
    check_grid(latent_sizes, data.image_size if hasattr(data, "image_size") else image_size)
    if isinstance(data, (str, dict)):
        data = load_cached(data, image_size, data_seed)
    out = Path(out)
    items = plan_sweep(data, latent_sizes, seeds, epochs, out, batch_size, lr, device, method=method, model=model,
                       model_options=model_options)
    for item in items[:1]:
        item.train_config()  # epochs, batch size, lr: TrainConfig's own checks, once, up front
    items = check_completed_runs(items, out, overwrite)
    batched = batched or cpu_default_is_batched(executor, workers, executor_options, device)
    check_executor(executor, batched, executor_options, progress)
    ref = reference_for(out, data, progress)
    items = [replace(i, sigma=float(ref["sigma"])) for i in items]
    pending = [i for i in items if not is_complete(i.run_dir) or i.overwrite]
    retrain = sum(i.overwrite for i in items)
    what = data.name if model == "ae" else f"{data.name} ({model})"
    log(f"sweep: {what}: {len(items)} runs in the grid, {len(items) - len(pending)} already done, "
        f"{len(pending)} to train" + (f" ({retrain} retrained with the new settings)" if retrain else ""), progress)
    failures: list[str] = []
    if pending:
        failures = dispatch(pending, data, executor, workers, batched, out, progress, executor_options)
    results = collect_results(out, method=method, progress=progress)
    if failures:
        raise SweepError(f"{len(failures)} of {len(items)} runs failed (re-run the same command to retry them):\n"
                         + "\n".join(failures))
    return results
