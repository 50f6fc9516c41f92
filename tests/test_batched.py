"""Batched training (issue 5): every model trained in a group equals the model trained alone.

Two strategies. ``per_core`` (the CPU default) runs the reference loop itself,
one model per worker thread: bit-identical by construction, tested here with
two workers so models really train at the same time. ``stacked`` (the CUDA
default) is exercised on CPU by most tests below.

Tolerances. On CPU with the stacked strategy's default options the batched path runs, for every
model, the same kernels on the same shapes as ``train_model`` (the 1-channel
first/last convolutions and the latent-size Linears run per model, everything
else is a grouped/batched kernel that reduces each model's data in the same
order), so the tests demand bit-identical weights, BatchNorm buffers and loss
histories (``torch.equal``, ``==``). Where a test checks the padded-and-masked
latent path at a latent size below ~16, BLAS picks a different kernel for the
narrow output and rounds differently (float32, ~1e-7 relative per operation);
Adam divides every gradient element by its own running magnitude, so rounding
differences in near-zero gradient elements (e.g. Linear biases in front of
BatchNorm, whose true gradient is 0) grow into lr-sized steps over training.
Those tests therefore compare only what rounding alone bounds: one forward pass
(the first step's loss, relative 1e-6 = ~10 float32 roundings deep) and the
exact zeros of the padded weights.
"""

from __future__ import annotations

import json
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from entropy_ae.training import batched, planning
from entropy_ae.training.batched import (
    BatchedOptions,
    StackedAutoencoder,
    estimate_group_bytes,
    plan_groups,
    run_trainings_batched,
    train_models_batched,
)
from entropy_ae.training import run_training
from entropy_ae.model import Autoencoder, count_parameters
from entropy_ae.reproducibility import seed_everything
from entropy_ae.training import TrainConfig, train_model

from .conftest import make_tiny_data

# 21 images in batches of 4: five steps per epoch and a final batch of one, which must be skipped.
N_TRAIN = 21


def _config(latent_size, seed, epochs=2, batch_size=4, **kw):
    return TrainConfig(latent_size=latent_size, seed=seed, epochs=epochs, batch_size=batch_size, device="cpu", **kw)


def _assert_same_model(a: Autoencoder, b: Autoencoder) -> None:
    assert a.latent_size == b.latent_size and a.image_size == b.image_size
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), f"{key} differs"
    assert not a.training and not b.training


@pytest.fixture(scope="module")
def data():
    return make_tiny_data(n_train=N_TRAIN)


@pytest.fixture(scope="module")
def alone(data):
    """train_model results, memoised per config."""
    cache = {}

    def get(config):
        key = json.dumps(config.to_dict(), sort_keys=True)
        if key not in cache:
            cache[key] = train_model(data, config, progress=False)
        return cache[key]

    return get


MIXED = [(2, 0), (16, 1), (5, 0), (16, 0)]  # two latent sizes share seed 0, one size has two seeds
STACKED = BatchedOptions(strategy="stacked")


def test_batched_equals_alone_bit_for_bit(data, alone):
    configs = [_config(d, s) for d, s in MIXED]
    results = train_models_batched(data, configs, progress=False, options=STACKED)
    assert len(results) == len(configs)
    for config, (model, history) in zip(configs, results):
        ref_model, ref_history = alone(config)
        _assert_same_model(model, ref_model)  # weights and BN running stats / counters
        assert history == ref_history
        assert len(history) == config.epochs


def test_results_do_not_depend_on_group_size(data, alone):
    configs = [_config(d, s) for d, s in MIXED]
    for cap in (1, 3):
        for config, (model, history) in zip(configs, train_models_batched(data, configs, max_models_per_group=cap,
                                                                      options=STACKED)):
            ref_model, ref_history = alone(config)
            _assert_same_model(model, ref_model)
            assert history == ref_history


def test_masked_model_trains_exactly_like_small_model(data, alone):
    # Padded-and-masked latent path (the GPU default): d=16 padded to 32.
    configs = [_config(16, 0), _config(32, 1)]
    results = train_models_batched(data, configs, options=BatchedOptions(strategy="stacked", ragged_latent=False))
    for config, (model, history) in zip(configs, results):
        ref_model, ref_history = alone(config)
        _assert_same_model(model, ref_model)
        assert history == ref_history


def test_masked_narrow_latent_first_step_matches(data):
    # d=2 padded to 16: one step, so only one forward's rounding separates the losses.
    one_step = make_tiny_data(n_train=4)
    configs = [_config(2, 0, epochs=1), _config(16, 1, epochs=1)]
    results = train_models_batched(one_step, configs, options=BatchedOptions(strategy="stacked", ragged_latent=False))
    for config, (_model, history) in zip(configs, results):
        _ref, ref_history = train_model(one_step, config)
        assert history == pytest.approx(ref_history, rel=1e-6)


@pytest.mark.parametrize(
    "options, rel",
    [
        # The CUDA default (grouped edge convs, padded+masked latents): rounding of one forward only.
        (BatchedOptions(strategy="stacked", split_edge_convs=False, ragged_latent=False), 1e-6),
        (BatchedOptions(strategy="stacked", channels_last=False), 1e-6),
        # bf16 keeps 8 significant bits (relative rounding 2^-9 = 2e-3 per operation); a few
        # dozen operations deep, 2e-2 bounds the first loss.
        (BatchedOptions(strategy="stacked", autocast_bf16=True), 2e-2),
    ],
)
def test_gpu_switches_run_on_cpu_and_keep_the_first_loss(options, rel):
    one_step = make_tiny_data(n_train=4)
    configs = [_config(2, 0, epochs=1), _config(16, 1, epochs=1)]
    for config, (model, history) in zip(configs, train_models_batched(one_step, configs, options=options)):
        _ref, ref_history = train_model(one_step, config)
        assert history == pytest.approx(ref_history, rel=rel)
        assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("ragged", [False, True])
def test_padded_latent_units_stay_exactly_zero(ragged):
    seed_everything(0)
    models = [Autoencoder(2, 16), Autoencoder(16, 16), Autoencoder(5, 16)]
    stacked = StackedAutoencoder.from_models(models).split_edge_convs(True).ragged_latent(ragged)
    optimiser = torch.optim.Adam(stacked.parameters(), lr=1e-3)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    for _ in range(3):
        x_hat, z = stacked(x)
        optimiser.zero_grad()
        (x_hat - x).pow(2).mean(dim=(0, 2, 3)).sum().backward()
        enc, dec = stacked.encoder_fc[-1], stacked.decoder_fc[0]
        for i, d in enumerate((2, 16, 5)):
            assert torch.all(z[i, :, d:] == 0)
            assert torch.all(enc.weight.grad[i, d:] == 0) and torch.all(enc.bias.grad[i, d:] == 0)
            assert torch.all(dec.weight.grad[i, :, d:] == 0)
        optimiser.step()
    for i, d in enumerate((2, 16, 5)):
        assert torch.all(enc.weight[i, d:] == 0) and torch.all(enc.bias[i, d:] == 0)
        assert torch.all(dec.weight[i, :, d:] == 0)
        assert enc.weight[i, :d].abs().sum() > 0  # the used part did train


def test_stack_unstack_round_trip():
    seed_everything(3)
    models = [Autoencoder(d, 32) for d in (1, 7, 4)]
    for m in models:  # non-trivial buffers too
        for name, buf in m.named_buffers():
            buf.copy_(torch.rand_like(buf.float()).to(buf.dtype) if buf.is_floating_point() else buf + 5)
    back = StackedAutoencoder.from_models(models).unstack()
    for a, b in zip(models, back):
        b.train(a.training)
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_batchnorm_statistics_are_per_model():
    seed_everything(0)
    models = [Autoencoder(4, 16), Autoencoder(4, 16)]
    stacked = StackedAutoencoder.from_models(models).split_edge_convs(True)
    x = torch.rand(6, 2, 16, 16) * 2 - 1
    x[:, 1] = x[:, 1] * 0.1 + 0.8  # model 1 sees very different images
    stacked(x)
    for i, model in enumerate(models):
        model.train()
        model(x[:, i : i + 1].contiguous())
    back = stacked.unstack()
    for key in ("encoder_conv.1.running_mean", "encoder_conv.1.running_var", "encoder_fc.2.running_mean",
                "decoder_fc.1.running_var", "decoder_conv.7.running_mean"):
        for i in range(2):
            assert torch.equal(back[i].state_dict()[key], models[i].state_dict()[key]), key
        assert not torch.allclose(back[0].state_dict()[key], back[1].state_dict()[key])
    assert int(back[0].state_dict()["encoder_conv.1.num_batches_tracked"]) == 1


def test_plan_groups_caps_sorts_and_separates():
    configs = [_config(d, s) for d, s in [(1, 0), (128, 0), (16, 0), (64, 1), (2, 1), (8, 2), (32, 2)]]
    configs.append(_config(4, 0, epochs=3))  # other epochs: never with the rest
    devices = [torch.device("cpu")] * len(configs)
    groups = plan_groups(configs, devices, 3)
    assert sorted(i for g in groups for i in g) == list(range(len(configs)))
    assert [len(g) for g in groups] == [3, 3, 1, 1]
    assert [[configs[i].latent_size for i in g] for g in groups] == [[128, 64, 32], [16, 8, 2], [1], [4]]
    assert plan_groups(configs, devices, 100)[0] == [1, 3, 6, 2, 5, 4, 0]
    # per-config caps: a group takes the cap of its largest-latent member
    caps = [5, 1, 5, 5, 5, 5, 5, 5]
    assert [len(g) for g in plan_groups(configs, devices, caps)] == [1, 5, 1, 1]
    with pytest.raises(ValueError, match="max_models_per_group"):
        plan_groups(configs, devices, 0)


def test_memory_estimate_is_linear_in_models():
    one = estimate_group_bytes(1, 64, 64, 16)
    assert estimate_group_bytes(24, 64, 64, 16) == pytest.approx(24 * one, rel=1e-9, abs=24)
    with torch.device("meta"):
        params = count_parameters(Autoencoder(16, 64))
    assert params == 2_351_185
    state = 16 * params  # param, grad, Adam m and v in float32
    activations = one - state
    # every 64x64 image keeps at least its 16x32x32 first-layer output per model
    assert activations > 64 * 16 * 32 * 32 * 4
    assert estimate_group_bytes(1, 128, 64, 16) - state == pytest.approx(2 * activations, rel=1e-6)


def test_automatic_cap_fits_the_memory(data, monkeypatch):
    per_model = estimate_group_bytes(1, 4, 16, 16)
    monkeypatch.setattr(planning, "available_memory_bytes", lambda device: int(2.5 * per_model) + data.train.nbytes)
    sizes = []
    real = batched._train_group

    def spy(x_train, configs, *args):
        sizes.append(len(configs))
        return real(x_train, configs, *args)

    monkeypatch.setattr(batched, "_train_group", spy)
    configs = [_config(16, s, epochs=1) for s in range(5)]
    train_models_batched(data, configs, options=STACKED)
    assert sizes == [2, 2, 1]


def test_bad_arguments_are_refused(data, tmp_path):
    configs = [_config(4, 0)]
    with pytest.raises(ValueError, match="max_models_per_group"):
        train_models_batched(data, configs, max_models_per_group=0)
    with pytest.raises(ValueError, match="at least one"):
        train_models_batched(data, [])
    with pytest.raises(ValueError, match="CUDA"):
        train_models_batched(data, configs, options=BatchedOptions(cuda_graphs=True))
    with pytest.raises(ValueError, match="run_dirs"):
        run_trainings_batched(data, configs, [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="strategy"):
        train_models_batched(data, configs, options=BatchedOptions(strategy="vmap"))
    with pytest.raises(ValueError, match="cpu_workers"):
        train_models_batched(data, configs, options=BatchedOptions(cpu_workers=0))
    with pytest.raises(ValueError, match="per_core.*CPU"):
        batched._strategy(BatchedOptions(strategy="per_core"), torch.device("cuda"))
    assert batched._strategy(BatchedOptions(), torch.device("cuda")) == "stacked"
    assert batched._strategy(BatchedOptions(), torch.device("cpu")) == "per_core"


# --------------------------------------------------------------------------- per-core strategy


def test_per_core_equals_alone_bit_for_bit_with_two_workers(data, alone):
    # Two models train at the same time; the initialisation (global RNG) must not interleave.
    configs = [_config(d, s) for d, s in MIXED]
    threads = torch.get_num_threads()
    results = train_models_batched(data, configs, options=BatchedOptions(strategy="per_core", cpu_workers=2))
    assert torch.get_num_threads() == threads  # restored
    for config, (model, history) in zip(configs, results):
        ref_model, ref_history = alone(config)
        _assert_same_model(model, ref_model)
        assert history == ref_history


def test_per_core_failure_keeps_the_finished_models(tmp_path, monkeypatch):
    data = make_tiny_data(n_train=N_TRAIN)
    real = batched.train_model

    def flaky(data, config, progress=None):
        if config.latent_size == 3:
            raise FloatingPointError("training diverged (injected)")
        return real(data, config, progress=progress)

    monkeypatch.setattr(batched, "train_model", flaky)
    configs = [_config(3, 0), _config(8, 1), _config(4, 2)]
    run_dirs = [tmp_path / f"d{c.latent_size}" for c in configs]
    with pytest.raises(FloatingPointError, match="injected") as info:
        run_trainings_batched(data, configs, run_dirs, options=BatchedOptions(cpu_workers=2))
    if sys.version_info >= (3, 11):  # the failing model is named in a note
        assert "latent_size=3" in "".join(info.value.__notes__)
    assert not (run_dirs[0] / "metrics.json").exists()
    assert (run_dirs[1] / "metrics.json").exists() and (run_dirs[2] / "metrics.json").exists()


def test_per_core_stops_starting_models_when_the_caller_fails(tmp_path, monkeypatch):
    data = make_tiny_data(n_train=N_TRAIN)
    real, started = batched.train_model, []

    def counted(data, config, progress=None):
        started.append(config.latent_size)
        return real(data, config, progress=progress)

    def broken_save(*args, **kwargs):
        time.sleep(0.5)  # a slow caller: without the gate the worker would go on starting models meanwhile
        raise OSError("disk full (injected)")

    monkeypatch.setattr(batched, "train_model", counted)
    monkeypatch.setattr(batched, "save_run", broken_save)
    configs = [_config(d, 0, epochs=1) for d in (2, 3, 4, 5)]
    threads = torch.get_num_threads()
    with pytest.raises(OSError, match="disk full"):
        run_trainings_batched(data, configs, [tmp_path / str(c.latent_size) for c in configs],
                              options=BatchedOptions(cpu_workers=1))
    # One worker: the first model failed to save; at most one more was started (the gate of 2 x workers),
    # however slow the caller was.
    assert len(started) <= 2
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("strategy", ["per_core", "stacked"])
def test_run_trainings_batched_writes_the_same_run_dirs(tmp_path, strategy):
    data = make_tiny_data(n_train=N_TRAIN)
    configs = [_config(3, 0), _config(8, 1)]
    batched_dirs = [tmp_path / "batched" / f"d{c.latent_size}" for c in configs]
    metrics = run_trainings_batched(data, configs, batched_dirs, options=BatchedOptions(strategy=strategy))
    for config, bdir, bmetrics in zip(configs, batched_dirs, metrics):
        adir = tmp_path / "alone" / f"d{config.latent_size}"
        ametrics = run_training(data, config, adir)
        wa, wb = load_file(str(adir / "weights.safetensors")), load_file(str(bdir / "weights.safetensors"))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        assert (adir / "loss_history.csv").read_text() == (bdir / "loss_history.csv").read_text()
        ca, cb = (json.loads((d / "config.json").read_text()) for d in (adir, bdir))
        ca.pop("created"), cb.pop("created")
        assert ca == cb
        on_disk = json.loads((bdir / "metrics.json").read_text())
        assert on_disk == bmetrics
        assert on_disk["train_seconds"] > 0
        for m in (ametrics, bmetrics):
            m.pop("train_seconds")
        assert ametrics == bmetrics  # same weights, same evaluation: exactly equal
        assert sorted(p.name for p in adir.iterdir()) == sorted(p.name for p in bdir.iterdir())
    # A completed run is refused before anything is trained.
    with pytest.raises(FileExistsError):
        run_trainings_batched(data, configs, batched_dirs)


def test_stacked_divergence_in_the_last_step_names_the_model():
    # As train_model: a huge lr makes the last update NaN while every recorded loss is finite.
    data = make_tiny_data(n_train=8)
    configs = [_config(2, 0, epochs=1, batch_size=4, lr=1e6), _config(4, 1, epochs=1, batch_size=4, lr=1e6)]
    with pytest.raises(FloatingPointError, match=r"latent_size=2, seed=0: training diverged: the weights became NaN"):
        train_models_batched(data, configs, options=BatchedOptions(strategy="stacked"))
