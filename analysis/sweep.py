"""Latent-size sweeps: one autoencoder per (latent size, seed), resumable, with a results table.

Layout of a sweep directory ``DIR``::

    DIR/<dataset>/reference.json                       normal-data reference (ID, I_sigma of X_n)
    DIR/<dataset>/latent_size=<d>/seed=<s>/            one run (entropy_ae.checkpoint.save_run)
        metrics.json                                   present == the run is complete
        entropy.json                                   every entropy measurement of the run
    DIR/results.csv (+ results.parquet)                one row per completed run

Every file is written atomically (temporary file + ``os.replace``; run directories by
``save_run``), so killing a sweep at any moment loses at most the runs in flight, and the same
command resumes it, skipping every completed run.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

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
EXECUTORS = ("sequential", "local", "slurm", "ray")


class SweepError(RuntimeError):
    """Some runs of a sweep failed; the completed ones are kept and a re-run retries the rest."""


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


# ------------------------------------------------------------------------------- small helpers


def parse_int_list(text: str | list | tuple, name: str = "list") -> list[int]:
    """Parse ``"1,2,4"`` (or a list) into sorted unique positive integers, with a clear error."""
    if isinstance(text, (list, tuple)):
        values = list(text)
    else:
        try:
            values = [int(v) for v in str(text).replace(" ", "").split(",") if v != ""]
        except ValueError as err:
            raise ValueError(f"{name} must be comma-separated integers such as 1,2,4, got {text!r}") from err
    if not values or any(not isinstance(v, (int, np.integer)) or v < 0 for v in values):
        raise ValueError(f"{name} must be a non-empty list of non-negative integers, got {text!r}")
    return sorted(set(int(v) for v in values))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(_jsonable(payload), indent=2, sort_keys=True) + "\n")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def run_dir_for(out, dataset: str, latent_size: int, seed: int) -> Path:
    """The run directory of one grid point: ``out/<dataset>/latent_size=<d>/seed=<s>``."""
    return Path(out) / dataset / f"latent_size={latent_size}" / f"seed={seed}"


def is_done(run_dir) -> bool:
    """A run is complete when its metrics.json exists (save_run writes the directory atomically)."""
    return (Path(run_dir) / "metrics.json").is_file()


def _log(message: str, progress: bool) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


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


def reference_for(out, data, progress: bool = False) -> dict:
    """Normal-data reference of a dataset (computed once, stored in ``out/<dataset>/reference.json``)."""
    from analysis.entropy import data_reference

    path = Path(out) / data.name / "reference.json"
    if path.is_file():
        return json.loads(path.read_text())
    _log(f"sweep: measuring the normal-data reference of {data.name} (intrinsic dimension, I_sigma)", progress)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # duplicate images are reported in the table instead
        ref = data_reference(data.train)
    ref.update(dataset=data.name, image_size=data.image_size, n_train=int(len(data.train)),
               reference_seconds=time.perf_counter() - start)
    atomic_write_json(path, ref)
    return ref


def measure_run(run_dir, data, sigma: float, method: str = "knn", force: bool = False) -> dict:
    """Every entropy measurement of a completed run; cached in ``run_dir/entropy.json``."""
    from analysis.entropy import run_measurements

    path = Path(run_dir) / "entropy.json"
    if path.is_file() and not force:
        return json.loads(path.read_text())
    start = time.perf_counter()
    with warnings.catch_warnings():
        # High-dimensional k-NN warnings are expected for large codes: the table carries the
        # Gaussian reference beside every k-NN value instead.
        warnings.simplefilter("ignore")
        values = run_measurements(run_dir, data, sigma=sigma, method=method)
    values["entropy_seconds"] = time.perf_counter() - start
    atomic_write_json(path, values)
    return values


def train_one(item: RunItem | dict) -> dict:
    """Train, evaluate, save and measure one grid point (module level: picklable for executors).

    Skips training when the run is already complete, so a retried job never recomputes it.
    """
    import torch

    from entropy_ae.checkpoint import load_metrics, run_training
    from entropy_ae.training import TrainConfig

    item = RunItem(**item) if isinstance(item, dict) else item
    data = _load(item.data_spec, item.image_size)
    if is_done(item.run_dir):
        metrics = load_metrics(item.run_dir)
    else:
        if item.device == "cpu" and os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        config = TrainConfig(latent_size=item.latent_size, epochs=item.epochs, batch_size=item.batch_size,
                             lr=item.lr, seed=item.seed, device=item.device)
        metrics = run_training(data, config, item.run_dir, progress=False)
    measure_run(item.run_dir, data, item.sigma, item.method)
    return metrics


# ------------------------------------------------------------------------------------- the sweep


def plan_sweep(data, latent_sizes, seeds, epochs: int, out, batch_size: int = 64, lr: float = 1e-3,
               device: str = "cpu", sigma: float = float("nan"), method: str = "knn") -> list[RunItem]:
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


def train_group(items: list[RunItem | dict]) -> list[dict]:
    """Train a group of grid points together (``entropy_ae.batched``), then measure each.

    Module level, so it is also a job for ``map_runs``: with ``--batched`` and an executor, each
    job is a group of models rather than one. Runs already complete are not retrained.
    """
    from entropy_ae.batched import run_trainings_batched
    from entropy_ae.training import TrainConfig

    items = [RunItem(**i) if isinstance(i, dict) else i for i in items]
    todo = [i for i in items if not is_done(i.run_dir)]
    if todo:
        data = _load(todo[0].data_spec, todo[0].image_size)
        configs = [TrainConfig(latent_size=i.latent_size, epochs=i.epochs, batch_size=i.batch_size, lr=i.lr,
                               seed=i.seed, device=i.device) for i in todo]
        run_trainings_batched(data, configs, [i.run_dir for i in todo])
    # Measuring goes through the same per-run function, which skips the completed trainings.
    return [train_one(i) for i in items]


def _groups(items: list, n_groups: int) -> list[list]:
    """Deal the items round-robin into at most ``n_groups`` non-empty groups (similar sizes and costs)."""
    n_groups = max(1, min(n_groups, len(items)))
    return [items[g::n_groups] for g in range(n_groups)]


def _run_batched(items: list[RunItem], progress: bool) -> list[str]:
    _log(f"sweep: training {len(items)} models together (batched)", progress)
    start = time.perf_counter()
    try:
        train_group(items)
    except Exception as err:  # noqa: BLE001 -- reported like any failed run; completed groups are kept
        return [f"batched group of {len(items)} runs: {type(err).__name__}: {err}"]
    _log(f"sweep: batched training and measurements done in {time.perf_counter() - start:.1f} s", progress)
    return []


def run_sweep(data, latent_sizes, seeds, epochs: int, out, *, image_size: int = 64, data_seed: int = 0,
              batch_size: int = 64, lr: float = 1e-3, device: str = "cpu", executor: str | None = None, workers: int | None = None,
              batched: bool = False, method: str = "knn", progress: bool = True, **executor_options) -> pd.DataFrame:
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
    batched : bool
        Train all pending models together with ``entropy_ae.batched.run_trainings_batched``.

    Returns
    -------
    pandas.DataFrame
        The results table, one row per completed run (also written to ``out/results.csv``).

    Raises
    ------
    SweepError
        When some runs failed. Completed runs and the results table are written first.
    """
    if isinstance(data, (str, dict)):
        data = _load(data, image_size, data_seed)
    latent_sizes = parse_int_list(latent_sizes, "latent_sizes")
    seeds = parse_int_list(seeds, "seeds")
    if 0 in latent_sizes:
        raise ValueError("latent sizes must be at least 1")
    out = Path(out)
    ref = reference_for(out, data, progress)
    items = plan_sweep(data, latent_sizes, seeds, epochs, out, batch_size, lr, device, ref["sigma"], method)
    pending = [i for i in items if not is_done(i.run_dir)]
    _log(f"sweep: {data.name}: {len(items)} runs in the grid, {len(items) - len(pending)} already done, "
         f"{len(pending)} to train", progress)
    failures: list[str] = []
    if pending:
        failures = _dispatch(pending, data, executor, workers, batched, out, progress, executor_options)
    results = collect_results(out, method=method, progress=progress)
    if failures:
        raise SweepError(f"{len(failures)} of {len(items)} runs failed (re-run the same command to retry them):\n"
                         + "\n".join(failures))
    return results


def _dispatch(pending, data, executor, workers, batched, out, progress, options) -> list[str]:
    map_runs = _map_runs()
    if executor is None:
        # Batched training defaults to one group in this process: the point is one set of kernels.
        executor = "sequential" if batched or map_runs is None else "local"
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {EXECUTORS}")
    if executor == "sequential":
        return _run_batched(pending, progress) if batched else _run_sequential(pending, progress)
    if map_runs is None:
        raise ValueError(f"executor {executor!r} needs analysis.executors, which is not installed; "
                         "use --executor sequential")
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
    entropy_path = run_dir / "entropy.json"
    if not entropy_path.is_file() and ref is not None:
        data = _load(json.loads((run_dir / "config.json").read_text())["data"], ref["image_size"])
        measure_run(run_dir, data, ref["sigma"], method)
    if entropy_path.is_file():
        measured = json.loads(entropy_path.read_text())
        if isinstance(measured.get("errors"), dict):
            measured["errors"] = "; ".join(f"{k}: {v}" for k, v in measured["errors"].items())
        row.update(measured)
    if ref is not None:
        row.update({k: v for k, v in ref.items() if k not in ("dataset", "image_size")})
    row["run_dir"] = str(run_dir.relative_to(out))
    return row


def collect_results(out, method: str = "knn", progress: bool = False) -> pd.DataFrame:
    """Gather every completed run into ``out/results.csv`` (and ``results.parquet`` when pyarrow is there).

    Runs missing their entropy measurements are measured now. Both files are written atomically.
    """
    out = Path(out)
    references: dict = {}
    rows = [_row(r, out, references, method) for r in completed_runs(out)]
    table = pd.DataFrame(rows)
    if table.empty:
        table = pd.DataFrame(columns=list(RESULT_KEYS) + ["run_dir"])
    first = [k for k in RESULT_KEYS if k in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    atomic_write_text(out / "results.csv", table.to_csv(index=False))
    _write_parquet(table, out / "results.parquet")
    _log(f"sweep: {len(table)} completed runs in {out / 'results.csv'}", progress)
    return table


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ModuleNotFoundError:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        table.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
