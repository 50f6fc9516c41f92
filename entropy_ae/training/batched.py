"""Train many autoencoders at once: one set of kernels for every (latent size, seed).

A latent-size study trains the same small AE 24 times (8 latent sizes x 3 seeds).
Run one after another, each training feeds a batch of 64 small images through
~150 tiny kernels per step, so a GPU mostly waits for kernel launches. Here the M models of a group are stacked into one
:class:`StackedAutoencoder` and trained in one loop:

* convolutions become grouped convolutions (``groups=M``, channels ``M*C``);
  model m owns channel block m, so BatchNorm over ``M*C`` channels keeps its
  batch statistics and running statistics per model;
* linear layers become batched matrix products over a leading model axis
  (``torch.baddbmm`` with weights ``(M, out, in)``);
* each model draws its own batches (its seed fixes its data order), gathered
  as one ``(batch, M, s, s)`` tensor;
* the loss is the sum of the per-model MSEs, so each model's gradient is
  exactly its own, and Adam (element-wise) steps each model as it would alone;
* models of different latent sizes share the group's largest size D: the
  encoder's last Linear gets zero rows and the decoder's first Linear zero
  columns beyond a model's own d, and ``z[:, d:]`` is multiplied by 0. The
  padded weights then receive exactly zero gradient and Adam leaves them at
  exactly zero, so the padded model computes the small model's function.

Each result equals :func:`entropy_ae.training.train_model` run alone with the
same config (same init, same data order, same optimiser). On CPU the stacked
strategy with its default options is bit-identical (weights, BatchNorm
buffers, loss history; tested): the two layer types whose stacked kernels
would round differently run per model at the single model's shapes. On CUDA
the fused kernels are used and results agree to float tolerance only (see
``tests/test_batched.py`` for the tolerance and its reasoning). Trained
weights are written back into ordinary :class:`Autoencoder` modules, so
checkpoints are identical in format.

Speed. The point is the GPU, where one small AE leaves the device idle and
stacking 24 models turns 24 streams of tiny kernels into one of large ones
(GPU figures: still to be measured, see ``benchmarks/sweep.py --gpu``). A
CPU is not launch-bound, and oneDNN's grouped kernels are slower than M
separate ones (``benchmarks/sweep.py`` times the stacked strategy too), so on CPU the default is the other
strategy, ``per_core``: the group's models train at the same time, one per
worker thread, each running :func:`~entropy_ae.training.train_model` on a
single intra-op thread. On an idle 2-core machine that measured 1.3x faster
than one model after another on both cores (one model already scales well
to two threads); with one core busy with other work, 2.5x, because no model
waits at a two-thread barrier for the busy core (README, "Batched sweeps",
for the figures and the command).

Memory grows linearly with the number of models M per group (see
:func:`estimate_group_bytes`); ``max_models_per_group=None`` caps M so a group
fits the device (CUDA: free memory; CPU: available RAM).
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..runs import check_not_complete, save_run
from ..data import AnomalyData
from ..evaluation import evaluate_model
from ..model import CHANNELS, HIDDEN, Autoencoder, count_parameters
from ..reproducibility import resolve_device
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

# Fraction of the free memory a group may plan to use: the rest covers the
# allocator's fragmentation, kernel workspaces and the caller's own tensors.
CUDA_MEMORY_FRACTION = 0.8
CPU_MEMORY_FRACTION = 0.5
# Adam keeps parameter, gradient, first and second moment: 4 float32 copies.
_PARAM_COPIES = 4
# Saved activations are measured; gradients of activations and kernel
# workspaces during backward add roughly as much again.
_ACTIVATION_SAFETY = 2.0


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


# --------------------------------------------------------------------------- model


class StackedLinear(nn.Module):
    """M independent ``nn.Linear(in_features, out_features)`` on input ``(M, n, in)``.

    ``ragged = (in_sizes, out_sizes)`` makes model i use only the leading
    ``in_sizes[i] x out_sizes[i]`` block of its (zero-padded) weight, with one
    ``F.linear`` per model: exactly the kernel, shape and so the rounding of the
    unpadded model. The output's unused columns are exact zeros.
    """

    def __init__(self, num_models: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_models, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(num_models, out_features))
        self.ragged: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ragged is None:
            return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))
        out_features = self.weight.shape[1]
        outs = []
        for i, (n_in, n_out) in enumerate(zip(*self.ragged)):
            # Contiguous slices: the single model's weights and inputs are contiguous too.
            y = F.linear(
                x[i, :, :n_in].contiguous(),
                self.weight[i, :n_out, :n_in].contiguous(),
                self.bias[i, :n_out],
            )
            outs.append(F.pad(y, (0, out_features - n_out)))
        return torch.stack(outs)


class StackedBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d(M * features)`` applied to input ``(M, n, features)``.

    Channel block m holds model m's statistics, so they stay per model.
    """

    def __init__(self, num_models: int, num_features: int):
        super().__init__(num_models * num_features)
        self.num_models = num_models

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, n, f = x.shape
        y = super().forward(x.transpose(0, 1).reshape(n, m * f))
        return y.view(n, m, f).transpose(0, 1)


class _EdgeConv2d(nn.Conv2d):
    """Grouped conv that can run its groups one by one (``split=True``).

    The first encoder conv (1 input channel per model) and the last decoder
    conv (1 output channel per model) are the two layers whose grouped CPU
    kernels sum the weight gradient in a different order from the single
    model's kernel. Run per model, they reproduce it bit for bit.
    """

    split = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.split:
            return super().forward(x)
        return torch.cat(
            [
                F.conv2d(xi, wi, None, self.stride, self.padding)
                for xi, wi in zip(x.chunk(self.groups, 1), self.weight.chunk(self.groups))
            ],
            1,
        )


class _EdgeConvTranspose2d(nn.ConvTranspose2d):
    """Transposed counterpart of :class:`_EdgeConv2d` (the decoder's output layer)."""

    split = False

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if not self.split:
            return super().forward(x)
        m = self.groups
        biases = self.bias.chunk(m) if self.bias is not None else [None] * m
        return torch.cat(
            [
                F.conv_transpose2d(xi, wi, bi, self.stride, self.padding)
                for xi, wi, bi in zip(x.chunk(m, 1), self.weight.chunk(m), biases)
            ],
            1,
        )


class StackedAutoencoder(nn.Module):
    """M :class:`Autoencoder` s of one image size as one module.

    Its state_dict has the same keys as an ``Autoencoder``'s; conv and
    BatchNorm tensors hold the M models' tensors concatenated along dim 0,
    linear tensors stacked along a new dim 0. Latent sizes below the largest,
    D, are zero-padded and masked (see the module docstring).

    Input ``(n, M, s, s)`` (image i of model m at ``[i, m]``); output
    ``(x_hat (n, M, s, s), z (M, n, D))``.
    """

    def __init__(self, latent_sizes: Sequence[int], image_size: int):
        super().__init__()
        if not latent_sizes:
            raise ValueError("StackedAutoencoder needs at least one latent size")
        m = len(latent_sizes)
        d_max = max(latent_sizes)
        self.num_models = m
        self.latent_sizes = tuple(int(d) for d in latent_sizes)
        self.image_size = image_size
        side = image_size // 16
        self._feature_shape = (CHANNELS[-1], side, side)
        flat = CHANNELS[-1] * side * side

        enc = []
        c_in = 1
        for i, c_out in enumerate(CHANNELS):
            conv = _EdgeConv2d if i == 0 else nn.Conv2d
            enc += [
                conv(m * c_in, m * c_out, 4, 2, 1, bias=False, groups=m),
                nn.BatchNorm2d(m * c_out),
                nn.ReLU(True),
            ]
            c_in = c_out
        self.encoder_conv = nn.Sequential(*enc)
        # Index 0 of the single model's encoder_fc is Flatten: keep the
        # indices (and so the state_dict keys) the same.
        self.encoder_fc = nn.Sequential(
            nn.Identity(),
            StackedLinear(m, flat, HIDDEN),
            StackedBatchNorm1d(m, HIDDEN),
            nn.ReLU(True),
            StackedLinear(m, HIDDEN, d_max),
        )
        self.decoder_fc = nn.Sequential(
            StackedLinear(m, d_max, HIDDEN),
            StackedBatchNorm1d(m, HIDDEN),
            nn.ReLU(True),
            StackedLinear(m, HIDDEN, flat),
        )
        dec = []
        c_in = CHANNELS[-1]
        decoder_channels = CHANNELS[-2::-1] + (1,)
        for i, c_out in enumerate(decoder_channels):
            last = i == len(decoder_channels) - 1
            conv = _EdgeConvTranspose2d if last else nn.ConvTranspose2d
            dec.append(conv(m * c_in, m * c_out, 4, 2, 1, bias=last, groups=m))
            if not last:
                dec += [nn.BatchNorm2d(m * c_out), nn.ReLU(True)]
            c_in = c_out
        self.decoder_conv = nn.Sequential(*dec)

        self._ragged = False
        if min(self.latent_sizes) < d_max:
            mask = torch.zeros(m, 1, d_max)
            for i, d in enumerate(self.latent_sizes):
                mask[i, 0, :d] = 1.0
            self.register_buffer("latent_mask", mask, persistent=False)
        else:
            self.latent_mask = None

    # -- stacking ---------------------------------------------------------------

    @classmethod
    def from_models(cls, models: Sequence[Autoencoder]) -> "StackedAutoencoder":
        """Stack trained or freshly initialised models (copies their tensors)."""
        sizes = {mod.image_size for mod in models}
        if len(sizes) != 1:
            raise ValueError(f"all models of a group need one image_size, got {sorted(sizes)}")
        stacked = cls([mod.latent_size for mod in models], sizes.pop())
        states = [mod.state_dict() for mod in models]
        own = stacked.state_dict()
        new = {}
        for key, target in own.items():
            parts = [s[key].to(target.device) for s in states]
            if target.ndim == 0:  # num_batches_tracked: one counter for the group
                counts = {int(p) for p in parts}
                if len(counts) != 1:
                    raise ValueError(f"models disagree on {key} ({sorted(counts)}); train them in separate groups")
                new[key] = parts[0].clone()
            elif target.ndim == parts[0].ndim + 1:  # linear: new model axis
                new[key] = torch.stack([_pad_to(p, target.shape[1:]) for p in parts])
            else:  # conv / BatchNorm: channel blocks
                new[key] = torch.cat(parts)
        stacked.load_state_dict(new)
        return stacked

    def unstack(self) -> list[Autoencoder]:
        """Ordinary :class:`Autoencoder` s (on this module's device, in its train/eval mode)."""
        state = self.state_dict()
        device = next(self.parameters()).device
        models = []
        for i, d in enumerate(self.latent_sizes):
            model = Autoencoder(d, self.image_size).to(device)
            single = {}
            for key, ref in model.state_dict().items():
                src = state[key]
                if src.ndim == 0:
                    part = src
                elif src.ndim == ref.ndim + 1:
                    part = src[i]
                else:
                    part = src.chunk(self.num_models)[i]
                # Padding is always at the end: slicing to the small shape undoes it.
                single[key] = part[tuple(slice(0, n) for n in ref.shape)].clone()
            model.load_state_dict(single)
            model.train(self.training)
            models.append(model)
        return models

    # -- computation -------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        h = self.encoder_conv(x).reshape(n, self.num_models, -1).transpose(0, 1)
        z = self.encoder_fc(h)
        if self.latent_mask is not None and not self._ragged:
            # Zero the padded units: their weights then get exactly zero gradient.
            z = z * self.latent_mask
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[1]
        c, side, _ = self._feature_shape
        h = self.decoder_fc(z).transpose(0, 1).reshape(n, self.num_models * c, side, side)
        return self.decoder_conv(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    def split_edge_convs(self, split: bool = True) -> "StackedAutoencoder":
        """Run the first and last conv per model (bit-identical CPU gradients); returns self."""
        self.encoder_conv[0].split = bool(split)
        self.decoder_conv[-1].split = bool(split)
        return self

    def ragged_latent(self, ragged: bool = True) -> "StackedAutoencoder":
        """Compute the two latent-size Linears per model at their own size; returns self.

        Off (the default), models of smaller latent size run padded to the
        largest and masked: one batched kernel, equal up to rounding. On, each
        model's latent layers run at its own shape with ``F.linear``, as in the
        single model: bit-identical on CPU, at the cost of 2 x M small kernels
        per pass.
        """
        # Also without padding: a batched product with a narrow output rounds
        # unlike F.linear's addmm, so the per-model kernel is needed anyway.
        self._ragged = bool(ragged)
        enc, dec = self.encoder_fc[-1], self.decoder_fc[0]
        if self._ragged:
            enc.ragged = ((enc.weight.shape[2],) * self.num_models, self.latent_sizes)
            dec.ragged = (self.latent_sizes, (dec.weight.shape[1],) * self.num_models)
        else:
            enc.ragged = dec.ragged = None
        return self


def _pad_to(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Zero-pad ``t`` at the end of each dim up to ``shape``."""
    if tuple(t.shape) == tuple(shape):
        return t
    out = t.new_zeros(tuple(shape))
    out[tuple(slice(0, n) for n in t.shape)] = t
    return out


# --------------------------------------------------------------------------- memory


def available_memory_bytes(device: torch.device) -> int:
    """Memory a group may plan to use on ``device`` now (bytes).

    CUDA: ``CUDA_MEMORY_FRACTION`` of the free memory reported by
    ``torch.cuda.mem_get_info``. CPU: ``CPU_MEMORY_FRACTION`` of the available
    RAM (``MemAvailable`` of /proc/meminfo, else free physical pages).
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * CUDA_MEMORY_FRACTION)
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 4 * 2**30  # no way to ask: assume a modest 4 GiB
    return int(avail * CPU_MEMORY_FRACTION)


_ACTIVATION_CACHE: dict[tuple[int, int], int] = {}


def activation_bytes_per_image(image_size: int, latent_size: int) -> int:
    """Bytes autograd saves per image per model for one training step.

    Measured once per (image_size, latent_size) by summing the distinct
    tensors a 2-image forward of the stacked model saves for backward.
    About 0.5 MiB per 64x64 image.
    """
    key = (image_size, latent_size)
    if key not in _ACTIVATION_CACHE:
        model = StackedAutoencoder([latent_size], image_size)
        seen: dict[tuple, int] = {}

        def pack(t: torch.Tensor):
            if t.device.type != "meta":
                seen[(t.untyped_storage().data_ptr(), t.storage_offset(), t.numel())] = (
                    t.numel() * t.element_size()
                )
            return t

        x = torch.zeros(2, 1, image_size, image_size)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        total = sum(b for (ptr, _o, _n), b in seen.items() if ptr not in params)
        _ACTIVATION_CACHE[key] = int(math.ceil(total / 2))
    return _ACTIVATION_CACHE[key]


def estimate_group_bytes(num_models: int, batch_size: int, image_size: int, latent_size: int) -> int:
    """Peak memory (bytes) of training ``num_models`` models in one group.

    Linear in the number of models M::

        M * (4 copies * 4 B * parameters(latent_size)           # param, grad, Adam m and v
             + safety * batch_size * activation_bytes_per_image)

    At 64x64, d = 16, batch 64: 4 * 4 B * 2.35e6 = 36 MiB of parameter state
    plus 2 * 64 * 0.5 MiB = 64 MiB of activations, about 100 MiB per model
    (2.4 GiB for the 24 models of a Table-1 sweep). The training images
    (shared by all models) are not included.
    """
    with torch.device("meta"):
        params = count_parameters(Autoencoder(latent_size, image_size))
    per_model = _PARAM_COPIES * 4 * params + _ACTIVATION_SAFETY * batch_size * activation_bytes_per_image(
        image_size, latent_size
    )
    return int(num_models * per_model)


def _memory_cap(device: torch.device, batch_size: int, image_size: int, latent_size: int, data_bytes: int) -> int:
    budget = available_memory_bytes(device) - data_bytes
    per_model = estimate_group_bytes(1, batch_size, image_size, latent_size)
    return max(1, int(budget // per_model))


# --------------------------------------------------------------------------- grouping


def _group_key(config, device: torch.device) -> tuple:
    # Models in one group step together, so they must share everything that
    # sets the number and size of steps and the optimiser.
    return (str(device), config.epochs, config.batch_size, float(config.lr))


def plan_groups(
    configs: Sequence, devices: Sequence[torch.device], caps: Sequence[int] | int
) -> list[list[int]]:
    """Split config indices into groups that can be trained together.

    Configs are grouped by (device, epochs, batch_size, lr); within one such
    class they are sorted by latent size (so a chunk pads little) and cut into
    chunks of at most ``cap`` models.

    Parameters
    ----------
    configs : sequence of TrainConfig
    devices : sequence of torch.device, one per config (resolved)
    caps : int or sequence of int
        Largest group size, one number for all or one per config (the cap of
        a chunk is that of its largest-latent-size member).

    Returns
    -------
    list of list of int
        Indices into ``configs``; every index appears exactly once.
    """
    if isinstance(caps, int):
        caps = [caps] * len(configs)
    if any(c < 1 for c in caps):
        raise ValueError(f"max_models_per_group must be >= 1, got {min(caps)}")
    classes: dict[tuple, list[int]] = {}
    for i, (cfg, dev) in enumerate(zip(configs, devices)):
        classes.setdefault(_group_key(cfg, dev), []).append(i)
    groups = []
    for members in classes.values():
        # Largest latent size first: a chunk's cap comes from its largest member.
        members = sorted(members, key=lambda i: (-configs[i].latent_size, configs[i].seed, i))
        while members:
            cap = caps[members[0]]
            groups.append(members[:cap])
            members = members[cap:]
    return groups


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

    def work(i):
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
                yield from _finished(futures, configs, failures, workers, bar)
            except GeneratorExit:  # the caller stopped (e.g. a save failed): start no further model
                for future in futures:
                    future.cancel()
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


def _finished(futures, configs, failures, workers, bar):
    """Yield each finished model of :func:`_trained_per_core`; failures are collected, not raised."""
    for future in as_completed(futures):
        i = futures[future]
        if bar is not None:
            bar.update(1)
        try:
            result, seconds = future.result()
        except Exception as err:  # noqa: BLE001 -- re-raised by the caller, after the others are saved
            failures.append((configs[i], err))
            continue
        yield [i], [result], seconds / workers


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
            _memory_cap(dev, cfg.batch_size, image_size, cfg.latent_size, data_bytes)
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
    for group, trained, seconds in _trained_groups(data, configs, max_models_per_group, progress, options):
        for i, (model, history) in zip(group, trained):
            scores = evaluate_model(model, data, target_fpr=target_fpr)
            metrics[i] = save_run(
                run_dirs[i], model, configs[i], data, scores, history, extra,
                train_seconds=seconds / len(group), overwrite=overwrite,
            )
            if on_saved is not None:
                on_saved(i, metrics[i])
    return metrics
