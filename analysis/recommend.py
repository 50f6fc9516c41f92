"""Recommend a latent size from NORMAL data only (never test labels).

The paper's criterion is H(Z) = H(X_n): the code should hold all the information of the normal
images and no more. :mod:`analysis.measures` explains why the raw differential entropies cannot
be compared and what is compared instead. The rules here turn those comparable measurements into
a latent size:

``two_sided`` (after a sweep; the default)
    both sides of the latent size, each measured on normal data only. Too small: the share of
    the held-out normal *validation* reconstruction error's drop over the sweep that a size has
    made, ``held = (max - val(d)) / (max - min)``; sizes holding less than ``HELD_MIN`` are out
    (the smallest one left is ``d_low``). Too large: only inputs that are not normal can show
    it; the copy ratio of pseudo-anomalies made from the validation images
    (:mod:`entropy_ae.leakage`), the share of a defect the AE passes through, normalised by its
    largest value over the sweep, is the leak. The score ``held - LEAK_WEIGHT * leak`` is computed
    per run; the rule takes the smallest eligible ``d`` whose seed-mean score is within
    ``SE_FACTOR`` standard errors of the best (the one-standard-error rule; the standard error is
    that of the best size, the seeds' sd / sqrt(seeds); one seed: the best). The pseudo-anomaly
    AUROC is reported as evidence but not scored: larger codes reconstruct the clean images
    better, so gross defects stay easy to see even while more of each is copied (measured on the
    docs' "both sides of the curve" page). ID(X_n) and ID(Z) are evidence only: a curved or
    periodic factor needs more code units than its dimension.
``id_match`` (after a sweep)
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
reconstruction errors, the normal-image reference, and the validation images with the
pseudo-anomalies made from them. Test metrics (AUROC, AP, test
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

from entropy_ae.data.pseudo_anomalies import FAMILIES

if TYPE_CHECKING:  # pandas is only passed in: the CLI reads RULES without paying for its import
    import pandas as pd

DEFAULT_CRITERION = "two_sided"
# The rule `entropy-ae report` falls back to when the criterion cannot be applied (a sweep that
# predates the pseudo-anomaly metrics).
FALLBACK_CRITERION = "id_match"
DEFAULT_ESTIMATOR = "levina_bickel"
CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# The two_sided rule's settings. HELD_MIN: a size must hold at least this share of the validation
# error's drop over the sweep (not too small). LEAK_WEIGHT: the weight of the normalised copy
# ratio against the held share (not too large). SE_FACTOR: the one-standard-error rule.
# All three were chosen on the development datasets of benchmarks/recommendation.py (--tune, least
# mean regret; among tied settings the values set beforehand were kept) and then frozen.
HELD_MIN = 0.5
LEAK_WEIGHT = 1.0
SE_FACTOR = 1.0
LEAK_COLUMN = "copy_ratio"
# Pseudo-anomaly columns (validation images and defects made from them; normal data only).
_PSEUDO_NAMES = ("copy_ratio", "pseudo_auroc", "pseudo_ap", "pseudo_pixel_ap", "mi_code_pseudo", "h_z_pseudo_excess")
PSEUDO_COLUMNS = frozenset({
    "rec_error_val_normal", *_PSEUDO_NAMES, *(f"{n}_{f}" for n in _PSEUDO_NAMES for f in FAMILIES),
    "pseudo_families", "pseudo_strength", "n_pseudo", "n_pseudo_codes",
})
# Columns a recommendation may read: all computed on normal images only (training and validation).
NORMAL_ONLY_COLUMNS = frozenset({
    "dataset", "latent_size", "seed", "rec_error_train_normal", "final_loss",
    "id_levina_bickel_z", "id_twonn_z", "info_z", "info_z_perdim", "h_z", "h_z_gaussian",
    "id_levina_bickel_x", "id_twonn_x", "info_x", "sigma",
}) | PSEUDO_COLUMNS


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


def _predates(column: str) -> ValueError:
    return ValueError(
        f"the two_sided rule needs the column {column!r}, which this results table lacks (or has no values in): "
        "the sweep predates the pseudo-anomaly metrics (or its data have no validation images). Run the same "
        "`entropy-ae sweep` command on its directory again (completed runs are not retrained: the missing "
        "pseudo-anomaly metrics are measured on their validation images and the table is rebuilt), or choose "
        "`--criterion id_match`")


def _by_size(results: pd.DataFrame, column: str) -> dict:
    """``{latent size: seed mean}`` of a column when the table has it, else ``{}`` (evidence only)."""
    if column not in results.columns:
        return {}
    return {int(k): float(v) for k, v in results.groupby("latent_size")[column].mean().dropna().items()}


def _score_stats(results: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per latent size: the seed mean of ``column``, its standard error (sd / sqrt(seeds); 0 for one seed)."""
    grouped = results.dropna(subset=[column]).groupby("latent_size")[column]
    stats = grouped.agg(["mean", "std", "count"]).sort_index()
    stats["se"] = (stats["std"] / np.sqrt(stats["count"])).fillna(0.0)
    return stats


def _per_seed_score(results: pd.DataFrame, leak_weight: float) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Each run's held share of the normal information minus ``leak_weight`` times its normalised leak.

    ``held = (max - val) / (max - min)`` of the validation error, ``leak = copy / max copy``, both
    normalised by the seed means over the sweep; returns the runs with ``held``, ``leak`` and
    ``score`` columns and the seed-mean validation error and copy ratio per latent size.
    """
    for column in ("rec_error_val_normal", LEAK_COLUMN):
        if column not in results.columns or results[column].isna().all():
            raise _predates(column)
    runs = results.dropna(subset=["rec_error_val_normal", LEAK_COLUMN]).copy()
    val = runs.groupby("latent_size")["rec_error_val_normal"].mean().sort_index()
    copy = runs.groupby("latent_size")[LEAK_COLUMN].mean().sort_index()
    low, high, most = float(val.min()), float(val.max()), float(copy.max())
    runs["held"] = (high - runs["rec_error_val_normal"]) / (high - low) if high > low else 1.0
    runs["leak"] = runs[LEAK_COLUMN] / most if most > 0 else 0.0
    runs["score"] = runs["held"] - leak_weight * runs["leak"]
    return runs, val, copy


def two_sided(results: pd.DataFrame, leak_weight: float = LEAK_WEIGHT, se_factor: float = SE_FACTOR,
              held_min: float = HELD_MIN, estimator: str = DEFAULT_ESTIMATOR) -> dict:
    """Not too small (validation error) and not too large (copy ratio): see the module docstring.

    Raises
    ------
    ValueError
        When the table has no ``rec_error_val_normal`` or ``copy_ratio`` values (a sweep that
        predates them).
    """
    runs, val, copy = _per_seed_score(results, leak_weight)
    stats = _score_stats(runs, "score")
    held = runs.groupby("latent_size")["held"].mean()
    eligible = stats[held.reindex(stats.index) >= held_min]
    d_low = int(eligible.index[0])
    best = int(eligible["mean"].idxmax())
    threshold = float(eligible.loc[best, "mean"] - se_factor * eligible.loc[best, "se"])
    latent_size = int(eligible[eligible["mean"] >= threshold].index[0])
    id_z, id_x = f"id_{estimator}_z", f"id_{estimator}_x"
    return {
        "latent_size": latent_size,
        "criterion": "two_sided",
        "evidence": {
            "rule": f"score = held share of the validation-error drop - {leak_weight:g} x copy ratio / its maximum; "
                    f"among sizes holding >= {held_min:.0%} of the drop (from d_low), the smallest d whose mean "
                    f"score is within {se_factor:g} standard error(s) of the best",
            "d_low": d_low,
            "held_min": float(held_min),
            "leak_weight": float(leak_weight),
            "se_factor": float(se_factor),
            "rec_error_val_normal_by_latent_size": {int(k): float(v) for k, v in val.items()},
            "held_by_latent_size": {int(k): float(v) for k, v in held.items()},
            "copy_ratio_by_latent_size": {int(k): float(v) for k, v in copy.items()},
            "score_by_latent_size": {int(k): float(v) for k, v in stats["mean"].items()},
            "score_se_by_latent_size": {int(k): float(v) for k, v in stats["se"].items()},
            "best_latent_size": best,
            "score_threshold": threshold,
            "pseudo_auroc_by_latent_size": _by_size(results, "pseudo_auroc"),
            "mi_code_pseudo_by_latent_size": _by_size(results, "mi_code_pseudo"),
            "id_x": _reference(results, id_x) if id_x in results.columns and results[id_x].notna().any() else None,
            "id_z_by_latent_size": _by_size(results, id_z),
            "id_note": "evidence only: a curved or periodic factor needs more code units than its dimension",
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


RULES = {"two_sided": two_sided, "id_match": id_match, "info_saturation": info_saturation, "rec_elbow": rec_elbow}


def recommend(results: pd.DataFrame, criterion: str = DEFAULT_CRITERION, **options) -> dict:
    """Recommend a latent size for ONE dataset from its sweep results (normal-data columns only).

    Returns ``{"latent_size", "criterion", "evidence"}``; ``evidence`` also holds what every
    other rule and the cheap intrinsic-dimension rule would have chosen, for comparison.
    """
    if criterion not in RULES:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {tuple(RULES)}")
    results = _ae_runs(results)
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
    chosen["evidence"]["uses"] = ("normal images only (training codes, training and validation reconstruction "
                                  "error, normal-image reference, pseudo-anomalies made from the validation images)")
    if "dataset" in table.columns:
        chosen["dataset"] = str(table["dataset"].iloc[0])
    return chosen


def recommend_or_fall_back(results: pd.DataFrame, criterion: str = DEFAULT_CRITERION,
                           fallback: str | None = None) -> dict:
    """:func:`recommend`; when the rule cannot be applied and ``fallback`` names another rule, that one.

    A fallback recommendation records why under ``evidence["fallback"]``
    (``{"requested_criterion", "reason"}``), for the report to show as a warning.
    """
    if criterion not in RULES:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {tuple(RULES)}")
    try:
        return recommend(results, criterion)
    except ValueError as err:
        if fallback is None or fallback == criterion:
            raise
        rec = recommend(results, fallback)
        rec["evidence"]["fallback"] = {"requested_criterion": criterion, "reason": str(err)}
        return rec


def _ae_runs(results: pd.DataFrame) -> pd.DataFrame:
    """The plain AE's runs: the latent size recommended is the AE's (other model kinds are for Table 2)."""
    from analysis.sweep.results import model_runs
    return model_runs(results, "ae")


def recommend_all(results: pd.DataFrame, criterion: str = DEFAULT_CRITERION, fallback: str | None = None) -> dict:
    """One recommendation per dataset of a results table with AE runs: ``{dataset: recommendation}``."""
    results = _ae_runs(results)
    return {str(name): recommend_or_fall_back(group, criterion, fallback) for name, group in results.groupby("dataset")}


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


def recommendations(results: pd.DataFrame, criterion: str = DEFAULT_CRITERION, fallback: str | None = None) -> dict:
    """:func:`recommend_all`, each recommendation with its :func:`regret` under ``evidence["regret_for_context"]``."""
    per_dataset = recommend_all(results, criterion, fallback)
    for name, group in _ae_runs(results).groupby("dataset"):
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
