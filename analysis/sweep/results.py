"""The results table of a sweep directory: one row per completed run, gathered from the run directories.

Runs never write the table; it is collected afterwards (:func:`collect_results`), so a failed or
repeated run cannot corrupt finished results. Both files are written atomically.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from entropy_ae.io import atomic_write, atomic_write_text
from entropy_ae.runs import is_complete, load_config, load_metrics

from analysis.measures.pseudo import INFORMATION, PSEUDO_METRICS, family_columns
from analysis.sweep.jobs import log, measure_run, read_reference, stored_measurements, weights_sha256
from analysis.sweep.layout import RESULTS_CSV, RESULTS_PARQUET, SWEEP_RUN_GLOBS, grid_point, run_dataset, run_model
from analysis.sweep.settings import SETTING_COLUMNS, MixedSettingsWarning, mixed_settings, run_settings

RESULT_KEYS = (
    "dataset",
    "model",
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
# Pseudo-anomaly columns (normal data only: validation images and defects made from them), after
# every other column; NaN for a run that has none (no validation images, or a failed measurement).
PSEUDO_KEYS = (
    "rec_error_val_normal", *PSEUDO_METRICS, *INFORMATION, *family_columns(),
    "pseudo_families", "pseudo_strength", "n_pseudo", "n_pseudo_codes",
)
# Model-kind columns, NaN for the kinds without them: the VAE's rate (KL to its prior, nats per
# image) per split, and the capacity an adaptive model uses.
MODEL_KEYS = ("kl_rate_train_normal", "kl_rate_val_normal", "kl_rate_test_normal", "kl_rate_test_abnormal",
             "effective_latent_size")  # the last: the capacity a nested or gated model uses
# Keys of reference.json that are not columns (the table has them already, or they are bookkeeping).
_REFERENCE_NOT_COLUMNS = ("dataset", "image_size", "data_spec", "measurements_version")


def completed_runs(out) -> list[Path]:
    """Every completed run directory under a sweep directory, in (dataset, model, latent size, seed) order.

    In each dataset the plain AE's runs come first, then the other kinds alphabetically.
    """
    runs = [p for pattern in SWEEP_RUN_GLOBS for p in Path(out).glob(pattern) if is_complete(p)]
    return sorted(runs, key=lambda p: (run_dataset(p), run_model(p) != "ae", run_model(p), *grid_point(p)))


def _measurements(run_dir: Path, ref: dict | None, method: str, config: dict) -> dict | None:
    """The run's entropy measurements for the table (measured now when missing or stale), or None."""
    if ref is not None:
        # measured again when missing or made on other weights (the run was retrained in place)
        measured = measure_run(run_dir, None, ref["sigma"], method, config=config)
    else:  # no reference to measure against: keep only measurements of these very weights
        measured = stored_measurements(run_dir)
        measured_on = (measured or {}).get("measured_with") or {}
        if measured is not None and measured_on.get("weights_sha256") != weights_sha256(run_dir):
            measured = None
    if measured is None:
        return None
    measured = {k: v for k, v in measured.items() if k != "measured_with"}
    if isinstance(measured.get("errors"), dict):
        measured["errors"] = "; ".join(f"{k}: {v}" for k, v in measured["errors"].items())
    return measured


def _row(run_dir: Path, out: Path, references: dict, method: str) -> dict:
    """One row of the table: the run's metrics, settings, measurements and its dataset's reference."""
    metrics, config = load_metrics(run_dir), load_config(run_dir)
    dataset = run_dataset(run_dir)
    row = {k: metrics.get(k) for k in RESULT_KEYS}
    row["dataset"] = metrics.get("dataset", dataset)
    row["model"] = config["model"]["kind"]
    row["latent_size"], row["seed"] = grid_point(run_dir)
    if dataset not in references:
        references[dataset] = read_reference(out, dataset)
    ref = references[dataset]
    settings = run_settings(config)
    row.update({k: settings.get(k) for k in SETTING_COLUMNS if k in settings})
    row["data_spec"] = json.dumps(settings.get("data"), sort_keys=True, separators=(",", ":"))
    row["model_options"] = json.dumps(settings.get("model_options"), sort_keys=True, separators=(",", ":"))
    measured = _measurements(run_dir, ref, method, config)
    if measured is not None:
        row.update(measured)
    if ref is not None:
        row.update({k: v for k, v in ref.items() if k not in _REFERENCE_NOT_COLUMNS})
    row.update({k: float("nan") if metrics.get(k) is None else metrics[k] for k in MODEL_KEYS})
    row["run_dir"] = str(run_dir.relative_to(out))
    row.update(_pseudo_columns(metrics, measured or {}))
    return row


def _pseudo_columns(metrics: dict, measured: dict) -> dict:
    """The :data:`PSEUDO_KEYS` of a row: from metrics.json, else measured (a run that predates them), else NaN."""
    out = {}
    for key in PSEUDO_KEYS:
        value = metrics.get(key)
        if value is None:
            value = measured.get(key)
        if isinstance(value, list):  # metrics.json lists the families
            value = ",".join(map(str, value))
        out[key] = float("nan") if value is None else value
    return out


def collect_results(out, method: str = "knn", progress: bool = False) -> pd.DataFrame:
    """Gather every completed run into ``out/results.csv`` (and ``results.parquet`` when pyarrow is there).

    Runs missing their entropy measurements, or measured on other weights (retrained in place),
    another sigma or another ``method``, are measured now. A dataset whose runs were trained
    with different settings gets a :class:`MixedSettingsWarning` (:func:`mixed_settings`); the
    table keeps one column per setting (:data:`SETTING_COLUMNS`).
    """
    out = Path(out)
    references: dict = {}
    table = pd.DataFrame([_row(r, out, references, method) for r in completed_runs(out)])
    if table.empty:
        table = pd.DataFrame(columns=list(RESULT_KEYS) + list(SETTING_COLUMNS) + ["run_dir"] + list(PSEUDO_KEYS))
    first = [k for k in dict.fromkeys((*RESULT_KEYS, *SETTING_COLUMNS)) if k in table.columns]
    last = [k for k in PSEUDO_KEYS if k in table.columns]
    table = table[first + [c for c in table.columns if c not in first and c not in last] + last]
    atomic_write_text(out / RESULTS_CSV, table.to_csv(index=False))
    write_parquet(table, out / RESULTS_PARQUET)
    log(f"sweep: {len(table)} completed runs in {out / RESULTS_CSV}", progress)
    for message in mixed_settings(table):
        warnings.warn(message, MixedSettingsWarning, stacklevel=2)
    return table


def write_parquet(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` to ``path`` as parquet, atomically; nothing when pyarrow is not installed."""
    try:
        import pyarrow  # noqa: F401
    except ModuleNotFoundError:
        return
    atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))


def load_results(source) -> pd.DataFrame:
    """The results table of a sweep directory (or a results.csv path), as a DataFrame."""
    path = Path(source)
    if path.is_dir():
        path = path / RESULTS_CSV
    if not path.is_file():
        raise FileNotFoundError(f"no results table at {path}; run `entropy-ae sweep ... --out DIR` first")
    table = pd.read_csv(path)
    missing = [k for k in ("dataset", "latent_size", "seed", "auroc") if k not in table.columns]
    if missing:
        raise ValueError(f"{path} is not a sweep results table: columns {missing} are missing")
    if "model" not in table.columns:  # a table written before model kinds: every run is the plain AE
        table.insert(1, "model", "ae")
    return table


def model_runs(table: pd.DataFrame, model: str = "ae") -> pd.DataFrame:
    """The rows of one model kind (all rows of a table without a ``model`` column are the plain AE's)."""
    if "model" not in table.columns:
        return table if model == "ae" else table.iloc[0:0]
    return table[table["model"] == model]
