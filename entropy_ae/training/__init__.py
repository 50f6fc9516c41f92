"""Training autoencoders on normal images.

- :mod:`entropy_ae.training.loop`: the reference loop (:class:`TrainConfig`, :func:`train_model`)
  and :func:`run_training` (train, evaluate, save one run directory).
- :mod:`entropy_ae.training.stacked`: many models stacked into one module (grouped kernels).
- :mod:`entropy_ae.training.batched`: training a grid of models at once, stacked or one per
  core, with the same results as the reference loop.
"""

from .loop import TrainConfig, run_training, train_model

__all__ = ["TrainConfig", "train_model", "run_training"]
