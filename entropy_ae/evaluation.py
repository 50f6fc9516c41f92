"""Scoring images with a trained autoencoder and the paper's metrics.

The anomaly map of an image is its per-pixel squared reconstruction error and
the image score is the map's mean (Cai, Chen, Cheng, MICCAI 2024). From these:

* image AUROC and average precision (AP) on the labelled test set;
* with pixel masks: pixel AP and the best Dice over 200 quantile thresholds of
  the pooled test maps, as in the paper's code. That threshold is chosen on the
  test set itself, so best Dice is an *oracle upper bound*, not a deployable
  figure;
* a deployable operating point: the threshold at a target false-positive rate
  fixed on the held-out normal validation images, and the sensitivity and
  specificity it gives on the test set;
* mean reconstruction error (MSE, images in [-1, 1]) on train normal, test
  normal and test abnormal images (the paper's Fig. 3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from .data import AnomalyData
from .model import Autoencoder
from .reproducibility import resolve_device

N_DICE_THRESHOLDS = 200
BEST_DICE_NOTE = (
    "best_dice is an oracle upper bound: its threshold is the best of 200 quantiles of the pooled "
    "test anomaly maps, chosen on the test set itself"
)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    # "cuda" without an index means the current CUDA device.
    current = torch.cuda.current_device()
    return (current if a.index is None else a.index) == (current if b.index is None else b.index)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run ``model`` in eval mode (BatchNorm uses its running statistics), then restore its mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)


def _map_batches(
    model: Autoencoder, images: np.ndarray, fn: Callable[[torch.Tensor], torch.Tensor],
    device: str | torch.device | None, batch_size: int,
) -> np.ndarray:
    """Apply ``fn`` to ``images`` in batches on ``device`` in eval mode; concatenate as float32 numpy."""
    dev = model_device(model)
    if device is not None and not _same_device(resolve_device(device), dev):
        raise ValueError(f"model is on {dev} but device={str(device)!r} was asked for; move the model first")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    out = []
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            x = torch.as_tensor(images[start:start + batch_size], dtype=torch.float32, device=dev)
            out.append(fn(x).float().cpu().numpy())
    if not out:
        raise ValueError("no images to process (empty array)")
    return np.concatenate(out)


def anomaly_maps(
    model: Autoencoder, images: np.ndarray, device: str | torch.device | None = None, batch_size: int = 256
) -> np.ndarray:
    """Per-pixel squared reconstruction error ``(n, 1, s, s)``, float32, for images in [-1, 1]."""
    return _map_batches(model, images, lambda x: (model(x)[0] - x).square(), device, batch_size)


def reconstruct(
    model: Autoencoder, images: np.ndarray, device: str | torch.device | None = None, batch_size: int = 256
) -> np.ndarray:
    """Reconstructions ``(n, 1, s, s)``, float32, computed in eval mode."""
    return _map_batches(model, images, lambda x: model(x)[0], device, batch_size)


def image_scores(
    model: Autoencoder, images: np.ndarray, device: str | torch.device | None = None, batch_size: int = 256
) -> np.ndarray:
    """Anomaly score per image ``(n,)``: the mean of its anomaly map (its MSE)."""
    return _map_batches(
        model, images, lambda x: (model(x)[0] - x).square().mean(dim=(1, 2, 3)), device, batch_size
    )


def encode_images(
    model: Autoencoder, images: np.ndarray, device: str | torch.device | None = None, batch_size: int = 512
) -> np.ndarray:
    """Latent codes ``(n, latent_size)``, float32, computed in eval mode."""
    return _map_batches(model, images, model.encode, device, batch_size)


def threshold_at_fpr(normal_scores: np.ndarray, target_fpr: float) -> float:
    """Smallest quantile threshold whose false-positive rate on ``normal_scores`` is at most ``target_fpr``.

    An image is called anomalous when its score is strictly above the threshold.
    With ``method="higher"`` the fraction of normal scores above the returned
    value is at most ``target_fpr`` (exactly when there are no ties).
    """
    return float(np.quantile(normal_scores, 1.0 - target_fpr, method="higher"))


def best_dice(maps: np.ndarray, masks: np.ndarray, n_thresholds: int = N_DICE_THRESHOLDS) -> tuple[float, float]:
    """Best pooled Dice over ``n_thresholds`` quantile thresholds of ``maps`` (an oracle upper bound).

    Thresholds are the pooled map values at ranks ``0, step, 2 step, ...`` with
    ``step = size // n_thresholds`` (the paper's code); a pixel is predicted
    abnormal when its value is strictly above the threshold. Dice is
    ``2 TP / (|predicted| + |true|)`` over all test pixels together.

    Returns
    -------
    (dice, threshold)
    """
    values = maps.ravel()
    truth = masks.ravel().astype(bool)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # true_above[i] = number of true pixels among sorted positions i.. end
    true_above = np.concatenate([np.cumsum(truth[order][::-1])[::-1], [0]])
    step = max(1, values.size // n_thresholds)
    thresholds = sorted_values[::step]
    first_above = np.searchsorted(sorted_values, thresholds, side="right")
    predicted = values.size - first_above
    tp = true_above[first_above]
    dice = 2.0 * tp / (predicted + truth.sum())
    best = int(np.argmax(dice))
    return float(dice[best]), float(thresholds[best])


def _check_test_set(data: AnomalyData) -> None:
    labels = np.asarray(data.test_labels)
    if labels.shape != (len(data.test),):
        raise ValueError(f"test_labels has shape {labels.shape} but there are {len(data.test)} test images")
    present = set(np.unique(labels).tolist())
    if present != {0, 1}:
        raise ValueError(
            f"the test set needs both normal (0) and abnormal (1) images for AUROC/AP; its labels are {sorted(present)}"
        )


def _check_finite_errors(scores: np.ndarray, what: str) -> None:
    """Refuse NaN/inf reconstruction errors, which would make every metric meaningless (or sklearn fail)."""
    bad = ~np.isfinite(scores)
    if bad.any():
        raise FloatingPointError(
            f"the reconstruction errors of {int(bad.sum())} of {len(scores)} {what} images are NaN or infinite, "
            "so no metric can be computed: the model's weights or the images hold NaN/inf (a diverged "
            "training? retrain with a lower lr)"
        )


def evaluate_model(
    model: Autoencoder, data: AnomalyData, device: str | torch.device | None = None, target_fpr: float = 0.05,
    pseudo_anomalies: bool = True,
) -> dict:
    """Score ``data`` with ``model`` and return the metrics as a JSON-serialisable dict.

    Parameters
    ----------
    model : Autoencoder
        Trained model of any kind (:mod:`entropy_ae.model`); it is run in eval mode and its mode is restored afterwards.
    data : AnomalyData
        Train, held-out normal val, and labelled test images (masks optional).
    device : str or torch.device, optional
        Where to run; default the model's device.
    target_fpr : float, default 0.05
        False-positive rate on the normal val images that fixes ``threshold``.
    pseudo_anomalies : bool, default True
        Also score pseudo-anomalies made from the normal val images
        (:func:`entropy_ae.leakage.pseudo_anomaly_metrics`: copy ratio, pseudo AUROC / AP /
        pixel AP per family); they use no test label.

    Returns
    -------
    dict
        ``auroc``, ``ap`` (image level); ``pixel_ap``, ``best_dice`` (None without
        masks; ``best_dice`` is an oracle upper bound, see ``best_dice_note``);
        ``threshold``, ``target_fpr``, ``val_fpr``, ``sensitivity``,
        ``specificity`` (None when there are no val images); mean MSE
        ``rec_error_train_normal``, ``rec_error_val_normal``, ``rec_error_test_normal``,
        ``rec_error_test_abnormal``; the image counts; the pseudo-anomaly metrics; and for a
        model with a ``rate`` (the VAE), ``kl_rate_<split>``, its mean KL to the prior in nats; for
        one with an ``effective_latent_size`` (nested, gated), that number of active code units.

    Raises
    ------
    FloatingPointError
        When a reconstruction error is NaN or infinite (non-finite weights or images).
    """
    if not 0 < target_fpr < 1:
        raise ValueError(f"target_fpr must be strictly between 0 and 1, got {target_fpr!r}")
    _check_test_set(data)
    labels = np.asarray(data.test_labels).astype(np.int64)
    abnormal = labels == 1

    if data.test_masks is not None:
        maps = anomaly_maps(model, data.test, device)
        test_scores = maps.mean(axis=(1, 2, 3))
    else:
        maps = None
        test_scores = image_scores(model, data.test, device)
    train_scores = image_scores(model, data.train, device)
    _check_finite_errors(test_scores, "test")
    _check_finite_errors(train_scores, "training")

    metrics: dict = {
        "auroc": float(roc_auc_score(labels, test_scores)),
        "ap": float(average_precision_score(labels, test_scores)),
        "pixel_ap": None,
        "best_dice": None,
    }
    if maps is not None:
        masks = np.asarray(data.test_masks)
        if masks.shape != maps.shape:
            raise ValueError(f"test_masks has shape {masks.shape} but the test images give maps of shape {maps.shape}")
        if masks.any():
            metrics["pixel_ap"] = float(average_precision_score(masks.ravel().astype(np.int8), maps.ravel()))
            metrics["best_dice"], metrics["best_dice_threshold"] = best_dice(maps, masks)
            metrics["best_dice_is_oracle"] = True
            metrics["best_dice_note"] = BEST_DICE_NOTE
        else:
            metrics["pixel_metrics_note"] = "test_masks has no abnormal pixel: pixel_ap and best_dice are undefined"

    metrics.update(threshold=None, target_fpr=float(target_fpr), val_fpr=None, sensitivity=None, specificity=None,
                   rec_error_val_normal=None)
    if data.val is not None and len(data.val):
        val_scores = image_scores(model, data.val, device)
        _check_finite_errors(val_scores, "validation")
        threshold = threshold_at_fpr(val_scores, target_fpr)
        metrics.update(
            rec_error_val_normal=float(val_scores.mean()),
            threshold=threshold,
            val_fpr=float(np.mean(val_scores > threshold)),
            sensitivity=float(np.mean(test_scores[abnormal] > threshold)),
            specificity=float(np.mean(test_scores[~abnormal] <= threshold)),
        )

    metrics.update(
        rec_error_train_normal=float(train_scores.mean()),
        rec_error_test_normal=float(test_scores[~abnormal].mean()),
        rec_error_test_abnormal=float(test_scores[abnormal].mean()),
        n_train=int(len(data.train)),
        n_val=0 if data.val is None else int(len(data.val)),
        n_test_normal=int((~abnormal).sum()),
        n_test_abnormal=int(abnormal.sum()),
    )
    if hasattr(model, "effective_latent_size"):  # nested and gated: the capacity they use
        metrics["effective_latent_size"] = model.effective_latent_size()
    if hasattr(model, "rate"):  # the VAE's KL to its prior, in nats per image
        for split in ("train_normal", "val_normal", "test_normal", "test_abnormal"):
            images = data.split(split)
            metrics[f"kl_rate_{split}"] = (
                float(_map_batches(model, images, model.rate, device, 256).mean()) if images is not None and len(images) else None)
    if pseudo_anomalies and data.val is not None and len(data.val) >= 2:
        from .leakage import pseudo_anomaly_metrics, pseudo_anomaly_seed  # imported here: it builds on this module

        metrics.update(pseudo_anomaly_metrics(model, data.val, seed=pseudo_anomaly_seed(data)))
    return metrics
