"""One training instead of a sweep: the capacity of a ``nested`` or ``gated`` model, chosen from normal data.

``nested`` (an ordered code) is one model per truncation 1, 2, 4, ..., d. Each truncation is
scored like a run of a sweep -- its decoder's BatchNorm statistics re-estimated for it, then
:func:`entropy_ae.evaluation.evaluate_model` on the held-out normal validation images and the
pseudo-anomalies made from them -- and a recommendation rule of :mod:`analysis.recommend`
(default ``two_sided``, normal data only) picks one, exactly as it picks a latent size from a
sweep's table. ``gated`` has chosen its open units itself during training; nothing is chosen here.

:func:`run_adaptive_training` trains, chooses, evaluates and saves a run directory whose
``metrics.json`` records the capacity (``effective_latent_size``; for ``nested`` the per-truncation
table and the rule's evidence under ``capacity``) and the code's H(Z) and ID(Z) at that capacity.
Test metrics of the other truncations are recorded for context only; the rule never reads them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from entropy_ae.evaluation import encode_images, evaluate_model
from entropy_ae.model import ADAPTIVE_KINDS, truncations
from entropy_ae.runs import check_not_complete, save_run
from entropy_ae.training import TrainConfig, train_model

from analysis.measures.entropy import entropy_with_stderr
from analysis.measures.intrinsic_dim import intrinsic_dimension
from analysis.recommend import DEFAULT_CRITERION, recommend

# Per truncation, what the table keeps: the rule's normal-data inputs, then test metrics for context.
TABLE_COLUMNS = ("rec_error_train_normal", "rec_error_val_normal", "copy_ratio", "pseudo_auroc", "auroc", "ap")


def truncation_table(model, data, target_fpr: float = 0.05) -> pd.DataFrame:
    """One row per candidate truncation of a ``nested`` model: its metrics, as a sweep's results table."""
    rows = []
    for j in truncations(model.latent_size):
        model.set_truncation(j, data.train)
        metrics = evaluate_model(model, data, target_fpr=target_fpr)
        rows.append({"dataset": data.name, "latent_size": j, "seed": 0,
                     **{k: metrics.get(k) for k in TABLE_COLUMNS}})
    return pd.DataFrame(rows)


def choose_truncation(model, data, criterion: str = DEFAULT_CRITERION, target_fpr: float = 0.05) -> dict:
    """Set a ``nested`` model to the truncation ``criterion`` recommends; returns the evidence.

    ``{"truncation", "criterion", "rule", "by_truncation": {column: {j: value}}}``; the model is
    left at that truncation, its decoder statistics re-estimated for it.
    """
    table = truncation_table(model, data, target_fpr)
    rec = recommend(table, criterion)
    model.set_truncation(rec["latent_size"], data.train)
    by = table.set_index("latent_size")
    return {"truncation": int(rec["latent_size"]), "criterion": rec["criterion"], "rule": rec["evidence"]["rule"],
            "by_truncation": {c: {int(j): v for j, v in by[c].items()} for c in TABLE_COLUMNS}}


def code_measures(model, data, method: str = "knn") -> dict:
    """H(Z) (nats, with its standard error) and the Levina-Bickel ID(Z) of the normal training codes."""
    codes = encode_images(model, data.train)
    if codes.shape[1] == 0:  # every gate closed: the model reconstructs one image for all inputs
        return {"h_z": None, "h_z_stderr": None, "h_z_method": method, "id_levina_bickel_z": None,
                "code_note": "no open code unit: the code is empty and carries no information"}
    h_z, stderr = entropy_with_stderr(codes, method=method)
    return {"h_z": h_z, "h_z_stderr": stderr, "h_z_method": method,
            "id_levina_bickel_z": intrinsic_dimension(codes).value}


def run_adaptive_training(data, config: TrainConfig, run_dir, progress: bool | None = None, *,
                          target_fpr: float = 0.05, criterion: str = DEFAULT_CRITERION,
                          overwrite: bool = False) -> dict:
    """Train a ``nested`` or ``gated`` model, fix its capacity, evaluate and save it; returns the metrics.

    ``train_seconds`` is the training alone; ``capacity_seconds`` the choice (scoring every
    truncation) and the code measurements, so both count in a comparison with a sweep.
    """
    if config.model not in ADAPTIVE_KINDS:
        raise ValueError(f"run_adaptive_training is for the models {ADAPTIVE_KINDS}, got {config.model!r}")
    run_dir = Path(run_dir)
    check_not_complete(run_dir, overwrite)
    start = time.perf_counter()
    model, history = train_model(data, config, progress=progress)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    extra = {}
    if config.model == "nested":
        extra["capacity"] = choose_truncation(model, data, criterion, target_fpr)
    metrics = evaluate_model(model, data, target_fpr=target_fpr)
    metrics.update(extra, **code_measures(model, data))
    metrics["capacity_seconds"] = time.perf_counter() - start
    return save_run(run_dir, model, config, data, metrics, history, train_seconds=train_seconds,
                    overwrite=overwrite)
