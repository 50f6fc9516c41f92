"""Self-adaptive latent capacity: the nested (ordered) code and the L0-gated code, and choosing a truncation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from entropy_ae.model import Autoencoder, GatedAutoencoder, NestedAutoencoder, build_model, truncations
from entropy_ae.model.adaptive import GATE_BETA, GATE_GAMMA, GATE_ZETA
from entropy_ae.runs import load_metrics, load_model
from entropy_ae.training import TrainConfig, train_model

from .conftest import make_tiny_data


def _images(n=12, size=16, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).uniform(-1, 1, (n, 1, size, size)), dtype=torch.float32)


def test_truncations_are_powers_of_two_then_the_size():
    assert truncations(1) == [1]
    assert truncations(8) == [1, 2, 4, 8]
    assert truncations(12) == [1, 2, 4, 8, 12]


def test_a_truncation_is_the_plain_ae_with_its_extra_units_at_zero():
    torch.manual_seed(0)
    nested = NestedAutoencoder(8, 16)
    nested.train()
    nested(_images(40))  # move the BatchNorm statistics off their initial values
    nested.eval()
    nested.truncation.fill_(2)
    plain = Autoencoder(8, 16)
    state = {k: v for k, v in nested.state_dict().items() if k != "truncation"}
    plain.load_state_dict(state)
    plain.eval()
    x = _images()
    with torch.no_grad():
        reconstruction, code = nested(x)
        full = plain.encode(x)
        assert torch.equal(code, full[:, :2])
        padded = torch.cat([full[:, :2], torch.zeros(len(x), 6)], dim=1)
        assert torch.equal(reconstruction, plain.decode(padded))
        assert nested.effective_latent_size() == 2


def test_nested_training_truncates_each_image_at_a_drawn_candidate():
    torch.manual_seed(1)
    model = NestedAutoencoder(8, 16).train()
    x = _images()
    loss, _ = model.training_loss(x, torch.Generator().manual_seed(3))
    keep = torch.tensor([1, 2, 4, 8])[torch.randint(4, (len(x),), generator=torch.Generator().manual_seed(3))]
    z = model.encoder_fc(model.encoder_conv(x)) * (torch.arange(8) < keep[:, None])
    assert loss.item() == pytest.approx(((model.decode(z) - x) ** 2).mean().item(), rel=1e-6)


def test_set_truncation_recomputes_only_the_decoders_batchnorm_statistics():
    torch.manual_seed(2)
    model = NestedAutoencoder(8, 16)
    images = _images(64).numpy()
    encoder_stats = model.encoder_fc[2].running_mean.clone()
    model.set_truncation(4, images, batch_size=64)  # one batch: the cumulative mean is that batch's
    assert torch.equal(model.encoder_fc[2].running_mean, encoder_stats)
    with torch.no_grad():
        codes = model.encode(torch.as_tensor(images))
        padded = torch.cat([codes, torch.zeros(64, 4)], dim=1)
        expected = model.decoder_fc[0](padded).mean(dim=0)
    np.testing.assert_allclose(model.decoder_fc[1].running_mean.numpy(), expected.numpy(), rtol=1e-4, atol=1e-6)
    assert int(model.truncation) == 4 and not model.training
    with pytest.raises(ValueError, match=r"one of \[1, 2, 4, 8\]"):
        model.set_truncation(3, images)


def test_gate_penalty_terms_by_hand():
    model = GatedAutoencoder(3, 16, gate_share=0.5)
    with torch.no_grad():
        model.gate_logits.copy_(torch.tensor([-10.0, 0.0, 10.0]) / model.log_alpha.div(model.gate_logits)[0])
    # P(open) = sigmoid(log_alpha - beta log(-gamma / zeta)) (Louizos et al., eq. 12)
    expected = [1 / (1 + math.exp(-(a - GATE_BETA * math.log(-GATE_GAMMA / GATE_ZETA)))) for a in (-10, 0, 10)]
    np.testing.assert_allclose(model.open_probability().detach().numpy(), expected, rtol=1e-6)
    # test-time gates: clamp(sigmoid(a) (zeta - gamma) + gamma, 0, 1): closed, 0.5, open
    np.testing.assert_allclose(model.gates().detach().numpy(), [0.0, 0.5, 1.0], atol=1e-4)
    assert model.active_units().tolist() == [1, 2] and model.effective_latent_size() == 2
    x = _images()
    loss, terms = model.training_loss(x, torch.Generator().manual_seed(0))
    penalty = 0.5 * x.var().item() * sum(expected)
    assert loss.item() == pytest.approx(terms["mse"].item() + penalty, rel=1e-5)
    with torch.no_grad():
        assert model.encode(x).shape == (len(x), 2)


def test_gates_close_the_units_that_data_with_k_factors_do_not_need():
    # Images of exactly k = 2 factors and nothing else: a code needs about 2 units, the other 14 close
    # once each unit must explain 3 % of the pixel variance (the default 1 % also keeps weaker directions).
    from entropy_ae.data import load_data

    data = load_data("synthetic[k=2,n_train=640,n_val=40,n_test=40]", image_size=16)
    torch.set_num_threads(1)
    model, _ = train_model(data, TrainConfig(latent_size=16, epochs=40, seed=0, device="cpu", model="gated",
                                             model_options={"gate_share": 0.03}))
    assert 2 <= model.effective_latent_size() <= 3


@pytest.mark.parametrize("kind", ["nested", "gated"])
def test_adaptive_run_round_trip(kind, tmp_path):
    from analysis.adaptive import run_adaptive_training

    data = make_tiny_data(n_val=20)
    config = TrainConfig(latent_size=8, epochs=1, batch_size=16, seed=0, device="cpu", model=kind)
    metrics = run_adaptive_training(data, config, tmp_path / "run", progress=False)
    saved = load_metrics(tmp_path / "run")
    assert saved["effective_latent_size"] == metrics["effective_latent_size"]
    assert math.isfinite(saved["h_z"]) and saved["id_levina_bickel_z"] > 0 and "copy_ratio" in saved
    model, _ = load_model(tmp_path / "run", model=kind)
    assert model.effective_latent_size() == saved["effective_latent_size"]
    if kind == "nested":
        capacity = saved["capacity"]
        assert capacity["truncation"] == saved["effective_latent_size"] == int(model.truncation)
        assert sorted(capacity["by_truncation"]["rec_error_val_normal"]) == ["1", "2", "4", "8"]  # JSON keys
        assert capacity["criterion"] == "two_sided"
    x = torch.as_tensor(data.test)
    with torch.no_grad():
        assert model(x)[1].shape == (len(x), saved["effective_latent_size"])
    assert build_model(kind, 8, 16).kind == kind
