"""The model kinds of the paper's Table 2 (entropy_ae.model): shapes, losses, scoring, training, checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from entropy_ae.evaluation import evaluate_model, image_scores
from entropy_ae.model import (
    HIDDEN,
    MODEL_KINDS,
    Autoencoder,
    MemoryAutoencoder,
    VariationalAutoencoder,
    build_model,
    count_parameters,
)
from entropy_ae.model.corrupted import coarse_noise, erase_rectangles
from entropy_ae.model.memae import addressing_entropy, hard_shrink
from entropy_ae.model.vae import gaussian_kl
from entropy_ae.runs import CONFIG, RunDirError, load_model
from entropy_ae.training import TrainConfig, run_training, train_model
from entropy_ae.training.loop import corruption_generator

from .conftest import make_tiny_data


def _images(n=6, size=16, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).uniform(-1, 1, (n, 1, size, size)), dtype=torch.float32)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_forward_shapes_and_parameter_count(kind):
    d, size = 5, 32
    model = build_model(kind, d, size).eval()
    x_hat, z = model(_images(4, size))
    assert x_hat.shape == (4, 1, size, size) and z.shape == (4, d)  # adaptive kinds start at full capacity
    assert model.encode(_images(4, size)).shape == (4, d)
    plain = count_parameters(Autoencoder(d, size))
    extra = {"ae": 0, "ceae": 0, "dae": 0,
             "vae": (HIDDEN + 1) * d,  # the log-variance half of the encoder's last Linear
             "memae": 25 * d,  # the memory, 25 items of size d
             "nested": 0,  # the truncation is a buffer, not a parameter
             "gated": d}  # one gate log-odds per unit
    assert count_parameters(model) == plain + extra[kind]
    assert model.kind == kind


def test_unknown_kind_and_setting_are_refused():
    with pytest.raises(ValueError, match="unknown model 'gan'.*ae, vae, memae, ceae, dae"):
        build_model("gan", 4, 16)
    with pytest.raises(ValueError, match="no setting.*kl_wieght.*kl_weight"):
        TrainConfig(model="vae", model_options={"kl_wieght": 0.1})
    with pytest.raises(ValueError, match="memory_size must be a positive integer"):
        build_model("memae", 4, 16, {"memory_size": 2.5})
    with pytest.raises(ValueError, match="noise_std must be a positive finite number"):
        TrainConfig(model="dae", model_options={"noise_std": -0.1})
    assert TrainConfig(model="vae").model_options == {"kl_weight": 0.005}


def test_gaussian_kl_closed_form():
    # unit 1: N(1, 1) -> 0.5 * 1; unit 2: N(0, 2) -> 0.5 * (2 - log 2 - 1)
    kl = gaussian_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]]))
    assert kl.item() == pytest.approx(1 - 0.5 * math.log(2.0), rel=1e-6)
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max().item() == 0


def test_vae_loss_is_mse_plus_weighted_kl_of_the_sampled_code():
    torch.manual_seed(0)
    model = VariationalAutoencoder(3, 16, kl_weight=0.25).train()
    x = _images()
    loss, terms = model.training_loss(x, torch.Generator().manual_seed(7))
    mean, logvar = model.posterior(x)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    mse = ((model.decode(mean + torch.exp(0.5 * logvar) * eps) - x) ** 2).mean()
    kl = (0.5 * (mean ** 2 + logvar.exp() - logvar - 1).sum(dim=1)).mean()
    assert terms["mse"].item() == pytest.approx(mse.item(), rel=1e-5)
    assert terms["kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert loss.item() == pytest.approx(mse.item() + 0.25 * kl.item(), rel=1e-5)


def test_vae_scores_deterministically_on_the_posterior_mean():
    torch.manual_seed(1)
    model = VariationalAutoencoder(4, 16).eval()
    images = _images(8).numpy()
    first, second = image_scores(model, images), image_scores(model, images)
    np.testing.assert_array_equal(first, second)
    x = torch.as_tensor(images)
    with torch.no_grad():
        mean, _ = model.posterior(x)
        np.testing.assert_array_equal(model(x)[1].numpy(), mean.numpy())
        np.testing.assert_allclose(first, ((model.decode(mean) - x) ** 2).mean(dim=(1, 2, 3)).numpy(), rtol=1e-6)
        assert model.rate(x).shape == (8,) and (model.rate(x) >= 0).all()


def test_memae_hard_shrinkage_and_entropy_by_hand():
    weights = torch.tensor([[0.5, 0.499, 0.001], [0.2, 0.3, 0.5]])
    shrunk = hard_shrink(weights, 0.0025)
    # 0.001 < t is cut; a weight above t keeps its value (w * (w - t) / |w - t| = w); rows re-normalised
    np.testing.assert_allclose(shrunk[0].numpy(), [0.5 / 0.999, 0.499 / 0.999, 0.0], rtol=1e-6)
    np.testing.assert_allclose(shrunk[1].numpy(), [0.2, 0.3, 0.5], rtol=1e-6)
    entropy = addressing_entropy(torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(entropy.numpy(), [math.log(2.0), 0.0], atol=1e-6)


def test_memae_code_is_a_convex_combination_of_memory_items_and_its_loss_adds_the_entropy():
    torch.manual_seed(2)
    model = MemoryAutoencoder(4, 16, shrink_threshold=0.03, entropy_weight=0.5)
    x = _images()
    weights = model.address(model.encoder_code(x))
    assert torch.allclose(weights.sum(dim=1), torch.ones(len(x)))
    assert (weights[weights > 0] >= 0.03).all()  # nothing between 0 and the threshold survives
    np.testing.assert_allclose(model.encode(x).detach().numpy(), (weights @ model.memory).detach().numpy(),
                               rtol=1e-6)
    loss, terms = model.training_loss(x)
    mse = ((model.decode(weights @ model.memory) - x) ** 2).mean()
    assert terms["mse"].item() == pytest.approx(mse.item(), rel=1e-5)
    assert loss.item() == pytest.approx(mse.item() + 0.5 * addressing_entropy(weights).mean().item(), rel=1e-5)
    assert "memory" in model.state_dict()


def test_ceae_erases_one_rectangle_of_the_configured_area_per_image():
    x = torch.full((50, 1, 64, 64), 0.25)
    erased = erase_rectangles(x, 0.024, torch.Generator().manual_seed(0))
    assert (x == 0.25).all()  # the input is not modified
    for image in erased[:, 0]:
        hole = image == -1
        assert ((image == 0.25) | hole).all()
        rows, cols = hole.any(dim=1).nonzero().ravel(), hole.any(dim=0).nonzero().ravel()
        h, w = len(rows), len(cols)
        assert hole.sum().item() == h * w  # one full rectangle
        assert rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w
        # area 0.024 * 64^2 = 98.3 pixels; rounding each side by up to 0.5 moves it by at most ~ (h + w) / 2 + 1/4
        assert abs(h * w - 0.024 * 64 * 64) <= (h + w) / 2 + 0.25
        assert 0.3 * 0.5 <= h / w <= 3.3 * 2  # within the aspect range, up to the rounding of small sides


def test_ceae_and_dae_corrupt_only_in_training_and_reconstruct_the_clean_image():
    torch.manual_seed(3)
    for kind in ("ceae", "dae"):
        model = build_model(kind, 4, 16).train()
        x = _images()
        loss, _ = model.training_loss(x, torch.Generator().manual_seed(0))
        # the loss differs from the clean one (corruption applied) ...
        assert loss.item() != pytest.approx(((model(x)[0] - x) ** 2).mean().item(), rel=1e-6)
        model.eval()
        with torch.no_grad():  # ... and scoring sees the clean input
            np.testing.assert_array_equal(model(x)[0].numpy(), model.decode(model.encode(x)).numpy())


def test_dae_noise_is_coarse_and_of_the_configured_scale():
    noise = coarse_noise(torch.Size((200, 1, 64, 64)), 0.2, 8, torch.Generator().manual_seed(0))
    # drawn on an 8x8 grid and upsampled: neighbouring pixels are nearly equal
    neighbours = np.corrcoef(noise[..., :-1].ravel().numpy(), noise[..., 1:].ravel().numpy())[0, 1]
    assert neighbours > 0.95
    # bilinear upsampling averages grid values, which shrinks the std below 0.2 but not below half
    assert 0.1 < noise.std().item() < 0.2
    assert abs(noise.mean().item()) < 0.01


def test_corruption_stream_is_seeded_and_apart_from_the_data_order():
    a, b = corruption_generator(0), corruption_generator(0)
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
    assert not torch.equal(torch.rand(5, generator=corruption_generator(0)),
                           torch.rand(5, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_short_training_on_digits_detects_other_digits(kind, digits32):
    # 32x32, d=16, seed 0. At 20 epochs AE, CeAE and DAE reach AUROC 1.0 and the VAE 0.97; MemAE, whose
    # decoder sees only mixtures of 25 memory items, is still at 0.79 and needs 40 (0.998).
    epochs = 40 if kind == "memae" else 20
    model, history = train_model(digits32, TrainConfig(latent_size=16, epochs=epochs, seed=0, device="cpu",
                                                       model=kind))
    assert model.kind == kind and all(np.isfinite(history))
    metrics = evaluate_model(model, digits32, pseudo_anomalies=False)
    assert metrics["auroc"] > 0.9
    if kind == "vae":
        assert metrics["kl_rate_val_normal"] > 0
    else:
        assert "kl_rate_val_normal" not in metrics


@pytest.fixture(scope="module")
def digits32():
    from entropy_ae.data import load_data

    return load_data("digits:0", image_size=32)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_checkpoint_round_trip_per_kind_and_kind_mismatch_is_refused(kind, tmp_path):
    data = make_tiny_data()
    options = {"vae": {"kl_weight": 0.01}, "memae": {"memory_size": 7}, "dae": {"noise_std": 0.3}}.get(kind, {})
    config = TrainConfig(latent_size=3, epochs=1, batch_size=16, seed=4, device="cpu", model=kind,
                         model_options=options)
    run_training(data, config, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / CONFIG).read_text())
    assert saved["model"]["kind"] == kind and saved["model"]["options"] == config.model_options
    assert "model" not in saved["train"] and "model_options" not in saved["train"]
    model, _ = load_model(tmp_path / "run", model=kind)
    assert type(model) is type(build_model(kind, 3, 16, options)) and model.options() == config.model_options
    again, _ = load_model(tmp_path / "run")
    x = torch.as_tensor(data.test)
    with torch.no_grad():
        np.testing.assert_array_equal(model(x)[0].numpy(), again(x)[0].numpy())
    other = "vae" if kind != "vae" else "ae"
    with pytest.raises(RunDirError, match=f"holds a '{kind}' model, not '{other}'"):
        load_model(tmp_path / "run", model=other)
    # a config.json edited to another kind no longer matches its weights
    saved["model"]["kind"], saved["model"]["options"] = other, {}
    (tmp_path / "run" / CONFIG).write_text(json.dumps(saved))
    with pytest.raises(RunDirError, match=f"weights of a '{kind}' model but .* says '{other}'"):
        load_model(tmp_path / "run")


def test_a_run_written_before_model_kinds_loads_as_the_plain_ae(tmp_path):
    run_training(make_tiny_data(), TrainConfig(latent_size=2, epochs=1, batch_size=16, device="cpu"),
                 tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / CONFIG).read_text())
    saved["model"] = {"latent_size": 2, "image_size": 16}
    (tmp_path / "run" / CONFIG).write_text(json.dumps(saved))
    model, config = load_model(tmp_path / "run", model="ae")
    assert type(model) is Autoencoder and config["model"]["kind"] == "ae"


@pytest.mark.parametrize("strategy", ["per_core", "stacked"])
def test_batched_training_of_mixed_kinds_equals_training_each_alone(strategy):
    from entropy_ae.training.batched import BatchedOptions, train_models_batched

    data = make_tiny_data()
    configs = [TrainConfig(latent_size=3, epochs=2, batch_size=16, seed=s, device="cpu", model=k)
               for k, s in (("ae", 0), ("vae", 1), ("memae", 0), ("ceae", 2), ("dae", 0), ("ae", 1))]
    torch.set_num_threads(1)
    trained = train_models_batched(data, configs, options=BatchedOptions(strategy=strategy, cpu_workers=2))
    for config, (model, history) in zip(configs, trained):
        alone, alone_history = train_model(data, config)
        assert model.kind == config.model
        if strategy == "per_core" or config.model != "ae":  # the reference loop itself: bit for bit
            assert history == alone_history
            for (name, a), b in zip(model.state_dict().items(), alone.state_dict().values()):
                assert torch.equal(a, b), name
        else:  # the stacked AE: equal to float tolerance (tests/test_batched.py has the exact cases)
            np.testing.assert_allclose(history, alone_history, rtol=1e-4)
