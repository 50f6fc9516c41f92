"""Run directories: atomic save, round trip, and refusal of tampered checkpoints."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from entropy_ae.runs import (
    RunDirError, extract_latents, is_complete, load_loss_history, load_metrics, load_model, save_run,
)
from entropy_ae.evaluation import encode_images, evaluate_model
from entropy_ae.training import TrainConfig, run_training, train_model

from .conftest import make_tiny_data

CONFIG = TrainConfig(latent_size=3, epochs=2, batch_size=16, seed=1, device="cpu")


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """One training for the whole module; tests get a fresh copy to inspect or tamper with."""
    path = tmp_path_factory.mktemp("saved") / "runs" / "tiny" / "latent_size=3" / "seed=1"
    run_training(make_tiny_data(), CONFIG, path, progress=False)
    return path


@pytest.fixture
def run_dir(saved_run, tmp_path):
    path = tmp_path / "runs" / "tiny" / "latent_size=3" / "seed=1"
    shutil.copytree(saved_run, path)
    return path


def test_run_directory_contents(run_dir, tiny_data):
    assert sorted(os.listdir(run_dir)) == ["config.json", "loss_history.csv", "metrics.json", "weights.safetensors"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["format_version"] == 1
    assert config["model"] == {"kind": "ae", "latent_size": 3, "image_size": 16, "options": {}}
    assert config["train"] == {"epochs": 2, "batch_size": 16, "lr": 1e-3, "seed": 1, "device": "cpu"}
    assert config["data"] == tiny_data.spec
    assert config["environment"]["device"] == "cpu" and config["environment"]["versions"]["torch"]
    metrics = load_metrics(run_dir)
    assert metrics["dataset"] == "tiny" and metrics["latent_size"] == 3 and metrics["seed"] == 1
    assert metrics["epochs"] == 2 and metrics["train_seconds"] > 0
    history = load_loss_history(run_dir)
    assert len(history) == 2 and metrics["final_loss"] == history[-1]


def test_save_leaves_no_temporary_directory(saved_run):
    assert os.listdir(saved_run.parent) == ["seed=1"]


def test_round_trip_gives_same_latents_and_metrics(run_dir, tiny_data):
    # Retraining with the same seed reproduces the saved model exactly (CPU), so compare against it.
    model, history = train_model(tiny_data, CONFIG)
    assert load_loss_history(run_dir) == history
    loaded, config = load_model(run_dir)
    assert not loaded.training and config["model"]["latent_size"] == 3
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    latents = extract_latents(run_dir, tiny_data, device="cpu")
    labels = tiny_data.test_labels
    expected = {
        "train_normal": tiny_data.train, "val_normal": tiny_data.val,
        "test_normal": tiny_data.test[labels == 0], "test_abnormal": tiny_data.test[labels == 1],
    }
    assert list(latents) == list(expected)
    for name, images in expected.items():
        assert latents[name].dtype == np.float32 and latents[name].shape == (len(images), 3)
        np.testing.assert_array_equal(latents[name], encode_images(model, images))

    saved = load_metrics(run_dir)
    fresh = evaluate_model(loaded, tiny_data)
    assert {k: saved[k] for k in fresh} == fresh


def test_complete_run_is_not_overwritten(run_dir, tiny_data):
    before = (run_dir / "weights.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        run_training(tiny_data, CONFIG, run_dir)
    assert (run_dir / "weights.safetensors").read_bytes() == before
    other = TrainConfig(latent_size=3, epochs=1, batch_size=16, seed=2, device="cpu")
    run_training(tiny_data, other, run_dir, overwrite=True)
    assert load_metrics(run_dir)["seed"] == 2 and len(load_loss_history(run_dir)) == 1


def test_save_into_an_existing_incomplete_directory_keeps_other_files(tmp_path, tiny_data):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train.log").write_text("started\n")
    (run_dir / "weights.safetensors").write_bytes(b"stale, from an interrupted attempt")
    model, history = train_model(tiny_data, TrainConfig(latent_size=3, epochs=1, device="cpu"))
    assert not is_complete(run_dir)
    save_run(run_dir, model, TrainConfig(latent_size=3, epochs=1, device="cpu"), tiny_data,
             evaluate_model(model, tiny_data), history)
    assert is_complete(run_dir) and (run_dir / "train.log").read_text() == "started\n"
    load_model(run_dir)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


# ------------------------------------------------------------------------------------ tampered runs

def edit_config(run_dir, **model_fields):
    path = run_dir / "config.json"
    config = json.loads(path.read_text())
    config["model"].update(model_fields)
    path.write_text(json.dumps(config))


def test_latent_size_edited_in_config_is_refused(run_dir):
    edit_config(run_dir, latent_size=4)
    with pytest.raises(RunDirError, match=r"weights\.safetensors holds weights for latent_size=3.*config\.json"):
        load_model(run_dir)


def test_image_size_edited_in_config_is_refused(run_dir):
    edit_config(run_dir, image_size=32)
    with pytest.raises(RunDirError, match=r"encoder_fc\.1\.weight has shape"):
        load_model(run_dir)


def test_truncated_weights_are_refused(run_dir):
    path = run_dir / "weights.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunDirError, match=r"weights\.safetensors is not a readable safetensors file"):
        load_model(run_dir)


def test_garbled_weights_are_refused(run_dir):
    path = run_dir / "weights.safetensors"
    path.write_bytes(os.urandom(path.stat().st_size))
    with pytest.raises(RunDirError, match=r"weights\.safetensors"):
        load_model(run_dir)


def test_nan_weights_are_refused(run_dir):
    path = run_dir / "weights.safetensors"
    state = load_file(str(path))
    state["decoder_fc.0.weight"][0, 0] = float("nan")
    save_file(state, str(path))
    with pytest.raises(RunDirError, match="decoder_fc.0.weight holds NaN"):
        load_model(run_dir)


@pytest.mark.parametrize("change", ["drop", "add"])
def test_missing_or_extra_tensors_are_refused(run_dir, change):
    path = run_dir / "weights.safetensors"
    state = load_file(str(path))
    if change == "drop":
        del state["decoder_conv.0.weight"]
    else:
        state["backdoor.weight"] = torch.zeros(2)
    save_file(state, str(path))
    with pytest.raises(RunDirError, match="missing tensors" if change == "drop" else "unexpected tensors"):
        load_model(run_dir)


class _Payload:
    """Unpickling this creates a marker file: proof that a loader executed the pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_renamed_to_weights_is_refused_without_unpickling(run_dir, tmp_path):
    marker = tmp_path / "unpickled"
    with open(run_dir / "weights.safetensors", "wb") as f:
        pickle.dump({"state_dict": _Payload(marker)}, f)
    with pytest.raises(RunDirError, match="never unpickles"):
        load_model(run_dir)
    assert not marker.exists()

    torch.save(CONFIG.to_dict(), run_dir / "weights.safetensors")  # a torch.save zip archive
    with pytest.raises(RunDirError, match=r"weights\.safetensors"):
        load_model(run_dir)


@pytest.mark.parametrize("problem", ["format_version", "no_config", "no_weights", "bad_json", "no_dir"])
def test_broken_run_directories_are_refused(run_dir, problem):
    if problem == "format_version":
        config = json.loads((run_dir / "config.json").read_text())
        config["format_version"] = 99
        (run_dir / "config.json").write_text(json.dumps(config))
        match = "format_version 99"
    elif problem == "no_config":
        (run_dir / "config.json").unlink()
        match = r"config\.json is missing"
    elif problem == "no_weights":
        (run_dir / "weights.safetensors").unlink()
        match = r"weights\.safetensors is missing"
    elif problem == "bad_json":
        (run_dir / "config.json").write_text("{not json")
        match = r"config\.json is not valid JSON"
    else:
        run_dir = run_dir / "nope"
        match = "does not exist"
    with pytest.raises(RunDirError, match=match):
        load_model(run_dir)


def test_incomplete_run_has_no_metrics(run_dir):
    (run_dir / "metrics.json").unlink()
    assert not is_complete(run_dir)
    with pytest.raises(RunDirError, match="not complete"):
        load_metrics(run_dir)


def test_extract_latents_rebuilds_the_data_from_the_config(tmp_path):
    from entropy_ae.data import load_data

    data = load_data("digits:0", image_size=16)
    config = TrainConfig(latent_size=2, epochs=1, device="cpu")
    run_training(data, config, tmp_path / "run")
    rebuilt = extract_latents(tmp_path / "run", device="cpu")
    given = extract_latents(tmp_path / "run", data, device="cpu")
    for name in given:
        np.testing.assert_array_equal(rebuilt[name], given[name])
    assert len(given["test_abnormal"]) == (data.test_labels == 1).sum()
    with pytest.raises(ValueError, match="image_size=16"):
        extract_latents(tmp_path / "run", load_data("digits:0", image_size=32), device="cpu")


def test_extra_is_recorded_and_files_are_not_private(tmp_path, tiny_data):
    model, history = train_model(tiny_data, TrainConfig(latent_size=3, epochs=1, device="cpu"))
    save_run(tmp_path / "run", model, TrainConfig(latent_size=3, epochs=1, device="cpu"), tiny_data,
             evaluate_model(model, tiny_data), history, extra={"sweep": "demo"}, train_seconds=1.5)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["extra"] == {"sweep": "demo"}
    assert load_metrics(tmp_path / "run")["train_seconds"] == 1.5
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tmp_path / "run" / "weights.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


def test_json_files_are_strict():
    # One writer for every JSON file and --json output: NaN/inf -> null, numpy scalars -> numbers.
    import json

    import numpy as np

    from entropy_ae.io import to_json

    text = to_json({"a": float("nan"), "b": [np.float32(0.5), np.int64(3), (float("inf"), 1)], 2: "x"})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) == {
        "a": None, "b": [0.5, 3, [None, 1]], "2": "x"}
    with pytest.raises(TypeError):
        to_json({"not JSON": object()})
