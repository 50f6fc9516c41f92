"""Sweeps with real (tiny) trainings: layout, results schema, resume after a kill, CLI end to end.

Tiny settings: 16x16 synthetic images, 48 training images, 1-2 epochs, latent sizes 1-4.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

import entropy_ae.training as training  # noqa: E402
from analysis.sweep import SweepError, collect_results, completed_runs, load_results, run_sweep  # noqa: E402
from analysis.cli import main  # noqa: E402
from entropy_ae.data import load_data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPEC = "synthetic[k=2,n_train=48,n_val=12,n_test=24]"
TINY = {"image_size": 16}
SCHEMA = {
    "dataset", "latent_size", "seed", "epochs", "auroc", "ap", "pixel_ap", "best_dice",
    "rec_error_train_normal", "rec_error_test_normal", "rec_error_test_abnormal", "train_seconds",
    "entropy_seconds", "h_z", "h_z_stderr", "h_z_gaussian", "info_z", "id_levina_bickel_z", "id_twonn_z",
    "mi_code_label", "h_z_abnormal_excess", "info_x", "id_levina_bickel_x", "id_twonn_x", "sigma", "run_dir",
    "rec_error_val_normal", "copy_ratio", "pseudo_auroc", "pseudo_ap", "pseudo_pixel_ap", "mi_code_pseudo",
    "h_z_pseudo_excess", "copy_ratio_cutpaste", "pseudo_auroc_perlin_texture", "mi_code_pseudo_intensity_blob",
}


@pytest.fixture(scope="module")
def data():
    return load_data(SPEC, image_size=16)


def _snapshot(out: Path) -> dict:
    """(mtime_ns, bytes) of every file of every completed run."""
    snap = {}
    for run in completed_runs(out):
        for f in sorted(run.iterdir()):
            snap[str(f.relative_to(out))] = (f.stat().st_mtime_ns, f.read_bytes())
    return snap


def _count_trainings(monkeypatch) -> list:
    calls = []
    real = training.run_training

    def counting(data, config, run_dir, *args, **kwargs):
        calls.append((config.latent_size, config.seed))
        return real(data, config, run_dir, *args, **kwargs)

    monkeypatch.setattr(training, "run_training", counting)
    return calls


def test_sweep_layout_and_results_schema(tmp_path, data, monkeypatch):
    calls = _count_trainings(monkeypatch)
    table = run_sweep(data, [1, 4], [0, 1], 1, tmp_path, executor="sequential", progress=False)
    assert len(calls) == 4
    for d in (1, 4):
        for s in (0, 1):
            run = tmp_path / data.name / f"latent_size={d}" / f"seed={s}"
            assert (run / "metrics.json").is_file() and (run / "entropy.json").is_file()
    assert len(table) == 4 and SCHEMA <= set(table.columns)
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert len(on_disk) == 4 and SCHEMA <= set(on_disk.columns)
    assert sorted(zip(on_disk.latent_size, on_disk.seed)) == [(1, 0), (1, 1), (4, 0), (4, 1)]
    assert on_disk["auroc"].between(0, 1).all() and (on_disk["train_seconds"] > 0).all()
    measured = ["h_z", "h_z_stderr", "h_z_gaussian", "info_z", "id_levina_bickel_z", "mi_code_label",
                "h_z_abnormal_excess", "rec_error_val_normal", "pseudo_auroc", "copy_ratio", "mi_code_pseudo",
                "h_z_pseudo_excess"]
    assert on_disk[measured].notna().all().all() and "errors" not in on_disk.columns
    assert (on_disk["h_z"] <= on_disk["h_z_gaussian"] + 3 * on_disk["h_z_stderr"] + 0.5).all()  # Gaussian bound
    assert (on_disk["mi_code_label"] <= 0.6931 + 0.1).all()  # I(Z; Y) <= log 2 for balanced classes
    assert (tmp_path / "results.parquet").is_file()
    assert pd.read_parquet(tmp_path / "results.parquet").shape == on_disk.shape
    # A second identical call trains nothing and changes no run file.
    before = _snapshot(tmp_path)
    run_sweep(data, [1, 4], [0, 1], 1, tmp_path, executor="sequential", progress=False)
    assert len(calls) == 4 and _snapshot(tmp_path) == before


def test_pseudo_anomaly_columns_come_last_and_runs_that_predate_them_are_measured(tmp_path, data):
    from analysis.sweep.results import PSEUDO_KEYS, RESULT_KEYS

    table = run_sweep(data, [2], [0], 1, tmp_path, executor="sequential", progress=False)
    columns = list(pd.read_csv(tmp_path / "results.csv").columns)
    assert columns[:len(RESULT_KEYS)] == list(RESULT_KEYS)  # the existing columns keep their order
    assert columns[-len(PSEUDO_KEYS):] == list(PSEUDO_KEYS) and columns.index("run_dir") < columns.index("copy_ratio")
    assert table["pseudo_auroc"].between(0, 1).all() and (table["mi_code_pseudo"] <= math.log(2) + 0.1).all()
    assert table["pseudo_families"].iloc[0] == "patch_interpolation,perlin_texture,intensity_blob,cutpaste"
    # A run trained before evaluate_model recorded the pseudo-anomaly metrics: they are measured, not NaN.
    run = next(iter(completed_runs(tmp_path)))
    metrics = json.loads((run / "metrics.json").read_text())
    old = {k: v for k, v in metrics.items() if k not in PSEUDO_KEYS and not k.startswith("pseudo_")}
    assert "copy_ratio_cutpaste" not in old and "auroc" in old
    (run / "metrics.json").write_text(json.dumps(old))
    (run / "entropy.json").unlink()
    again = collect_results(tmp_path)
    measured = json.loads((run / "entropy.json").read_text())
    assert "pseudo_auroc" in measured and "rec_error_val_normal" in measured
    for key in ("rec_error_val_normal", "copy_ratio", "pseudo_auroc", "pseudo_pixel_ap", "copy_ratio_cutpaste"):
        # the same model, images and defects (seed + j) as at training time: equal up to float32 sums
        assert again[key].iloc[0] == pytest.approx(table[key].iloc[0], rel=1e-4, abs=1e-7), key
    assert again["mi_code_pseudo"].iloc[0] == pytest.approx(table["mi_code_pseudo"].iloc[0])


def test_a_row_without_pseudo_anomaly_values_gets_nan():
    from analysis.sweep.results import PSEUDO_KEYS, _pseudo_columns

    row = _pseudo_columns({"auroc": 0.7, "rec_error_val_normal": None}, {})
    assert set(row) == set(PSEUDO_KEYS) and all(isinstance(v, float) and math.isnan(v) for v in row.values())
    assert _pseudo_columns({"pseudo_families": ["a", "b"]}, {"copy_ratio": 0.5})["pseudo_families"] == "a,b"


def test_resume_after_an_interruption_loses_and_recomputes_nothing(tmp_path, data, monkeypatch):
    real = training.run_training
    state = {"n": 0}

    def interrupted(*args, **kwargs):
        state["n"] += 1
        if state["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the third run
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "run_training", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(data, [1, 2, 4], [0], 1, tmp_path, executor="sequential", progress=False)
    assert len(completed_runs(tmp_path)) == 2
    before = _snapshot(tmp_path)
    monkeypatch.setattr(training, "run_training", real)
    calls = _count_trainings(monkeypatch)
    table = run_sweep(data, [1, 2, 4], [0], 1, tmp_path, executor="sequential", progress=False)
    assert calls == [(4, 0)]  # only the interrupted run is trained again
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # completed runs untouched
    assert len(table) == 3


def test_failed_run_is_reported_and_retried(tmp_path, data, monkeypatch):
    real = training.run_training

    def failing(data_, config, run_dir, *args, **kwargs):
        if config.latent_size == 2:
            raise FloatingPointError("loss diverged (injected)")
        return real(data_, config, run_dir, *args, **kwargs)

    monkeypatch.setattr(training, "run_training", failing)
    with pytest.raises(SweepError, match="(?s)1 of 2 runs failed.*latent_size=2.*injected"):
        run_sweep(data, [1, 2], [0], 1, tmp_path, executor="sequential", progress=False)
    assert list(load_results(tmp_path)["latent_size"]) == [1]  # the completed run is in the table
    monkeypatch.setattr(training, "run_training", real)
    calls = _count_trainings(monkeypatch)
    run_sweep(data, [1, 2], [0], 1, tmp_path, executor="sequential", progress=False)
    assert calls == [(2, 0)]


def test_killed_sweep_process_resumes(tmp_path):
    out, markers = tmp_path / "sweep", tmp_path / "markers"
    markers.mkdir()
    args = ["sweep", "--data", SPEC, "--image-size", "16", "--latent-sizes", "1,2,4", "--seeds", "0",
            "--epochs", "1", "--out", str(out), "--executor", "sequential", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-m", "tests._sweep_child", str(markers), "--", *args],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not (markers / "hanging").exists():
        assert child.poll() is None, child.stdout.read().decode()
        assert time.time() < deadline, "the child sweep never reached its third run"
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)  # killed in the middle of the third run
    child.wait(timeout=30)
    assert len(completed_runs(out)) == 2
    before = _snapshot(out)
    assert main(args) == 0
    after = _snapshot(out)
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(completed_runs(out)) == 3 and len(pd.read_csv(out / "results.csv")) == 3


def test_collect_measures_runs_missing_entropy(tmp_path, data, monkeypatch):
    import analysis.sweep.jobs
    import analysis.sweep.results

    run_sweep(data, [2], [0], 1, tmp_path, executor="sequential", progress=False)
    entropy_file = next(iter(completed_runs(tmp_path))) / "entropy.json"
    entropy_file.unlink()
    reads = []
    for module in (analysis.sweep.jobs, analysis.sweep.results):
        real = module.load_config
        monkeypatch.setattr(module, "load_config", lambda run_dir, real=real: reads.append(run_dir) or real(run_dir))
    table = collect_results(tmp_path)
    assert entropy_file.is_file() and table["h_z"].notna().all()
    assert len(reads) == 1  # the run's config is read once, for its settings and its data


def test_in_process_sweeps_use_the_data_they_are_given(tmp_path, data, monkeypatch):
    import analysis.sweep.jobs

    def no_reload(*args, **kwargs):
        raise AssertionError("the data were loaded again")

    monkeypatch.setattr(analysis.sweep.jobs, "_DATA_CACHE", {})
    monkeypatch.setattr(analysis.sweep.jobs, "load_data", no_reload)
    assert len(run_sweep(data, [1], [0], 1, tmp_path / "seq", executor="sequential", progress=False)) == 1
    assert len(run_sweep(data, [1], [0], 1, tmp_path / "bat", batched=True, progress=False)) == 1


def test_batched_sweep_matches_one_by_one(tmp_path, data, monkeypatch):
    seq = run_sweep(data, [1, 2], [0], 1, tmp_path / "seq", executor="sequential", progress=False)
    calls = _count_trainings(monkeypatch)
    bat = run_sweep(data, [1, 2], [0], 1, tmp_path / "bat", batched=True, progress=False)
    assert calls == []  # trained by entropy_ae.training.batched, not one by one
    columns = ["latent_size", "seed", "auroc", "rec_error_train_normal", "id_levina_bickel_z"]
    pd.testing.assert_frame_equal(seq[columns], bat[columns], rtol=1e-3)


def test_cpu_default_trains_batched_with_progress_per_run(tmp_path, data, monkeypatch, capsys):
    calls = _count_trainings(monkeypatch)
    run_sweep(data, [1, 2], [0], 1, tmp_path / "default", device="cpu", progress=True)
    assert calls == []  # no executor given, on a CPU: entropy_ae.training.batched in this process
    err = capsys.readouterr().err
    assert "training 2 models together (batched)" in err
    assert "1/2 runs trained and saved" in err and "2/2 runs trained and saved" in err
    # Anything that asks for an executor keeps it.
    from analysis.sweep import cpu_default_is_batched
    assert cpu_default_is_batched(None, None, {}, "cpu")
    assert not cpu_default_is_batched("local", None, {}, "cpu")
    assert not cpu_default_is_batched(None, 2, {}, "cpu")
    assert not cpu_default_is_batched(None, None, {"timeout_min": 5}, "cpu")


def test_batched_groups_as_executor_jobs_match_one_by_one(tmp_path, data, monkeypatch):
    """--batched with an executor: each job is a group of models; same table as one-by-one runs."""
    seq = run_sweep(data, [1, 2], [0, 1], 1, tmp_path / "seq", executor="sequential", progress=False)
    calls = _count_trainings(monkeypatch)
    # the map_runs path (names, callbacks, outcomes), in this process: no spawned workers to pay for
    grouped = run_sweep(data, [1, 2], [0, 1], 1, tmp_path / "grp", batched=True, executor="sequential", workers=2,
                        progress=False)
    assert calls == []
    assert sorted(p.name for p in (tmp_path / "grp" / "logs").iterdir()) == ["group-0.log", "group-1.log"]
    columns = ["latent_size", "seed", "auroc", "rec_error_train_normal", "id_levina_bickel_z"]
    pd.testing.assert_frame_equal(seq[columns], grouped[columns], rtol=1e-3)


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "study"
    figures = tmp_path / "figures"
    assert main(["study", "--data", SPEC, "--image-size", "16", "--latent-sizes", "1,2,4", "--seeds", "0",
                 "--epochs", "2", "--out", str(out), "--executor", "sequential", "--quiet",
                 "--copy-figures-to", str(figures)]) == 0
    printed = capsys.readouterr().out
    assert "recommended latent size" in printed
    for name in ("report.md", "report.html", "recommendation.json", "results.csv"):
        assert (out / name).is_file(), name
    rec = json.loads((out / "recommendation.json").read_text())
    assert rec["latent_size"] in (1, 2, 4) and rec["criterion"] and rec["evidence"]
    assert len(list(figures.glob("*.png"))) >= 4

    run = next(iter(completed_runs(out)))
    assert main(["entropy", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"h_z", "stderr", "units", "method", "n", "latent_size"} <= set(result)
    assert result["units"] == "nats" and result["n"] == 48 and result["method"] == "knn"
    pseudo = result["pseudo_anomalies"]  # normal data only: the run's 12 validation images
    assert pseudo["pseudo_metrics_source"] == "metrics.json" and pseudo["n_pseudo_codes"] == 12
    recorded = json.loads((run / "metrics.json").read_text())
    assert pseudo["copy_ratio"] == recorded["copy_ratio"] and pseudo["pseudo_auroc"] == recorded["pseudo_auroc"]
    assert pseudo["mi_code_pseudo"] <= math.log(2) + 0.1 and "mi_code_pseudo_cutpaste" in pseudo
    assert main(["entropy", str(run), "--split", "test_abnormal", "--method", "gaussian"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "nats" in lines[0]
    assert lines[1].startswith("pseudo-anomalies (normal data only; 12 validation images, 4 families): copy ratio ")
    assert "pseudo AUROC" in lines[1] and "I(Z; perturbed) = " in lines[1]

    assert main(["recommend", str(out), "--criterion", "rec_elbow"]) == 0
    assert json.loads(capsys.readouterr().out)["criterion"] == "rec_elbow"
    assert json.loads((out / "recommendation.json").read_text())["criterion"] == "rec_elbow"
    assert main(["recommend", "--data", SPEC, "--image-size", "16"]) == 0
    assert json.loads(capsys.readouterr().out)["criterion"] == "intrinsic_dimension"

    assert main(["report", str(out), "--no-paper-reference"]) == 0
    assert (out / "figures" / "rec_error_vs_latent_size.png").is_file()


def test_cli_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no results table" in capsys.readouterr().err
    assert main(["recommend"]) == 2
    assert "sweep directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", "--out", str(tmp_path), "--latent-sizes", "1,x"])


# ----------------------------------------------------------------------------- reported problems


def test_completed_runs_with_other_settings_are_refused_before_training(tmp_path, data, monkeypatch):
    from analysis.sweep import SettingsMismatch

    run_sweep(data, [1, 2], [0], 1, tmp_path, executor="sequential", progress=False)
    before = _snapshot(tmp_path)
    reference = (tmp_path / data.name / "reference.json").read_bytes()
    calls = _count_trainings(monkeypatch)
    with pytest.raises(SettingsMismatch, match="(?s)2 completed run.*epochs: 1 in the run, 2 requested.*--overwrite"):
        run_sweep(data, [1, 2], [0], 2, tmp_path, executor="sequential", progress=False)
    with pytest.raises(SettingsMismatch, match="(?s)image_size: 16 in the run, 32 requested.*lr: 0.001 in the run, "
                                               "0.01 requested"):
        run_sweep(SPEC, [1, 2], [0], 1, tmp_path, image_size=32, lr=0.01, executor="sequential", progress=False)
    # New seeds with other settings would land in the same table: refused too, and --overwrite
    # (which retrains only runs of the grid) does not help.
    for overwrite in (False, True):
        with pytest.raises(SettingsMismatch, match="(?s)epochs: 1 in the run, 3 requested.*outside the requested grid"):
            run_sweep(data, [1], [5], 3, tmp_path, executor="sequential", progress=False, overwrite=overwrite)
    assert calls == [] and _snapshot(tmp_path) == before
    assert (tmp_path / data.name / "reference.json").read_bytes() == reference  # refused before measuring it
    # --overwrite retrains exactly the runs that differ, and the table holds one setting again.
    table = run_sweep(data, [1, 2, 4], [0], 2, tmp_path, executor="sequential", progress=False, overwrite=True)
    assert calls == [(1, 0), (2, 0), (4, 0)]
    assert set(table["epochs"]) == {2} and len(table) == 3
    for run in completed_runs(tmp_path):
        assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 2


def test_retrained_run_is_measured_again_and_mixed_settings_warned(tmp_path, data, capsys):
    from analysis.sweep import MixedSettingsWarning, weights_sha256
    from entropy_ae.training import TrainConfig

    run_sweep(data, [1, 2], [0], 1, tmp_path, executor="sequential", progress=False)
    run = tmp_path / data.name / "latent_size=2" / "seed=0"
    old = json.loads((run / "entropy.json").read_text())
    assert old["measured_with"]["weights_sha256"] == weights_sha256(run)
    # What `entropy-ae train --overwrite --out <run>` does: a new training in place, entropy.json kept.
    training.run_training(data, TrainConfig(latent_size=2, epochs=3, seed=0, device="cpu"), run, progress=False,
                            overwrite=True)
    assert weights_sha256(run) != old["measured_with"]["weights_sha256"]
    with pytest.warns(MixedSettingsWarning, match="epochs: 1 \\(1 runs\\), 3 \\(1 runs\\)"):
        table = collect_results(tmp_path)
    new = json.loads((run / "entropy.json").read_text())
    assert new["measured_with"]["weights_sha256"] == weights_sha256(run)
    assert new["h_z"] != old["h_z"]
    row = table[table["latent_size"] == 2].iloc[0]
    assert row["h_z"] == pytest.approx(new["h_z"]) and row["epochs"] == 3 and "measured_with" not in table.columns
    assert set(table["batch_size"]) == {64} and set(table["image_size"]) == {16}
    # measured once: a second collection reuses it
    stamp = (run / "entropy.json").stat().st_mtime_ns
    with pytest.warns(MixedSettingsWarning):
        collect_results(tmp_path)
    assert (run / "entropy.json").stat().st_mtime_ns == stamp

    # entropy --json is strict JSON even without an error bar (12 validation codes < 20 for the jackknife)
    assert main(["entropy", str(run), "--split", "val_normal", "--json"]) == 0
    result = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert result["n"] == 12 and result["stderr"] is None and "need >= 20" in result["stderr_note"]
    assert main(["entropy", str(run), "--split", "val_normal"]) == 0
    text = capsys.readouterr().out
    assert "nan" not in text and "no standard error: too few samples" in text and "need >= 20 codes, got 12" in text


def test_bad_latent_or_image_size_is_refused_up_front(tmp_path, data, capsys):
    with pytest.raises(ValueError, match="latent sizes must be from 1 to 1024, got 2000"):
        run_sweep(data, [2, 2000], [0], 1, tmp_path / "a", executor="sequential", progress=False)
    assert not (tmp_path / "a").exists()
    base = ["sweep", "--data", SPEC, "--seeds", "0", "--epochs", "1", "--executor", "sequential", "--quiet"]
    assert main([*base, "--image-size", "16", "--latent-sizes", "2000", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "latent sizes must be from 1 to 1024, got 2000" in err
    assert main([*base, "--image-size", "20", "--latent-sizes", "2", "--out", str(tmp_path / "c")]) == 2
    assert "image_size must be a positive multiple of 16" in capsys.readouterr().err
    assert main([*base, "--image-size", "16", "--latent-sizes", "0", "--out", str(tmp_path / "d")]) == 2
    assert not any((tmp_path / name).exists() for name in "bcd")
