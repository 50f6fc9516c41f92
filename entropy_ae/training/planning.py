"""Planning a batched training: how much memory a group of models needs, and which models go together.

Memory grows linearly with the number of models M per group (see
:func:`estimate_group_bytes`); :func:`plan_groups` groups models that can step
together (same device, epochs, batch size and learning rate) and caps each group
so it fits the device (CUDA: free memory; CPU: available RAM).
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import torch

from ..model import Autoencoder, count_parameters
from .stacked import StackedAutoencoder

__all__ = ["available_memory_bytes", "activation_bytes_per_image", "estimate_group_bytes", "group_cap", "plan_groups"]

# Fraction of the free memory a group may plan to use: the rest covers the
# allocator's fragmentation, kernel workspaces and the caller's own tensors.
CUDA_MEMORY_FRACTION = 0.8
CPU_MEMORY_FRACTION = 0.5
# Adam keeps parameter, gradient, first and second moment: 4 float32 copies.
_PARAM_COPIES = 4
# Saved activations are measured; gradients of activations and kernel
# workspaces during backward add roughly as much again.
_ACTIVATION_SAFETY = 2.0


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


def group_cap(device: torch.device, batch_size: int, image_size: int, latent_size: int, data_bytes: int) -> int:
    budget = available_memory_bytes(device) - data_bytes
    per_model = estimate_group_bytes(1, batch_size, image_size, latent_size)
    return max(1, int(budget // per_model))


# --------------------------------------------------------------------------- grouping


def _group_key(config, device: torch.device) -> tuple:
    # Models in one group step together, so they must share everything that
    # sets the number and size of steps and the optimiser.
    # A stacked group is one architecture, so the model kind (and its settings) must match too.
    options = tuple(sorted(config.model_options.items()))
    return (str(device), config.model, options, config.epochs, config.batch_size, float(config.lr))


def plan_groups(
    configs: Sequence, devices: Sequence[torch.device], caps: Sequence[int] | int
) -> list[list[int]]:
    """Split config indices into groups that can be trained together.

    Configs are grouped by (device, model kind and settings, epochs, batch_size, lr); within one such
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


