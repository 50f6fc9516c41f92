"""Synthetic results tables and latents with a KNOWN answer, for the analysis tests.

Not a test module (no ``test_`` prefix): imported by tests/test_analysis*.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def manifold_codes(n: int, k: int, latent_size: int, seed: int = 0) -> np.ndarray:
    """Codes of a k-factor dataset through an ideal encoder of size d: a smooth embedding of
    min(d, k) uniform factors into d dimensions (intrinsic dimension exactly min(d, k))."""
    rng = np.random.default_rng(seed)
    m = min(latent_size, k)
    factors = rng.uniform(-1, 1, size=(n, m))
    mixing = rng.normal(size=(m, latent_size))
    return np.tanh(factors @ mixing) + 0.2 * (factors @ mixing)


FAMILIES = ("patch_interpolation", "perlin_texture", "intensity_blob", "cutpaste")


def pseudo_columns(d: int, k: int, rng: np.random.Generator) -> dict:
    """Pseudo-anomaly columns of one run of a k-factor dataset: validation error saturates at d = k, the
    pseudo AUROC peaks there (too small: blurred; too large: copies), the copy ratio and I(Z; perturbed)
    grow with d."""
    eff = min(d, k)
    out = {"rec_error_val_normal": 0.011 + 0.05 * (1 - eff / k) + 0.0005 * rng.random(),
           "pseudo_strength": 1.0, "n_pseudo": 100, "n_pseudo_codes": 100, "pseudo_families": ",".join(FAMILIES)}
    for j, family in enumerate(FAMILIES):
        out[f"pseudo_auroc_{family}"] = 0.85 - 0.01 * j - 0.05 * abs(np.log2(d / k)) + 0.003 * rng.normal()
        out[f"pseudo_ap_{family}"] = out[f"pseudo_auroc_{family}"] - 0.02
        out[f"pseudo_pixel_ap_{family}"] = 0.3 - 0.02 * abs(np.log2(d / k))
        out[f"copy_ratio_{family}"] = 0.1 + 0.1 * np.log2(d) + 0.02 * j
        out[f"mi_code_pseudo_{family}"] = 0.01 + 0.02 * np.log2(d) + 0.01 * j
        out[f"h_z_pseudo_excess_{family}"] = 0.05 * np.log2(d)
    for name in ("pseudo_auroc", "pseudo_ap", "pseudo_pixel_ap", "copy_ratio", "mi_code_pseudo", "h_z_pseudo_excess"):
        out[name] = float(np.mean([out[f"{name}_{family}"] for family in FAMILIES]))
    return out


def results_table(k: int = 4, latent_sizes=(1, 2, 4, 8, 16, 32), seeds=(0, 1), dataset: str = "fake-k4",
                  seed: int = 0, pseudo: bool = True) -> pd.DataFrame:
    """A results table shaped like ``analysis.sweep.collect_results`` output, for a dataset of k factors.

    Normal-data columns follow the theory (ID(Z) = min(d, k), information, training and validation
    error saturate at d = k; the pseudo-anomaly AUROC peaks at d = k). Test columns are set so the
    oracle-best AUROC is at d = k. ``pseudo=False``: a table of a sweep that predates the
    pseudo-anomaly columns.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for d in latent_sizes:
        for s in seeds:
            eff = min(d, k)
            rows.append({
                "dataset": dataset, "latent_size": d, "seed": s, "epochs": 3,
                "auroc": 0.9 - 0.04 * abs(np.log2(d / k)) + 0.005 * rng.normal(),
                "ap": 0.85 - 0.04 * abs(np.log2(d / k)) + 0.005 * rng.normal(),
                "pixel_ap": 0.3 - 0.02 * abs(np.log2(d / k)),
                "best_dice": 0.4 - 0.02 * abs(np.log2(d / k)),
                "rec_error_train_normal": 0.01 + 0.05 * (1 - eff / k) + 0.0005 * rng.random(),
                "rec_error_test_normal": 0.012 + 0.05 * (1 - eff / k),
                "rec_error_test_abnormal": 0.02 + 0.05 * (1 - eff / k) - 0.001 * np.log2(d),
                "sensitivity": 0.5, "specificity": 0.95, "final_loss": 0.01, "train_seconds": 1.0,
                "h_z": 2.0 * eff + 0.1 * d + 0.05 * rng.normal(), "h_z_stderr": 0.05,
                "h_z_gaussian": 2.5 * eff + 0.2 * d,
                "info_z": 3.0 * eff / k + 0.02 * rng.normal(), "info_z_perdim": 3.0 * eff / k,
                "id_levina_bickel_z": eff * (1 + 0.03 * rng.normal()), "id_twonn_z": eff * (1 + 0.05 * rng.normal()),
                "mi_code_label": 0.01 * np.log2(d) + 0.02, "h_z_abnormal_excess": 0.05 * np.log2(d),
                "sigma": 0.3, "info_x": 3.2, "info_x_lower": 2.0, "info_x_upper": 4.4,
                "id_levina_bickel_x": float(k), "id_levina_bickel_x_stderr": 0.05, "id_twonn_x": float(k), "id_twonn_x_stderr": 0.1,
                "n_x": 1000, "run_dir": f"{dataset}/latent_size={d}/seed={s}",
            })
            if pseudo:
                rows[-1].update(pseudo_columns(d, k, rng))
    return pd.DataFrame(rows)
