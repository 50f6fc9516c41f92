"""The models: the paper's autoencoder and the methods of its Table 2, one kind each.

* ``ae``: :class:`Autoencoder`, the paper's AE (the backbone of all); code: the encoder's output.
* ``vae``: :class:`VariationalAutoencoder`; code: the posterior mean.
* ``memae``: :class:`MemoryAutoencoder` (Gong et al., ICCV 2019); code: the memory read-out.
* ``ceae``: :class:`ContextEncodingAutoencoder` (erased rectangles); code: the encoder's output.
* ``dae``: :class:`DenoisingAutoencoder` (coarse noise, MIDL 2022); code: the encoder's output.
* ``nested``: :class:`NestedAutoencoder` (ordered code by nested dropout); code: at its truncation.
* ``gated``: :class:`GatedAutoencoder` (L0 gates on the code units); code: the gated code.

``nested`` and ``gated`` choose their latent capacity in one training (:mod:`.adaptive`).

Every kind has the AE's interface (``encode``, ``decode``, a deterministic ``forward`` returning
``(reconstruction, code)``, ``training_loss``), so scoring, metrics, latents and run directories
are the same for all. :func:`build_model` makes one from its kind, sizes and settings.
"""

from __future__ import annotations

from ._options import resolve_options
from .autoencoder import CHANNELS, HIDDEN, MAX_LATENT_SIZE, Autoencoder, check_sizes, count_parameters
from .adaptive import GatedAutoencoder, NestedAutoencoder, truncations
from .corrupted import ContextEncodingAutoencoder, DenoisingAutoencoder
from .memae import MemoryAutoencoder
from .vae import VariationalAutoencoder

__all__ = [
    "ADAPTIVE_KINDS", "CHANNELS", "HIDDEN", "MAX_LATENT_SIZE", "MODEL_KINDS", "Autoencoder", "ContextEncodingAutoencoder",
    "DenoisingAutoencoder", "GatedAutoencoder", "MemoryAutoencoder", "NestedAutoencoder", "VariationalAutoencoder",
    "build_model", "check_model", "check_sizes", "count_parameters", "truncations",
]

MODEL_CLASSES = {
    cls.kind: cls
    for cls in (Autoencoder, VariationalAutoencoder, MemoryAutoencoder, ContextEncodingAutoencoder,
                DenoisingAutoencoder, NestedAutoencoder, GatedAutoencoder)
}
MODEL_KINDS = tuple(MODEL_CLASSES)  # ("ae", "vae", "memae", "ceae", "dae", "nested", "gated")
# The kinds that choose their capacity in one training (their runs go through analysis.adaptive).
ADAPTIVE_KINDS = ("nested", "gated")


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
