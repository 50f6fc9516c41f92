"""Training the autoencoder on normal images: the project's one reference loop.

The loop is deliberately plain so that other code (the batched trainer in
``entropy_ae.training.batched``) can reproduce it exactly:

* the whole training set is put on the device once as a tensor (no DataLoader:
  the images are small and already normalised, so per-item loading only costs);
* the data order comes from a CPU ``torch.Generator`` seeded with ``seed``, one
  ``randperm`` per epoch, split into batches of ``batch_size``;
* a final batch of a single image is skipped, because BatchNorm cannot compute
  a batch variance from one sample in training mode;
* Adam (no weight decay), MSE loss averaged over all pixels, as in the paper's
  code (Cai, Chen, Cheng, MICCAI 2024: Adam, lr 1e-3, batch 64); other model
  kinds minimise their own ``training_loss`` (:mod:`entropy_ae.model`), whose
  random corruption or sampling draws from a second CPU generator seeded from
  ``seed`` (:func:`corruption_generator`);
* on CPU the conv weights are channels-last while training (faster oneDNN
  kernels; same maths, other rounding); the returned model is contiguous.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data import AnomalyData
from ..evaluation import evaluate_model
from ..model import MAX_LATENT_SIZE, Autoencoder, build_model, check_model
from ..reproducibility import resolve_device, seed_everything
from ..runs import check_not_complete, save_run


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    Parameters
    ----------
    latent_size : int, default 16
        Dimension d of the code z, 1 to 1024.
    epochs : int, default 20
        Passes over the training set (the paper trains 250).
    batch_size : int, default 64
        Images per optimiser step, at least 2 (BatchNorm).
    lr : float, default 1e-3
        Adam learning rate.
    seed : int, default 0
        Seeds the weights' initialisation and the data order.
    device : str, default "auto"
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``.
    model : str, default "ae"
        The model kind, one of :data:`entropy_ae.model.MODEL_KINDS`.
    model_options : dict, default {}
        The kind's settings (e.g. ``{"kl_weight": 0.01}`` for ``vae``); unset ones take the
        kind's defaults, and the full settings are what ``config.json`` records.
    """

    latent_size: int = 16
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    model: str = "ae"
    model_options: dict = field(default_factory=dict)

    def __post_init__(self):
        if not _is_int(self.latent_size) or not 1 <= self.latent_size <= MAX_LATENT_SIZE:
            raise ValueError(f"latent_size must be an integer from 1 to {MAX_LATENT_SIZE}, got {self.latent_size!r}")
        if not _is_int(self.epochs) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not _is_int(self.batch_size) or self.batch_size < 2:
            raise ValueError(
                f"batch_size must be an integer >= 2 (BatchNorm needs two images), got {self.batch_size!r}"
            )
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (
            math.isfinite(self.lr) and self.lr > 0
        ):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        self.lr = float(self.lr)
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got {self.device!r}")
        if not isinstance(self.model_options, dict):
            raise ValueError(f"model_options must be a dict of settings, got {self.model_options!r}")
        self.model_options = check_model(self.model, self.model_options)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a dict, refusing unknown keys (a typo would otherwise be ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**values)


def check_train_images(data: AnomalyData) -> None:
    """Raise ``ValueError`` unless ``data.train`` is ``(n >= 2, 1, s, s)``."""
    train = data.train
    if getattr(train, "ndim", None) != 4 or train.shape[1] != 1 or train.shape[2] != train.shape[3]:
        raise ValueError(
            f"data.train must have shape (n, 1, s, s), got {getattr(train, 'shape', type(train).__name__)}"
        )
    if train.shape[0] < 2:
        raise ValueError(f"need at least 2 training images (BatchNorm), got {train.shape[0]}")


# Seeding and building a model go through torch's global RNG: two threads doing it
# at once would interleave their draws (see entropy_ae.training.batched's per-core path).
_INIT_LOCK = threading.Lock()


def initial_model(config: TrainConfig, image_size: int) -> Autoencoder:
    """The untrained model of ``config``: seed everything, then build it on the CPU.

    Thread-safe. Every trainer starts from this, so a model trained by any of
    them starts from the same weights for the same seed.
    """
    with _INIT_LOCK:
        seed_everything(config.seed)
        return build_model(config.model, config.latent_size, image_size, config.model_options)


def corruption_generator(seed: int) -> torch.Generator:
    """The CPU generator of a run's corruptions and samples, seeded from ``seed``.

    Its own stream (``SeedSequence([seed, 1])``), not the data order's, so adding a kind's
    randomness never changes which batches a seed draws.
    """
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]))


def training_memory_format(device: torch.device) -> torch.memory_format:
    """Memory format of the conv weights during training on ``device``.

    Channels-last on CPU: oneDNN's channels-last kernels trained this AE 1.16x
    (1 thread) and 1.17x (2 threads) faster than contiguous ones
    (``benchmarks/training.py --memory-format``, README). CUDA keeps the contiguous format until measured there.
    The images have one channel, so their layout is the same in both formats.
    """
    return torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format


def diverged_error(what: str, epoch: int, lr: float) -> FloatingPointError:
    """The error of a diverged training: ``what`` went non-finite at ``epoch`` (1-based)."""
    return FloatingPointError(
        f"training diverged: {what} at epoch {epoch}; try a lower lr (now {lr}) or check the input images for NaN/inf"
    )


def check_finite_weights(model: torch.nn.Module, epoch: int, lr: float) -> None:
    """Raise :func:`diverged_error` unless every parameter and floating buffer of ``model`` is finite.

    The loss of an epoch is computed before each step, so the last optimiser step
    can turn the weights (or BatchNorm's running statistics) NaN while every
    recorded loss is finite; this catches that before the model is scored or saved.
    One device sync per call.
    """
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if not torch.stack([torch.isfinite(t).all() for t in tensors]).all().item():
        bad = next(name for name, t in (*model.named_parameters(), *model.named_buffers())
                   if t.is_floating_point() and not torch.isfinite(t).all())
        raise diverged_error(f"the weights became NaN or infinite ({bad})", epoch, lr)


def progress_enabled(progress: bool | None) -> bool:
    """Whether to draw a progress bar; ``None`` = only for a person at a terminal, never in logs."""
    if progress is None:
        return sys.stderr.isatty()
    return bool(progress)


def train_model(
    data: AnomalyData, config: TrainConfig, progress: bool | None = None
) -> tuple[Autoencoder, list[float]]:
    """Train the config's model (the paper's autoencoder by default) on ``data.train`` with the reference loop.

    Parameters
    ----------
    data : AnomalyData
        Only ``data.train`` (normal images in [-1, 1], shape ``(n, 1, s, s)``) is used.
    config : TrainConfig
        Hyper-parameters, seed and device.
    progress : bool or None
        Show a tqdm bar over epochs; ``None`` shows it only when stderr is a terminal.

    Returns
    -------
    model : Autoencoder
        The config's model kind, in eval mode, on the config's device.
    loss_history : list of float
        Per epoch, the mean training loss over the images used that epoch (each
        batch's loss weighted by its number of images): the MSE for ``ae``, the
        kind's whole ``training_loss`` otherwise.

    Raises
    ------
    FloatingPointError
        When the loss becomes NaN or infinite, or the trained weights (or BatchNorm
        statistics) do (diverged; lower ``lr``).
    """
    check_train_images(data)
    device = resolve_device(config.device)
    model = initial_model(config, data.image_size).to(device)
    model.to(memory_format=training_memory_format(device)).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)

    x_train = torch.as_tensor(data.train, dtype=torch.float32, device=device)
    n = x_train.shape[0]
    generator = torch.Generator().manual_seed(config.seed)
    corruption = corruption_generator(config.seed)
    history: list[float] = []
    bar = tqdm(range(config.epochs), desc="training", unit="epoch", disable=not progress_enabled(progress))
    for epoch in bar:
        perm = torch.randperm(n, generator=generator)
        # Summed on the device and read once per epoch: a .item() per step would sync a GPU every batch.
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for idx in perm.split(config.batch_size):
            if len(idx) < 2:
                continue
            x = x_train[idx.to(device)]
            loss, _terms = model.training_loss(x, corruption)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            loss_sum += loss.detach() * len(idx)
            seen += len(idx)
        epoch_loss = loss_sum.item() / seen
        if not math.isfinite(epoch_loss):
            raise diverged_error(f"loss is {epoch_loss}", epoch + 1, config.lr)
        history.append(epoch_loss)
        bar.set_postfix(loss=f"{epoch_loss:.5f}")
    bar.close()
    # A non-finite weight shows in the next epoch's loss, except after the last epoch.
    check_finite_weights(model, config.epochs, config.lr)
    # Hand back ordinary contiguous weights (safetensors and other code expect them).
    model.to(memory_format=torch.contiguous_format).eval()
    return model, history


def run_training(
    data: AnomalyData,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    progress: bool | None = None,
    *,
    target_fpr: float = 0.05,
    extra: dict | None = None,
    overwrite: bool = False,
) -> dict:
    """Train, evaluate and save one run; the one entry point sweeps call.

    Refuses (before training) a ``run_dir`` that already holds a complete run,
    unless ``overwrite``. Returns the metrics written to ``metrics.json``.
    """
    run_dir = Path(run_dir)
    check_not_complete(run_dir, overwrite)
    start = time.perf_counter()
    model, history = train_model(data, config, progress=progress)
    train_seconds = time.perf_counter() - start
    metrics = evaluate_model(model, data, target_fpr=target_fpr)
    return save_run(
        run_dir, model, config, data, metrics, history, extra, train_seconds=train_seconds, overwrite=overwrite
    )
