"""The too-large side from normal data only: pseudo-anomaly measurements, the two_sided rule, its report.

Rules and report on constructed results tables with a known answer; the measurements on known
codes and on a tiny real sweep (16x16 synthetic images, 1 epoch).
"""

from __future__ import annotations

import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from analysis import plots  # noqa: E402
from analysis.measures import pseudo_codes, pseudo_information  # noqa: E402
from analysis.recommend import HELD_MIN, LEAK_WEIGHT, SE_FACTOR, recommend, two_sided  # noqa: E402
from analysis.report import write_report  # noqa: E402
from tests.analysis_fakes import results_table  # noqa: E402

SIZES = (1, 2, 4, 8, 16, 32, 64)


def interior_table(seeds=(0, 1, 2), noise: float = 0.002, seed: int = 0) -> pd.DataFrame:
    """Validation error falls until d = 8 and is flat beyond; the copy ratio grows with d.

    held(d) = 0, 1/3, 2/3, 1, 1, 1, 1 for d = 1 ... 64 (a linear fall in log2 d until 8); the copy
    ratio doubles per doubling of d, so leak(d) = d / 64. With weight 1 the score held - leak is
    -0.02, 0.30, 0.60, 0.88, 0.75, 0.50, 0.00: an interior optimum at d = 8, the neighbours
    0.13 or more below it, fifty times the per-seed noise of the copy ratio (0.002 / 0.1 max).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for d in SIZES:
        for s in seeds:
            held = min(math.log2(d), 3) / 3
            rows.append({"dataset": "interior", "latent_size": d, "seed": s,
                         "rec_error_val_normal": 0.04 - 0.03 * held,
                         "copy_ratio": 0.1 * d / 64 + noise * rng.normal(),
                         "pseudo_auroc": 0.95, "mi_code_pseudo": 0.01 * d,
                         "id_levina_bickel_z": float(min(d, 3)), "id_levina_bickel_x": 3.0,
                         "auroc": 0.5 + 0.01 * d})  # a test column: must not matter
    return pd.DataFrame(rows)


def _set(table: pd.DataFrame, d: int, column: str, values) -> pd.DataFrame:
    table = table.copy()
    rows = table.index[table["latent_size"] == d]
    table.loc[rows, column] = list(values)[:len(rows)]
    return table


# ------------------------------------------------------------------------------------- the rule


def test_two_sided_finds_the_interior_optimum():
    rec = recommend(interior_table())
    ev = rec["evidence"]
    assert rec["criterion"] == "two_sided" and rec["latent_size"] == 8
    assert ev["d_low"] == 4 and ev["best_latent_size"] == 8  # held(4) = 2/3 >= HELD_MIN, held(2) = 1/3 not
    assert (ev["held_min"], ev["leak_weight"], ev["se_factor"]) == (HELD_MIN, LEAK_WEIGHT, SE_FACTOR)
    assert ev["held_by_latent_size"][2] == pytest.approx(1 / 3) and ev["held_by_latent_size"][16] == pytest.approx(1)
    assert set(ev["score_se_by_latent_size"]) == set(SIZES)
    assert 0 < ev["score_se_by_latent_size"][8] < 0.02  # copy-ratio noise 0.002 / 0.1: sd 0.02, se ~0.012
    assert ev["copy_ratio_by_latent_size"][64] == pytest.approx(0.1, abs=0.005)
    assert ev["pseudo_auroc_by_latent_size"][8] == pytest.approx(0.95)  # evidence, not scored
    assert ev["id_x"] == 3.0 and ev["id_z_by_latent_size"][2] == 2.0 and "evidence only" in ev["id_note"]
    assert "d_low" in ev["rule"] and "copy ratio" in ev["rule"]


def test_two_sided_weighs_the_leak_and_never_takes_a_size_below_d_low():
    # Without the leak the most normal information wins: the flat tail from d = 8, smallest first.
    assert two_sided(interior_table(), leak_weight=0.0)["latent_size"] == 8
    # A heavy leak weight pushes the choice down, but never below d_low (held(2) < HELD_MIN).
    assert two_sided(interior_table(), leak_weight=100.0)["latent_size"] == 4
    assert two_sided(interior_table(), leak_weight=100.0, held_min=0.0)["latent_size"] == 1


def test_two_sided_takes_the_smallest_size_within_one_standard_error():
    # d = 16 made equal to d = 8 in the mean: the smaller of two sizes the seeds cannot tell apart.
    table = _set(interior_table(noise=0.0), 16, "copy_ratio", [0.1 * 8 / 64 - 0.01, 0.1 * 8 / 64 + 0.01,
                                                               0.1 * 8 / 64 - 0.001])
    rec = two_sided(table)
    assert rec["evidence"]["best_latent_size"] == 16 and rec["latent_size"] == 8
    se = rec["evidence"]["score_se_by_latent_size"][16]
    assert rec["evidence"]["score_threshold"] == pytest.approx(rec["evidence"]["score_by_latent_size"][16] - se)
    assert two_sided(table, se_factor=0.0)["latent_size"] == 16  # no band: the best mean
    assert two_sided(table[table["seed"] == 2])["latent_size"] == 16  # one seed: no se, the best


def test_two_sided_on_a_table_that_predates_the_pseudo_anomaly_metrics():
    old = results_table(k=4, pseudo=False)
    with pytest.raises(ValueError, match="(?s)predates the pseudo-anomaly metrics.*--criterion id_match"):
        recommend(old)
    no_val = interior_table().drop(columns="rec_error_val_normal")
    with pytest.raises(ValueError, match="'rec_error_val_normal'.*predates"):
        two_sided(no_val)
    empty = interior_table().assign(copy_ratio=np.nan)
    with pytest.raises(ValueError, match="'copy_ratio'"):
        two_sided(empty)
    rec = recommend(old, "id_match")
    assert rec["latent_size"] == 4 and rec["evidence"]["other_criteria"]["two_sided"].startswith("unavailable")


def test_report_and_cli_on_an_old_table_fall_back_with_a_warning(tmp_path, capsys, monkeypatch):
    import analysis.report
    from analysis.cli import main

    monkeypatch.setattr(analysis.report, "save_figures", lambda *args, **kwargs: {})
    results_table(k=4, pseudo=False).to_csv(tmp_path / "results.csv", index=False)
    done = write_report(tmp_path)
    assert len(done["fallbacks"]) == 1 and "two_sided rule could not be applied" in done["fallbacks"][0]
    md = (tmp_path / "report.md").read_text()
    assert "> **WARNING:** dataset fake-k4: the two_sided rule could not be applied" in md
    assert "Recommendation for fake-k4: latent size 4" in md and "Criterion `id_match`" in md
    on_disk = json.loads((tmp_path / "recommendation.json").read_text())
    assert on_disk["criterion"] == "id_match" and on_disk["evidence"]["fallback"]["requested_criterion"] == "two_sided"
    assert "Pseudo-anomaly measurements" not in md  # no empty table for a sweep without them
    assert main(["report", str(tmp_path)]) == 0
    assert "entropy-ae: WARNING: dataset fake-k4: the two_sided rule" in capsys.readouterr().err
    # recommend names the rule it is asked for: an error, with the fix, not a silent fallback
    assert main(["recommend", str(tmp_path)]) == 2
    assert "predates the pseudo-anomaly metrics" in capsys.readouterr().err


def test_report_explains_both_sides(tmp_path):
    results_table(k=4).to_csv(tmp_path / "results.csv", index=False)
    done = write_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert done["fallbacks"] == [] and "Criterion `two_sided`" in md
    assert "sizes from d_low = " in md and "best at d=" in md and "copy ratio of pseudo-anomalies" in md
    assert "Evidence only: ID(X_n) = 4.00" in md
    assert "| latent size | val-normal MSE | pseudo AUROC | pseudo AP |" in md  # the pseudo-anomaly table
    assert "I(Z; perturbed) [normal only]" in md and "I(Z; label) [test labels]" in md
    figure = done["figures"]["pseudo_anomalies_vs_latent_size"]
    assert figure.stat().st_size > 1000 and "pseudo_anomalies_vs_latent_size.png" in md


def test_every_pseudo_anomaly_column_of_the_table_is_readable_by_the_rules():
    # recommend.py spells the names itself (it must import without pandas or torch): the same set.
    from analysis.recommend import NORMAL_ONLY_COLUMNS, PSEUDO_COLUMNS
    from analysis.sweep.results import PSEUDO_KEYS

    assert PSEUDO_COLUMNS == set(PSEUDO_KEYS) and PSEUDO_COLUMNS <= NORMAL_ONLY_COLUMNS


# ------------------------------------------------------------------------------------------ plots


def _panel_texts(fig) -> list[str]:
    """Per data panel: its title, legend entries and y label, with the figure's suptitle."""
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    texts = []
    for ax in fig.axes:
        if not (ax.lines or ax.collections) or ax.get_label() == "<colorbar>":
            continue
        legend = ax.get_legend()
        entries = [t.get_text() for t in legend.get_texts()] if legend is not None else []
        texts.append(" ".join([ax.get_title(), ax.get_ylabel(), *entries, suptitle]))
    return texts


@pytest.mark.parametrize("name", sorted(plots.ALL_PLOTS))
def test_every_panel_says_whether_it_uses_test_labels(name):
    fig = plots.ALL_PLOTS[name](results_table())
    for text in _panel_texts(fig):
        assert any(label in text for label in ("normal data only", "uses test labels", "reference only")), text


def test_pseudo_anomaly_figure():
    fig = plots.plot_pseudo_anomalies(results_table())
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Pseudo-anomaly AUROC (normal data only)", "Copy ratio (normal data only)",
                      "Test AUROC (uses test labels; comparison only)"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["patch_interpolation", "perlin_texture", "intensity_blob", "cutpaste", "mean over families"]
    with pytest.raises(ValueError, match="lacks column"):
        plots.plot_pseudo_anomalies(results_table(pseudo=False))


# ----------------------------------------------------------------------------------- measurements


def test_pseudo_information_of_known_codes():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 2))
    perturbed = {"ignored": z + 1e-3 * rng.normal(size=z.shape),  # the code ignores the defect
                 "shifted": z + 6.0,  # the code carries it: the classes separate
                 "spread": 2.0 * rng.normal(size=z.shape)}  # H grows by 2 log 2 in 2 dimensions
    out = pseudo_information(z, perturbed)
    # Ross's estimator: about 0 without dependence (small negative values), log 2 for separated classes;
    # 0.1 nats is several times its bias at n = 300 in d = 2.
    assert out["mi_code_pseudo_ignored"] < 0.1
    assert out["mi_code_pseudo_shifted"] == pytest.approx(math.log(2), abs=0.1)
    assert abs(out["h_z_pseudo_excess_ignored"]) < 0.1 and abs(out["h_z_pseudo_excess_shifted"]) < 0.1
    # k-NN entropies at equal n in d = 2: the biases cancel to a few hundredths; 0.25 allows the
    # sampling spread of two independent samples of 300.
    assert out["h_z_pseudo_excess_spread"] == pytest.approx(2 * math.log(2), abs=0.25)
    assert out["mi_code_pseudo"] == pytest.approx(np.mean([out[f"mi_code_pseudo_{f}"] for f in perturbed]))
    assert out["n_pseudo_codes"] == 300
    with pytest.raises(ValueError, match="at least 10"):
        pseudo_information(z[:5], {"f": z[:5]})


def test_pseudo_codes_are_of_the_defects_the_run_was_scored_on():
    import torch

    from entropy_ae.data.pseudo_anomalies import FAMILIES, make_pseudo_anomalies
    from entropy_ae.evaluation import encode_images
    from entropy_ae.model import Autoencoder

    torch.manual_seed(0)
    model = Autoencoder(3, 16)
    images = np.random.default_rng(0).uniform(-1, 1, size=(12, 1, 16, 16)).astype(np.float32)
    codes = pseudo_codes(model, images, seed=5)
    assert list(codes) == list(FAMILIES)
    for j, family in enumerate(FAMILIES):  # family j: seed + j, as entropy_ae.leakage
        expected = encode_images(model, make_pseudo_anomalies(images, family, 1.0, 5 + j)[0])
        np.testing.assert_allclose(codes[family], expected, rtol=1e-6)
