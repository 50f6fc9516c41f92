"""Reference training loop, determinism, and the evaluation metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from entropy_ae.evaluation import anomaly_maps, best_dice, evaluate_model, image_scores, threshold_at_fpr
from entropy_ae.model import Autoencoder
from entropy_ae.reproducibility import seed_everything
from entropy_ae.training import loop as training
from entropy_ae.training import TrainConfig, train_model

from .conftest import make_tiny_data


# ------------------------------------------------------------------------------------------ TrainConfig

@pytest.mark.parametrize("kwargs", [
    {"latent_size": 0}, {"latent_size": 1025}, {"epochs": 0}, {"batch_size": 1}, {"lr": 0.0},
    {"lr": float("nan")}, {"seed": -1}, {"seed": True}, {"device": 0},
])
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_config_round_trips_and_refuses_unknown_fields():
    config = TrainConfig(latent_size=8, epochs=3, seed=5)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="latent_dim"):
        TrainConfig.from_dict({"latent_dim": 8})


def test_bad_device_is_refused(tiny_data):
    with pytest.raises(ValueError, match="device"):
        train_model(tiny_data, TrainConfig(epochs=1, device="tpu"))


# --------------------------------------------------------------------------------------- training loop

def reference_loop(data, config):
    """The reference loop as the README describes it, re-typed independently of entropy_ae.training."""
    seed_everything(config.seed)
    # Channels-last conv weights on CPU, as the README says (same maths, other kernels).
    model = Autoencoder(config.latent_size, data.image_size).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), config.lr)
    x_train = torch.as_tensor(data.train)
    gen = torch.Generator().manual_seed(config.seed)
    for _ in range(config.epochs):
        perm = torch.randperm(len(x_train), generator=gen)
        for idx in perm.split(config.batch_size):
            if len(idx) == 1:
                continue
            x = x_train[idx]
            x_hat, _ = model(x)
            loss = F.mse_loss(x_hat, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def assert_same_weights(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_matches_the_contract_loop_and_skips_a_final_single_image():
    # 33 images in batches of 8: the fifth batch has one image and must be skipped, not crash BatchNorm.
    data = make_tiny_data(n_train=33)
    config = TrainConfig(latent_size=3, epochs=2, batch_size=8, seed=7, device="cpu")
    model, history = train_model(data, config, progress=False)
    assert not model.training
    assert len(history) == 2 and all(np.isfinite(history))
    assert_same_weights(model, reference_loop(data, config))
    # The returned model is an ordinary contiguous one (safetensors needs contiguous tensors).
    assert all(p.is_contiguous() for p in model.parameters())


def test_same_seed_same_weights_and_metrics(tiny_data):
    config = TrainConfig(latent_size=4, epochs=2, batch_size=16, seed=3, device="cpu")
    model_a, hist_a = train_model(tiny_data, config, progress=False)
    model_b, hist_b = train_model(tiny_data, config, progress=False)
    assert hist_a == hist_b
    assert_same_weights(model_a, model_b)
    assert evaluate_model(model_a, tiny_data) == evaluate_model(model_b, tiny_data)

    model_c, _ = train_model(tiny_data, TrainConfig(latent_size=4, epochs=2, batch_size=16, seed=4, device="cpu"))
    assert not torch.equal(model_a.encoder_fc[4].weight, model_c.encoder_fc[4].weight)


def test_loss_decreases(tiny_data):
    # Random-noise images: the AE must at least learn their mean level, so the MSE falls well below epoch 1's.
    _, history = train_model(tiny_data, TrainConfig(latent_size=4, epochs=6, batch_size=8, device="cpu"))
    assert history[-1] < 0.5 * history[0]


def test_short_training_on_digits_detects_other_digits():
    # The acceptance check at the paper's setting: 64x64 (the 8x8 digits upsampled), d=16.
    # 15 epochs on the 107 normal training images take ~5 s on one idle core and reach AUROC >= 0.999
    # for seeds 0-2 (10 epochs give only 0.94-0.96, too thin a margin for a threshold of 0.9).
    from entropy_ae.data import load_data

    data = load_data("digits:0", image_size=64)
    model, history = train_model(data, TrainConfig(latent_size=16, epochs=15, seed=0, device="cpu"))
    metrics = evaluate_model(model, data)
    assert metrics["auroc"] > 0.9
    assert metrics["rec_error_test_abnormal"] > metrics["rec_error_test_normal"]
    assert metrics["pixel_ap"] is None  # digits have no masks


def test_divergence_is_reported(tiny_data):
    tiny_data.train[0, 0, 0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="diverged"):
        train_model(tiny_data, TrainConfig(latent_size=2, epochs=1, device="cpu"))


def test_divergence_in_the_last_step_is_reported(tiny_data, monkeypatch):
    # One epoch of 2 steps at a huge lr: the 2nd step's loss is finite but its update makes the
    # weights NaN, which no later loss can reveal.
    config = TrainConfig(latent_size=2, epochs=1, batch_size=20, lr=1e6, device="cpu")
    with monkeypatch.context() as m:
        m.setattr(training, "check_finite_weights", lambda *args: None)
        model, history = train_model(tiny_data, config)
    assert np.isfinite(history).all()
    assert not all(torch.isfinite(p).all() for p in model.parameters())  # the case this test is about
    with pytest.raises(FloatingPointError, match=r"training diverged: the weights became NaN .* at epoch 1; "
                                                 r"try a lower lr \(now 1000000.0\)"):
        train_model(tiny_data, config)


def test_non_finite_batchnorm_statistics_are_divergence():
    model = Autoencoder(latent_size=2, image_size=16)
    training.check_finite_weights(model, epoch=3, lr=1e-3)  # a fresh model passes
    model.decoder_conv[1].running_var[0] = float("inf")
    with pytest.raises(FloatingPointError, match=r"decoder_conv\.1\.running_var\) at epoch 3"):
        training.check_finite_weights(model, epoch=3, lr=1e-3)


def test_evaluation_refuses_non_finite_reconstruction_errors(tiny_data):
    model = Autoencoder(latent_size=2, image_size=16)
    with torch.no_grad():
        model.encoder_conv[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="reconstruction errors of 20 of 20 test images are NaN"):
        evaluate_model(model, tiny_data)


def test_progress_bar_auto_is_quiet_off_terminal(tiny_data, capsys):
    config = TrainConfig(latent_size=2, epochs=1, device="cpu")
    train_model(tiny_data, config, progress=None)  # pytest's captured stderr is not a terminal
    assert capsys.readouterr().err == ""
    train_model(tiny_data, config, progress=True)
    assert "epoch" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ evaluation

class ConstantModel(nn.Module):
    """Reconstructs every image as a constant grey: errors are known in closed form."""

    def __init__(self, level: float = -0.75, latent_size: int = 2):
        super().__init__()
        self.level = level
        self.latent_size = latent_size
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode(self, x):
        return x.flatten(1)[:, : self.latent_size]

    def forward(self, x):
        return torch.full_like(x, self.level), self.encode(x)


def test_metrics_with_masks_on_a_known_model(tiny_data):
    # Normal pixels lie in [-1, -0.5] -> error <= 0.0625; lesion pixels are 1.0 -> error 1.75^2 = 3.06.
    # So every ranking is perfect: AUROC = AP = pixel AP = 1, sensitivity = 1.
    model = ConstantModel()
    metrics = evaluate_model(model, tiny_data, target_fpr=0.1)
    for key in ("auroc", "ap", "pixel_ap", "sensitivity"):
        assert metrics[key] == pytest.approx(1.0), key
    # Best Dice only tries thresholds at every 25th of the 5120 sorted pixels (200 quantiles): the
    # 160 lesion pixels take ranks 4960.., so the best cut is at rank 4950 -> 169 predicted, Dice 320/329.
    assert tiny_data.test_masks.sum() == 160
    assert metrics["best_dice"] == pytest.approx(320 / 329)
    assert metrics["best_dice_is_oracle"] is True and "oracle" in metrics["best_dice_note"]
    labels = tiny_data.test_labels
    err = lambda images: float(np.mean((images.astype(np.float64) + 0.75) ** 2))  # noqa: E731
    assert metrics["rec_error_train_normal"] == pytest.approx(err(tiny_data.train), rel=1e-5)
    assert metrics["rec_error_test_normal"] == pytest.approx(err(tiny_data.test[labels == 0]), rel=1e-5)
    assert metrics["rec_error_test_abnormal"] == pytest.approx(err(tiny_data.test[labels == 1]), rel=1e-5)
    assert metrics["val_fpr"] <= 0.1
    assert metrics["n_test_abnormal"] == 10 and metrics["n_val"] == 10
    import json
    json.dumps(metrics)  # JSON-serialisable


def test_metrics_without_masks_skip_pixel_metrics():
    data = make_tiny_data(masks=False)
    metrics = evaluate_model(ConstantModel(), data)
    assert metrics["pixel_ap"] is None and metrics["best_dice"] is None
    assert "best_dice_is_oracle" not in metrics
    assert metrics["auroc"] == pytest.approx(1.0)


def test_one_class_test_set_is_refused(tiny_data):
    tiny_data.test_labels[:] = 0
    with pytest.raises(ValueError, match="both normal"):
        evaluate_model(ConstantModel(), tiny_data)


def test_scoring_uses_eval_mode_and_restores_it(tiny_data):
    model = Autoencoder(latent_size=2, image_size=16).train()
    maps = anomaly_maps(model, tiny_data.test[:5])
    assert model.training  # restored
    with torch.no_grad():
        expected = (model.eval()(torch.as_tensor(tiny_data.test[:5]))[0] - torch.as_tensor(tiny_data.test[:5])) ** 2
    np.testing.assert_allclose(maps, expected.numpy(), rtol=1e-5, atol=1e-6)
    # A batch of one would fail in train mode (BatchNorm1d); eval mode scores it.
    scores = image_scores(model.train(), tiny_data.test[:1], batch_size=1)
    np.testing.assert_allclose(scores, maps[:1].mean(axis=(1, 2, 3)), rtol=1e-5)


def test_threshold_at_fpr():
    scores = np.arange(100.0)
    t = threshold_at_fpr(scores, 0.05)
    assert t == 95.0 and np.mean(scores > t) <= 0.05


def test_best_dice_on_hand_made_maps():
    masks = np.zeros((2, 1, 10, 10), dtype=bool)
    masks[0, 0, :3, :3] = True                       # 9 true pixels of 200
    maps = np.where(masks, 2.0, 0.0).astype(np.float32)
    maps[1, 0, 0, :3] = 1.0                          # 3 false alarms, weaker than every lesion pixel
    dice, threshold = best_dice(maps, masks)
    assert dice == 1.0 and 1.0 <= threshold < 2.0
    maps[1, 0, 0, :3] = 3.0                          # now stronger: the best is 2*9 / (12 + 9)
    assert best_dice(maps, masks)[0] == pytest.approx(18 / 21)
