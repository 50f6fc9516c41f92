"""Figures of a latent-size sweep. Every function takes the results table and returns a Figure.

Every panel says in its title or legend whether it shows "normal data only" (training and
validation images, pseudo-anomalies made from them) or something that "uses test labels".

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot state), so they work
under any backend (Agg in tests and scripts) and display inline in notebooks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from entropy_ae.data.pseudo_anomalies import FAMILIES as PSEUDO_FAMILIES

# The paper's Fig. 3 (Cai, Chen, Cheng, MICCAI 2024): MSE on images in [-1, 1] against latent
# size, read off the published figure (about +-0.001 for d <= 16, +-0.0002 beyond); the dataset
# behind it is not stated. Shown only as a labelled reference, never mixed with our numbers.
PAPER_FIG3 = pd.DataFrame({
    "latent_size": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
    "train_normal": [0.073, 0.051, 0.034, 0.017, 0.010, 0.0067, 0.0057, 0.0053, 0.0054, 0.0051, 0.0052],
    "test_normal": [0.073, 0.060, 0.042, 0.026, 0.017, 0.0121, 0.0093, 0.0086, 0.0086, 0.0083, 0.0087],
    "test_abnormal": [0.098, 0.085, 0.063, 0.038, 0.025, 0.0157, 0.0115, 0.0105, 0.0105, 0.0102, 0.0107],
})
SPLIT_COLUMNS = {
    "train normal": "rec_error_train_normal",
    "test normal": "rec_error_test_normal",
    "test abnormal": "rec_error_test_abnormal",
}
SPLIT_COLOURS = {"train normal": "tab:blue", "test normal": "tab:green", "test abnormal": "tab:red"}
NORMAL_ONLY, TEST_LABELS = "normal data only", "uses test labels"


def _check(results: pd.DataFrame, columns) -> pd.DataFrame:
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"expected the results table as a pandas DataFrame, got {type(results).__name__}")
    missing = [c for c in ("latent_size", *columns) if c not in results.columns]
    if missing:
        raise ValueError(f"the results table lacks column(s) {missing}; collect it with `entropy-ae sweep`")
    if results.empty:
        raise ValueError("the results table is empty: no completed runs to plot")
    return results


def _summary(results: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean and standard deviation over seeds per latent size (std NaN, no error bar, for a single seed)."""
    grouped = results.groupby("latent_size")[column]
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1)}).sort_index()


def _log2_axis(ax, sizes) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(int(s)) for s in sizes])
    ax.set_xlabel("latent size d")
    ax.grid(True, alpha=0.3)


def _title(results: pd.DataFrame, what: str) -> str:
    names = sorted(results["dataset"].unique()) if "dataset" in results.columns else []
    return f"{what}" + (f" ({', '.join(map(str, names))})" if names else "")


def plot_performance(results: pd.DataFrame, metrics=("auroc", "ap", "pixel_ap", "best_dice")) -> Figure:
    """Detection metrics (mean +- std over seeds) against latent size: the curves behind Table 1."""
    _check(results, ("auroc",))
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for metric in metrics:
        if metric not in results.columns or results[metric].isna().all():
            continue
        s = _summary(results.dropna(subset=[metric]), metric)
        ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", capsize=3, label=metric)
    _log2_axis(ax, sorted(results["latent_size"].unique()))
    ax.set_ylabel("score")
    ax.set_title(_title(results, f"Detection vs latent size ({TEST_LABELS})"))
    ax.legend()
    return fig


def plot_rec_error(results: pd.DataFrame, paper_reference: bool = True) -> Figure:
    """Reconstruction error vs latent size for train normal, test normal and test abnormal (paper Fig. 3).

    With ``paper_reference`` the paper's own curves are drawn dashed and grey in a second panel,
    clearly labelled: they come from other (unstated) data and are only there for shape.
    """
    _check(results, tuple(SPLIT_COLUMNS.values()))
    fig = Figure(figsize=(10 if paper_reference else 6, 4), layout="constrained")
    axes = fig.subplots(1, 2 if paper_reference else 1, squeeze=False)[0]
    ax = axes[0]
    for label, column in SPLIT_COLUMNS.items():
        s = _summary(results, column)
        ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", capsize=3, color=SPLIT_COLOURS[label],
                    label=f"{label} ({NORMAL_ONLY if label == 'train normal' else TEST_LABELS})")
    if "rec_error_val_normal" in results.columns and results["rec_error_val_normal"].notna().any():
        s = _summary(results.dropna(subset=["rec_error_val_normal"]), "rec_error_val_normal")
        ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="^", ls="--", capsize=3, color="tab:cyan",
                    label=f"val normal ({NORMAL_ONLY})")
    ax.set_yscale("log")
    _log2_axis(ax, sorted(results["latent_size"].unique()))
    ax.set_ylabel("reconstruction MSE (images in [-1, 1])")
    ax.set_title(_title(results, "This toolkit"))
    ax.legend()
    if paper_reference:
        ref = axes[1]
        for label, column in zip(SPLIT_COLUMNS, ("train_normal", "test_normal", "test_abnormal")):
            ref.plot(PAPER_FIG3["latent_size"], PAPER_FIG3[column], "--o", color=SPLIT_COLOURS[label],
                     alpha=0.6, label=f"paper: {label}")
        ref.set_yscale("log")
        _log2_axis(ref, PAPER_FIG3["latent_size"])
        ref.set_title("Paper's Fig. 3 (Cai et al. 2024; reference only)")
        ref.legend()
    return fig


def plot_entropy_vs_latent_size(results: pd.DataFrame) -> Figure:
    """H(Z) and its comparable counterparts against latent size, with the normal images' value as a band.

    Panels: (1) raw k-NN H(Z) beside the Gaussian bound of the sample covariance (no band: the
    raw differential entropy of 4096-pixel images is not on this scale); (2) I_sigma(Z), the
    information the code carries about its input at the dataset's noise level, with I_sigma(X_n)
    as a band between its lower and upper bound; (3) intrinsic dimension of Z with ID(X_n) as a
    band spanning the TwoNN and Levina-Bickel (MLE) estimates +- 2 standard errors.
    """
    _check(results, ("h_z",))
    sizes = sorted(results["latent_size"].unique())
    fig = Figure(figsize=(13, 4), layout="constrained")
    ax_h, ax_i, ax_d = fig.subplots(1, 3)
    s = _summary(results, "h_z")
    ax_h.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", capsize=3, label="H(Z), k-NN")
    if "h_z_gaussian" in results.columns:
        g = _summary(results, "h_z_gaussian")
        ax_h.plot(g.index, g["mean"], "s--", color="grey", label="Gaussian bound")
    ax_h.set_ylabel("H(Z) [nats]")
    ax_h.set_title("Raw H(Z) of normal training codes")
    ax_h.legend()
    _log2_axis(ax_h, sizes)

    if "info_z" in results.columns:
        s = _summary(results, "info_z")
        ax_i.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", capsize=3, label="I_sigma(Z)")
        if {"info_x_lower", "info_x_upper"} <= set(results.columns):
            lo, hi = results["info_x_lower"].mean(), results["info_x_upper"].mean()
            ax_i.axhspan(lo, hi, color="tab:orange", alpha=0.2, label="I_sigma(X_n) (bounds)")
            ax_i.axhline(results["info_x"].mean(), color="tab:orange")
        sigma = results["sigma"].mean() if "sigma" in results.columns else float("nan")
        ax_i.set_title(f"Information at resolution sigma={sigma:.3g}")
        ax_i.set_ylabel("nats")
        ax_i.legend()
    _log2_axis(ax_i, sizes)

    for column, label, colour in (("id_levina_bickel_z", "ID(Z), MLE", "tab:blue"),
                                  ("id_twonn_z", "ID(Z), TwoNN", "tab:purple")):
        if column in results.columns:
            s = _summary(results, column)
            ax_d.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", capsize=3, label=label, color=colour)
    band = _id_band(results)
    if band is not None:
        ax_d.axhspan(*band, color="tab:orange", alpha=0.2, label="ID(X_n)")
    ax_d.plot(sizes, sizes, ":", color="grey", label="ID = d")
    ax_d.set_yscale("log", base=2)
    ax_d.set_ylabel("intrinsic dimension")
    ax_d.set_title("Intrinsic dimension")
    ax_d.legend()
    _log2_axis(ax_d, sizes)
    fig.suptitle(_title(results, f"Latent entropy vs latent size ({NORMAL_ONLY}: normal training codes)"))
    return fig


def _id_band(results: pd.DataFrame):
    lows, highs = [], []
    for est in ("levina_bickel", "twonn"):
        value, err = f"id_{est}_x", f"id_{est}_x_stderr"
        if value in results.columns:
            v = results[value].mean()
            e = results[err].mean() if err in results.columns else 0.0
            lows.append(v - 2 * e)
            highs.append(v + 2 * e)
    return (min(lows), max(highs)) if lows else None


def plot_entropy_vs_auroc(results: pd.DataFrame, column: str = "h_z") -> Figure:
    """One point per run: an entropy measurement against image AUROC, coloured by latent size."""
    _check(results, (column, "auroc"))
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.add_subplot()
    sizes = results["latent_size"].astype(float)
    norm = LogNorm(vmin=max(sizes.min(), 1), vmax=max(sizes.max(), 2))
    points = ax.scatter(results[column], results["auroc"], c=sizes, cmap="viridis", norm=norm,
                        edgecolors="k", linewidths=0.5)
    colourbar = fig.colorbar(points, ax=ax)
    colourbar.set_label("latent size d")
    ax.set_xlabel({"h_z": "H(Z) [nats], k-NN", "info_z": "I_sigma(Z) [nats]"}.get(column, column))
    ax.set_ylabel(f"image AUROC ({TEST_LABELS})")
    ax.grid(True, alpha=0.3)
    ax.set_title(_title(results, f"Entropy vs AUROC, one point per run (AUROC {TEST_LABELS})"))
    return fig


def plot_label_information(results: pd.DataFrame) -> Figure:
    """What the code knows about lesions: I(Z; label) and the entropy excess of abnormal codes."""
    _check(results, ("mi_code_label",))
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    s = _summary(results, "mi_code_label")
    ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", capsize=3, label="I(Z; abnormal label)")
    if "h_z_abnormal_excess" in results.columns:
        e = _summary(results, "h_z_abnormal_excess")
        ax.errorbar(e.index, e["mean"], yerr=e["std"], marker="s", capsize=3,
                    label="H(Z_abnormal) - H(Z_normal)")
    ax.axhline(np.log(2), color="grey", ls=":", label="log 2 (I upper bound)")
    ax.axhline(0, color="k", lw=0.5)
    _log2_axis(ax, sorted(results["latent_size"].unique()))
    ax.set_ylabel("nats")
    ax.set_title(_title(results, "Lesion information in the code (uses test labels)"))
    ax.legend()
    return fig


def _per_family(ax, results: pd.DataFrame, name: str) -> None:
    """One thin line per pseudo-anomaly family of ``name`` and the mean over families, thick with error bars."""
    for family in PSEUDO_FAMILIES:
        column = f"{name}_{family}"
        if column in results.columns and results[column].notna().any():
            s = _summary(results.dropna(subset=[column]), column)
            ax.plot(s.index, s["mean"], marker=".", lw=1, alpha=0.6, label=family)
    s = _summary(results.dropna(subset=[name]), name)
    ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", capsize=3, lw=2.5, color="k",
                label="mean over families")


def plot_pseudo_anomalies(results: pd.DataFrame) -> Figure:
    """Pseudo-anomaly AUROC and copy ratio against latent size, beside the test AUROC.

    Panels: (1) the image AUROC of pseudo-anomalies made from the validation images, per family
    and their mean; (2) the copy ratio, the share of a defect's energy the AE reconstructs (0: it
    ignores the defect, 1: it copies it -- the identical shortcut); both normal data only. (3) the
    test AUROC, which uses test labels, for comparison. Means over seeds with +- sd error bars.
    """
    _check(results, ("pseudo_auroc", "copy_ratio"))
    if results["pseudo_auroc"].isna().all():
        raise ValueError("the results table has no pseudo-anomaly values (a sweep that predates them)")
    sizes = sorted(results["latent_size"].unique())
    fig = Figure(figsize=(14, 4.2), layout="constrained")
    ax_p, ax_c, ax_t = fig.subplots(1, 3)
    _per_family(ax_p, results, "pseudo_auroc")
    ax_p.axhline(0.5, color="grey", ls=":", lw=1)
    ax_p.set_ylabel("pseudo-anomaly image AUROC")
    ax_p.set_title(f"Pseudo-anomaly AUROC ({NORMAL_ONLY})")
    ax_p.legend(fontsize="small")
    _per_family(ax_c, results, "copy_ratio")
    ax_c.axhline(0, color="grey", ls=":", lw=1)
    ax_c.axhline(1, color="tab:red", ls=":", lw=1, label="1: copies the defect")
    ax_c.set_ylabel("copy ratio (0 ignores, 1 copies)")
    ax_c.set_title(f"Copy ratio ({NORMAL_ONLY})")
    ax_c.legend(fontsize="small")
    if "auroc" in results.columns and results["auroc"].notna().any():
        s = _summary(results.dropna(subset=["auroc"]), "auroc")
        ax_t.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", capsize=3, color="tab:red", label="test AUROC")
        ax_t.legend(fontsize="small")
    ax_t.set_ylabel("test image AUROC")
    ax_t.set_title(f"Test AUROC ({TEST_LABELS}; comparison only)")
    for ax in (ax_p, ax_c, ax_t):
        _log2_axis(ax, sizes)
    fig.suptitle(_title(results, "Pseudo-anomalies vs latent size (means over seeds, ± sd)"))
    return fig


METHODS_PLOT = "methods_entropy_vs_auroc"
METHOD_MARKERS = {"ae": "o", "vae": "s", "memae": "D", "ceae": "^", "dae": "v"}


def plot_methods_entropy_vs_auroc(results: pd.DataFrame) -> Figure:
    """One point per run, AUROC against H(Z) (left) and I_sigma(Z) (right), coloured by model kind.

    The AE's runs at every latent size trace the entropy-AUROC curve; the other methods sit on it
    where their restriction put their code's entropy (the theory's claim to test).
    """
    _check(results, ("auroc", "model"))
    columns = [c for c in ("h_z", "info_z") if c in results.columns and results[c].notna().any()]
    if not columns:
        raise ValueError("the results table has no H(Z) or I_sigma(Z) measurement to plot against")
    fig = Figure(figsize=(5.5 * len(columns), 4.5), layout="constrained")
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    kinds = list(dict.fromkeys(["ae", *results["model"].unique()]))
    for ax, column in zip(axes, columns):
        for i, kind in enumerate(k for k in kinds if (results["model"] == k).any()):
            runs = results[results["model"] == kind]
            label = kind if kind != "ae" else "ae (every latent size)"
            ax.scatter(runs[column], runs["auroc"], marker=METHOD_MARKERS.get(kind, "o"), color=f"C{i}",
                       edgecolors="k", linewidths=0.5, label=label)
        ax.set_xlabel({"h_z": "H(Z) [nats], k-NN", "info_z": "I_sigma(Z) [nats]"}[column])
        ax.set_ylabel(f"image AUROC ({TEST_LABELS})")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(_title(results, "AUROC against the code's entropy, by method (one point per run)"))
    return fig


ALL_PLOTS = {
    "performance_vs_latent_size": plot_performance,
    "rec_error_vs_latent_size": plot_rec_error,
    "entropy_vs_latent_size": plot_entropy_vs_latent_size,
    "entropy_vs_auroc": plot_entropy_vs_auroc,
    "label_information_vs_latent_size": plot_label_information,
    "pseudo_anomalies_vs_latent_size": plot_pseudo_anomalies,
}
