"""Analysis layer without training: intrinsic dimension, comparable entropies, recommendation, plots, report."""

from __future__ import annotations

import json
import math
import os
import stat

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from analysis import plots  # noqa: E402
from analysis.measures import (  # noqa: E402
    code_measurements,
    data_reference,
    information_at_resolution,
    intrinsic_dimension,
    levina_bickel,
    matching_sigma,
    normalise,
    run_entropy,
    twonn,
)
from analysis.recommend import (  # noqa: E402
    NORMAL_ONLY_COLUMNS,
    RULES,
    from_intrinsic_dimension,
    recommend,
    recommend_all,
    write_recommendation,
)
from analysis.report import write_report  # noqa: E402
from analysis.tables import table1  # noqa: E402
from entropy_ae.io import to_json  # noqa: E402
from tests.analysis_fakes import manifold_codes, results_table  # noqa: E402

# ----------------------------------------------------------------------------- intrinsic dimension


@pytest.mark.parametrize("k", [1, 3, 5])
def test_intrinsic_dimension_of_a_curved_manifold_in_high_dimension(k):
    # A k-dim uniform sample mapped smoothly into 300 dims. With n=1500, TwoNN's standard error is
    # about k/sqrt(n) and both estimators are known to underestimate slightly as k grows (boundary
    # effects of the cube): allow 15 %.
    x = manifold_codes(1500, k, 300, seed=k)
    for est in (twonn(x), levina_bickel(x)):
        assert abs(est.value - k) <= 0.15 * k + 3 * est.stderr, est


def test_intrinsic_dimension_is_scale_and_embedding_invariant():
    x = manifold_codes(800, 3, 10, seed=1)
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(40, 40)))
    embedded = np.hstack([x, np.zeros((800, 30))]) @ rotation * 37.0
    assert twonn(embedded).value == pytest.approx(twonn(x).value, rel=1e-6)
    assert levina_bickel(embedded).value == pytest.approx(levina_bickel(x).value, rel=1e-6)


def test_intrinsic_dimension_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        twonn(np.array([[0.0, np.nan]] * 20))
    with pytest.raises(ValueError, match="distinct points"):
        levina_bickel(np.random.default_rng(0).normal(size=(10, 3)), k1=10, k2=20)
    with pytest.raises(ValueError, match="unknown intrinsic-dimension method"):
        intrinsic_dimension(np.zeros((5, 2)), method="mle")  # the estimator's name is levina_bickel
    with pytest.warns(RuntimeWarning, match="duplicate"):
        x = np.random.default_rng(0).normal(size=(200, 2))
        twonn(np.vstack([x, x[:5]]))


def test_intrinsic_dimension_methods_and_nan_policy():
    x = np.random.default_rng(0).normal(size=(300, 3))
    default = intrinsic_dimension(x)
    assert default == levina_bickel(x) and default.method == "levina_bickel"
    assert intrinsic_dimension(x, method="twonn") == twonn(x)
    # Images are flattened to pixel vectors; nan_policy="omit" drops the rows holding NaN, as the
    # entropy estimators do.
    assert levina_bickel(x.reshape(300, 1, 3, 1)) == default
    holed = np.vstack([x, [[np.nan, 0.0, 0.0]]])
    assert levina_bickel(holed, nan_policy="omit") == default and twonn(holed, nan_policy="omit") == twonn(x)


# ---------------------------------------------------------------------- comparable entropy measures


def test_information_at_resolution_is_invariant_to_scale_and_ambient_dimension():
    z = manifold_codes(500, 2, 2, seed=3)
    # The same point cloud rotated into 4096 dimensions and scaled: the same information.
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(64, 64)))
    big = np.hstack([z, np.zeros((500, 62))]) @ rotation * 1000.0
    a, b = information_at_resolution(z, 0.2), information_at_resolution(big, 0.2)
    assert b["value"] == pytest.approx(a["value"], rel=1e-6)
    assert 0 <= a["lower"] <= a["upper"] <= math.log(500) + 1e-9


def test_information_at_resolution_matches_gaussian_channel_capacity():
    # For Gaussian X in 1-D with unit variance, I(X; X + sigma N) = 0.5 log(1 + 1/sigma^2); the
    # Kolchinsky-Tracey bounds must bracket it (n large so the empirical mixture is close).
    x = np.random.default_rng(0).normal(size=(2000, 1))
    for sigma in (0.3, 1.0):
        truth = 0.5 * math.log(1 + 1 / sigma**2)
        res = information_at_resolution(x, sigma)
        assert res["lower"] - 0.05 <= truth <= res["upper"] + 0.05, (sigma, truth, res)


def test_information_grows_below_k_and_levels_off_above():
    # "H(Z) stops growing": codes of a k-factor dataset gain information quickly up to d = k and
    # then level off. I_sigma depends on the embedding's metric (unlike the intrinsic dimension), so
    # ideal codes of different sizes still differ somewhat above k; the measured gap between d = k
    # and d = 48 is 0.63 nats against 0.97 nats between d = 1 and d = k.
    k = 3
    sigma = matching_sigma(manifold_codes(600, k, 50, seed=0))
    info = {d: information_at_resolution(manifold_codes(600, k, d, seed=0), sigma)["value"] for d in (1, 2, 3, 24, 48)}
    assert info[1] < info[2] < info[3]
    assert abs(info[48] - info[24]) < 0.05 * info[24]  # plateau
    assert info[48] < math.log(600)  # not the trivial log n saturation


def test_normalise_and_bad_input():
    x = np.random.default_rng(0).normal(size=(100, 3)) * [1.0, 10.0, 0.0]
    y = normalise(x)
    assert y.shape == (100, 2)  # the constant column is dropped
    assert np.mean(np.sum(y**2, axis=1)) == pytest.approx(1.0)
    assert np.allclose(normalise(x, "per-dim").std(axis=0), 1 / math.sqrt(2))
    with pytest.raises(ValueError, match="standardize"):
        normalise(x, "rank")
    with pytest.raises(ValueError, match="constant"):
        normalise(np.ones((10, 3)))
    with pytest.raises(ValueError, match="sigma"):
        information_at_resolution(x, 0.0)


def test_gaussian_bound_of_run_entropy_closed_form():
    cov = np.diag([1.0, 4.0])
    z = np.random.default_rng(0).multivariate_normal([0, 0], cov, size=20000)
    truth = 0.5 * math.log(np.linalg.det(2 * math.pi * math.e * cov))
    result = run_entropy("unused", method="gaussian", latents={"train_normal": z})
    assert result["h_z_gaussian"] == pytest.approx(truth, abs=0.03)
    assert result["split"] == "train_normal" and result["units"] == "nats"
    with pytest.raises(ValueError, match="unknown split 'train'"):
        run_entropy("unused", split="train", latents={"train_normal": z})


def test_code_and_data_measurements_recover_known_k():
    # Images of a k-factor manifold (pixels = smooth functions of the factors) and ideal codes.
    k = 2
    rng = np.random.default_rng(0)
    factors = rng.uniform(-1, 1, size=(600, k))
    grid = np.linspace(-1, 1, 16)
    xx, yy = np.meshgrid(grid, grid)
    images = np.exp(-((xx[None] - 0.5 * factors[:, :1, None]) ** 2 + (yy[None] - 0.5 * factors[:, 1:, None]) ** 2) / 0.2)
    ref = data_reference(images[:, None])
    assert abs(ref["id_twonn_x"] - k) < 0.3 and abs(ref["id_levina_bickel_x"] - k) < 0.3
    assert 0 < ref["info_x"] < math.log(600)
    low = code_measurements(factors[:, :1], ref["sigma"])
    full = code_measurements(np.tanh(factors @ rng.normal(size=(k, 8))), ref["sigma"])
    assert abs(low["id_levina_bickel_z"] - 1) < 0.2 and abs(full["id_levina_bickel_z"] - k) < 0.3
    assert full["info_z"] > low["info_z"]


# --------------------------------------------------------------------------------- recommendation


# Columns that carry test-label information, by name: none of them may ever be readable by a rule.
TEST_LABEL_COLUMNS = {"auroc", "ap", "pixel_ap", "best_dice", "sensitivity", "specificity"}
TEST_LABEL_MARKERS = ("test", "label", "abnormal", "dice", "sensitivity", "specificity", "per_class", "oracle",
                      "regret")


def uses_test_labels(column: str) -> bool:
    return column in TEST_LABEL_COLUMNS or any(marker in column for marker in TEST_LABEL_MARKERS)


def test_no_test_label_column_is_readable_by_a_rule():
    assert not [c for c in NORMAL_ONLY_COLUMNS if uses_test_labels(c)]
    # the guard can fail: it sees the test-label columns of a real table and of the fakes
    for column in ("auroc", "rec_error_test_abnormal", "mi_code_label", "h_z_abnormal_excess", "n_per_class"):
        assert uses_test_labels(column), column
    for column in ("pseudo_auroc", "copy_ratio_cutpaste", "rec_error_val_normal", "mi_code_pseudo"):
        assert not uses_test_labels(column) and column in NORMAL_ONLY_COLUMNS, column


def test_recommendation_finds_known_k_and_ignores_test_columns():
    table = results_table(k=4)
    rec = recommend(table)
    assert rec["latent_size"] == 4 and rec["criterion"] == "two_sided"
    assert rec["evidence"]["other_criteria"] == {"id_match": 4, "info_saturation": 4, "rec_elbow": 4,
                                                 "intrinsic_dimension": 4}
    # Every column the fake table has that a rule may not read is a test-label column: scrambled below.
    hidden = set(table.columns) - NORMAL_ONLY_COLUMNS
    assert {"auroc", "mi_code_label", "rec_error_test_abnormal"} <= hidden
    # Scrambling every test-label-derived column must not change any recommendation of any rule.
    scrambled = table.copy()
    rng = np.random.default_rng(0)
    for column in hidden:
        scrambled[column] = rng.permutation(scrambled[column].values)
    assert set(RULES) >= {"two_sided", "id_match", "info_saturation", "rec_elbow"}
    for criterion in RULES:
        assert recommend(scrambled, criterion)["latent_size"] == recommend(table, criterion)["latent_size"], criterion
    # The comparison can fail: two_sided does follow a column it reads (d = 32 made the one that
    # copies nothing, every other size copying as much as the largest).
    moved = table.copy()
    moved["copy_ratio"] = moved["copy_ratio"].max()
    moved.loc[moved["latent_size"] == 32, "copy_ratio"] = 0.0
    assert recommend(moved)["latent_size"] == 32


def test_recommendation_from_measured_codes_of_known_k():
    # End to end on codes: measure ID and I_sigma of ideal codes of a k=2 dataset at each d, then recommend.
    k = 2
    x = manifold_codes(500, k, 40, seed=5)
    ref = data_reference(x)
    rows = []
    for d in (1, 2, 4, 8, 16):
        row = {"dataset": "codes", "latent_size": d, "seed": 0, "rec_error_train_normal": 1.0 / min(d, k)}
        row.update(code_measurements(manifold_codes(500, k, d, seed=5), ref["sigma"]))
        row.update(ref)
        rows.append(row)
    table = pd.DataFrame(rows)
    assert recommend(table, "id_match")["latent_size"] == k
    # (info_saturation is not asserted: I_sigma depends on each code's metric, see the test above)


def test_cheap_rule_and_errors():
    assert from_intrinsic_dimension(3.2)["latent_size"] == 4
    assert from_intrinsic_dimension(0.7, candidates=[1, 2, 4])["latent_size"] == 1
    assert from_intrinsic_dimension(900, candidates=[1, 2, 4])["latent_size"] == 4
    with pytest.raises(ValueError, match="positive"):
        from_intrinsic_dimension(float("nan"))
    with pytest.raises(ValueError, match="criterion"):
        recommend(results_table(), "best_auroc")
    two = pd.concat([results_table(4, dataset="a"), results_table(2, dataset="b")])
    with pytest.raises(ValueError, match="several datasets"):
        recommend(two)
    assert {k: v["latent_size"] for k, v in recommend_all(two).items()} == {"a": 4, "b": 2}


def test_write_recommendation(tmp_path):
    results_table(k=8, latent_sizes=(2, 4, 8, 16, 32)).to_csv(tmp_path / "results.csv", index=False)
    rec = write_recommendation(tmp_path)
    on_disk = json.loads((tmp_path / "recommendation.json").read_text())
    assert on_disk["latent_size"] == rec["latent_size"] == 8
    assert set(on_disk) >= {"latent_size", "criterion", "evidence"}
    assert on_disk["evidence"]["regret_for_context"]["oracle_latent_size"] == 8


@pytest.mark.parametrize("datasets", [1, 2])
def test_recommend_and_report_write_the_same_recommendation(tmp_path, no_figures, datasets):
    table = pd.concat([results_table(4, dataset="a"), results_table(2, dataset="b")][:datasets])
    table.to_csv(tmp_path / "results.csv", index=False)
    write_recommendation(tmp_path, "rec_elbow")
    by_recommend = (tmp_path / "recommendation.json").read_bytes()
    (tmp_path / "recommendation.json").unlink()
    done = write_report(tmp_path, criterion="rec_elbow")
    assert (tmp_path / "recommendation.json").read_bytes() == by_recommend
    payload = json.loads(by_recommend)
    assert json.loads(to_json(done["recommendation"])) == payload
    for rec in [payload] if datasets == 1 else payload.values():
        assert rec["criterion"] == "rec_elbow" and "regret_for_context" in rec["evidence"]


# ------------------------------------------------------------------------------------ plots, report


@pytest.mark.parametrize("name", sorted(plots.ALL_PLOTS))
def test_each_plot_returns_a_figure(name):
    fig = plots.ALL_PLOTS[name](results_table())
    assert isinstance(fig, Figure)
    assert fig.axes and any(ax.lines or ax.collections for ax in fig.axes)


def test_plots_refuse_bad_tables():
    with pytest.raises(ValueError, match="lacks column"):
        plots.plot_rec_error(pd.DataFrame({"latent_size": [1]}))
    with pytest.raises(ValueError, match="empty"):
        plots.plot_performance(results_table().iloc[:0])
    with pytest.raises(TypeError):
        plots.plot_performance([1, 2])


def test_rec_error_plot_labels_the_paper_reference():
    fig = plots.plot_rec_error(results_table(), paper_reference=True)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("Paper" in t and "reference" in t for t in titles)
    assert len(plots.plot_rec_error(results_table(), paper_reference=False).axes) == 1


def test_table1_bolds_the_best_mean():
    table = table1(results_table(k=4))
    assert table.loc[4, "AUROC"].startswith("**") and not table.loc[16, "AUROC"].startswith("**")
    assert "±" in table.loc[1, "AP"]
    no_masks = results_table().assign(pixel_ap=np.nan, best_dice=np.nan)
    assert list(table1(no_masks).columns) == ["AUROC", "AP", "runs"]


def test_report_writes_markdown_html_figures(tmp_path):
    results_table(k=4).to_csv(tmp_path / "results.csv", index=False)
    done = write_report(tmp_path, copy_figures_to=tmp_path / "copy")
    md = (tmp_path / "report.md").read_text()
    assert "**90." in md or "**8" in md  # a bold best cell
    assert "Recommendation for fake-k4: latent size 4" in md
    assert "<table>" in (tmp_path / "report.html").read_text()
    for path in done["figures"].values():
        assert path.stat().st_size > 1000 and (tmp_path / "copy" / path.name).is_file()
    assert json.loads((tmp_path / "recommendation.json").read_text())["latent_size"] == 4


# ----------------------------------------------------------------------------- reported problems


@pytest.fixture
def no_figures(monkeypatch):
    """Reports without drawing figures (drawing is most of a report's time; figures are tested above)."""
    import analysis.report

    monkeypatch.setattr(analysis.report, "save_figures", lambda *args, **kwargs: {})

def test_table1_shows_no_spread_for_a_single_run(tmp_path, no_figures):
    one_seed = results_table(k=4, seeds=(0,))
    table = table1(one_seed)
    cells = [str(v) for v in table.drop(columns="runs").to_numpy().ravel()]
    assert cells and not any("±" in c for c in cells)  # one run: no "± 0.0"
    mean = 100 * one_seed.loc[one_seed["latent_size"] == 1, "auroc"].iloc[0]
    assert table.loc[1, "AUROC"].strip("*") == f"{mean:.1f}"
    # two seeds for one size, one for the others: only the first gets a spread
    mixed = pd.concat([one_seed, one_seed[one_seed["latent_size"] == 2].assign(seed=1)])
    table = table1(mixed)
    assert "±" in table.loc[2, "AUROC"] and "±" not in table.loc[1, "AUROC"]
    one_seed.to_csv(tmp_path / "results.csv", index=False)
    write_report(tmp_path)
    for name in ("report.md", "report.html"):
        assert "± 0.0" not in (tmp_path / name).read_text()


def test_mixed_settings_are_flagged_in_report_and_cli(tmp_path, capsys, no_figures):
    from analysis.sweep import mixed_settings
    from analysis.cli import main

    same = results_table(k=4).assign(batch_size=64, lr=1e-3, image_size=16)
    assert mixed_settings(same) == []
    mixed = same.copy()
    mixed.loc[mixed["seed"] == 1, "epochs"] = 1  # seed 1 of every size was trained for 1 epoch, seed 0 for 3
    messages = mixed_settings(mixed)
    assert len(messages) == 1 and "fake-k4" in messages[0] and "epochs: 1 (6 runs), 3 (6 runs)" in messages[0]
    mixed.to_csv(tmp_path / "results.csv", index=False)
    done = write_report(tmp_path)
    assert done["warnings"] == messages
    md = (tmp_path / "report.md").read_text()
    assert "> **WARNING:**" in md and "epochs: 1 (6 runs), 3 (6 runs)" in md
    assert md.index("WARNING") < md.index("| latent size |")  # above Table 1
    assert "<b>WARNING:</b>" in (tmp_path / "report.html").read_text()
    assert main(["report", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "entropy-ae: WARNING: dataset fake-k4" in captured.err and "mixed settings" in captured.out


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_analysis_outputs_honour_the_umask(tmp_path, umask, no_figures):
    from analysis.sweep.results import write_parquet
    from entropy_ae.io import atomic_write_json

    old = os.umask(umask)
    try:
        results_table(k=4).to_csv(tmp_path / "results.csv", index=False)
        write_report(tmp_path)
        atomic_write_json(tmp_path / "sub" / "entropy.json", {"h_z": 1.0})
        write_parquet(results_table(k=4), tmp_path / "results.parquet")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for name in ("report.md", "report.html", "recommendation.json", "sub/entropy.json", "results.parquet"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
    assert not list(tmp_path.rglob(".*.tmp*"))  # no temporary file left behind


def test_figures_are_written_atomically_with_the_umask(tmp_path):
    from analysis.report import save_figures

    old = os.umask(0o027)
    try:
        saved = save_figures(results_table(k=4), tmp_path / "figures")
    finally:
        os.umask(old)
    assert saved and all(stat.S_IMODE(p.stat().st_mode) == 0o640 for p in saved.values())
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(p.name for p in saved.values())


def _parse(argv):
    from analysis.cli import build_parser

    return build_parser().parse_args(argv)


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        _parse([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_texts_and_defaults_of_the_analysis_commands(capsys):
    for command in ("entropy", "recommend"):
        text = _help(command, capsys)
        assert "--seed " not in text and "apart from --seed" not in text, command
    assert "recorded in the run's config.json" not in _help("recommend", capsys)
    assert "apart from --seeds" in _help("sweep", capsys)
    assert "sequential, local, slurm, ray" in _help("sweep", capsys)  # one list of executors
    # sweep and study train where train does: 'auto' (CUDA when present)
    assert _parse(["sweep", "--out", "x"]).device == "auto" and _parse(["study"]).device == "auto"
    assert _parse(["train", "--out", "x"]).device == "auto"
    assert _parse(["sweep", "--out", "x"]).overwrite is False
    # study and report: --copy-figures-to, the same option with the same meaning
    assert _parse(["study", "--copy-figures-to", "f"]).copy_figures_to == "f"
    for command in (["study"], ["report", "d"]):  # one name, one meaning: figures go to DIR/figures
        with pytest.raises(SystemExit):
            _parse([*command, "--figures-dir", "g"])
    assert "unrecognized arguments: --figures-dir" in capsys.readouterr().err


def test_gaussian_bound_of_too_few_codes_is_minus_inf_with_a_warning():
    z = np.random.default_rng(0).standard_normal((18, 64))  # n <= latent_size: singular covariance
    with pytest.warns(Warning, match="singular covariance"):
        result = run_entropy("unused", method="gaussian", latents={"train_normal": z})
    assert result["h_z_gaussian"] == -np.inf
