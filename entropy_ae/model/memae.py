"""The memory-augmented autoencoder of the paper's Table 2 (Gong et al., ICCV 2019) on the paper's backbone.

A memory of ``memory_size`` items of dimension d sits between encoder and decoder. The encoder's
code ``e`` addresses it with attention weights ``w = softmax(cos(e, m_i))``; hard shrinkage
``max(w - t, 0) * w / (|w - t| + eps)`` with threshold ``t`` and re-normalisation to sum 1 make
the addressing sparse, and the decoder sees only the read-out ``w @ M``. Training adds
``entropy_weight`` times the mean entropy of the weights. Settings default to those of the
paper's code: 25 items, t = 0.0025, entropy weight 2e-4. The code the estimators read is the
read-out (what the decoder sees); :meth:`MemoryAutoencoder.encoder_code` gives ``e``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._options import resolve_options
from .autoencoder import Autoencoder

SHRINK_EPS = 1e-12  # keeps the shrinkage's division finite where w == t


def hard_shrink(weights: torch.Tensor, threshold: float) -> torch.Tensor:
    """MemAE's hard shrinkage of attention weights, re-normalised so each row sums to 1."""
    shifted = weights - threshold
    shrunk = F.relu(shifted) * weights / (shifted.abs() + SHRINK_EPS)
    return shrunk / shrunk.sum(dim=1, keepdim=True).clamp_min(SHRINK_EPS)


def addressing_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Per row, the entropy ``-sum w log w`` of addressing weights, in nats (0 log 0 = 0)."""
    return -(weights * torch.log(weights.clamp_min(SHRINK_EPS))).sum(dim=1)


class MemoryAutoencoder(Autoencoder):
    """The paper's AE with a MemAE memory on its code.

    Parameters
    ----------
    latent_size, image_size : int
        As :class:`~entropy_ae.model.Autoencoder`; ``latent_size`` is the memory items' size.
    **options
        ``memory_size`` (default 25), ``shrink_threshold`` (default 0.0025), ``entropy_weight`` (default 2e-4).
    """

    kind = "memae"
    DEFAULTS = {"memory_size": 25, "shrink_threshold": 0.0025, "entropy_weight": 0.0002}

    def __init__(self, latent_size: int = 16, image_size: int = 64, **options):
        super().__init__(latent_size, image_size)
        settings = resolve_options(self.kind, self.DEFAULTS, options)
        self.memory_size = settings["memory_size"]
        self.shrink_threshold = settings["shrink_threshold"]
        self.entropy_weight = settings["entropy_weight"]
        bound = 1.0 / math.sqrt(latent_size)  # the initialisation of Gong et al.'s code
        self.memory = nn.Parameter(torch.empty(self.memory_size, latent_size).uniform_(-bound, bound))

    def options(self) -> dict:
        return {"memory_size": self.memory_size, "shrink_threshold": self.shrink_threshold,
                "entropy_weight": self.entropy_weight}

    def encoder_code(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output ``e``, before the memory."""
        return self.encoder_fc(self.encoder_conv(x))

    def address(self, code: torch.Tensor) -> torch.Tensor:
        """Shrunk, re-normalised attention weights ``(n, memory_size)`` of ``code`` over the memory."""
        similarity = F.normalize(code, dim=1) @ F.normalize(self.memory, dim=1).T
        return hard_shrink(F.softmax(similarity, dim=1), self.shrink_threshold)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The memory read-out ``w @ M``: the code the decoder sees."""
        return self.address(self.encoder_code(x)) @ self.memory

    def training_loss(self, x, generator=None):
        weights = self.address(self.encoder_code(x))
        mse = F.mse_loss(self.decode(weights @ self.memory), x)
        entropy = addressing_entropy(weights).mean()
        return mse + self.entropy_weight * entropy, {"mse": mse.detach(), "addressing_entropy": entropy.detach()}
