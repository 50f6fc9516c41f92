"""Recommend a latent size from NORMAL data only (never test labels).

The paper's criterion is H(Z) = H(X_n): the code should hold all the information of the normal
images and no more. :mod:`analysis.measures` explains why the raw differential entropies cannot
be compared and what is compared instead. The rules here turn those comparable measurements into
a latent size:

``id_match`` (after a sweep; the default)
    the smallest latent size whose code has the intrinsic dimension of the normal images,
    ``ID(Z_d) >= (1 - tolerance) * ID(X_n)`` (or, when no code gets there, the d where ID(Z)
    stops growing): from there on the code carries every direction of normal variation, and
    larger codes only add room for whatever else (lesions) gets through.
``info_saturation`` (after a sweep)
    the smallest latent size at which I_sigma(Z_d), the information the code carries about its
    input at the dataset's stated noise level, reaches its plateau over d ("H(Z) stops growing").
``rec_elbow`` (after a sweep)
    the smallest latent size whose normal *training* reconstruction error has come down to within
    ``tolerance`` of its total drop over the sweep.
``intrinsic_dimension`` (before any sweep, from the normal images alone)
    the smallest candidate latent size at or above the intrinsic dimension of the normal images.

Every rule reads only columns computed on normal images: the training-set codes and
reconstruction errors and the normal-image reference. Test metrics (AUROC, AP, test
reconstruction errors) are never read by a rule; :func:`regret` reads AUROC afterwards, for
context only, beside the choice in ``recommendation.json`` (:func:`write_recommendation`, the one
writer of that file, for ``entropy-ae recommend`` and ``entropy-ae report`` alike).

The intrinsic dimension is read with the Levina-Bickel estimator by default (``estimator=``
names a method of :data:`analysis.measures.intrinsic_dim.ID_METHODS`: columns ``id_<estimator>_z``
and ``id_<estimator>_x``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is only passed in: the CLI reads RULES without paying for its import
    import pandas as pd

DEFAULT_CRITERION = "id_match"
DEFAULT_ESTIMATOR = "levina_bickel"
CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Columns a recommendation may read: all computed on normal (training) images only.
NORMAL_ONLY_COLUMNS = frozenset({
    "dataset", "latent_size", "seed", "rec_error_train_normal", "final_loss",
    "id_levina_bickel_z", "id_twonn_z", "info_z", "info_z_perdim", "h_z", "h_z_gaussian",
    "id_levina_bickel_x", "id_twonn_x", "info_x", "sigma",
})


def _normal_only(results: pd.DataFrame) -> pd.DataFrame:
    """Drop every column that could carry test-label information, so no rule can read one."""
    return results[[c for c in results.columns if c in NORMAL_ONLY_COLUMNS]].copy()


def _per_size(results: pd.DataFrame, column: str) -> pd.Series:
    if column not in results.columns:
        raise ValueError(f"the results table has no {column!r} column; re-collect it with `entropy-ae sweep`")
    series = results.groupby("latent_size")[column].mean().sort_index()
    if series.isna().all():
        raise ValueError(f"column {column!r} has no values")
    return series.dropna()


def _reference(results: pd.DataFrame, column: str) -> float:
    values = results[column].dropna().unique() if column in results.columns else []
    if len(values) == 0:
        raise ValueError(f"the results table has no normal-data reference {column!r}")
    return float(np.mean(values))


def id_match(results: pd.DataFrame, tolerance: float = 0.1, estimator: str = DEFAULT_ESTIMATOR) -> dict:
    """Smallest latent size whose code reaches the intrinsic dimension of the normal images.

    The target is ``min(ID(X_n), max_d ID(Z_d))``: a briefly trained autoencoder may never
    capture every factor, and then the point where the code's dimension stops growing is the
    best this training can do. The rule picks the smallest d with
    ``ID(Z_d) >= (1 - tolerance) * target``.
    """
    id_z = _per_size(results, f"id_{estimator}_z")
    id_x = _reference(results, f"id_{estimator}_x")
    target = min(id_x, float(id_z.max()))
    reached = id_z[id_z >= (1 - tolerance) * target]
    latent_size = int(reached.index[0])
    return {
        "latent_size": latent_size,
        "criterion": "id_match",
        "evidence": {
            "rule": f"smallest latent size with ID(Z) >= {1 - tolerance:.2f} * min(ID(X_n), max_d ID(Z)) "
                    f"({estimator} estimator)",
            "id_x": id_x,
            "target": target,
            "id_z_by_latent_size": {int(k): float(v) for k, v in id_z.items()},
            "code_reaches_id_x": bool(id_z.max() >= (1 - tolerance) * id_x),
        },
    }


def info_saturation(results: pd.DataFrame, tolerance: float = 0.1) -> dict:
    """Smallest latent size whose I_sigma(Z) is within ``tolerance`` of its plateau (its maximum over d)."""
    info = _per_size(results, "info_z")
    low, high = float(info.min()), float(info.max())
    threshold = high - tolerance * (high - low)
    latent_size = int(info[info >= threshold].index[0])
    return {
        "latent_size": latent_size,
        "criterion": "info_saturation",
        "evidence": {
            "rule": f"smallest latent size with I_sigma(Z) >= max - {tolerance:.2f} * (max - min)",
            "sigma": _reference(results, "sigma"),
            "info_x": _reference(results, "info_x"),
            "info_z_by_latent_size": {int(k): float(v) for k, v in info.items()},
            "units": "nats",
        },
    }


def rec_elbow(results: pd.DataFrame, tolerance: float = 0.1) -> dict:
    """Smallest latent size whose normal training error has made all but ``tolerance`` of its drop."""
    err = _per_size(results, "rec_error_train_normal")
    low, high = float(err.min()), float(err.max())
    threshold = low + tolerance * (high - low)
    latent_size = int(err[err <= threshold].index[0])
    return {
        "latent_size": latent_size,
        "criterion": "rec_elbow",
        "evidence": {
            "rule": f"smallest latent size with train-normal MSE <= min + {tolerance:.2f} * (max - min)",
            "rec_error_train_normal_by_latent_size": {int(k): float(v) for k, v in err.items()},
        },
    }


def from_intrinsic_dimension(id_x: float, candidates=CANDIDATES, id_stderr: float | None = None,
                             estimator: str = DEFAULT_ESTIMATOR) -> dict:
    """Cheap rule, before any sweep: the smallest candidate latent size >= round(ID(X_n))."""
    if not (isinstance(id_x, (int, float)) and math.isfinite(id_x) and id_x > 0):
        raise ValueError(f"intrinsic dimension must be a positive number, got {id_x!r}")
    candidates = sorted(int(c) for c in candidates)
    target = max(1, round(id_x))
    above = [c for c in candidates if c >= target]
    latent_size = above[0] if above else candidates[-1]
    evidence = {"rule": "smallest candidate latent size >= round(ID(X_n))", "id_x": float(id_x),
                "estimator": estimator, "candidates": candidates}
    if id_stderr is not None:
        evidence["id_x_stderr"] = float(id_stderr)
    return {"latent_size": int(latent_size), "criterion": "intrinsic_dimension", "evidence": evidence}


def recommend_from_data(data, candidates=CANDIDATES, estimator: str = DEFAULT_ESTIMATOR) -> dict:
    """Recommend before any sweep, from the normal training images alone (an ID estimate)."""
    from analysis.measures.intrinsic_dim import intrinsic_dimension  # scikit-learn: only when used

    images = data.train if hasattr(data, "train") else data
    est = intrinsic_dimension(images, method=estimator)
    return from_intrinsic_dimension(est.value, candidates, est.stderr, estimator)


RULES = {"id_match": id_match, "info_saturation": info_saturation, "rec_elbow": rec_elbow}


def recommend(results: pd.DataFrame, criterion: str = DEFAULT_CRITERION, **options) -> dict:
    """Recommend a latent size for ONE dataset from its sweep results (normal-data columns only).

    Returns ``{"latent_size", "criterion", "evidence"}``; ``evidence`` also holds what every
    other rule and the cheap intrinsic-dimension rule would have chosen, for comparison.
    """
    if criterion not in RULES:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {tuple(RULES)}")
    if "dataset" in results.columns and results["dataset"].nunique() > 1:
        raise ValueError("the results hold several datasets; recommend for one at a time (see recommend_all)")
    table = _normal_only(results)
    if table.empty:
        raise ValueError("no completed runs to recommend from")
    chosen = RULES[criterion](table, **options)
    others = {}
    for name, rule in RULES.items():
        if name != criterion:
            try:
                others[name] = rule(table)["latent_size"]
            except ValueError as err:
                others[name] = f"unavailable: {err}"
    id_x = f"id_{DEFAULT_ESTIMATOR}_x"
    if id_x in table.columns:
        swept = sorted(int(v) for v in table["latent_size"].unique())
        others["intrinsic_dimension"] = from_intrinsic_dimension(_reference(table, id_x), swept)["latent_size"]
    chosen["evidence"]["other_criteria"] = others
    chosen["evidence"]["latent_sizes_swept"] = sorted(int(v) for v in table["latent_size"].unique())
    chosen["evidence"]["uses"] = "normal images only (training codes, training reconstruction error, normal-image reference)"
    if "dataset" in table.columns:
        chosen["dataset"] = str(table["dataset"].iloc[0])
    return chosen


def recommend_all(results: pd.DataFrame, criterion: str = DEFAULT_CRITERION) -> dict:
    """One recommendation per dataset of a results table: ``{dataset: recommendation}``."""
    return {str(name): recommend(group, criterion) for name, group in results.groupby("dataset")}


def regret(results: pd.DataFrame, latent_size: int, default: int = 16) -> dict:
    """AUROC points (x100) lost against the best latent size of the sweep, for a choice and the default.

    This reads test metrics: context for a reader of the recommendation, computed after the rule
    has chosen; no rule ever sees it.
    """
    auroc = results.groupby("latent_size")["auroc"].mean() * 100
    best = int(auroc.idxmax())
    out = {"oracle_latent_size": best, "oracle_auroc": float(auroc[best]),
           "recommended_auroc": float(auroc.get(latent_size, np.nan)),
           "regret_recommended": float(auroc[best] - auroc.get(latent_size, np.nan))}
    if default in auroc.index:
        out["default_auroc"] = float(auroc[default])
        out["regret_default"] = float(auroc[best] - auroc[default])
    return out


def recommendations(results: pd.DataFrame, criterion: str = DEFAULT_CRITERION) -> dict:
    """:func:`recommend_all`, each recommendation with its :func:`regret` under ``evidence["regret_for_context"]``."""
    per_dataset = recommend_all(results, criterion)
    for name, group in results.groupby("dataset"):
        rec = per_dataset[str(name)]
        rec["evidence"]["regret_for_context"] = regret(group, rec["latent_size"])
    return per_dataset


def write_recommendation(out, criterion: str = DEFAULT_CRITERION, per_dataset: dict | None = None) -> dict:
    """Write ``out/recommendation.json`` and return its content: the one writer of that file.

    ``per_dataset`` is :func:`recommendations` of ``out/results.csv`` (computed here when not
    given). With one dataset the file is ``{"latent_size", "criterion", "evidence", "dataset"}``;
    with several it maps each dataset name to such a dict.
    """
    from entropy_ae.io import atomic_write_json

    from analysis.sweep.layout import RECOMMENDATION
    from analysis.sweep.results import load_results

    if per_dataset is None:
        per_dataset = recommendations(load_results(out), criterion)
    payload = next(iter(per_dataset.values())) if len(per_dataset) == 1 else per_dataset
    atomic_write_json(Path(out) / RECOMMENDATION, payload)
    return payload
