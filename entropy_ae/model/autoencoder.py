"""The paper's convolutional autoencoder (Cai, Chen, Cheng, MICCAI 2024), the backbone of every model kind.

Encoder: four blocks Conv(k=4, s=2, p=1, no bias) + BatchNorm + ReLU with
channels 1 -> 16 -> 32 -> 64 -> 64, then a linear bottleneck
flatten -> Linear -> BatchNorm1d -> ReLU -> Linear(., latent_size).
The decoder mirrors it; its last transposed convolution has no BN/ReLU, so
the output is unbounded and compared by MSE with inputs scaled to [-1, 1].

Every model kind (:mod:`entropy_ae.model`) is this class or a subclass with the same
interface: ``encode`` gives the code the estimators read, ``forward`` the deterministic
reconstruction used for scoring, and ``training_loss`` the objective the training loop
minimises (the only place where a kind's corruption or sampling happens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CHANNELS = (16, 32, 64, 64)
HIDDEN = 1024
MAX_LATENT_SIZE = 1024


def check_sizes(latent_size: int, image_size: int) -> None:
    """Raise ``ValueError`` unless 1 <= latent_size <= 1024 and image_size is a multiple of 16."""
    if not isinstance(latent_size, int) or not 1 <= latent_size <= MAX_LATENT_SIZE:
        raise ValueError(
            f"latent_size must be an integer from 1 to {MAX_LATENT_SIZE}, got {latent_size!r}"
        )
    if not isinstance(image_size, int) or image_size < 16 or image_size % 16:
        raise ValueError(
            f"image_size must be a positive multiple of 16 (four stride-2 blocks halve it "
            f"four times), got {image_size!r}"
        )


class Autoencoder(nn.Module):
    """The paper's AE for ``image_size`` x ``image_size`` grey images.

    Parameters
    ----------
    latent_size : int
        Dimension d of the code z, 1 to 1024.
    image_size : int, default 64
        Side of the square input, a multiple of 16.
    """

    kind = "ae"

    def __init__(self, latent_size: int = 16, image_size: int = 64):
        super().__init__()
        check_sizes(latent_size, image_size)
        self.latent_size = latent_size
        self.image_size = image_size
        side = image_size // 16
        self._feature_shape = (CHANNELS[-1], side, side)
        flat = CHANNELS[-1] * side * side

        enc = []
        c_in = 1
        for c_out in CHANNELS:
            enc += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
            c_in = c_out
        self.encoder_conv = nn.Sequential(*enc)
        self.encoder_fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, HIDDEN),
            nn.BatchNorm1d(HIDDEN),
            nn.ReLU(True),
            nn.Linear(HIDDEN, self.code_units()),
        )
        self.decoder_fc = nn.Sequential(
            nn.Linear(latent_size, HIDDEN),
            nn.BatchNorm1d(HIDDEN),
            nn.ReLU(True),
            nn.Linear(HIDDEN, flat),
        )
        dec = []
        c_in = CHANNELS[-1]
        decoder_channels = CHANNELS[-2::-1] + (1,)  # (64, 32, 16, 1): mirrors the encoder
        for i, c_out in enumerate(decoder_channels):
            last = i == len(decoder_channels) - 1
            # Only the output layer has a bias: elsewhere BatchNorm's shift makes it redundant.
            dec.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=last))
            if not last:
                dec += [nn.BatchNorm2d(c_out), nn.ReLU(True)]
            c_in = c_out
        self.decoder_conv = nn.Sequential(*dec)

    def code_units(self) -> int:
        """Width of the encoder's last linear layer (the VAE doubles it for the log-variance)."""
        return self.latent_size

    def options(self) -> dict:
        """The kind's own settings, recorded in ``config.json`` (none for the plain AE)."""
        return {}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(n, 1, s, s)`` in [-1, 1] to codes ``(n, latent_size)``."""
        return self.encoder_fc(self.encoder_conv(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map codes ``(n, latent_size)`` to reconstructions ``(n, 1, s, s)``."""
        h = self.decoder_fc(z).view(z.shape[0], *self._feature_shape)
        return self.decoder_conv(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reconstruction, code)``: deterministic, the path every score and code is computed on."""
        z = self.encode(x)
        return self.decode(z), z

    def training_loss(self, x: torch.Tensor, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss the training loop minimises on a batch ``x`` and its named terms.

        The plain AE's is the MSE of the reconstruction, averaged over all pixels. ``generator``
        (a CPU ``torch.Generator``) drives a kind's random corruption or sampling; unused here.
        """
        loss = F.mse_loss(self(x)[0], x)
        return loss, {"mse": loss.detach()}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
