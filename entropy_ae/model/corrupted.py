"""Autoencoders trained to undo a corruption of their input: CeAE (the paper's Table 2) and a coarse-noise DAE.

Both have the plain AE's architecture and score like it; only training differs. The corruption
is drawn from the training loop's CPU generator, so the same seed gives the same corruptions on
any device.

``ceae`` (context-encoding AE)
    One random rectangle per image is set to -1 (black) and the AE reconstructs the intact image.
    The rectangle covers ``erase_scale`` of the image (0.024 as in the paper's code, which uses
    torchvision's ``RandomErasing``: about 10x10 pixels at 64x64) with an aspect ratio drawn
    log-uniformly from RandomErasing's default range (0.3, 3.3). Unlike RandomErasing (which
    erases with probability 0.5 by default and re-draws a rectangle that does not fit) every
    image is erased and a side that would not fit is clipped to the image.
``dae`` (denoising AE, Kascenas, Pugeault, O'Neil, MIDL 2022)
    Coarse Gaussian noise is added: noise of std ``noise_std`` drawn on a grid
    ``noise_downsample`` times coarser than the image, upsampled bilinearly (their 16x16 noise for
    128x128 images is ``noise_downsample=8``; std 0.2 as theirs, for images in [-1, 1]).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._options import resolve_options
from .autoencoder import Autoencoder

ERASE_VALUE = -1.0
ERASE_RATIO = (0.3, 3.3)  # torchvision RandomErasing's default aspect-ratio range (height / width)


def erase_rectangles(x: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A copy of ``x`` ``(n, 1, s, s)`` with one random rectangle of area ``scale * s * s`` per image set to -1."""
    n, _, height, width = x.shape
    log_ratio = torch.empty(n).uniform_(math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]), generator=generator)
    area = scale * height * width
    h = torch.sqrt(area * log_ratio.exp()).round().clamp(1, height).long()
    w = torch.sqrt(area / log_ratio.exp()).round().clamp(1, width).long()
    top = (torch.rand(n, generator=generator) * (height - h + 1)).floor().long()
    left = (torch.rand(n, generator=generator) * (width - w + 1)).floor().long()
    rows, cols = torch.arange(height), torch.arange(width)
    inside_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
    inside_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
    mask = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None].to(x.device)
    return x.masked_fill(mask, ERASE_VALUE)


def coarse_noise(shape: torch.Size, std: float, downsample: int, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """Gaussian noise of ``std`` on a grid ``downsample`` times coarser than ``shape``'s, upsampled bilinearly."""
    n, c, height, width = shape
    grid = torch.randn((n, c, max(1, height // downsample), max(1, width // downsample)), generator=generator)
    return F.interpolate(grid * std, size=(height, width), mode="bilinear", align_corners=False)


class ContextEncodingAutoencoder(Autoencoder):
    """The paper's AE trained to fill in an erased rectangle (``erase_scale``, default 0.024)."""

    kind = "ceae"
    DEFAULTS = {"erase_scale": 0.024}

    def __init__(self, latent_size: int = 16, image_size: int = 64, **options):
        super().__init__(latent_size, image_size)
        self.erase_scale = resolve_options(self.kind, self.DEFAULTS, options)["erase_scale"]
        if self.erase_scale >= 1:
            raise ValueError(f"model 'ceae': erase_scale is a fraction of the image, below 1; got {self.erase_scale}")

    def options(self) -> dict:
        return {"erase_scale": self.erase_scale}

    def training_loss(self, x, generator=None):
        loss = F.mse_loss(self(erase_rectangles(x, self.erase_scale, generator))[0], x)
        return loss, {"mse": loss.detach()}


class DenoisingAutoencoder(Autoencoder):
    """The paper's AE trained to remove coarse noise (``noise_std`` 0.2, ``noise_downsample`` 8)."""

    kind = "dae"
    DEFAULTS = {"noise_std": 0.2, "noise_downsample": 8}

    def __init__(self, latent_size: int = 16, image_size: int = 64, **options):
        super().__init__(latent_size, image_size)
        settings = resolve_options(self.kind, self.DEFAULTS, options)
        self.noise_std, self.noise_downsample = settings["noise_std"], settings["noise_downsample"]

    def options(self) -> dict:
        return {"noise_std": self.noise_std, "noise_downsample": self.noise_downsample}

    def training_loss(self, x, generator=None):
        noise = coarse_noise(x.shape, self.noise_std, self.noise_downsample, generator).to(x.device)
        loss = F.mse_loss(self(x + noise)[0], x)
        return loss, {"mse": loss.detach()}
