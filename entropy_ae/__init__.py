"""entropy-ae: latent-entropy analysis of autoencoders for medical anomaly detection.

The core in one screen::

    from entropy_ae import load_data, TrainConfig, run_training, extract_latents

    data = load_data("digits:0", image_size=32)
    metrics = run_training(data, TrainConfig(latent_size=16, epochs=20, seed=0), "runs/digits")
    latents = extract_latents("runs/digits")   # {"train_normal": (n, 16) float32, ...}

The names below are imported on first use, so ``import entropy_ae`` (and
``entropy-ae --help``) does not pay for torch and scikit-learn up front.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Autoencoder": "model",
    "TrainConfig": "training",
    "train_model": "training",
    "evaluate_model": "evaluation",
    "anomaly_maps": "evaluation",
    "run_training": "training",
    "save_run": "runs",
    "load_model": "runs",
    "load_metrics": "runs",
    "extract_latents": "runs",
    "AnomalyData": "data",
    "DataError": "data",
    "load_data": "data",
    "from_arrays": "data",
    "AutoencoderDetector": "detector",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
