"""`entropy-ae train` and `entropy-ae evaluate`, end to end on tiny settings, and their error handling."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest

from entropy_ae.runs import load_metrics
from analysis.cli import build_parser, main

TINY = ["--data", "digits:0", "--image-size", "16", "--epochs", "2", "--latent-size", "4", "--device", "cpu"]


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--seed", "3", "--out", str(out), "--quiet"]) == 0
    return out


def test_train_writes_a_run_and_prints_headline_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    status, stdout, stderr = run(capsys, "train", *TINY, "--out", str(out), "--quiet")
    assert status == 0
    metrics = load_metrics(out)
    assert metrics["dataset"] == "digits-0" and metrics["latent_size"] == 4 and metrics["epochs"] == 2
    assert "auroc" in stdout and f"{metrics['auroc']:.4f}" in stdout
    assert "best_dice" in stdout and "n/a" in stdout  # digits have no masks
    assert f"run saved to {out}" in stdout
    assert stderr == ""  # --quiet, and no progress bar off a terminal


def test_train_records_the_options(trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["model"] == {"kind": "ae", "latent_size": 4, "image_size": 16, "options": {}}
    assert config["train"]["seed"] == 3 and config["train"]["epochs"] == 2
    assert config["data"]["source"] == "digits" and config["data"]["image_size"] == 16


def test_evaluate_reproduces_the_saved_metrics(trained, capsys):
    status, stdout, _ = run(capsys, "evaluate", str(trained), "--json", "--device", "cpu")
    assert status == 0
    printed = json.loads(stdout)
    saved = load_metrics(trained)
    for key in ("auroc", "ap", "threshold", "sensitivity", "specificity", "rec_error_test_abnormal"):
        assert printed[key] == saved[key], key


def test_evaluate_on_other_data(trained, capsys):
    status, stdout, _ = run(capsys, "evaluate", str(trained), "--data", "digits:1", "--device", "cpu")
    assert status == 0 and "auroc" in stdout


def assert_one_line_error(status, stderr, *fragments):
    assert status == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("entropy-ae: error:"), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("argv, fragments", [
    (["train", "--data", "/no/such/folder", "--out", "{tmp}/r"], ["/no/such/folder"]),
    (["train", "--data", "digits:12", "--out", "{tmp}/r"], ["digits"]),
    (["train", *TINY, "--latent-size", "2000", "--out", "{tmp}/r"], ["latent_size"]),
    (["train", *TINY, "--image-size", "40", "--out", "{tmp}/r"], ["image_size"]),
    (["train", *TINY, "--batch-size", "1", "--out", "{tmp}/r"], ["batch_size"]),
    (["train", *TINY[:-2], "--device", "quantum", "--out", "{tmp}/r"], ["device"]),
    (["evaluate", "{tmp}/missing"], ["does not exist"]),
])
def test_bad_input_gives_one_clear_line_and_status_2(tmp_path, capsys, argv, fragments):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    status, _, stderr = run(capsys, *argv)
    assert_one_line_error(status, stderr, *fragments)


def test_training_into_a_complete_run_needs_overwrite(trained, capsys):
    status, _, stderr = run(capsys, "train", *TINY, "--out", str(trained), "--quiet")
    assert_one_line_error(status, stderr, "--overwrite")


def test_corrupt_run_gives_one_line(tmp_path, trained, capsys):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    (run_dir / "weights.safetensors").write_bytes(b"\x80\x04not safetensors")
    status, _, stderr = run(capsys, "evaluate", str(run_dir))
    assert_one_line_error(status, stderr, "weights.safetensors")


@pytest.mark.parametrize("argv, fragments", [
    (["train", "--epochs", "zero", "--out", "x"], ["--epochs", "zero", "entropy-ae train --help"]),
    (["train", "--latent-size", "0", "--out", "x"], ["--latent-size", "positive integer", "'0'"]),
    (["train", "--out", "x", "--no-such-option"], ["--no-such-option"]),
    ([], ["COMMAND"]),
])
def test_bad_option_value_is_one_line_too(capsys, argv, fragments):
    with pytest.raises(SystemExit) as exit_info:  # argparse exits itself; the message is ours
        main(argv)
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err, *fragments)


def test_analysis_commands_share_the_one_line_option_errors(capsys):
    assert "sweep" in _subparsers(build_parser())  # analysis ships with the package: its commands must be there
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--out", "x", "--latent-sizes", "1,x"])
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err, "--latent-sizes", "entropy-ae sweep --help")


def _tiny_npz(path, n_train=40, size=16):
    rng = np.random.default_rng(0)
    np.savez(path, train_images=rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
             train_labels=np.zeros((n_train, 1), np.int64),
             test_images=rng.integers(0, 256, (20, size, size), dtype=np.uint8),
             test_labels=(np.arange(20) % 2)[:, None])


def test_truncated_npz_gives_one_line(tmp_path, capsys):
    good = tmp_path / "good.npz"
    _tiny_npz(good)
    raw = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])  # an interrupted download
    status, _, stderr = run(capsys, "train", "--data", str(tmp_path / "trunc.npz"), "--image-size", "16",
                            "--out", str(tmp_path / "r"), "--quiet")
    assert_one_line_error(status, stderr, "trunc.npz", "not a readable .npz file", "re-download it")
    assert not (tmp_path / "r").exists()


def test_divergence_in_the_only_epoch_gives_one_line(tmp_path, capsys):
    _tiny_npz(tmp_path / "tiny.npz")  # 36 training images after the val split: 2 steps of 18
    status, _, stderr = run(capsys, "train", "--data", str(tmp_path / "tiny.npz"), "--image-size", "16",
                            "--latent-size", "2", "--epochs", "1", "--batch-size", "18", "--lr", "1e6",
                            "--device", "cpu", "--out", str(tmp_path / "r"), "--quiet")
    assert_one_line_error(status, stderr, "training diverged", "at epoch 1", "try a lower lr")
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_json_output_never_holds_nan_or_infinity(capsys):
    from analysis.commands import _print_metrics

    def refuse(name):
        raise AssertionError(f"{name} in the JSON output")

    _print_metrics({"auroc": float("nan"), "ap": float("inf"), "n_train": 3, "notes": [float("-inf"), 0.5],
                    "nested": {"x": float("nan")}, "dataset": "d"}, as_json=True)
    printed = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert printed == {"auroc": None, "ap": None, "n_train": 3, "notes": [None, 0.5], "nested": {"x": None},
                       "dataset": "d"}


def test_evaluate_json_is_strict_json(trained, capsys):
    status, stdout, _ = run(capsys, "evaluate", str(trained), "--json")
    assert status == 0
    metrics = json.loads(stdout, parse_constant=lambda name: pytest.fail(f"{name} in the JSON output"))
    assert 0.0 <= metrics["auroc"] <= 1.0 and metrics["pixel_ap"] is None


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_command_and_option_has_help(capsys):
    parser = build_parser()
    commands = _subparsers(parser)
    assert {"train", "evaluate"} <= set(commands)
    for name, sub in commands.items():
        assert sub.description, f"'{name}' has no description"
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings or action.dest}"
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: entropy-ae " + name in capsys.readouterr().out
