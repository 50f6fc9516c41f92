"""What a run's code knows about pseudo-anomalies: the "too large" side, from normal data only.

On codes of normal images a measurement can only show that a code is too small (see
:mod:`analysis.measures`). Whether it is too large -- whether it also carries what is not normal --
shows on inputs off the normal manifold. These are the pseudo-anomalies of
:mod:`entropy_ae.data.pseudo_anomalies`, made from the run's held-out normal *validation* images,
so nothing here uses a test label. They are the counterparts of :func:`label_information`
(which uses the real lesions and their test labels):

``mi_code_pseudo``
    I(Z; perturbed-or-not) in nats, between the codes of the clean validation images and of the
    same images with a pseudo-anomaly, by Ross's k-NN estimator
    (:func:`entropy_ae.estimators.mutual_information_discrete`); at most log 2 (two classes of
    equal size); about 0 when the code ignores the defect.
``h_z_pseudo_excess``
    H(Z | perturbed) - H(Z | clean), both at the same n, so the k-NN biases largely cancel: the
    room the defects take in the code beyond the clean images.

Both per family (``<name>_<family>``) and as the mean over the families (``<name>``). The defects
come from :func:`entropy_ae.leakage.pseudo_anomalies` with the seed of
:func:`entropy_ae.leakage.pseudo_anomaly_seed`, as the run's own scoring, so the codes measured
here are of the very images the run's copy ratio and pseudo AUROC were scored on.

:func:`run_pseudo_leakage` gathers every pseudo-anomaly measurement of a run: these two, and the
copy ratio, pseudo AUROC / AP / pixel AP and ``rec_error_val_normal`` of the run's
``metrics.json`` (computed now when the run predates them or other data are given).
"""

from __future__ import annotations

import json
import math

import numpy as np

from entropy_ae.data.pseudo_anomalies import FAMILIES
from entropy_ae.estimators import entropy, mutual_information_discrete

# Fewest validation images for the k-NN measures: Ross's estimator needs more than k = 3 per class,
# and an entropy difference of fewer than 10 codes per class is noise.
MIN_CODES = 10
# The pseudo-anomaly metrics that evaluate_model writes into metrics.json (plus their per-family keys).
PSEUDO_METRICS = ("copy_ratio", "pseudo_auroc", "pseudo_ap", "pseudo_pixel_ap")
INFORMATION = ("mi_code_pseudo", "h_z_pseudo_excess")


def family_columns(names=PSEUDO_METRICS + INFORMATION, families=FAMILIES) -> list[str]:
    """Every per-family column name ``<name>_<family>``, in (name, family) order."""
    return [f"{name}_{family}" for name in names for family in families]


def pseudo_codes(model, images, families=FAMILIES, strength: float = 1.0, seed: int = 0) -> dict:
    """Codes of ``images`` with each family's pseudo-anomaly: ``{family: (n, d) float64}``.

    Family ``j`` of ``families`` uses seed ``seed + j``, as :func:`entropy_ae.leakage.pseudo_anomaly_metrics`.
    """
    from entropy_ae.evaluation import encode_images  # torch: only when codes are computed
    from entropy_ae.leakage import pseudo_anomalies

    return {family: np.asarray(encode_images(model, perturbed), dtype=np.float64)
            for family, perturbed, _ in pseudo_anomalies(images, families, strength, seed)}


def _excess(h_perturbed: float, h_clean: float) -> float:
    """Difference of two entropies; NaN when either is not finite (a singular code has H = -inf)."""
    if not (math.isfinite(h_perturbed) and math.isfinite(h_clean)):
        return float("nan")
    return h_perturbed - h_clean


def pseudo_information(z_clean, z_perturbed: dict, method: str = "knn") -> dict:
    """I(Z; perturbed) and H(Z | perturbed) - H(Z | clean), per family and their mean over families.

    Parameters
    ----------
    z_clean : array (n, d)
        Codes of the clean validation images.
    z_perturbed : dict
        ``{family: (n, d) codes}`` of the same images with that family's pseudo-anomaly
        (:func:`pseudo_codes`); same n as ``z_clean``, so both classes are of equal size.
    method : str
        Entropy estimator of :func:`entropy_ae.estimators.entropy` for the excess.

    Returns
    -------
    dict
        ``mi_code_pseudo_<family>``, ``h_z_pseudo_excess_<family>``, their means over the
        families ``mi_code_pseudo``, ``h_z_pseudo_excess`` (NaN-ignoring; NaN when no family has
        a value), and ``n_pseudo_codes`` (codes per class).
    """
    zc = np.asarray(z_clean, dtype=np.float64)
    if len(zc) < MIN_CODES:
        raise ValueError(f"need at least {MIN_CODES} validation codes for the pseudo-anomaly information, got {len(zc)}")
    h_clean = float(entropy(zc, method=method))
    labels = np.r_[np.zeros(len(zc), np.int64), np.ones(len(zc), np.int64)]
    out: dict = {}
    for family, zp in z_perturbed.items():
        zp = np.asarray(zp, dtype=np.float64)
        if zp.shape != zc.shape:
            raise ValueError(f"codes of family {family!r} have shape {zp.shape}, the clean ones {zc.shape}")
        out[f"mi_code_pseudo_{family}"] = float(mutual_information_discrete(np.concatenate([zc, zp]), labels))
        out[f"h_z_pseudo_excess_{family}"] = _excess(float(entropy(zp, method=method)), h_clean)
    for name in INFORMATION:
        values = [out[f"{name}_{family}"] for family in z_perturbed]
        out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    out["n_pseudo_codes"] = int(len(zc))
    return out


def _same_data(data, config: dict) -> bool:
    """True when ``data`` is the data the run was trained (and its metrics.json scored) on."""
    def canonical(spec):
        return json.dumps(spec, sort_keys=True, default=str)

    return data is None or canonical(getattr(data, "spec", None)) == canonical(config.get("data"))


def recorded_pseudo_metrics(metrics: dict) -> dict:
    """The pseudo-anomaly metrics and ``rec_error_val_normal`` a run's metrics.json holds ({} if none)."""
    if metrics.get("pseudo_auroc") is None:
        return {}
    keys = ["rec_error_val_normal", *PSEUDO_METRICS, *family_columns(PSEUDO_METRICS, metrics.get("pseudo_families")
                                                                      or FAMILIES),
            "pseudo_strength", "n_pseudo"]
    out = {k: metrics.get(k) for k in keys if k in metrics}
    out["pseudo_families"] = ",".join(metrics.get("pseudo_families") or FAMILIES)
    return out


def _scored_now(model, data, families, strength: float) -> dict:
    """The metrics.json pseudo-anomaly metrics and ``rec_error_val_normal``, computed now on ``data.val``."""
    from entropy_ae.evaluation import image_scores
    from entropy_ae.leakage import pseudo_anomaly_metrics, pseudo_anomaly_seed

    out = pseudo_anomaly_metrics(model, data.val, families, strength, seed=pseudo_anomaly_seed(data))
    out["pseudo_families"] = ",".join(out["pseudo_families"])
    out["rec_error_val_normal"] = float(np.mean(image_scores(model, data.val)))
    return out


def run_pseudo_leakage(run_dir, data=None, method: str = "knn") -> dict:
    """Every pseudo-anomaly measurement of a trained run (normal data only).

    Parameters
    ----------
    run_dir : path
        A complete run directory.
    data : AnomalyData, optional
        Whose validation images to perturb; default the run's own data (rebuilt from config.json).
    method : str
        Entropy estimator for ``h_z_pseudo_excess``.

    Returns
    -------
    dict
        The copy ratio, pseudo AUROC / AP / pixel AP (per family and their mean),
        ``rec_error_val_normal``, ``pseudo_families`` (comma-separated), ``pseudo_strength``,
        ``n_pseudo`` -- read from the run's metrics.json when it holds them for this data, else
        computed now -- and :func:`pseudo_information` of the codes; ``pseudo_metrics_source``
        says which (``"metrics.json"`` or ``"measured"``).

    Raises
    ------
    ValueError
        When the data have fewer than :data:`MIN_CODES` validation images.
    """
    from entropy_ae.evaluation import encode_images
    from entropy_ae.leakage import pseudo_anomaly_seed
    from entropy_ae.runs import data_from_config, load_metrics, load_model

    model, config = load_model(run_dir, device="cpu")
    own = _same_data(data, config)
    if data is None:
        data = data_from_config(config)
    if data.val is None or len(data.val) < MIN_CODES:
        n = 0 if data.val is None else len(data.val)
        raise ValueError(f"{data.name} has {n} validation images; the pseudo-anomaly measurements need at least "
                         f"{MIN_CODES}")
    recorded = recorded_pseudo_metrics(load_metrics(run_dir)) if own else {}
    families = tuple(recorded["pseudo_families"].split(",")) if recorded else FAMILIES
    strength = float(recorded.get("pseudo_strength", 1.0)) if recorded else 1.0
    out = dict(recorded) if recorded else _scored_now(model, data, families, strength)
    out["pseudo_metrics_source"] = "metrics.json" if recorded else "measured"
    z_clean = np.asarray(encode_images(model, data.val), dtype=np.float64)
    z_perturbed = pseudo_codes(model, data.val, families, strength, pseudo_anomaly_seed(data))
    out.update(pseudo_information(z_clean, z_perturbed, method=method))
    return out
