"""H(Z) of a run's code with a standard error, and what the code knows about the abnormal label.

``H(Z)`` is the differential entropy of the code, in nats, by any estimator of
:mod:`entropy_ae.estimators` (:data:`entropy_ae.estimators.ENTROPY_METHODS`). It is what the paper
talks about, but it is not comparable with H(X_n) (see :mod:`analysis.measures`).

:func:`label_information` uses test labels: analysis only, the recommendation never sees it.
"""

from __future__ import annotations

import math

import numpy as np

from entropy_ae.data import SPLITS
from entropy_ae.estimators import ENTROPY_METHODS, entropy, mutual_information_discrete, with_error

from analysis.measures.information import UNITS

# Groups of the jackknife standard error of H(Z); it needs at least 2 samples per group.
JACKKNIFE_GROUPS = 10


def min_samples_for_stderr(n_groups: int = JACKKNIFE_GROUPS) -> int:
    """Fewest samples for which :func:`entropy_with_stderr` gives a standard error (2 per group)."""
    return 2 * n_groups


def entropy_with_stderr(z: np.ndarray, method: str = "knn", n_groups: int = JACKKNIFE_GROUPS,
                        **options) -> tuple[float, float]:
    """Entropy of samples ``z`` (n, d) in nats and its standard error.

    The estimate is :func:`entropy_ae.estimators.entropy` on all samples; the standard error is
    the estimators' grouped jackknife (:func:`entropy_ae.estimators.with_error`, ``n_groups``
    disjoint groups left out in turn: no duplicated points, which would inflate k-NN estimates).
    Too few samples for the jackknife (< 2 per group) give a NaN standard error.
    """
    if method not in ENTROPY_METHODS:
        raise ValueError(f"unknown entropy method {method!r}; choose one of {ENTROPY_METHODS}")
    z = np.asarray(z, dtype=np.float64)
    if len(z) < min_samples_for_stderr(n_groups):
        return float(entropy(z, method=method, **options)), float("nan")
    result = with_error(entropy, z, n_groups=n_groups, method=method, **options)
    return float(result.value), float(result.stderr)


def latents_of(run_dir, data=None, latents: dict | None = None) -> dict:
    """The codes of every split of a run (``entropy_ae.runs.extract_latents`` on the CPU), unless given."""
    if latents is not None:
        return latents
    from entropy_ae.runs import extract_latents

    return extract_latents(run_dir, data, device="cpu")


def run_entropy(run_dir, data=None, method: str = "knn", split: str = "train_normal",
                latents: dict | None = None, **options) -> dict:
    """H(Z) of the code of a trained run.

    Parameters
    ----------
    run_dir : path
        A run directory written by ``entropy_ae.training.run_training``.
    data : AnomalyData or spec, optional
        Data to encode (a spec is loaded at the run's image size); default rebuilds the run's
        own data from its config.json.
    method : {'knn', 'kde', 'binned', 'gaussian'}
        Estimator of :func:`entropy_ae.estimators.entropy`.
    split : {'train_normal', 'val_normal', 'test_normal', 'test_abnormal'}
        Which images to encode (:data:`entropy_ae.data.SPLITS`).
    latents : dict, optional
        Precomputed ``extract_latents`` output (skips encoding).

    Returns
    -------
    dict
        ``{"h_z", "stderr", "units": "nats", "method", "n", "latent_size", "split", "h_z_gaussian"}``;
        ``h_z_gaussian`` is the entropy of a Gaussian with the sample covariance, an upper bound
        for the true H(Z), shown beside the nonparametric value. When there is no standard error
        (``stderr`` NaN), ``"stderr_note"`` says why.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if isinstance(data, (str, dict)):
        from entropy_ae.data import load_data
        from entropy_ae.runs import load_config

        data = load_data(data, image_size=int(load_config(run_dir)["model"]["image_size"]))
    z = np.asarray(latents_of(run_dir, data, latents)[split], dtype=np.float64)
    if len(z) < 10:
        raise ValueError(f"split {split!r} has only {len(z)} images; H(Z) needs at least 10")
    value, stderr = entropy_with_stderr(z, method=method, **options)
    result = {
        "h_z": value,
        "stderr": stderr,
        "units": UNITS,
        "method": method,
        "n": int(len(z)),
        "latent_size": int(z.shape[1]),
        "split": split,
        # The Gaussian bound: -inf with a warning when the covariance is singular.
        "h_z_gaussian": float(entropy(z, method="gaussian")),
    }
    if not math.isfinite(stderr):
        need = min_samples_for_stderr(options.get("n_groups", JACKKNIFE_GROUPS))
        result["stderr_note"] = (f"too few samples for the jackknife standard error: need >= {need} codes, "
                                 f"got {len(z)}" if len(z) < need else
                                 "the jackknife standard error is not finite (a left-out estimate was not finite)")
    return result


def label_information(z_normal, z_abnormal, method: str = "knn", seed: int = 0, **options) -> dict:
    """How much the code knows about the normal/abnormal label (analysis only: uses test labels).

    Both classes are first brought to the same size m (the larger is subsampled), so p(y) = 1/2
    and I(Z; Y) <= log 2.

    * ``mi_code_label`` = I(Z; Y) in nats by Ross's (2014) k-NN estimator for a continuous code
      and a discrete label (:func:`entropy_ae.estimators.mutual_information_discrete`);
    * ``h_z_abnormal_excess`` = H(Z | abnormal) - H(Z | normal): the entropy abnormal codes have
      beyond normal ones, both estimated at the same n so the k-NN biases largely cancel.
    """
    zn = np.asarray(z_normal, dtype=np.float64)
    za = np.asarray(z_abnormal, dtype=np.float64)
    m = min(len(zn), len(za))
    if m < 10:
        raise ValueError(f"need at least 10 normal and 10 abnormal codes, got {len(zn)} and {len(za)}")
    rng = np.random.default_rng(seed)
    zn = zn[rng.choice(len(zn), m, replace=False)]
    za = za[rng.choice(len(za), m, replace=False)]
    h_n = float(entropy(zn, method=method, **options))
    h_a = float(entropy(za, method=method, **options))
    labels = np.r_[np.zeros(m, np.int64), np.ones(m, np.int64)]
    mi = float(mutual_information_discrete(np.concatenate([zn, za]), labels))
    return {
        "mi_code_label": mi,
        "h_z_test_normal": h_n,
        "h_z_test_abnormal": h_a,
        "h_z_abnormal_excess": h_a - h_n,
        "n_per_class": int(m),
    }
