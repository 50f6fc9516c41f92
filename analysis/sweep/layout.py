"""The layout of a sweep directory: the one place where its file names are spelled.

::

    DIR/<dataset>/reference.json                   normal-data reference (ID, I_sigma of X_n)
    DIR/<dataset>/latent_size=<d>/seed=<s>/        one run (entropy_ae.runs format)
        entropy.json                               every entropy measurement of the run
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
# The run directories of one dataset, relative to its folder.
RUN_GLOB = "latent_size=*/seed=*"


def run_dir_for(out, dataset: str, latent_size: int, seed: int) -> Path:
    """The run directory of one grid point: ``out/<dataset>/latent_size=<d>/seed=<s>``."""
    return Path(out) / dataset / f"latent_size={latent_size}" / f"seed={seed}"


def grid_point(run_dir) -> tuple[int, int]:
    """``(latent_size, seed)`` read from a run directory's path; ValueError when it is not one."""
    run_dir = Path(run_dir)
    return int(run_dir.parent.name.split("=")[1]), int(run_dir.name.split("=")[1])


def reference_path(out, dataset: str) -> Path:
    """Where the normal-data reference of ``dataset`` is kept."""
    return Path(out) / dataset / REFERENCE
