"""The layout of a sweep directory: the one place where its file names are spelled.

::

    DIR/<dataset>/reference.json                   normal-data reference (ID, I_sigma of X_n)
    DIR/<dataset>/latent_size=<d>/seed=<s>/        one run of the plain AE (entropy_ae.runs format)
        entropy.json                               every entropy measurement of the run
    DIR/<dataset>/model=<kind>/latent_size=<d>/seed=<s>/   one run of another model kind (vae, memae, ...)
    DIR/results.csv (+ results.parquet)            one row per completed run
    DIR/logs/                                      one log per executor job
    DIR/recommendation.json                        the recommended latent size (analysis.recommend)
    DIR/report.md, DIR/report.html, DIR/figures/   the report (analysis.report)

The files of a run directory itself (weights, config, metrics) are ``entropy_ae.runs``'s.
This module imports nothing heavy, so the recommendation and the report can use it freely.
"""

from __future__ import annotations

from pathlib import Path

REFERENCE = "reference.json"
ENTROPY = "entropy.json"
RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
LOGS = "logs"
RECOMMENDATION = "recommendation.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES = "figures"
# The run directories of one model kind, relative to its folder (:func:`model_dir`).
RUN_GLOB = "latent_size=*/seed=*"
MODEL_PREFIX = "model="
# Every run directory of a sweep, relative to the sweep directory.
SWEEP_RUN_GLOBS = (f"*/{RUN_GLOB}", f"*/{MODEL_PREFIX}*/{RUN_GLOB}")


def model_dir(out, dataset: str, model: str = "ae") -> Path:
    """The folder of one model kind's runs: the dataset's folder for ``ae``, ``model=<kind>/`` in it otherwise."""
    base = Path(out) / dataset
    return base if model == "ae" else base / f"{MODEL_PREFIX}{model}"


def run_dir_for(out, dataset: str, latent_size: int, seed: int, model: str = "ae") -> Path:
    """The run directory of one grid point: ``out/<dataset>[/model=<kind>]/latent_size=<d>/seed=<s>``."""
    return model_dir(out, dataset, model) / f"latent_size={latent_size}" / f"seed={seed}"


def run_model(run_dir) -> str:
    """The model kind of a run directory, read from its path (``ae`` unless under ``model=<kind>/``)."""
    folder = Path(run_dir).parent.parent.name
    return folder[len(MODEL_PREFIX):] if folder.startswith(MODEL_PREFIX) else "ae"


def run_dataset(run_dir) -> str:
    """The dataset folder name of a run directory, read from its path."""
    folder = Path(run_dir).parent.parent
    return (folder.parent if folder.name.startswith(MODEL_PREFIX) else folder).name


def grid_point(run_dir) -> tuple[int, int]:
    """``(latent_size, seed)`` read from a run directory's path; ValueError when it is not one."""
    run_dir = Path(run_dir)
    return int(run_dir.parent.name.split("=")[1]), int(run_dir.name.split("=")[1])


def reference_path(out, dataset: str) -> Path:
    """Where the normal-data reference of ``dataset`` is kept."""
    return Path(out) / dataset / REFERENCE
