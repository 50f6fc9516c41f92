"""What a sweep records: the normal-data reference of a dataset and every measurement of one run.

The keys of these dicts are columns of the results table. The intrinsic dimension is recorded
per estimator of :data:`analysis.measures.intrinsic_dim.ID_METHODS` as ``id_<method>_x`` (normal
images) and ``id_<method>_z`` (codes), each with its ``_stderr``. The pseudo-anomaly information
(``mi_code_pseudo``, ``h_z_pseudo_excess``, :mod:`analysis.measures.pseudo`) is recorded too, and
so are the run's pseudo-anomaly metrics when its metrics.json predates them.
"""

from __future__ import annotations

import warnings

import numpy as np

from analysis.measures.entropy import label_information, latents_of, run_entropy
from analysis.measures.information import MAX_POINTS, flatten, information_at_resolution, matching_sigma, subsample
from analysis.measures.intrinsic_dim import ESTIMATORS, ID_METHODS
from analysis.measures.pseudo import MIN_CODES, run_pseudo_leakage


def data_reference(images, sigma: float | None = None, max_points: int = MAX_POINTS) -> dict:
    """The normal images' counterparts of H(X_n): intrinsic dimension and information at ``sigma``.

    ``images`` are normal training images (n, 1, s, s); flattened to pixel vectors. When
    ``sigma`` is None it is chosen by :func:`analysis.measures.information.matching_sigma`.
    """
    x = subsample(flatten(images), max_points)
    sigma = matching_sigma(x) if sigma is None else float(sigma)
    info = information_at_resolution(x, sigma)
    out = {"sigma": sigma, "info_x": info["value"], "info_x_lower": info["lower"], "info_x_upper": info["upper"]}
    for method in ID_METHODS:
        estimate = ESTIMATORS[method](x)
        out[f"id_{method}_x"], out[f"id_{method}_x_stderr"] = estimate.value, estimate.stderr
    out["n_x"] = int(len(x))
    return out


def code_measurements(z_train, sigma: float) -> dict:
    """The same counterparts for codes of normal training images (n, d), at the reference sigma."""
    z = subsample(np.asarray(z_train, dtype=np.float64), MAX_POINTS)
    out = {}
    info = information_at_resolution(z, sigma)
    out.update(info_z=info["value"], info_z_lower=info["lower"], info_z_upper=info["upper"])
    info_pd = information_at_resolution(z, sigma, standardize="per-dim")
    out["info_z_perdim"] = info_pd["value"]
    for method in ID_METHODS:
        name = f"id_{method}_z"
        try:
            estimate = ESTIMATORS[method](z)
            out[name], out[name + "_stderr"] = estimate.value, estimate.stderr
        except ValueError as err:  # e.g. a collapsed code with too few distinct points
            warnings.warn(f"{name}: {err}", RuntimeWarning, stacklevel=2)
            out[name], out[name + "_stderr"] = float("nan"), float("nan")
    return out


def run_measurements(run_dir, data, sigma: float, method: str = "knn", latents: dict | None = None) -> dict:
    """Every entropy measurement of one run, as one flat dict (a row of the results table).

    A measurement that cannot be made (e.g. a collapsed code with tied points that an estimator
    refuses) is recorded as NaN with its reason under ``"errors"`` and a warning, so the training
    is never lost for it.
    """
    latents = latents_of(run_dir, data, latents)
    out: dict = {}
    errors: dict = {}

    def attempt(name, fn):
        try:
            out.update(fn())
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as err:
            errors[name] = f"{type(err).__name__}: {err}"
            warnings.warn(f"{run_dir}: {name} measurement failed: {err}", RuntimeWarning, stacklevel=3)

    def h_z():
        h = run_entropy(run_dir, data, method=method, split="train_normal", latents=latents)
        return {"h_z": h["h_z"], "h_z_stderr": h["stderr"], "h_z_gaussian": h["h_z_gaussian"],
                "h_z_method": method, "h_z_n": h["n"]}

    attempt("h_z", h_z)
    attempt("code", lambda: code_measurements(latents["train_normal"], sigma))
    if len(latents.get("test_abnormal", ())) >= 10 and len(latents.get("test_normal", ())) >= 10:
        attempt("label", lambda: label_information(latents["test_normal"], latents["test_abnormal"], method=method))
    if data is not None and data.val is not None and len(data.val) >= MIN_CODES:
        attempt("pseudo", lambda: pseudo_measurements(run_dir, data, method))
    if errors:
        out["errors"] = errors
    return out


def pseudo_measurements(run_dir, data, method: str = "knn") -> dict:
    """The pseudo-anomaly columns a run's metrics.json does not already give the results table.

    Always the information of the code about the perturbation (:func:`run_pseudo_leakage`);
    also the copy ratio, pseudo AUROC / AP / pixel AP and ``rec_error_val_normal`` when the run
    was trained before evaluate_model recorded them, so such a run gets them without retraining.
    """
    measured = run_pseudo_leakage(run_dir, data, method=method)
    if measured.pop("pseudo_metrics_source") == "metrics.json":
        measured = {k: v for k, v in measured.items() if k.startswith(("mi_code_pseudo", "h_z_pseudo_excess"))
                    or k == "n_pseudo_codes"}
    return measured
