"""The models: the paper's autoencoder and the methods of its Table 2, one kind each.

========  ==========================================================  ==============================
kind      model                                                       code the estimators read
========  ==========================================================  ==============================
``ae``    :class:`Autoencoder`, the paper's AE (the backbone of all)  the encoder's output
``vae``   :class:`VariationalAutoencoder`                             the posterior mean
``memae`` :class:`MemoryAutoencoder` (Gong et al., ICCV 2019)         the memory read-out
``ceae``  :class:`ContextEncodingAutoencoder` (erased rectangles)     the encoder's output
``dae``   :class:`DenoisingAutoencoder` (coarse noise, MIDL 2022)     the encoder's output
========  ==========================================================  ==============================

Every kind has the AE's interface (``encode``, ``decode``, a deterministic ``forward`` returning
``(reconstruction, code)``, ``training_loss``), so scoring, metrics, latents and run directories
are the same for all. :func:`build_model` makes one from its kind, sizes and settings.
"""

from __future__ import annotations

from ._options import resolve_options
from .autoencoder import CHANNELS, HIDDEN, MAX_LATENT_SIZE, Autoencoder, check_sizes, count_parameters
from .corrupted import ContextEncodingAutoencoder, DenoisingAutoencoder
from .memae import MemoryAutoencoder
from .vae import VariationalAutoencoder

__all__ = [
    "CHANNELS", "HIDDEN", "MAX_LATENT_SIZE", "MODEL_KINDS", "Autoencoder", "ContextEncodingAutoencoder",
    "DenoisingAutoencoder", "MemoryAutoencoder", "VariationalAutoencoder", "build_model", "check_model",
    "check_sizes", "count_parameters",
]

MODEL_CLASSES = {
    cls.kind: cls
    for cls in (Autoencoder, VariationalAutoencoder, MemoryAutoencoder, ContextEncodingAutoencoder,
                DenoisingAutoencoder)
}
MODEL_KINDS = tuple(MODEL_CLASSES)  # ("ae", "vae", "memae", "ceae", "dae")


def check_model(kind: str, options: dict | None = None) -> dict:
    """The full settings of model ``kind`` (defaults updated with ``options``); ``ValueError`` when bad."""
    if kind not in MODEL_CLASSES:
        raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    return resolve_options(kind, getattr(MODEL_CLASSES[kind], "DEFAULTS", {}), options)


def build_model(kind: str = "ae", latent_size: int = 16, image_size: int = 64, options: dict | None = None
                ) -> Autoencoder:
    """A new (untrained) model of ``kind``; its initialisation draws from torch's global RNG."""
    settings = check_model(kind, options)
    return MODEL_CLASSES[kind](latent_size, image_size, **settings)
