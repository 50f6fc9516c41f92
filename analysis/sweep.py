"""Latent-size sweeps: one autoencoder per (latent size, seed), resumable, with a results table.

Layout of a sweep directory ``DIR``::

    DIR/<dataset>/reference.json                       normal-data reference (ID, I_sigma of X_n)
    DIR/<dataset>/latent_size=<d>/seed=<s>/            one run (entropy_ae.runs.save_run)
        metrics.json                                   present == the run is complete
        entropy.json                                   every entropy measurement of the run
    DIR/results.csv (+ results.parquet)                one row per completed run

Every file is written atomically (temporary file + ``os.replace``; run directories by
``save_run``), so killing a sweep at any moment loses at most the runs in flight, and the same
command resumes it, skipping every completed run.

A completed run is only reused when its config.json records the settings that were asked for
(epochs, batch size, learning rate, image size, data spec); otherwise the sweep refuses before
training anything (:class:`SettingsMismatch`), so one sweep directory never mixes settings
silently. ``entropy.json`` records the sha256 of the weights it was measured on (and the
estimator and sigma), and is recomputed when the run has been retrained since.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from entropy_ae.io import to_json
from entropy_ae.options import parse_int_list

RESULT_KEYS = (
    "dataset",
    "latent_size",
    "seed",
    "epochs",
    "auroc",
    "ap",
    "pixel_ap",
    "best_dice",
    "rec_error_train_normal",
    "rec_error_test_normal",
    "rec_error_test_abnormal",
    "sensitivity",
    "specificity",
    "final_loss",
    "train_seconds",
    "entropy_seconds",
)
# Settings that define a run besides the latent size and seed naming its directory: one column
# each in the results table, and one value per dataset in a consistent sweep directory.
SETTING_COLUMNS = ("epochs", "batch_size", "lr", "image_size", "data_spec")
EXECUTORS = ("sequential", "local", "slurm", "ray")


class SweepError(RuntimeError):
    """Some runs of a sweep failed; the completed ones are kept and a re-run retries the rest."""


class SettingsMismatch(ValueError):
    """Completed runs in the sweep directory were trained with other settings than requested."""


class MixedSettingsWarning(UserWarning):
    """One dataset of a results table holds runs trained with different settings."""


@dataclass(frozen=True)
class RunItem:
    """One run of the grid: everything a worker process needs, picklable and JSON-friendly."""

    data_spec: dict
    image_size: int
    latent_size: int
    seed: int
    epochs: int
    batch_size: int
    lr: float
    device: str
    run_dir: str
    sigma: float
    method: str = "knn"
    overwrite: bool = False  # retrain the run even when complete (its settings differ from these)


# ------------------------------------------------------------------------------- small helpers


def _new_temp_file(path: Path) -> tuple[int, Path]:
    """Create a hidden temporary sibling of ``path``; return (fd, tmp path).

    Unlike ``tempfile.mkstemp`` (always 0600), the file is created with mode 0666 filtered by the
    process umask (and any default ACL) like any ordinary file, so the file that replaces ``path``
    gets the usual permissions, e.g. 0644 under umask 022.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    fd, tmp = _new_temp_file(path)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, to_json(payload, sort_keys=True) + "\n")


def run_dir_for(out, dataset: str, latent_size: int, seed: int) -> Path:
    """The run directory of one grid point: ``out/<dataset>/latent_size=<d>/seed=<s>``."""
    return Path(out) / dataset / f"latent_size={latent_size}" / f"seed={seed}"


def is_done(run_dir) -> bool:
    """A run is complete when its metrics.json exists (save_run writes the directory atomically)."""
    return (Path(run_dir) / "metrics.json").is_file()


def _log(message: str, progress: bool) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def check_grid(latent_sizes, image_size: int) -> None:
    """Refuse a latent size or image size the model cannot take, in one line, before anything runs."""
    from entropy_ae.model import MAX_LATENT_SIZE, check_sizes

    bad = [d for d in latent_sizes if not 1 <= d <= MAX_LATENT_SIZE]
    if bad:
        raise ValueError(f"latent sizes must be from 1 to {MAX_LATENT_SIZE}, got {', '.join(map(str, bad))}")
    for d in latent_sizes:
        check_sizes(int(d), int(image_size))


# ------------------------------------------------------------------------- settings of a run


def _canonical(value):
    """JSON round trip, so a recorded value and a requested one compare equal when they mean the same."""
    return json.loads(to_json(value, indent=None, sort_keys=True))


def run_settings(config: dict) -> dict:
    """The settings that define a run, from its config.json content, flattened.

    Every ``train`` entry except ``device`` (where it ran, not what it is), plus ``latent_size``
    and ``image_size`` of the model and the data spec.
    """
    train = {k: v for k, v in (config.get("train") or {}).items() if k != "device"}
    model = config.get("model") or {}
    return _canonical({**train, "latent_size": model.get("latent_size"), "image_size": model.get("image_size"),
                       "data": config.get("data")})


def _train_config(item: RunItem):
    from entropy_ae.training import TrainConfig

    return TrainConfig(latent_size=item.latent_size, epochs=item.epochs, batch_size=item.batch_size, lr=item.lr,
                       seed=item.seed, device=item.device)


def requested_settings(item: RunItem) -> dict:
    """:func:`run_settings` of the config.json that training ``item`` would write."""
    train = _train_config(item).to_dict()
    latent_size = train.pop("latent_size")
    return run_settings({"train": train, "model": {"latent_size": latent_size, "image_size": item.image_size},
                         "data": item.data_spec})


def settings_differences(run_dir, item: RunItem) -> dict:
    """``{setting: (recorded, requested)}`` for each setting of a completed run that differs from ``item``."""
    from entropy_ae.runs import load_config

    recorded, wanted = run_settings(load_config(run_dir)), requested_settings(item)
    return {k: (recorded.get(k), wanted.get(k)) for k in sorted(set(recorded) | set(wanted))
            if recorded.get(k) != wanted.get(k)}


def _describe(differences: dict) -> str:
    parts = []
    for key, (recorded, wanted) in differences.items():
        if key == "data" and isinstance(recorded, dict) and isinstance(wanted, dict):
            keys = sorted(k for k in set(recorded) | set(wanted)
                          if recorded.get(k) != wanted.get(k) and k not in differences)  # said once
            parts += [f"data {k}: {recorded.get(k)!r} in the run, {wanted.get(k)!r} requested" for k in keys]
        else:
            parts.append(f"{key}: {recorded!r} in the run, {wanted!r} requested")
    return "; ".join(parts)


def check_completed_runs(items: list[RunItem], out, overwrite: bool = False) -> list[RunItem]:
    """Compare every completed run of the dataset in ``out`` with the requested settings.

    Returns ``items`` with ``overwrite=True`` on the grid points whose completed run differs (only
    when ``overwrite``). Raises :class:`SettingsMismatch`, listing the differing settings and how
    to go on, when a completed run differs and ``overwrite`` is false, or when a differing run
    lies outside the requested grid (it would end up in the same results table).
    """
    if not items:
        return items
    by_dir = {Path(i.run_dir): i for i in items}
    dataset_dir = Path(items[0].run_dir).parent.parent
    stale, outside = [], []
    for run_dir in sorted(p.parent for p in dataset_dir.glob("latent_size=*/seed=*/metrics.json")):
        item = by_dir.get(run_dir)
        if item is None:  # a run of an earlier grid: it goes into the same table, so it must match too
            try:
                d, s = (int(part.split("=")[1]) for part in (run_dir.parent.name, run_dir.name))
            except ValueError:
                continue
            probe = replace(items[0], latent_size=d, seed=s, run_dir=str(run_dir))
            differences = settings_differences(run_dir, probe)
            if differences:
                outside.append((run_dir, differences))
            continue
        differences = settings_differences(run_dir, item)
        if differences:
            stale.append((run_dir, differences))
    if outside or (stale and not overwrite):
        raise SettingsMismatch(_mismatch_message(out, stale if not overwrite else [], outside))
    stale_dirs = {run_dir for run_dir, _ in stale}
    return [replace(i, overwrite=True) if Path(i.run_dir) in stale_dirs else i for i in items]


def _mismatch_message(out, stale: list, outside: list) -> str:
    runs = stale + outside
    lines = [f"{len(runs)} completed run(s) in {out} were trained with other settings than requested; "
             "nothing was trained:"]
    for run_dir, differences in runs[:10]:
        lines.append(f"  {Path(run_dir).relative_to(out)}: {_describe(differences)}")
    if len(runs) > 10:
        lines.append(f"  ... and {len(runs) - 10} more")
    fixes = ["a new --out DIR for these settings", "the settings those runs were trained with"]
    if outside:
        lines.append(f"{len(outside)} of them lie outside the requested grid (--overwrite retrains only runs in "
                     "the grid): delete those run directories, or add their latent sizes and seeds to the grid")
    else:
        fixes.append("--overwrite to retrain those runs with the new settings (their results are replaced)")
    lines.append("Use " + ", or ".join(fixes) + ".")
    return "\n".join(lines)


def mixed_settings(results: pd.DataFrame) -> list[str]:
    """One message per dataset whose runs in ``results`` differ in any of :data:`SETTING_COLUMNS`.

    Averages over such runs (Table 1, the plots, the recommendation) would mix trainings that are
    not replicates of each other; callers print these messages loudly.
    """
    messages = []
    if results.empty or "dataset" not in results.columns:
        return messages
    for name, group in results.groupby("dataset", sort=True):
        parts = []
        for column in SETTING_COLUMNS:
            if column not in group.columns:
                continue
            counts = group[column].astype(str).value_counts(dropna=False).sort_index()
            if len(counts) > 1:
                shown = ", ".join(f"{value} ({n} runs)" for value, n in counts.items())
                parts.append(f"{column}: {shown}")
        if parts:
            messages.append(f"dataset {name}: runs trained with different settings are mixed in one table "
                            f"({'; '.join(parts)}); means over seeds and the recommendation mix them. Re-train "
                            "them with one setting (entropy-ae sweep --overwrite) or keep each setting in its "
                            "own sweep directory.")
    return messages


# --------------------------------------------------------------------------------- data and runs

_DATA_CACHE: dict = {}


def _load(spec, image_size: int, seed: int = 0):
    """Load data once per process (workers run many grid points of the same dataset)."""
    from entropy_ae.data import load_data

    key = (json.dumps(spec, sort_keys=True) if isinstance(spec, dict) else str(spec), image_size, seed)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one dataset at a time keeps memory flat
        _DATA_CACHE[key] = load_data(spec, image_size=image_size, seed=seed)
    return _DATA_CACHE[key]


def _reference_matches(ref: dict, data) -> bool:
    if "data_spec" in ref:
        return ref["data_spec"] == _canonical(data.spec)
    # reference.json written before the data spec was recorded in it
    return ref.get("image_size") == data.image_size and ref.get("n_train") == len(data.train)


def reference_for(out, data, progress: bool = False) -> dict:
    """Normal-data reference of a dataset (computed once, stored in ``out/<dataset>/reference.json``).

    Measured again when the stored one was made from other data (e.g. another image size).
    """
    from analysis.entropy import data_reference

    path = Path(out) / data.name / "reference.json"
    if path.is_file():
        ref = json.loads(path.read_text())
        if _reference_matches(ref, data):
            return ref
        _log(f"sweep: {path} was measured on other data settings; measuring it again", progress)
    _log(f"sweep: measuring the normal-data reference of {data.name} (intrinsic dimension, I_sigma)", progress)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # duplicate images are reported in the table instead
        ref = data_reference(data.train)
    ref.update(dataset=data.name, image_size=data.image_size, n_train=int(len(data.train)),
               data_spec=_canonical(data.spec), reference_seconds=time.perf_counter() - start)
    atomic_write_json(path, ref)
    return _canonical(ref)


def weights_sha256(run_dir) -> str:
    """sha256 of a run's weights.safetensors: changes whenever the run is trained again."""
    digest = hashlib.sha256()
    with open(Path(run_dir) / "weights.safetensors", "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def measurement_key(run_dir, sigma: float, method: str) -> dict:
    """What entropy.json must have been measured on to be reused: the weights, sigma and estimator."""
    return _canonical({"weights_sha256": weights_sha256(run_dir), "sigma": sigma, "method": method})


def cached_measurements(run_dir, sigma: float, method: str) -> dict | None:
    """The run's entropy.json when it was measured on these weights with this sigma and method, else None."""
    path = Path(run_dir) / "entropy.json"
    if not path.is_file():
        return None
    cached = json.loads(path.read_text())
    return cached if cached.get("measured_with") == measurement_key(run_dir, sigma, method) else None


def measure_run(run_dir, data, sigma: float, method: str = "knn", force: bool = False) -> dict:
    """Every entropy measurement of a completed run; cached in ``run_dir/entropy.json``.

    The cache is used only when it was measured on the run's current weights (sha256 of
    weights.safetensors) with the same ``sigma`` and ``method``: a run retrained in place
    (``entropy-ae train --overwrite``) is measured again. ``data=None`` rebuilds the run's data
    from its config.json, only when a measurement is needed.
    """
    from analysis.entropy import run_measurements

    if not force:
        cached = cached_measurements(run_dir, sigma, method)
        if cached is not None:
            return cached
    key = measurement_key(run_dir, sigma, method)
    if data is None:
        config = json.loads((Path(run_dir) / "config.json").read_text())
        data = _load(config["data"], int(config["model"]["image_size"]))
    start = time.perf_counter()
    with warnings.catch_warnings():
        # High-dimensional k-NN warnings are expected for large codes: the table carries the
        # Gaussian reference beside every k-NN value instead.
        warnings.simplefilter("ignore")
        values = run_measurements(run_dir, data, sigma=sigma, method=method)
    values["entropy_seconds"] = time.perf_counter() - start
    values["measured_with"] = key
    atomic_write_json(Path(run_dir) / "entropy.json", values)
    return _canonical(values)


def train_one(item: RunItem | dict) -> dict:
    """Train, evaluate, save and measure one grid point (module level: picklable for executors).

    Skips training when the run is already complete, so a retried job never recomputes it.
    """
    import torch

    from entropy_ae.runs import load_metrics
    from entropy_ae.training import run_training

    item = RunItem(**item) if isinstance(item, dict) else item
    data = _load(item.data_spec, item.image_size)
    if _needs_training(item):
        if os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        metrics = run_training(data, _train_config(item), item.run_dir, progress=False, overwrite=item.overwrite)
    else:
        metrics = load_metrics(item.run_dir)
    measure_run(item.run_dir, data, item.sigma, item.method)
    return metrics


def _needs_training(item: RunItem) -> bool:
    """Not complete, or complete with other settings and marked for overwrite.

    A complete run with other settings and no overwrite is refused (the sweep checks this before
    dispatching; checking again here keeps a job that runs later from reusing a changed run).
    """
    if not is_done(item.run_dir):
        return True
    differences = settings_differences(item.run_dir, item)
    if differences and not item.overwrite:
        raise SettingsMismatch(f"{item.run_dir} was trained with other settings ({_describe(differences)}); "
                               "pass --overwrite to retrain it")
    return bool(differences)


# ------------------------------------------------------------------------------------- the sweep


def plan_sweep(data, latent_sizes, seeds, epochs: int, out, batch_size: int = 64, lr: float = 1e-3,
               device: str = "auto", sigma: float = float("nan"), method: str = "knn") -> list[RunItem]:
    """Every grid point of a sweep, in order (latent size, then seed)."""
    return [
        RunItem(data_spec=data.spec, image_size=data.image_size, latent_size=d, seed=s, epochs=epochs,
                batch_size=batch_size, lr=lr, device=device,
                run_dir=str(run_dir_for(out, data.name, d, s)), sigma=float(sigma), method=method)
        for d in latent_sizes
        for s in seeds
    ]


def _map_runs():
    try:
        from analysis.executors import map_runs
    except ModuleNotFoundError as err:
        if err.name != "analysis.executors":
            raise
        return None
    return map_runs


def _run_sequential(items: list[RunItem], progress: bool) -> list[str]:
    """In-process fallback executor; failures are collected, not raised (like map_runs)."""
    failures = []
    start = time.perf_counter()
    for i, item in enumerate(items, 1):
        t0 = time.perf_counter()
        try:
            train_one(item)
        except Exception as err:  # noqa: BLE001 -- one failed run must not abort the grid
            failures.append(f"{item.run_dir}: {type(err).__name__}: {err}")
            _log(f"sweep: FAILED {item.run_dir}: {err}", progress)
            continue
        elapsed = time.perf_counter() - start
        eta = elapsed / i * (len(items) - i)
        _log(f"sweep: {i}/{len(items)} new runs done (latent_size={item.latent_size}, seed={item.seed}, "
             f"{time.perf_counter() - t0:.1f} s; {len(items) - i} left, ETA {eta:.0f} s)", progress)
    return failures


def train_group(items: list[RunItem | dict], on_saved=None) -> list[dict]:
    """Train a group of grid points together (``entropy_ae.training.batched``), then measure each.

    Module level, so it is also a job for ``map_runs``: with ``--batched`` and an executor, each
    job is a group of models rather than one. Runs already complete are not retrained.
    ``on_saved(item)`` is called as each trained run is saved.
    """
    from entropy_ae.training.batched import run_trainings_batched

    items = [RunItem(**i) if isinstance(i, dict) else i for i in items]
    todo = [i for i in items if _needs_training(i)]
    if todo:
        data = _load(todo[0].data_spec, todo[0].image_size)
        run_trainings_batched(data, [_train_config(i) for i in todo], [i.run_dir for i in todo],
                              overwrite=any(i.overwrite for i in todo),
                              on_saved=None if on_saved is None else lambda k, _metrics: on_saved(todo[k]))
    # Measuring goes through the same per-run function, which skips the completed trainings.
    return [train_one(i) for i in items]


def _groups(items: list, n_groups: int) -> list[list]:
    """Deal the items round-robin into at most ``n_groups`` non-empty groups (similar sizes and costs)."""
    n_groups = max(1, min(n_groups, len(items)))
    return [items[g::n_groups] for g in range(n_groups)]


def _run_batched(items: list[RunItem], progress: bool) -> list[str]:
    _log(f"sweep: training {len(items)} models together (batched)", progress)
    start = time.perf_counter()
    done = {"n": 0}

    def saved(item: RunItem) -> None:
        done["n"] += 1
        elapsed, left = time.perf_counter() - start, len(items) - done["n"]
        _log(f"sweep: {done['n']}/{len(items)} runs trained and saved: latent_size={item.latent_size}, "
             f"seed={item.seed}; {left} left, ETA {elapsed / done['n'] * left:.0f} s", progress)

    try:
        train_group(items, on_saved=saved)
    except Exception as err:  # noqa: BLE001 -- reported like any failed run; completed groups are kept
        return [f"batched group of {len(items)} runs: {type(err).__name__}: {err}"]
    _log(f"sweep: batched training and measurements done in {time.perf_counter() - start:.1f} s", progress)
    return []


def run_sweep(data, latent_sizes, seeds, epochs: int, out, *, image_size: int = 64, data_seed: int = 0,
              batch_size: int = 64, lr: float = 1e-3, device: str = "auto", executor: str | None = None,
              workers: int | None = None, batched: bool = False, method: str = "knn", progress: bool = True,
              overwrite: bool = False, **executor_options) -> pd.DataFrame:
    """Train every (latent size, seed) not yet done, then collect ``out/results.csv``.

    Parameters
    ----------
    data : AnomalyData or spec
        The dataset (``entropy_ae.data.load_data`` spec, loaded at ``image_size`` with split seed
        ``data_seed``, or loaded data).
    latent_sizes, seeds : list of int or "1,2,4"
    epochs : int
    out : path
        Sweep directory (see the module docstring for its layout).
    executor : {'sequential', 'local', 'slurm', 'ray'}, optional
        How to run the grid: ``analysis.executors.map_runs`` backends, or ``'sequential'``
        (in-process, one after another). Default: ``'local'`` when the executors module is
        installed, else ``'sequential'``.
    device : str
        ``'auto'`` (a GPU when there is one; the local executor pins each worker to its own GPU),
        ``'cpu'``, ``'cuda'`` or ``'cuda:<i>'``.
    batched : bool
        Train all pending models together with ``entropy_ae.training.batched.run_trainings_batched``.
    overwrite : bool
        Retrain completed runs of the grid whose recorded settings differ from the requested ones
        (default: refuse with :class:`SettingsMismatch` before training anything).

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
        data = _load(data, image_size, data_seed)
    out = Path(out)
    items = plan_sweep(data, latent_sizes, seeds, epochs, out, batch_size, lr, device, method=method)
    for item in items[:1]:
        _train_config(item)  # epochs, batch size, lr: TrainConfig's own checks, once, up front
    items = check_completed_runs(items, out, overwrite)
    batched = batched or _cpu_default_is_batched(executor, workers, executor_options, device)
    check_executor(executor, batched, executor_options, progress)
    ref = reference_for(out, data, progress)
    items = [replace(i, sigma=float(ref["sigma"])) for i in items]
    pending = [i for i in items if not is_done(i.run_dir) or i.overwrite]
    retrain = sum(i.overwrite for i in items)
    _log(f"sweep: {data.name}: {len(items)} runs in the grid, {len(items) - len(pending)} already done, "
         f"{len(pending)} to train" + (f" ({retrain} retrained with the new settings)" if retrain else ""), progress)
    failures: list[str] = []
    if pending:
        failures = _dispatch(pending, data, executor, workers, batched, out, progress, executor_options)
    results = collect_results(out, method=method, progress=progress)
    if failures:
        raise SweepError(f"{len(failures)} of {len(items)} runs failed (re-run the same command to retry them):\n"
                         + "\n".join(failures))
    return results


def _cpu_default_is_batched(executor, workers, executor_options, device) -> bool:
    """Whether a grid given no executor runs batched in this process: yes on a CPU.

    There ``entropy_ae.training.batched`` trains one model per core in threads of this process, with the
    same numbers as one process per run (``--executor local``: each run at one thread too), but
    without starting a Python with torch for every run (~6 s each on 2 cores): a 4 x 2 grid of
    4 epochs took 40-44 s against 74 s for the process pool (README, "Batched sweeps").
    """
    if executor is not None or workers is not None or executor_options:
        return False
    from entropy_ae.reproducibility import resolve_device

    return resolve_device(device).type == "cpu"


def _resolve_executor(executor: str | None, batched: bool) -> str:
    if executor is None:
        # Batched training defaults to one group in this process: the point is one set of kernels.
        executor = "sequential" if batched or _map_runs() is None else "local"
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {EXECUTORS}")
    if executor != "sequential" and _map_runs() is None:
        raise ValueError(f"executor {executor!r} needs analysis.executors, which is not installed; "
                         "use --executor sequential")
    return executor


def check_executor(executor: str | None, batched: bool, options: dict, progress: bool) -> None:
    """Refuse, before the reference is measured or anything trained, an executor that cannot run here."""
    executor = _resolve_executor(executor, batched)
    if executor == "sequential":
        return
    from analysis.executors import check_backend

    check_backend(executor, **options)
    if executor == "ray" and not (options.get("address") or os.environ.get("RAY_ADDRESS")):
        _log("sweep: no --ray-address and no RAY_ADDRESS: starting a local Ray instance on this machine only", progress)


def _dispatch(pending, data, executor, workers, batched, out, progress, options) -> list[str]:
    map_runs = _map_runs()
    executor = _resolve_executor(executor, batched)
    if executor == "sequential":
        return _run_batched(pending, progress) if batched else _run_sequential(pending, progress)
    if batched:
        # One job per group of models; --workers sets how many groups (default 1).
        fn, jobs = train_group, [[asdict(i) for i in g] for g in _groups(pending, workers or 1)]
        names = [f"group-{g}" for g in range(len(jobs))]
    else:
        fn, jobs = train_one, [asdict(i) for i in pending]
        names = [str(Path(i.run_dir).relative_to(out)) for i in pending]
    _log(f"sweep: running {len(pending)} runs as {len(jobs)} jobs with the {executor!r} executor", progress)
    start = time.perf_counter()
    counter = {"done": 0}

    def report(outcome) -> None:
        counter["done"] += 1
        done = counter["done"]
        elapsed = time.perf_counter() - start
        state = "done" if outcome.ok else f"FAILED ({outcome.error}; log: {outcome.log_path})"
        _log(f"sweep: {done}/{len(jobs)} jobs finished: {names[jobs.index(outcome.item)]} {state}; "
             f"{len(jobs) - done} left, ETA {elapsed / done * (len(jobs) - done):.0f} s", progress)

    outcomes = map_runs(fn, jobs, executor=executor, workers=workers,
                        log_dir=str(out / "logs"), names=names, callback=report, **options)
    failures = [f"{name}: {o.error} (log: {o.log_path})" for name, o in zip(names, outcomes) if not o.ok]
    _log(f"sweep: {len(jobs) - len(failures)} jobs finished, {len(failures)} failed, "
         f"in {time.perf_counter() - start:.1f} s", progress)
    return failures


# ------------------------------------------------------------------------------------ the table


def completed_runs(out) -> list[Path]:
    """Every completed run directory under a sweep directory, in (dataset, latent size, seed) order."""
    runs = [p.parent for p in Path(out).glob("*/latent_size=*/seed=*/metrics.json")]

    def key(p: Path):
        return (p.parent.parent.name, int(p.parent.name.split("=")[1]), int(p.name.split("=")[1]))

    return sorted(runs, key=key)


def _row(run_dir: Path, out: Path, references: dict, method: str) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    dataset = run_dir.parent.parent.name
    row = {k: metrics.get(k) for k in RESULT_KEYS}
    row["dataset"] = metrics.get("dataset", dataset)
    row["latent_size"] = int(run_dir.parent.name.split("=")[1])
    row["seed"] = int(run_dir.name.split("=")[1])
    if dataset not in references:
        ref_path = out / dataset / "reference.json"
        references[dataset] = json.loads(ref_path.read_text()) if ref_path.is_file() else None
    ref = references[dataset]
    config = json.loads((run_dir / "config.json").read_text())
    settings = run_settings(config)
    row.update({k: settings.get(k) for k in SETTING_COLUMNS if k in settings})
    row["data_spec"] = json.dumps(settings.get("data"), sort_keys=True, separators=(",", ":"))
    if ref is not None:
        # measured again when missing or made on other weights (the run was retrained in place)
        measured = measure_run(run_dir, None, ref["sigma"], method)
    else:  # no reference to measure against: keep only measurements of these very weights
        path = run_dir / "entropy.json"
        measured = json.loads(path.read_text()) if path.is_file() else None
        measured_on = (measured or {}).get("measured_with") or {}
        if measured is not None and measured_on.get("weights_sha256") != weights_sha256(run_dir):
            measured = None
    if measured is not None:
        measured = {k: v for k, v in measured.items() if k != "measured_with"}
        if isinstance(measured.get("errors"), dict):
            measured["errors"] = "; ".join(f"{k}: {v}" for k, v in measured["errors"].items())
        row.update(measured)
    if ref is not None:
        row.update({k: v for k, v in ref.items() if k not in ("dataset", "image_size", "data_spec")})
    row["run_dir"] = str(run_dir.relative_to(out))
    return row


def collect_results(out, method: str = "knn", progress: bool = False) -> pd.DataFrame:
    """Gather every completed run into ``out/results.csv`` (and ``results.parquet`` when pyarrow is there).

    Runs missing their entropy measurements, or measured on other weights (retrained in place),
    another sigma or another ``method``, are measured now. Both files are written atomically.
    A dataset whose runs were trained with different settings gets a :class:`MixedSettingsWarning`
    (:func:`mixed_settings`); the table keeps one column per setting (:data:`SETTING_COLUMNS`).
    """
    out = Path(out)
    references: dict = {}
    rows = [_row(r, out, references, method) for r in completed_runs(out)]
    table = pd.DataFrame(rows)
    if table.empty:
        table = pd.DataFrame(columns=list(RESULT_KEYS) + list(SETTING_COLUMNS) + ["run_dir"])
    first = [k for k in dict.fromkeys((*RESULT_KEYS, *SETTING_COLUMNS)) if k in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    atomic_write_text(out / "results.csv", table.to_csv(index=False))
    _write_parquet(table, out / "results.parquet")
    _log(f"sweep: {len(table)} completed runs in {out / 'results.csv'}", progress)
    for message in mixed_settings(table):
        warnings.warn(message, MixedSettingsWarning, stacklevel=2)
    return table


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ModuleNotFoundError:
        return
    fd, tmp = _new_temp_file(path)
    os.close(fd)
    try:
        table.to_parquet(tmp, index=False)  # truncates the file we made, keeping its mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_results(source) -> pd.DataFrame:
    """The results table of a sweep directory (or a results.csv path), as a DataFrame."""
    path = Path(source)
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no results table at {path}; run `entropy-ae sweep ... --out DIR` first")
    table = pd.read_csv(path)
    missing = [k for k in ("dataset", "latent_size", "seed", "auroc") if k not in table.columns]
    if missing:
        raise ValueError(f"{path} is not a sweep results table: columns {missing} are missing")
    return table
