"""Train a grid of autoencoders at once, with the results of training each alone.

A latent-size study trains the same small AE many times (say 8 latent sizes x 3
seeds). Run one after another, each training feeds a batch of 64 small images
through ~150 tiny kernels per step, so a GPU mostly waits for kernel launches.
Two strategies train a group of models together:

``stacked`` (the default on CUDA)
    The group becomes one :class:`~entropy_ae.training.stacked.StackedAutoencoder`
    trained in one loop: each model draws its own batches (its seed fixes its
    data order), gathered as one ``(batch, M, s, s)`` tensor; the loss is the
    sum of the per-model MSEs, so each model's gradient is exactly its own, and
    Adam (element-wise) steps each model as it would alone.
``per_core`` (the default on CPU)
    The group's models train at the same time, one per worker thread, each
    running :func:`~entropy_ae.training.loop.train_model` on a single intra-op
    thread. A CPU is not launch-bound and oneDNN's grouped kernels are slower
    than M separate ones; separate models on separate cores are not (the
    measurements are on the docs' sweep benchmark page).

Each result equals :func:`entropy_ae.training.train_model` run alone with the
same config (same init, same data order, same optimiser). On CPU both
strategies with their default options are bit-identical to it (weights,
BatchNorm buffers, loss history; tested): the two layer types whose stacked
kernels would round differently run per model at the single model's shapes.
On CUDA the fused kernels are used and results agree to float tolerance only
(see ``tests/test_batched.py`` for the tolerance and its reasoning). Trained
weights are written back into ordinary :class:`~entropy_ae.model.Autoencoder`
modules, so run directories are identical in format.

Groups are planned by :mod:`entropy_ae.training.planning` so each fits the
device's memory. Only the plain AE (kind ``ae``) has a stacked form; a group of
another kind (:mod:`entropy_ae.model`) trains per core on CPU as any other, and
model by model with the reference loop where ``stacked`` would be used.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..runs import check_not_complete, save_run
from ..data import AnomalyData
from ..evaluation import evaluate_model
from ..model import Autoencoder
from ..reproducibility import resolve_device
from .planning import group_cap, available_memory_bytes, estimate_group_bytes, plan_groups
from .stacked import StackedAutoencoder
from .loop import (
    TrainConfig,
    check_finite_weights,
    check_train_images,
    initial_model,
    progress_enabled,
    train_model,
    training_memory_format,
)

__all__ = [
    "BatchedOptions",
    "StackedAutoencoder",
    "train_models_batched",
    "run_trainings_batched",
    "estimate_group_bytes",
    "available_memory_bytes",
    "plan_groups",
]


@dataclass(frozen=True)
class BatchedOptions:
    """GPU speed switches, all off by default.

    They are coded but NOT yet measured on a GPU (the machine this was written
    on had none), so none is on by default; turn one on only after
    ``benchmarks/sweep.py --gpu`` shows that it pays.

    Attributes
    ----------
    strategy : {"stacked", "per_core"} or None
        ``"stacked"``: one :class:`StackedAutoencoder` per group, one set of
        kernels for all its models (the GPU path). ``"per_core"`` (CPU only):
        the group's models train at the same time, one per worker thread, each
        with the reference loop on one intra-op thread. ``None`` (default) =
        ``"per_core"`` on CPU, where stacked kernels measured slower than
        separate ones, and ``"stacked"`` on CUDA.
    cpu_workers : int or None
        Models trained at once by ``"per_core"``; ``None`` = torch's intra-op
        thread count (``torch.get_num_threads()``, by default the cores).
    autocast_bf16 : bool
        Run forward/backward under ``torch.autocast(dtype=bfloat16)``. Changes
        results beyond the float32 tolerance of the equivalence tests.
    compile : bool
        Wrap the stacked model in ``torch.compile``.
    cuda_graphs : bool
        ``torch.compile(mode="reduce-overhead")``, i.e. CUDA graphs for the
        forward and backward (implies ``compile``; CUDA only).
    channels_last : bool
        Keep images and conv weights in channels-last memory format.
    fused_adam : bool
        ``torch.optim.Adam(fused=True)``: one kernel for the whole update
        instead of a few per parameter group (same maths, other rounding).
    split_edge_convs : bool or None
        Run the first and the last convolution (1 channel per model) model by
        model instead of as one grouped kernel: the grouped CPU kernels of
        these two layers sum weight gradients in another order.
    ragged_latent : bool or None
        Run the two latent-size Linears at each model's own latent size
        instead of padded to the group's largest and masked: BLAS picks other
        kernels (so other rounding) for narrow outputs below ~16 columns.

    ``None`` (the default of both) = on for CPU, where both together make every
    result bit-identical to training alone (tested), and off for CUDA, where
    cuDNN/cuBLAS choose algorithms per shape so results are equal to float
    tolerance only.
    """

    strategy: str | None = None
    cpu_workers: int | None = None
    autocast_bf16: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    channels_last: bool | None = None
    fused_adam: bool = False
    split_edge_convs: bool | None = None
    ragged_latent: bool | None = None



# --------------------------------------------------------------------------- training


def _train_group(
    x_train: torch.Tensor,
    configs: Sequence,
    device: torch.device,
    options: BatchedOptions,
    progress: bool,
) -> list[tuple[Autoencoder, list[float]]]:
    image_size = x_train.shape[-1]
    # Exactly the reference loop's init.
    singles = [initial_model(cfg, image_size) for cfg in configs]
    stacked = StackedAutoencoder.from_models(singles).to(device)
    del singles
    on_cpu = device.type == "cpu"
    split = on_cpu if options.split_edge_convs is None else options.split_edge_convs
    ragged = on_cpu if options.ragged_latent is None else options.ragged_latent
    stacked.split_edge_convs(split).ragged_latent(ragged)
    channels_last = options.channels_last
    if channels_last is None:  # as the reference loop
        channels_last = training_memory_format(device) == torch.channels_last
    if channels_last:
        stacked = stacked.to(memory_format=torch.channels_last)
    stacked.train()
    lr, epochs, batch_size = configs[0].lr, configs[0].epochs, configs[0].batch_size
    optimizer = torch.optim.Adam(stacked.parameters(), lr=lr, fused=options.fused_adam or None)
    step = stacked
    if options.compile or options.cuda_graphs:
        step = torch.compile(stacked, mode="reduce-overhead" if options.cuda_graphs else None)

    n = x_train.shape[0]
    num_models = len(configs)
    generators = [torch.Generator().manual_seed(cfg.seed) for cfg in configs]
    history: list[list[float]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        label = ",".join(f"d{c.latent_size}s{c.seed}" for c in configs)
        bar = tqdm(total=epochs, desc=f"batched[{label}]", unit="epoch", leave=False)
    flat = x_train.view(n, image_size, image_size)
    for epoch in range(epochs):
        # (M, n), drawn on the CPU as the reference loop does; moved once per epoch, not per step.
        perms = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)
        # float32 on the device, read once per epoch: as the reference loop.
        loss_sum = torch.zeros(num_models, device=device)
        seen = 0
        for idx in perms.split(batch_size, dim=1):
            if idx.shape[1] < 2:  # BatchNorm needs >= 2 images; as the reference loop
                continue
            x = flat[idx.t()]  # (B, M, s, s): image b of model m at [b, m]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.autocast_bf16):
                x_hat, _ = step(x)
            losses = _per_model_mse(x_hat.float(), x, exact=on_cpu)
            optimizer.zero_grad(set_to_none=True)
            # Models share no parameter, so d(sum)/d(theta_m) is model m's own gradient.
            losses.sum().backward()
            optimizer.step()
            loss_sum += losses.detach() * idx.shape[1]
            seen += idx.shape[1]
        epoch_loss = [v / seen for v in loss_sum.tolist()]
        bad = [configs[i] for i, v in enumerate(epoch_loss) if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(
                f"training diverged at epoch {epoch + 1} for latent_size/seed "
                f"{[(c.latent_size, c.seed) for c in bad]}; try a lower lr (now {lr}) or check the "
                f"input images for NaN/inf"
            )
        history.append(epoch_loss)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{sum(epoch_loss) / num_models:.5f}")
    if bar is not None:
        bar.close()
    stacked.eval()
    models = stacked.unstack()
    # As train_model: the last optimiser step can make weights NaN while every recorded loss is finite.
    bad = []
    for config, model in zip(configs, models):
        try:
            check_finite_weights(model, epochs, lr)
        except FloatingPointError as err:
            bad.append(f"latent_size={config.latent_size}, seed={config.seed}: {err}")
    if bad:
        raise FloatingPointError("; ".join(bad))
    return [(model.eval(), [h[i] for h in history]) for i, model in enumerate(models)]


def _per_model_mse(x_hat: torch.Tensor, x: torch.Tensor, exact: bool) -> torch.Tensor:
    """MSE of each model, ``(M,)``, from ``(n, M, s, s)`` reconstructions and images."""
    if exact:
        # F.mse_loss on each model's contiguous batch: the reference's own kernel.
        return torch.stack(
            [F.mse_loss(x_hat[:, i].contiguous(), x[:, i].contiguous()) for i in range(x.shape[1])]
        )
    return (x_hat - x).pow(2).mean(dim=(0, 2, 3))


STRATEGIES = ("stacked", "per_core")


def _strategy(options: BatchedOptions, device: torch.device) -> str:
    if options.strategy is None:
        return "per_core" if device.type == "cpu" else "stacked"
    if options.strategy not in STRATEGIES:
        raise ValueError(f"BatchedOptions.strategy must be one of {STRATEGIES} or None, got {options.strategy!r}")
    if options.strategy == "per_core" and device.type != "cpu":
        raise ValueError(f"strategy='per_core' is for the CPU; use 'stacked' (or None) on {device}")
    return options.strategy


def _trained_per_core(data, configs, group, cpu_workers, progress):
    """Train ``group``'s models concurrently, one per worker thread at one intra-op thread each.

    Yields ``([index], [(model, history)], seconds)`` as each model finishes, so
    a caller can save it at once. ``seconds`` is the model's wall time divided
    by the number of workers (its share of the CPU). Every model is
    :func:`train_model`'s result at one thread: bit-identical to training it
    alone with ``torch.set_num_threads(1)``. One model's failure does not stop
    the others; the first failure is raised after every model has finished.
    """
    previous = torch.get_num_threads()
    workers = min(previous if cpu_workers is None else cpu_workers, len(group))
    # A model starts only while fewer than 2 x workers are trained but not yet handed back, so when the
    # caller stops (a save failed) at most that many were started, however slow the caller was.
    gate, stopped = threading.Semaphore(2 * workers), threading.Event()

    def work(i):
        gate.acquire()
        if stopped.is_set():
            return None  # the caller stopped while this model waited: it is never trained
        # Intra-op threads would compete with the other workers for the cores.
        torch.set_num_threads(1)
        start = time.perf_counter()
        result = train_model(data, configs[i], progress=False)
        return result, time.perf_counter() - start

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(group), desc=f"per-core x{workers}", unit="model", leave=False)
    failures = []
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="entropy-ae-train") as pool:
            futures = {pool.submit(work, i): i for i in group}
            try:
                yield from _finished(futures, configs, failures, workers, bar, gate)
            except BaseException:  # the caller stopped (e.g. a save failed), or an error: start no further model
                stopped.set()
                for future in futures:
                    future.cancel()
                for _ in group:
                    gate.release()  # wake the models waiting at the gate, which then return at once
                raise
    finally:
        torch.set_num_threads(previous)
        if bar is not None:
            bar.close()
    if failures:
        cfg, err = failures[0]
        where = (f"training latent_size={cfg.latent_size}, seed={cfg.seed} failed ({len(failures)} of "
                 f"{len(group)} models failed; the others finished and were handed back)")
        if hasattr(err, "add_note"):  # Python >= 3.11
            err.add_note(where)
        raise err


def _finished(futures, configs, failures, workers, bar, gate):
    """Yield each finished model of :func:`_trained_per_core`; failures are collected, not raised. Each
    model handed back (or failed) lets one more start at ``gate``."""
    for future in as_completed(futures):
        i = futures[future]
        if bar is not None:
            bar.update(1)
        try:
            result, seconds = future.result()
        except Exception as err:  # noqa: BLE001 -- re-raised by the caller, after the others are saved
            failures.append((configs[i], err))
            gate.release()
            continue
        yield [i], [result], seconds / workers
        gate.release()


def _trained_groups(data, configs, max_models_per_group, progress, options):
    """Yield ``(indices, [(model, history), ...], seconds)`` group by group."""
    check_train_images(data)
    if not configs:
        raise ValueError("need at least one TrainConfig")
    options = options or BatchedOptions()
    devices = [resolve_device(cfg.device) for cfg in configs]
    workers = options.cpu_workers
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"BatchedOptions.cpu_workers must be a positive integer or None, got {workers!r}")
    if options.cuda_graphs and any(d.type != "cuda" for d in devices):
        raise ValueError("BatchedOptions(cuda_graphs=True) needs a CUDA device")
    image_size = int(data.image_size)
    data_bytes = int(np.asarray(data.train).nbytes)
    if max_models_per_group is None:
        caps = [
            group_cap(dev, cfg.batch_size, image_size, cfg.latent_size, data_bytes)
            for cfg, dev in zip(configs, devices)
        ]
    elif isinstance(max_models_per_group, bool) or not isinstance(max_models_per_group, int) or max_models_per_group < 1:
        raise ValueError(f"max_models_per_group must be a positive integer or None, got {max_models_per_group!r}")
    else:
        caps = max_models_per_group

    on_device: dict[str, torch.Tensor] = {}
    for group in plan_groups(configs, devices, caps):
        device = devices[group[0]]
        if _strategy(options, device) == "per_core":
            yield from _trained_per_core(data, configs, group, options.cpu_workers, progress_enabled(progress))
            continue
        if configs[group[0]].model != "ae":  # only the plain AE has a stacked form: the others one by one
            for i in group:
                start = time.perf_counter()
                trained = train_model(data, configs[i], progress=progress)
                yield [i], [trained], time.perf_counter() - start
            continue
        if str(device) not in on_device:
            # The whole training set lives on the device: a few MB.
            on_device[str(device)] = torch.as_tensor(data.train, dtype=torch.float32, device=device)
        start = time.perf_counter()
        trained = _train_group(
            on_device[str(device)], [configs[i] for i in group], device, options, progress_enabled(progress)
        )
        yield group, trained, time.perf_counter() - start


def train_models_batched(
    data: AnomalyData,
    configs: Sequence[TrainConfig],
    max_models_per_group: int | None = None,
    progress: bool | None = None,
    options: BatchedOptions | None = None,
) -> list[tuple[Autoencoder, list[float]]]:
    """Train one AE per config, many at once; each as if trained alone.

    Parameters
    ----------
    data : AnomalyData
        Only ``data.train`` is used (float32 ``(n, 1, s, s)``).
    configs : sequence of TrainConfig
        Any mix of latent sizes and seeds. Configs that share device, epochs,
        batch_size and lr are trained together, in groups.
    max_models_per_group : int, optional
        Largest number of models per group. ``None`` = as many as fit the
        device (:func:`estimate_group_bytes` against
        :func:`available_memory_bytes`).
    progress : bool, optional
        Per-epoch progress bar per group; ``None`` = only on a terminal.
    options : BatchedOptions, optional
        Kernel choices and GPU speed switches (see :class:`BatchedOptions`).

    Returns
    -------
    list of (Autoencoder, list of float)
        In the order of ``configs``: each model in eval mode on its config's
        device and its per-epoch mean training loss, as
        :func:`entropy_ae.training.train_model` returns them. On CPU with the
        default options they are bit-identical to ``train_model``'s.
    """
    configs = list(configs)
    results: list = [None] * len(configs)
    for group, trained, _seconds in _trained_groups(data, configs, max_models_per_group, progress, options):
        for i, result in zip(group, trained):
            results[i] = result
    return results


def run_trainings_batched(
    data: AnomalyData,
    configs: Sequence[TrainConfig],
    run_dirs: Sequence[str | os.PathLike],
    progress: bool | None = None,
    *,
    max_models_per_group: int | None = None,
    options: BatchedOptions | None = None,
    target_fpr: float = 0.05,
    extra: dict | None = None,
    overwrite: bool = False,
    on_saved: Callable[[int, dict], None] | None = None,
) -> list[dict]:
    """Batched counterpart of :func:`entropy_ae.training.run_training`.

    Trains all ``configs`` with :func:`train_models_batched`, then evaluates
    and saves each model into its ``run_dir`` with the same
    ``evaluate_model`` and ``save_run`` as ``run_training``, so the run
    directories are interchangeable. Each group is saved as soon as it is
    trained, so an interruption loses at most the group in progress.
    ``train_seconds`` of a run is its group's training wall time divided by
    the group's size (the models shared it). ``on_saved(index, metrics)``, if
    given, is called as each run is saved (e.g. to report progress).

    Returns
    -------
    list of dict
        The metrics of each run (as written to ``metrics.json``), in the order
        of ``configs``.

    Raises
    ------
    FileExistsError
        Before any training, when a ``run_dir`` already holds a complete run
        and ``overwrite`` is false.
    """
    configs = list(configs)
    run_dirs = [Path(d) for d in run_dirs]
    if len(run_dirs) != len(configs):
        raise ValueError(f"got {len(configs)} configs but {len(run_dirs)} run_dirs; give one run_dir per config")
    if len({d.resolve() for d in run_dirs}) != len(run_dirs):
        raise ValueError("run_dirs must be distinct: two runs would overwrite each other")
    for run_dir in run_dirs:
        check_not_complete(run_dir, overwrite)
    metrics: list = [None] * len(configs)
    # closing(): when a save fails the generator is closed at once and starts no further model; left to
    # the garbage collector it would live on in the traceback, and its workers would keep training.
    with contextlib.closing(_trained_groups(data, configs, max_models_per_group, progress, options)) as groups:
        for group, trained, seconds in groups:
            for i, (model, history) in zip(group, trained):
                scores = evaluate_model(model, data, target_fpr=target_fpr)
                metrics[i] = save_run(
                    run_dirs[i], model, configs[i], data, scores, history, extra,
                    train_seconds=seconds / len(group), overwrite=overwrite,
                )
                if on_saved is not None:
                    on_saved(i, metrics[i])
    return metrics
