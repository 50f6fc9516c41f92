"""The paper's Table 2 in the harness: sweeps per model kind, the results table, Table 2 and its figure."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from analysis.cli import build_parser, main  # noqa: E402
from analysis.plots import plot_methods_entropy_vs_auroc  # noqa: E402
from analysis.recommend import recommend  # noqa: E402
from analysis.sweep import completed_runs, run_sweep  # noqa: E402
from analysis.sweep.layout import run_dataset, run_dir_for, run_model  # noqa: E402
from analysis.tables import table1, table2, table2_rows  # noqa: E402
from entropy_ae.model import MODEL_KINDS  # noqa: E402
from entropy_ae.options import MODEL_KINDS_HELP  # noqa: E402
from entropy_ae.runs import load_model  # noqa: E402

from .analysis_fakes import results_table  # noqa: E402

SPEC = "synthetic[k=2,n_train=48,n_val=12,n_test=24]"


def _with_methods(seeds=(0, 1, 2)) -> pd.DataFrame:
    """A fake AE sweep (best AUROC at d=4) plus VAE and MemAE rows at d=16 with known AUROCs."""
    ae = results_table(k=4, seeds=seeds).assign(model="ae")
    rows = []
    for kind, auroc in (("vae", 0.80), ("memae", 0.95)):
        for s in seeds:
            row = ae[(ae["latent_size"] == 16) & (ae["seed"] == s)].iloc[0].to_dict()
            row.update(model=kind, auroc=auroc + 0.01 * s, h_z=5.0 + s, kl_rate_train_normal=3.0 if kind == "vae"
                       else np.nan)
            rows.append(row)
    return pd.concat([ae, pd.DataFrame(rows)], ignore_index=True)


def test_the_cli_lists_every_model_kind_without_importing_torch():
    for kind in MODEL_KINDS:
        assert kind in MODEL_KINDS_HELP
    args = build_parser().parse_args(["train", "--out", "x", "--model", "vae", "--model-option", "kl_weight=0.01",
                                      "--model-option", "kl_weight=0.02"])
    assert args.model == "vae" and dict(args.model_options) == {"kl_weight": 0.02}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "x", "--model-option", "kl_weight"])


def test_table2_rows_metrics_bold_and_measures():
    results = _with_methods()
    rows = table2_rows(results, recommended=8)
    assert list(rows) == ["AE (d=16)", "VAE (d=16)", "MemAE (d=16)", "AE (recommended d=8)",
                          "AE (oracle d=4, test labels)"]
    table = table2(results, recommended=8)
    # MemAE's mean AUROC (95.0 + 1.0 = 96.0 over seeds 0-2) beats every AE row of the fake sweep (<= 90.x)
    vae_mean = 100 * np.mean([0.80, 0.81, 0.82])
    assert table.loc["VAE (d=16)", "AUROC"] == f"{vae_mean:.1f} ± {100 * np.std([0.80, 0.81, 0.82], ddof=1):.1f}"
    assert table.loc["MemAE (d=16)", "AUROC"].startswith("**96.0")
    assert not table.loc["AE (oracle d=4, test labels)", "AUROC"].startswith("**")
    assert table.loc["VAE (d=16)", "H(Z) k-NN"] == pytest.approx(6.0)
    assert table.loc["VAE (d=16)", "KL rate (VAE)"] == pytest.approx(3.0)
    assert np.isnan(table.loc["MemAE (d=16)", "KL rate (VAE)"])
    assert (table["runs"] == 3).all()
    # the oracle row is bold among AE rows only when no fair row beats it: drop MemAE and it still is not bold
    without = table2(results[results["model"] != "memae"], recommended=8)
    assert not without.loc["AE (oracle d=4, test labels)", "AUROC"].startswith("**")
    assert without.loc["AE (recommended d=8)", "AUROC"].startswith("**") or \
        without.loc["AE (d=16)", "AUROC"].startswith("**")


def test_table1_and_the_recommendation_use_only_the_ae_runs():
    results = _with_methods()
    ae = results[results["model"] == "ae"]
    pd.testing.assert_frame_equal(table1(results), table1(ae))
    assert recommend(results)["latent_size"] == recommend(ae)["latent_size"]


def test_methods_figure_has_a_point_per_run_by_method():
    results = _with_methods()
    fig = plot_methods_entropy_vs_auroc(results)
    left = fig.axes[0]
    assert [c.get_label() for c in left.collections] == ["ae (every latent size)", "vae", "memae"]
    assert sum(len(c.get_offsets()) for c in left.collections) == len(results)
    with pytest.raises(ValueError, match="lacks column"):
        plot_methods_entropy_vs_auroc(results.drop(columns="model"))


def test_report_writes_table2_when_several_kinds(tmp_path):
    from analysis.report import write_report

    _with_methods().to_csv(tmp_path / "results.csv", index=False)
    done = write_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "## Table 2" in md and "| AE (oracle d=4, test labels) |" in md and "| MemAE (d=16) |" in md
    assert md.index("| latent size |") < md.index("## Table 2")
    assert "methods_entropy_vs_auroc" in done["figures"]
    assert "<b>96.0" in (tmp_path / "report.html").read_text()
    results_table(k=4).to_csv(tmp_path / "results.csv", index=False)  # one kind: no Table 2
    write_report(tmp_path)
    assert "Table 2" not in (tmp_path / "report.md").read_text()


def test_layout_of_other_kinds():
    path = run_dir_for("out", "ds", 16, 2, "vae")
    assert path.as_posix() == "out/ds/model=vae/latent_size=16/seed=2"
    assert run_model(path) == "vae" and run_dataset(path) == "ds"
    plain = run_dir_for("out", "ds", 4, 0)
    assert plain.as_posix() == "out/ds/latent_size=4/seed=0" and run_model(plain) == "ae" and run_dataset(plain) == "ds"


def test_study_with_models_end_to_end(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "--data", SPEC, "--image-size", "16", "--latent-sizes", "1,2", "--seeds", "0",
                 "--epochs", "1", "--out", str(out), "--executor", "sequential", "--quiet",
                 "--models", "ae,vae,memae,ceae,dae", "--methods-latent-size", "2"]) == 0
    runs = completed_runs(out)
    assert sorted((run_model(r), r.parent.name) for r in runs) == sorted(
        [("ae", "latent_size=1"), ("ae", "latent_size=2")] + [(k, "latent_size=2") for k in ("vae", "memae", "ceae", "dae")])
    for run in runs:
        model, config = load_model(run, model=run_model(run))
        assert config["model"]["kind"] == run_model(run)
    table = pd.read_csv(out / "results.csv")
    assert sorted(table["model"]) == sorted(["ae", "ae", "vae", "memae", "ceae", "dae"])
    assert table.loc[table["model"] == "vae", "kl_rate_train_normal"].notna().all()
    assert table.loc[table["model"] != "vae", "kl_rate_train_normal"].isna().all()
    assert table["h_z"].notna().all()  # every kind's code is measured
    md = (out / "report.md").read_text()
    for label in ("VAE (d=2)", "MemAE (d=2)", "CeAE (d=2)", "DAE (d=2)", "AE (d=2)"):
        assert f"| {label}" in md
    rec = json.loads((out / "recommendation.json").read_text())
    assert rec["latent_size"] in (1, 2)
    # a sweep of one kind through the Python API lands beside them and resumes like any other
    again = run_sweep(SPEC, [2], [0], 1, out, image_size=16, executor="sequential", progress=False, model="vae")
    assert len(again) == len(table)


def test_a_bad_model_is_refused_before_anything_runs(tmp_path, capsys):
    assert main(["sweep", "--data", SPEC, "--image-size", "16", "--latent-sizes", "1", "--seeds", "0", "--epochs",
                 "1", "--out", str(tmp_path / "s"), "--model", "gan", "--quiet"]) == 2
    assert "unknown model 'gan'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    assert main(["study", "--data", SPEC, "--out", str(tmp_path / "t"), "--models", "ae,vea", "--quiet"]) == 2
    assert "unknown model 'vea'" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--model", "vae", "--model-option", "memory_size=3"]) == 2
    assert "no setting(s) ['memory_size']" in capsys.readouterr().err


def test_table2_benchmark_prints_ours_beside_the_papers(tmp_path, capsys, monkeypatch):
    import importlib.util
    import sys
    from pathlib import Path

    from analysis.report import write_report

    _with_methods().to_csv(tmp_path / "results.csv", index=False)
    write_report(tmp_path)
    paper = tmp_path / "paper.csv"
    paper.write_text("method,dataset,auc_mean,auc_std,ap_mean,ap_std,ap_pix_mean,ap_pix_std,dice_mean,dice_std\n"
                     "VAE,RSNA,67.9,0.8,67.0,0.8,,,,\n")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "table2.py"
    spec = importlib.util.spec_from_file_location("benchmark_table2", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["table2.py", str(tmp_path), "--paper", str(paper)])
    module.main()
    printed = capsys.readouterr().out
    assert "| MemAE (d=16) |" in printed and "| RSNA | VAE | 67.9 ± 0.8 |" in printed
    oracle_line = next(line for line in printed.splitlines() if line.startswith("| AE (oracle"))
    assert oracle_line.rstrip(" |").endswith("0.0")  # the oracle's regret against itself


def test_study_trains_fixed_kinds_at_the_methods_size_and_adaptive_kinds_at_the_largest():
    from argparse import Namespace

    from analysis.commands import _study_models

    args = Namespace(models="ae,vae,nested", latent_sizes=[1, 4, 32], methods_latent_size=16)
    assert _study_models(args) == [("ae", {}, [1, 4, 32]), ("vae", {}, [16]), ("nested", {}, [32])]
    results = _with_methods().assign(effective_latent_size=np.nan)
    nested = results[results["model"] == "vae"].assign(model="nested", latent_size=32, effective_latent_size=4)
    rows = table2_rows(pd.concat([results, nested]), recommended=8)
    assert "AE (d=16)" in rows and "Nested (adaptive) (d=32)" in rows
