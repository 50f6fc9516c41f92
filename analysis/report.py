"""``entropy-ae report DIR``: figures, a Table-1 style table and the recommendation, as Markdown and HTML.

The report is a list of blocks (heading, paragraph, table, image) rendered twice, to
``DIR/report.md`` and ``DIR/report.html``; figures go to ``DIR/figures/`` and the recommendation
to ``DIR/recommendation.json`` (:func:`analysis.recommend.write_recommendation`). File names are
those of :mod:`analysis.sweep.layout`.
"""

from __future__ import annotations

import html
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from entropy_ae.io import atomic_write, atomic_write_text

from analysis import plots
from analysis.sweep.results import model_runs
from analysis.tables import (
    METHOD_LABELS,
    TABLE2_MEASURES,
    entropy_table,
    has_several_models,
    pseudo_table,
    reference_table,
    table1,
    table2,
)
from analysis.recommend import DEFAULT_CRITERION, FALLBACK_CRITERION, recommendations, write_recommendation
from analysis.sweep.layout import FIGURES, REPORT_HTML, REPORT_MD, RESULTS_CSV
from analysis.sweep.results import load_results
from analysis.sweep.settings import mixed_settings

# ---------------------------------------------------------------------------------------- blocks


def _markdown_table(df: pd.DataFrame) -> str:
    frame = df.reset_index() if df.index.name else df
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _html_table(df: pd.DataFrame) -> str:
    frame = df.reset_index() if df.index.name else df
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            text = html.escape(_fmt(v))
            if text.startswith("**") and text.endswith("**"):
                text = f"<b>{text[2:-2]}</b>"
            cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_markdown(blocks) -> str:
    parts = []
    for kind, payload in blocks:
        if kind == "h1":
            parts.append(f"# {payload}")
        elif kind == "h2":
            parts.append(f"## {payload}")
        elif kind == "p":
            parts.append(payload)
        elif kind == "warning":
            parts.append(f"> **WARNING:** {payload}")
        elif kind == "table":
            parts.append(_markdown_table(payload))
        elif kind == "image":
            parts.append(f"![{payload[1]}]({payload[0]})")
    return "\n\n".join(parts) + "\n"


def render_html(blocks, title: str) -> str:
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}"
             ".warning{border:2px solid #c00;background:#fee;padding:8px}</style></head><body>"]
    for kind, payload in blocks:
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{html.escape(payload)}</{kind}>")
        elif kind == "p":
            text = html.escape(payload).replace("`", "")
            parts.append(f"<p>{text}</p>")
        elif kind == "warning":
            parts.append(f"<p class='warning'><b>WARNING:</b> {html.escape(payload)}</p>")
        elif kind == "table":
            parts.append(_html_table(payload))
        elif kind == "image":
            parts.append(f"<figure><img src='{html.escape(payload[0])}' alt='{html.escape(payload[1])}'>"
                         f"<figcaption>{html.escape(payload[1])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------- figures


def save_figures(results: pd.DataFrame, figures_dir, paper_reference: bool = True, prefix: str = "") -> dict:
    """Draw every plot of :mod:`analysis.plots` that the table supports; returns {name: path}.

    The latent-size plots use the plain AE's runs; with several model kinds the methods plot
    (:data:`analysis.plots.METHODS_PLOT`) is added.
    """
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    ae = model_runs(results, "ae")
    todo = dict(plots.ALL_PLOTS) if not ae.empty else {}
    if has_several_models(results):
        todo[plots.METHODS_PLOT] = plots.plot_methods_entropy_vs_auroc
    saved = {}
    for name, fn in todo.items():
        table = results if name == plots.METHODS_PLOT else ae
        try:
            fig = fn(table, paper_reference=paper_reference) if name == "rec_error_vs_latent_size" else fn(table)
        except ValueError:  # a column this sweep does not have (e.g. no label information)
            continue
        path = figures_dir / f"{prefix}{name}.png"
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
        saved[name] = path
    return saved


# ---------------------------------------------------------------------------------------- report


def _dataset_blocks(name: str, results: pd.DataFrame, figures: dict, base: Path, rec: dict,
                    warnings: list[str] = ()) -> list:
    """The report's blocks for one dataset; ``rec`` is its recommendation (with the regret for context)."""
    blocks = [("h2", f"Dataset {name}")]
    blocks += [("warning", message) for message in warnings]
    methods = results if has_several_models(results) else None
    results = model_runs(results, "ae")
    epochs = sorted(results["epochs"].dropna().unique()) if "epochs" in results.columns else []
    blocks.append(("p", f"{len(results)} runs: latent sizes {sorted(int(v) for v in results['latent_size'].unique())}, "
                        f"seeds {sorted(int(v) for v in results['seed'].unique())}, epochs {[int(e) for e in epochs]}."))
    blocks.append(("p", "Table 1 (as in the paper): mean ± std over seeds, in percent; best mean in bold; "
                        "a latent size with a single run shows its value alone (no spread). "
                        "*Best Dice is an oracle upper bound (best over quantile thresholds)."
                        + (" MIXED SETTINGS: these means average runs that are not replicates (see the warning "
                           "above)." if warnings else "")))
    blocks.append(("table", table1(results)))
    for key, caption in (("performance_vs_latent_size", "Detection metrics vs latent size"),
                         ("rec_error_vs_latent_size", "Reconstruction error vs latent size (paper's Fig. 3 beside)"),
                         ("entropy_vs_latent_size", "H(Z) and its comparable counterparts vs latent size"),
                         ("entropy_vs_auroc", "Entropy vs AUROC, one point per run"),
                         ("pseudo_anomalies_vs_latent_size", "Pseudo-anomalies (normal data only) beside the test "
                                                             "AUROC (uses test labels)"),
                         ("label_information_vs_latent_size", "What the code knows about lesions")):
        if key in figures:
            blocks.append(("image", (os.path.relpath(figures[key], base), caption)))
    blocks.append(("p", "Entropy measurements of the normal training codes (mean over seeds; nats, ID in "
                        "dimensions). Raw H(Z) is not comparable with H(X_n); I_sigma and ID are (see README)."))
    blocks.append(("table", entropy_table(results)))
    pseudo = pseudo_table(results)
    if len(pseudo.columns):
        blocks.append(("p", "Pseudo-anomaly measurements (mean over seeds; normal data only: the held-out "
                            "validation images and defects made from them, no test label). Copy ratio: the share "
                            "of a defect's energy the AE reconstructs (0 ignores, 1 copies)."))
        blocks.append(("table", pseudo))
    blocks.append(("p", "Normal-image reference (the comparable counterparts of H(X_n)):"))
    blocks.append(("table", reference_table(results)))
    blocks += recommendation_blocks(name, rec)
    if methods is not None:
        blocks += methods_blocks(methods, figures, base, rec)
    return blocks


def methods_blocks(results: pd.DataFrame, figures: dict, base: Path, rec: dict) -> list:
    """Table 2 of one dataset (several model kinds) and the methods' entropy-vs-AUROC figure."""
    order = list(METHOD_LABELS)
    kinds = [METHOD_LABELS.get(k, k) for k in sorted(set(results["model"]) - {"ae"},
                                                    key=lambda k: order.index(k) if k in order else len(order))]
    blocks = [("h2", "Table 2: the AE's latent size against methods that restrict the latent space")]
    measures = ", ".join(label for _, label in TABLE2_MEASURES)
    blocks.append(("p", f"{', '.join(kinds)} beside the AE on the paper's backbone, as in the paper's Table 2: mean ± std "
                        f"over seeds, in percent; the best mean of each column in bold among the rows that use no "
                        f"test label. The oracle row picks the latent size by test AUROC and is not in the bold. "
                        f"Beside the metrics, means over seeds of {measures} (nats; ID in dimensions; codes of the "
                        f"normal training images; copy ratio and pseudo AUROC from pseudo-anomalies made from the "
                        f"validation images). *Best Dice is an oracle upper bound."))
    blocks.append(("table", table2(results, rec.get("latent_size"))))
    if plots.METHODS_PLOT in figures:
        blocks.append(("image", (os.path.relpath(figures[plots.METHODS_PLOT], base),
                                 "AUROC against the latent code's entropy, one point per run, by method")))
    return blocks


def _series(values: dict, digits: int = 3) -> str:
    return ", ".join(f"d={k}: {v:.{digits}f}" for k, v in values.items())


def two_sided_text(ev: dict, latent_size: int) -> str:
    """The paragraph that explains a ``two_sided`` recommendation from its evidence (both sides)."""
    scores, errors = ev["score_by_latent_size"], ev["score_se_by_latent_size"]
    # A single seed has no spread (its se is recorded as 0): no "± 0.000" that would claim one.
    above = {d: f"{scores[d]:.3f}" + (f" ± {errors[d]:.3f}" if errors[d] > 0 else "") for d in scores
             if d >= ev["d_low"]}
    text = (f"Too small (normal data only): the share of the held-out normal validation error's drop each size "
            f"has made is {_series(ev['held_by_latent_size'], 2)}; sizes from d_low = {ev['d_low']} hold at least "
            f"{ev['held_min']:.0%} of it. Too large (normal data only): the copy ratio of pseudo-anomalies made from "
            f"the validation images (0 ignores a defect, 1 copies it) is "
            f"{_series(ev['copy_ratio_by_latent_size'])}. The score, held share - {ev['leak_weight']:g} x copy "
            f"ratio / its maximum (± standard error over seeds), is {', '.join(f'd={d}: {v}' for d, v in above.items())}; "
            f"best at d={ev['best_latent_size']}, and d={latent_size} is the smallest size within "
            f"{ev['se_factor']:g} standard error(s) of it.")
    if ev.get("pseudo_auroc_by_latent_size"):
        text += (f" Pseudo-anomaly AUROC (evidence, not scored): {_series(ev['pseudo_auroc_by_latent_size'])}.")
    if ev.get("mi_code_pseudo_by_latent_size"):
        text += f" I(Z; perturbed) [nats]: {_series(ev['mi_code_pseudo_by_latent_size'])}."
    if ev.get("id_x") is not None:
        text += (f" Evidence only: ID(X_n) = {ev['id_x']:.2f}, ID(Z) {_series(ev['id_z_by_latent_size'], 2)} "
                 f"({ev['id_note']}).")
    return text


def recommendation_blocks(name: str, rec: dict) -> list:
    """The recommendation of one dataset: the rule, its evidence (both sides for two_sided), the regret."""
    ev = rec["evidence"]
    reg = ev["regret_for_context"]
    blocks = [("h2", f"Recommendation for {name}: latent size {rec['latent_size']}")]
    if "fallback" in ev:
        blocks.append(("warning", fallback_message(name, rec)))
    blocks.append(("p", f"Criterion `{rec['criterion']}`: {ev['rule']}. Uses {ev['uses']}. "
                        f"Other criteria would choose: "
                        + ", ".join(f"{k} -> {v}" for k, v in ev["other_criteria"].items()) + "."))
    if rec["criterion"] == "two_sided":
        blocks.append(("p", two_sided_text(ev, rec["latent_size"])))
    text = (f"For context only (test labels, never used by the recommendation): best AUROC "
            f"{reg['oracle_auroc']:.1f} at latent size {reg['oracle_latent_size']}; the recommendation gets "
            f"{reg['recommended_auroc']:.1f} (regret {reg['regret_recommended']:.1f} points)")
    if "regret_default" in reg:
        text += f"; the default d=16 gets {reg['default_auroc']:.1f} (regret {reg['regret_default']:.1f} points)"
    blocks.append(("p", text + "."))
    return blocks


def fallback_message(name: str, rec: dict) -> str:
    """The warning of a recommendation made by the fallback rule: which rule failed, why, and the rule used."""
    fallback = rec["evidence"]["fallback"]
    return (f"dataset {name}: the {fallback['requested_criterion']} rule could not be applied "
            f"({fallback['reason']}); this recommendation uses {rec['criterion']} instead.")


def write_report(out, paper_reference: bool = True, criterion: str = DEFAULT_CRITERION,
                 copy_figures_to=None) -> dict:
    """Write ``out/report.md``, ``out/report.html`` and ``out/figures/*.png`` from ``out/results.csv``.

    Also writes ``out/recommendation.json``, the same file as ``entropy-ae recommend``. With
    ``copy_figures_to`` the figures are copied there too (e.g. the repository's ``figures/``).

    Runs of one dataset trained with different settings (epochs, batch size, learning rate,
    image size, data) are not replicates: the report then carries a warning above that
    dataset's tables, and the messages are returned under ``"warnings"`` for the caller to print.

    When the criterion cannot be applied to a dataset (``two_sided`` on a sweep that predates the
    pseudo-anomaly metrics) its recommendation uses :data:`analysis.recommend.FALLBACK_CRITERION`
    instead, with a warning in the report; the messages are returned under ``"fallbacks"``.

    Returns ``{"markdown", "html", "figures": {name: path}, "recommendation", "warnings": [str],
    "fallbacks": [str]}``.
    """
    out = Path(out)
    results = load_results(out)
    if results.empty:
        raise ValueError(f"{out / RESULTS_CSV} has no completed runs; run the sweep first")
    per_dataset = recommendations(results, criterion, fallback=FALLBACK_CRITERION)
    blocks = [("h1", "Latent-size study")]
    all_figures, all_warnings = {}, []
    datasets = sorted(model_runs(results, "ae")["dataset"].unique())  # a recommendation needs the AE's sweep
    for name in datasets:
        group = results[results["dataset"] == name]
        prefix = "" if len(datasets) == 1 else f"{name}_"
        figures = save_figures(group, out / FIGURES, paper_reference, prefix)
        all_figures.update({prefix + k: v for k, v in figures.items()})
        warnings = mixed_settings(group)
        all_warnings += warnings
        blocks += _dataset_blocks(name, group, figures, out, per_dataset[str(name)], warnings)
    for name in sorted(set(results["dataset"].unique()) - set(datasets)):
        message = (f"dataset {name} has runs of other model kinds but none of the plain AE: its Table 2 needs the "
                   f"AE's latent-size sweep beside them (entropy-ae sweep --model ae, or study --models)")
        all_warnings.append(message)
        blocks.append(("warning", message))
    fallbacks = [fallback_message(name, rec) for name, rec in per_dataset.items() if "fallback" in rec["evidence"]]
    payload = write_recommendation(out, criterion, per_dataset)
    atomic_write_text(out / REPORT_MD, render_markdown(blocks))
    atomic_write_text(out / REPORT_HTML, render_html(blocks, "Latent-size study"))
    if copy_figures_to is not None:
        target = Path(copy_figures_to)
        target.mkdir(parents=True, exist_ok=True)
        for path in all_figures.values():
            shutil.copyfile(path, target / Path(path).name)
    return {"markdown": out / REPORT_MD, "html": out / REPORT_HTML, "figures": all_figures,
            "recommendation": payload, "warnings": all_warnings, "fallbacks": fallbacks}
