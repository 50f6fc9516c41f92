"""The variational autoencoder of the paper's Table 2 on the paper's backbone (Kingma & Welling, ICLR 2014).

The encoder's last linear layer outputs a mean and a log-variance (2d units); training decodes
the reparameterised sample ``z = mean + exp(logvar / 2) * eps`` and minimises
``MSE + kl_weight * KL(q(z|x) || N(0, I))``, the KL summed over the d units and averaged over
the batch (``kl_weight`` 0.005, the setting of the paper's code). Scoring and the code the
estimators read use the posterior mean, so a trained VAE scores deterministically.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._options import resolve_options
from .autoencoder import Autoencoder


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag(exp(logvar))) || N(0, I)) per row, in nats: ``0.5 * sum(m^2 + e^lv - lv - 1)``."""
    return 0.5 * (mean.square() + logvar.exp() - logvar - 1).sum(dim=1)


class VariationalAutoencoder(Autoencoder):
    """The paper's AE with a Gaussian posterior over a ``latent_size``-dimensional code.

    Parameters
    ----------
    latent_size, image_size : int
        As :class:`~entropy_ae.model.Autoencoder`.
    **options
        ``kl_weight`` (default 0.005): weight of the KL term (nats per image) against the per-pixel MSE.
    """

    kind = "vae"
    DEFAULTS = {"kl_weight": 0.005}

    def __init__(self, latent_size: int = 16, image_size: int = 64, **options):
        super().__init__(latent_size, image_size)
        self.kl_weight = resolve_options(self.kind, self.DEFAULTS, options)["kl_weight"]

    def code_units(self) -> int:
        return 2 * self.latent_size

    def options(self) -> dict:
        return {"kl_weight": self.kl_weight}

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, logvar)`` of q(z|x), each ``(n, latent_size)``."""
        h = self.encoder_fc(self.encoder_conv(x))
        return h[:, : self.latent_size], h[:, self.latent_size:]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean: the code scored and measured."""
        return self.posterior(x)[0]

    def rate(self, x: torch.Tensor) -> torch.Tensor:
        """Per image, KL(q(z|x) || N(0, I)) in nats: the rate, an upper bound on the code's information."""
        return gaussian_kl(*self.posterior(x))

    def training_loss(self, x, generator=None):
        mean, logvar = self.posterior(x)
        eps = torch.randn(mean.shape, generator=generator).to(mean.device)
        x_hat = self.decode(mean + (0.5 * logvar).exp() * eps)
        mse = F.mse_loss(x_hat, x)
        kl = gaussian_kl(mean, logvar).mean()
        return mse + self.kl_weight * kl, {"mse": mse.detach(), "kl": kl.detach()}
