"""Autoencoders that choose their own latent capacity in one training (the paper's "self-adaptive" future work).

``nested`` (ordered code; nested dropout, Rippel, Gelbart, Adams, ICML 2014)
    In training, each image's code is truncated to its first ``j`` units, ``j`` drawn uniformly
    from the candidate truncations 1, 2, 4, ..., d (:func:`truncations`), and the decoder must
    reconstruct from what is left, so the first ``j`` units form a good j-dimensional code for
    every candidate ``j``. One training gives a model per truncation; which one to use is chosen
    afterwards from normal data (``analysis.adaptive``). The chosen truncation is a buffer of the
    weights file, so a saved model scores at its truncation.
``gated`` (learned capacity; L0 gates, Louizos, Welling, Kingma, ICLR 2018)
    Each code unit is multiplied by a hard-concrete gate in [0, 1] with a learned log-odds; the
    loss adds a weight times the expected number of open gates, so a unit stays open only when it
    lowers the per-pixel MSE by more than that weight. The weight comes from the normal images
    themselves: ``gate_share`` (default 0.01) times the pixel variance of each training batch, so
    a unit must explain 1 % of the normal images' variance to stay open, whatever their scale.
    The default was chosen among 0.001, 0.003 and 0.01 on the dev datasets of
    ``benchmarks/adaptive.py`` (``--tune-gate-share``; 0.03 closed every unit there) and judged
    on its other datasets; the documentation's adaptive benchmark page has the figures.
    At test time the gates are deterministic; the open units are the effective latent size.

Both keep the plain AE's architecture (one more buffer or d more parameters), interface and
scoring. Their code (``encode``) holds only the active units -- the first ``truncation`` ones, or
the open ones -- so the estimators measure a code of the effective latent size; ``decode`` takes
such a code (the inactive units are 0) or a full one.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._options import resolve_options
from .autoencoder import Autoencoder

# Hard-concrete settings of Louizos et al.: temperature and the stretch interval (gamma, zeta).
GATE_BETA, GATE_GAMMA, GATE_ZETA = 2.0 / 3.0, -0.1, 1.1
GATE_INIT_LOG_ALPHA = 2.0  # gates start open (P(open) ~ 0.97): capacity is removed, not grown
# The gates' log-odds are this times their parameter, so they learn this much faster than the
# weights: Adam moves a parameter by about lr per step whatever its gradient, and at lr 1e-3 an
# unscaled gate would need thousands of steps to travel from open (2) to closed (-2.4).
GATE_SPEED = 20.0


def truncations(latent_size: int) -> list[int]:
    """The candidate truncations of a ``nested`` code: powers of two below ``latent_size``, then it."""
    out = [2 ** i for i in range(int(math.log2(latent_size)) + 1) if 2 ** i < latent_size]
    return out + [latent_size]


def _decoder_batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for part in (model.decoder_fc, model.decoder_conv) for m in part.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class _ActiveUnits(Autoencoder):
    """An AE whose code is the subset :meth:`active_units` of its ``latent_size`` units."""

    def active_units(self) -> torch.Tensor:
        """Indices of the code units in use; each subclass defines which (a truncation, the open gates)."""
        raise NotImplementedError(f"{type(self).__name__} must define active_units()")

    def effective_latent_size(self) -> int:
        """The number of active code units: the capacity the model uses."""
        return int(len(self.active_units()))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decode a code of the active units (the others set to 0) or a full ``latent_size`` one."""
        if z.shape[1] != self.latent_size:
            full = z.new_zeros((len(z), self.latent_size))
            full[:, self.active_units()] = z
            z = full
        return super().decode(z)


class NestedAutoencoder(_ActiveUnits):
    """The paper's AE trained with nested dropout over :func:`truncations`; scores at ``truncation``."""

    kind = "nested"
    DEFAULTS: dict = {}

    def __init__(self, latent_size: int = 64, image_size: int = 64, **options):
        super().__init__(latent_size, image_size)
        resolve_options(self.kind, self.DEFAULTS, options)
        self.register_buffer("truncation", torch.tensor(latent_size, dtype=torch.int64))

    def active_units(self) -> torch.Tensor:
        return torch.arange(int(self.truncation), device=self.truncation.device)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The first ``truncation`` units of the encoder's output."""
        return super().encode(x)[:, : int(self.truncation)]

    def training_loss(self, x, generator=None):
        candidates = torch.tensor(truncations(self.latent_size))
        keep = candidates[torch.randint(len(candidates), (len(x),), generator=generator)].to(x.device)
        z = self.encoder_fc(self.encoder_conv(x))
        z = z * (torch.arange(self.latent_size, device=x.device) < keep[:, None])
        loss = F.mse_loss(self.decode(z), x)
        return loss, {"mse": loss.detach()}

    @torch.no_grad()
    def set_truncation(self, truncation: int, images: np.ndarray, batch_size: int = 256) -> "NestedAutoencoder":
        """Score at ``truncation`` from now on, the decoder's BatchNorm statistics re-estimated on ``images``.

        Training mixes truncations, so the decoder's running statistics are those of the mixture;
        they are recomputed (a cumulative average over ``images``, normal training images) for the
        codes of this truncation alone. The encoder is untouched. The model is left in eval mode.
        """
        if truncation not in truncations(self.latent_size):
            raise ValueError(f"truncation must be one of {truncations(self.latent_size)}, got {truncation!r}")
        self.truncation.fill_(int(truncation))
        norms = _decoder_batchnorms(self)
        momenta = [bn.momentum for bn in norms]
        device = self.truncation.device
        self.eval()
        codes = torch.cat([self.encode(torch.as_tensor(images[i:i + batch_size], device=device))
                           for i in range(0, len(images), batch_size)])
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches below
            bn.train()
        for start in range(0, len(codes), batch_size):
            self.decode(codes[start:start + batch_size])
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        return self.eval()


class GatedAutoencoder(_ActiveUnits):
    """The paper's AE with a hard-concrete L0 gate on each code unit.

    Parameters
    ----------
    latent_size, image_size : int
        As :class:`~entropy_ae.model.Autoencoder`; ``latent_size`` is the most units it can open.
    **options
        ``gate_share`` (default 0.01): penalty per expected open gate as a share of the batch's pixel variance: a unit stays
        open when it lowers the per-pixel MSE by more than that.
    """

    kind = "gated"
    DEFAULTS = {"gate_share": 0.01}

    def __init__(self, latent_size: int = 64, image_size: int = 64, **options):
        super().__init__(latent_size, image_size)
        self.gate_share = resolve_options(self.kind, self.DEFAULTS, options)["gate_share"]
        self.gate_logits = nn.Parameter(torch.full((latent_size,), GATE_INIT_LOG_ALPHA / GATE_SPEED))

    @property
    def log_alpha(self) -> torch.Tensor:
        """The gates' log-odds, ``GATE_SPEED`` times their parameter."""
        return GATE_SPEED * self.gate_logits

    def options(self) -> dict:
        return {"gate_share": self.gate_share}

    def gates(self) -> torch.Tensor:
        """The deterministic test-time gates in [0, 1], one per unit."""
        return (torch.sigmoid(self.log_alpha) * (GATE_ZETA - GATE_GAMMA) + GATE_GAMMA).clamp(0, 1)

    def active_units(self) -> torch.Tensor:
        """The open units: those whose test-time gate is not 0."""
        return torch.nonzero(self.gates() > 0).ravel()

    def open_probability(self) -> torch.Tensor:
        """Per unit, P(gate != 0) under the hard-concrete distribution: the L0 penalty's terms."""
        return torch.sigmoid(self.log_alpha - GATE_BETA * math.log(-GATE_GAMMA / GATE_ZETA))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The open units of the encoder's output, each times its gate."""
        active = self.active_units()
        return (self.encoder_fc(self.encoder_conv(x)) * self.gates())[:, active]

    def training_loss(self, x, generator=None):
        u = torch.rand((len(x), self.latent_size), generator=generator).clamp(1e-6, 1 - 1e-6).to(x.device)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / GATE_BETA)
        gates = (s * (GATE_ZETA - GATE_GAMMA) + GATE_GAMMA).clamp(0, 1)
        mse = F.mse_loss(self.decode(self.encoder_fc(self.encoder_conv(x)) * gates), x)
        expected_open = self.open_probability().sum()
        weight = self.gate_share * x.detach().var()
        return mse + weight * expected_open, {"mse": mse.detach(), "expected_open": expected_open.detach()}
