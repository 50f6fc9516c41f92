"""The tables of a sweep's results: the paper's Table 1 (per latent size) and Table 2 (per model kind).

Each function takes a results table (:func:`analysis.sweep.results.load_results`) and returns a
DataFrame ready to print or to render (``analysis.report``). Detection metrics are in percent,
``mean ± std`` over seeds, the best mean in Markdown bold (``**...**``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.sweep.results import model_runs

TABLE1_METRICS = (("auroc", "AUROC"), ("ap", "AP"), ("pixel_ap", "pixel AP"), ("best_dice", "best Dice*"))
ENTROPY_COLUMNS = (
    ("h_z", "H(Z) k-NN"),
    ("h_z_gaussian", "H(Z) Gaussian bound"),
    ("info_z", "I_sigma(Z)"),
    ("id_levina_bickel_z", "ID(Z) MLE"),
    ("id_twonn_z", "ID(Z) TwoNN"),
    ("mi_code_pseudo", "I(Z; perturbed) [normal only]"),
    ("h_z_pseudo_excess", "H(Z_pert) - H(Z_clean) [normal only]"),
    ("mi_code_label", "I(Z; label) [test labels]"),
    ("h_z_abnormal_excess", "H(Z_abn) - H(Z_norm) [test labels]"),
)
# The pseudo-anomaly measurements (validation images and defects made from them: normal data only).
PSEUDO_TABLE_COLUMNS = (
    ("rec_error_val_normal", "val-normal MSE"),
    ("pseudo_auroc", "pseudo AUROC"),
    ("pseudo_ap", "pseudo AP"),
    ("pseudo_pixel_ap", "pseudo pixel AP"),
    ("copy_ratio", "copy ratio"),
    ("mi_code_pseudo", "I(Z; perturbed)"),
)


# ---------------------------------------------------------------------------------------- tables


def _mean_std_cells(groups: dict, column: str, scale: float, digits: int, bold: set) -> list[str]:
    """``mean ± std`` of ``column`` in each group (a single run: its value alone), bold where the key is in ``bold``."""
    cells = []
    for key, group in groups.items():
        values = group[column].dropna() * scale
        if values.empty:
            cells.append("n/a")
            continue
        cell = f"{values.mean():.{digits}f}"
        if len(values) > 1:  # one run has no spread: no "± 0.0" that would claim one
            cell += f" ± {values.std(ddof=1):.{digits}f}"
        cells.append(f"**{cell}**" if key in bold else cell)
    return cells


def _best(groups: dict, column: str, among=None) -> set:
    """The key of the group with the highest mean ``column`` (among ``among`` when given)."""
    means = {k: g[column].mean() for k, g in groups.items() if among is None or k in among}
    means = {k: v for k, v in means.items() if np.isfinite(v)}
    return {max(means, key=means.get)} if means else set()


def _metric_columns(results: pd.DataFrame):
    """The detection metrics the table has values for (pixel AP and best Dice need masks)."""
    return [(c, label) for c, label in TABLE1_METRICS if c in results.columns and results[c].notna().any()]


def table1(results: pd.DataFrame, percent: bool = True) -> pd.DataFrame:
    """The paper's Table 1 for one dataset: ``mean +- std`` over seeds per latent size, best in bold.

    Cells are strings; the best mean of each column is wrapped in ``**`` (Markdown bold). A latent
    size with a single run shows its value alone (``"40.9"``): one run has no spread, and
    ``"± 0.0"`` would claim one. Columns whose metric is missing (no masks: pixel AP, best Dice)
    are left out. Only the plain AE's runs are used (other model kinds are Table 2's).
    """
    results = model_runs(results, "ae")
    scale, digits = (100.0, 1) if percent else (1.0, 3)
    groups = {int(d): g for d, g in results.groupby("latent_size")}
    table = pd.DataFrame(index=pd.Index(list(groups), name="latent size"))
    for column, label in _metric_columns(results):
        table[label] = _mean_std_cells(groups, column, scale, digits, _best(groups, column))
    table["runs"] = [len(g) for g in groups.values()]
    return table


METHOD_LABELS = {"ae": "AE", "vae": "VAE", "memae": "MemAE", "ceae": "CeAE", "dae": "DAE",
                 "nested": "Nested (adaptive)", "gated": "Gated (adaptive)"}
# Beside Table 2: what each method's code holds (normal training codes) and how much it copies
# pseudo-anomalies (normal data only); the VAE's rate is its KL to the prior.
TABLE2_MEASURES = (
    ("effective_latent_size", "effective d"),
    ("h_z", "H(Z) k-NN"),
    ("id_levina_bickel_z", "ID(Z)"),
    ("info_z", "I_sigma(Z)"),
    ("kl_rate_train_normal", "KL rate (VAE)"),
    ("copy_ratio", "copy ratio"),
    ("pseudo_auroc", "pseudo AUROC"),
)
DEFAULT_LATENT_SIZE = 16  # the usual default, the latent size of the paper's Table 2 methods


def has_several_models(results: pd.DataFrame) -> bool:
    """Whether a results table holds runs of more than one model kind (then the report adds Table 2)."""
    return "model" in results.columns and results["model"].nunique() > 1


def methods_latent_size(results: pd.DataFrame) -> int:
    """The latent size the other fixed-size kinds were run at (the commonest), else :data:`DEFAULT_LATENT_SIZE`."""
    if "model" not in results.columns:
        return DEFAULT_LATENT_SIZE
    others = results[results["model"] != "ae"]
    if "effective_latent_size" in others.columns:  # adaptive kinds (nested, gated) choose their own size
        others = others[others["effective_latent_size"].isna()]
    return int(others["latent_size"].mode().min()) if len(others) else DEFAULT_LATENT_SIZE


def table2_rows(results: pd.DataFrame, recommended: int | None, default: int | None = None) -> dict:
    """``{row label: runs}`` of Table 2 for one dataset, in the paper's order.

    The AE at ``default`` (default: the methods' latent size, :func:`methods_latent_size`; the
    paper's is 16), every other kind at each latent size it was run at, the AE at the
    ``recommended`` latent size (normal data only) and at the oracle latent size (the best mean
    test AUROC of the sweep: it uses test labels, and is labelled so).
    """
    default = methods_latent_size(results) if default is None else default
    ae = model_runs(results, "ae")
    sizes = set(int(d) for d in ae["latent_size"].unique())
    rows = {}
    if default in sizes:
        rows[f"AE (d={default})"] = ae[ae["latent_size"] == default]
    others = [k for k in results["model"].unique() if k != "ae"] if "model" in results.columns else []
    for kind in sorted(others, key=lambda k: list(METHOD_LABELS).index(k) if k in METHOD_LABELS else 99):
        runs = model_runs(results, kind)
        for d, group in runs.groupby("latent_size"):
            rows[f"{METHOD_LABELS.get(kind, kind)} (d={int(d)})"] = group
    if recommended is not None and recommended in sizes:
        rows[f"AE (recommended d={recommended})"] = ae[ae["latent_size"] == recommended]
    if not ae.empty:
        oracle = int(ae.groupby("latent_size")["auroc"].mean().idxmax())
        rows[f"AE (oracle d={oracle}, test labels)"] = ae[ae["latent_size"] == oracle]
    return rows


def table2(results: pd.DataFrame, recommended: int | None, default: int | None = None,
           percent: bool = True) -> pd.DataFrame:
    """The paper's Table 2 for one dataset, with each method's latent measurements beside it.

    Rows are :func:`table2_rows`; detection metrics are ``mean ± std`` over seeds (percent),
    the best mean of each column in bold among the rows that use no test label (the oracle row
    is left out of the bold); the measures of :data:`TABLE2_MEASURES` are means over seeds.
    """
    scale, digits = (100.0, 1) if percent else (1.0, 3)
    groups = table2_rows(results, recommended, default)
    fair = [label for label in groups if "test labels" not in label]
    table = pd.DataFrame(index=pd.Index(list(groups), name="method"))
    for column, label in _metric_columns(results):
        table[label] = _mean_std_cells(groups, column, scale, digits, _best(groups, column, fair))
    for column, label in TABLE2_MEASURES:
        if column in results.columns and results[column].notna().any():
            table[label] = [round(float(g[column].mean()), 3) if g[column].notna().any() else np.nan
                            for g in groups.values()]
    table["runs"] = [len(g) for g in groups.values()]
    return table


def _means_table(results: pd.DataFrame, columns) -> pd.DataFrame:
    results = model_runs(results, "ae")
    present = [(c, label) for c, label in columns if c in results.columns and results[c].notna().any()]
    means = results.groupby("latent_size")[[c for c, _ in present]].mean()
    return means.rename(columns=dict(present)).round(3).rename_axis("latent size")


def entropy_table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of every entropy measurement per latent size (nats; ID in dimensions)."""
    return _means_table(results, ENTROPY_COLUMNS)


def pseudo_table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of the pseudo-anomaly measurements per latent size (normal data only).

    Empty (no columns) for a sweep that predates them.
    """
    return _means_table(results, PSEUDO_TABLE_COLUMNS)


def reference_table(results: pd.DataFrame) -> pd.DataFrame:
    """The normal images' counterparts of H(X_n) (one row)."""
    columns = [("id_levina_bickel_x", "ID(X_n) MLE"), ("id_twonn_x", "ID(X_n) TwoNN"), ("info_x", "I_sigma(X_n)"),
               ("sigma", "sigma"), ("n_x", "images")]
    row = {label: results[c].iloc[0] for c, label in columns if c in results.columns}
    return pd.DataFrame([row]).round(3)
