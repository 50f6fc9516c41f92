"""What a trained AE does with pseudo-anomalies: does it ignore them or copy them through?

The "too large" side of the latent size cannot be seen on normal images (see
:mod:`entropy_ae.data.pseudo_anomalies`). Here a model meets pseudo-anomalies made from the
held-out normal validation images, and three things are measured per family, none of which
uses a test label:

``copy_ratio``
    ``sum_mask (AE(x') - AE(x))^2 / sum_mask (x' - x)^2`` per image, inside the defect's mask:
    the share of the defect's energy that comes back out of the AE. 0: the AE ignores the
    defect (the ideal detector); 1: it copies it (the identical shortcut). Reported as the
    median over images (robust to the few images whose defect barely changed them).
``pseudo_auroc``, ``pseudo_ap``
    Image AUROC / AP of the reconstruction error, the clean validation images against the same
    images with the defect.
``pseudo_pixel_ap``
    Pixel AP of the anomaly maps against the defects' masks.

:func:`pseudo_anomaly_metrics` returns them per family (``<name>_<family>``) and averaged over
the families (``<name>``).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .data.pseudo_anomalies import FAMILIES, MIN_IMAGES, make_pseudo_anomalies
from .evaluation import reconstruct

METRICS = ("copy_ratio", "pseudo_auroc", "pseudo_ap", "pseudo_pixel_ap")


def pseudo_anomaly_seed(data) -> int:
    """The seed a dataset's pseudo-anomalies are drawn from: its spec's split seed (0 without one)."""
    spec = getattr(data, "spec", None)
    return int(spec.get("seed", 0)) if isinstance(spec, dict) else 0


def pseudo_anomalies(images: np.ndarray, families=FAMILIES, strength: float = 1.0, seed: int = 0):
    """``(family, perturbed, masks)`` for each family; family ``j`` uses seed ``seed + j``.

    The one place that fixes which defects a run is scored on, so every measurement of the same
    run and seed (here and in the analysis layer) sees the same images.
    """
    for j, family in enumerate(families):
        perturbed, masks = make_pseudo_anomalies(images, family, strength, seed + j)
        yield family, perturbed, masks


def copy_ratio(clean: np.ndarray, perturbed: np.ndarray, rec_clean: np.ndarray, rec_perturbed: np.ndarray,
               masks: np.ndarray) -> np.ndarray:
    """Per image: the energy of the change of the reconstruction over that of the input, inside the mask.

    Parameters
    ----------
    clean, perturbed : arrays (n, 1, s, s)
        Inputs without and with the defect.
    rec_clean, rec_perturbed : arrays (n, 1, s, s)
        The model's reconstructions of both.
    masks : bool array (n, 1, s, s)
        Where the defect is.

    Returns
    -------
    (n,) float64; NaN for an image whose defect changed no pixel.
    """
    masks = np.asarray(masks, dtype=bool)
    delta = np.where(masks, np.asarray(perturbed, np.float64) - clean, 0.0)
    response = np.where(masks, np.asarray(rec_perturbed, np.float64) - rec_clean, 0.0)
    energy = (delta ** 2).sum(axis=(1, 2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(energy > 0, (response ** 2).sum(axis=(1, 2, 3)) / energy, np.nan)


def pseudo_anomaly_metrics(model, images: np.ndarray, families=FAMILIES, strength: float = 1.0,
                           seed: int = 0) -> dict:
    """Copy ratio, image AUROC / AP and pixel AP of ``model`` on pseudo-anomalies of ``images``.

    Parameters
    ----------
    model : Autoencoder
    images : array (n, 1, s, s)
        Held-out NORMAL images (a run's validation images), never test images. Fewer than
        ``MIN_IMAGES`` give a warning: the AUROC of so few is too noisy to rank latent sizes.
    families : sequence of str
        Pseudo-anomaly families (:data:`~entropy_ae.data.pseudo_anomalies.FAMILIES`).
    strength : float in (0, 1]
    seed : int
        Family ``j`` uses seed ``seed + j``, so the defects do not depend on the model.

    Returns
    -------
    dict
        ``<metric>_<family>`` for every metric of :data:`METRICS` and family, and ``<metric>``,
        the mean over the families; ``pseudo_families``, ``pseudo_strength``, ``n_pseudo``.
    """
    images = np.asarray(images, dtype=np.float32)
    if len(images) < MIN_IMAGES:
        warnings.warn(f"only {len(images)} normal validation images for the pseudo-anomaly scores; "
                      f"they need at least {MIN_IMAGES} for an AUROC that can rank latent sizes "
                      "(give more validation images)", stacklevel=2)
    rec_clean = reconstruct(model, images)
    clean_maps = (rec_clean - images) ** 2
    out: dict = {}
    for family, perturbed, masks in pseudo_anomalies(images, families, strength, seed):
        rec = reconstruct(model, perturbed)
        maps = (rec - perturbed) ** 2
        scores = np.concatenate([clean_maps.mean(axis=(1, 2, 3)), maps.mean(axis=(1, 2, 3))])
        labels = np.r_[np.zeros(len(images)), np.ones(len(images))]
        pixel_truth = np.concatenate([np.zeros_like(masks), masks]).ravel()
        out[f"copy_ratio_{family}"] = float(np.nanmedian(copy_ratio(images, perturbed, rec_clean, rec, masks)))
        out[f"pseudo_auroc_{family}"] = float(roc_auc_score(labels, scores))
        out[f"pseudo_ap_{family}"] = float(average_precision_score(labels, scores))
        out[f"pseudo_pixel_ap_{family}"] = float(average_precision_score(
            pixel_truth, np.concatenate([clean_maps, maps]).ravel()))
    for metric in METRICS:
        out[metric] = float(np.mean([out[f"{metric}_{family}"] for family in families]))
    out.update(pseudo_families=list(families), pseudo_strength=float(strength), n_pseudo=int(len(images)))
    return out
