"""Latent entropy of a trained autoencoder, and a comparison of the code Z with the normal images X_n.

Three kinds of measurement live here.

1. ``H(Z)``: the differential entropy of the code of a run (:func:`run_entropy`), with a standard
   error, in nats, by any estimator of :mod:`entropy_ae.estimators`. It is what the paper talks
   about, but on its own it is *not* comparable with H(X_n): differential entropy shifts by
   ``D log a`` under a rescaling by ``a`` and is -inf for data on a lower-dimensional manifold
   (images of k factors inside 4096 pixels), so "H(Z) = H(X_n)" has no meaning as written.

2. Comparable counterparts of "H(Z) = H(X_n)", computed the same way on Z and on X_n:

   * the intrinsic dimension (TwoNN, Levina-Bickel MLE; :mod:`analysis.intrinsic_dim`): scale-
     and ambient-dimension-free; for a smooth manifold it is the rate at which information grows
     with resolution, ``I_sigma ~ ID * log(1/sigma)`` (Renyi's information dimension), so
     "the code holds the normal information" at fine resolution means ID(Z) = ID(X_n);
   * ``I_sigma`` (:func:`information_at_resolution`): the information, in nats, a representation
     scaled to unit total variance carries about *which* input it came from when Gaussian noise
     of standard deviation ``sigma`` is added per coordinate. Noise along directions the data
     does not occupy cancels exactly, so the ambient dimension drops out and the number is
     comparable between a d-dimensional code and 4096-pixel images. It is computed in closed
     form from pairwise distances with the Kolchinsky-Tracey (2017) mixture bounds.

3. What the theory predicts directly: how much the code knows about lesions,
   ``I(Z; Y)`` between the code and the normal/abnormal label, and the entropy of abnormal codes
   beyond normal ones (:func:`label_information`). These use test labels and are *analysis*
   only; the recommendation never sees them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from analysis.intrinsic_dim import levina_bickel, twonn

UNITS = "nats"
SPLITS = {
    "train": "train_normal",
    "val": "val_normal",
    "test-normal": "test_normal",
    "test-abnormal": "test_abnormal",
}
ENTROPY_METHODS = ("knn", "kde", "binned", "gaussian")
# Subsample size for pairwise-distance statistics: O(n^2) memory and time, and plenty for a mean.
MAX_POINTS = 2000
# Groups of the jackknife standard error of H(Z); it needs at least 2 samples per group.
JACKKNIFE_GROUPS = 10


# ----------------------------------------------------------------------------- H(Z) of a run


def _estimators():
    import entropy_ae.estimators as est  # imported late: analysis must import without it

    return est


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
    est = _estimators()
    z = np.asarray(z, dtype=np.float64)
    if len(z) < min_samples_for_stderr(n_groups):
        return float(est.entropy(z, method=method, **options)), float("nan")
    result = est.with_error(est.entropy, z, n_groups=n_groups, method=method, **options)
    return float(result.value), float(result.stderr)


def _latents_of(run_dir, data=None, latents=None) -> dict:
    if latents is not None:
        return latents
    from entropy_ae.runs import extract_latents

    return extract_latents(run_dir, data, device="cpu")


def run_entropy(run_dir, data=None, method: str = "knn", split: str = "train", latents: dict | None = None, **options) -> dict:
    """H(Z) of the code of a trained run.

    Parameters
    ----------
    run_dir : path
        A run directory written by ``entropy_ae.training.run_training``.
    data : AnomalyData or spec, optional
        Data to encode; default rebuilds the run's own data from its config.json.
    method : {'knn', 'kde', 'binned', 'gaussian'}
        Estimator of :func:`entropy_ae.estimators.entropy`.
    split : {'train', 'val', 'test-normal', 'test-abnormal'}
        Which images to encode (``train`` = normal training images).
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
        raise ValueError(f"unknown split {split!r}; choose one of {tuple(SPLITS)}")
    if isinstance(data, (str, dict)):
        from entropy_ae.data import load_data

        data = _load_like_run(run_dir, data, load_data)
    z = np.asarray(_latents_of(run_dir, data, latents)[SPLITS[split]], dtype=np.float64)
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
        "h_z_gaussian": gaussian_entropy(z),
    }
    if not math.isfinite(stderr):
        need = min_samples_for_stderr(options.get("n_groups", JACKKNIFE_GROUPS))
        result["stderr_note"] = (f"too few samples for the jackknife standard error: need >= {need} codes, "
                                 f"got {len(z)}" if len(z) < need else
                                 "the jackknife standard error is not finite (a left-out estimate was not finite)")
    return result


def _load_like_run(run_dir, spec, load_data):
    """Load ``spec`` at the run's image size (a spec string alone does not fix it)."""
    import json
    from pathlib import Path

    config = json.loads((Path(run_dir) / "config.json").read_text())
    return load_data(spec, image_size=int(config["model"]["image_size"]))


def gaussian_entropy(z: np.ndarray) -> float:
    """Entropy (nats) of a Gaussian with the sample covariance of ``z``: an upper bound on H(Z).

    :func:`entropy_ae.estimators.entropy` with ``method="gaussian"``: ``-inf`` with a warning when
    the covariance is singular (n <= latent_size, or codes on a lower-dimensional subspace), by the
    same rule the estimators use for their own bound.
    """
    import entropy_ae.estimators as est  # imported late: analysis must import without it

    return float(est.entropy(np.asarray(z, dtype=np.float64), method="gaussian"))


# ------------------------------------------------------------- comparable counterparts of H


def _flatten(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), -1)


def _subsample(x: np.ndarray, max_points: int, seed: int = 0) -> np.ndarray:
    if len(x) <= max_points:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))]


def normalise(x, standardize: str = "total") -> np.ndarray:
    """Centre and scale a representation (n, D) to unit total variance.

    ``standardize="total"`` divides by the root of the summed variances (one common unit, as
    pixels share one); ``"per-dim"`` first scales every coordinate to unit variance (so each code
    unit counts equally whatever scale the decoder gives it), then to unit total variance.
    Constant coordinates carry no information and are dropped.
    """
    x = _flatten(x)
    x = x - x.mean(axis=0)
    std = x.std(axis=0)
    x = x[:, std > 1e-12 * max(std.max(), 1e-300)]
    if x.shape[1] == 0:
        raise ValueError("every coordinate is constant: the representation carries no information")
    if standardize == "per-dim":
        x = x / x.std(axis=0)
    elif standardize != "total":
        raise ValueError(f"standardize must be 'total' or 'per-dim', got {standardize!r}")
    return x / np.sqrt((x**2).sum(axis=1).mean())


def _squared_distances(x: np.ndarray) -> np.ndarray:
    sq = (x**2).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    return np.maximum(d2, 0.0)


def _mixture_information(d2: np.ndarray, sigma: float, divisor: float) -> tuple[float, float]:
    """-mean_i log mean_j exp(-d2_ij / (divisor sigma^2)) and its standard error over i."""
    n = len(d2)
    logs = -d2 / (divisor * sigma**2)
    peak = logs.max(axis=1, keepdims=True)
    lme = peak[:, 0] + np.log(np.exp(logs - peak).sum(axis=1)) - math.log(n)
    terms = -lme
    return float(terms.mean()), float(terms.std(ddof=1) / math.sqrt(n))


def information_at_resolution(x, sigma: float = 0.1, standardize: str = "total", max_points: int = MAX_POINTS) -> dict:
    """Information (nats) that a representation carries about its input at noise level ``sigma``.

    With X the n samples (equally likely) scaled to unit total variance (:func:`normalise`) and
    ``X~ = X + sigma * N(0, I)``, I(X; X~) = H(X~) - H(X~ | X) is the entropy of an equal-weight
    Gaussian mixture minus that of one component. Kolchinsky and Tracey (2017, Entropy 19, 361)
    bound it with pairwise distances: the Bhattacharyya bound (``lower``) and the KL bound
    (``upper``); ``value`` is their midpoint. Both lie in [0, log n]: the answer saturates at
    log n when sigma is below the spacing of the samples, so choose sigma where the reference
    (X_n) is well inside that range (:func:`matching_sigma`).

    Returns
    -------
    dict
        ``{"value", "lower", "upper", "stderr", "sigma", "n", "units": "nats"}``.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    x = _subsample(normalise(x, standardize), max_points)
    d2 = _squared_distances(x)
    lower, stderr = _mixture_information(d2, sigma, 8.0)
    upper, _ = _mixture_information(d2, sigma, 2.0)
    return {
        "value": 0.5 * (lower + upper),
        "lower": lower,
        "upper": upper,
        "stderr": stderr,
        "sigma": float(sigma),
        "n": int(len(x)),
        "units": UNITS,
    }


def matching_sigma(x, fraction: float = 0.5, standardize: str = "total", max_points: int = MAX_POINTS) -> float:
    """The noise level at which X carries ``fraction * log n`` nats about its input (bisection).

    Used to fix one stated resolution per dataset from the normal training images, far from both
    ends of the [0, log n] range, at which every code of that dataset is then measured.
    """
    x = _subsample(normalise(x, standardize), max_points)
    d2 = _squared_distances(x)
    target = fraction * math.log(len(x))
    lo, hi = math.log(1e-4), math.log(10.0)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        value = 0.5 * sum(_mixture_information(d2, math.exp(mid), c)[0] for c in (8.0, 2.0))
        lo, hi = (mid, hi) if value > target else (lo, mid)
    return float(math.exp(0.5 * (lo + hi)))


def data_reference(images, sigma: float | None = None, max_points: int = MAX_POINTS) -> dict:
    """The normal images' counterparts of H(X_n): intrinsic dimension and information at ``sigma``.

    ``images`` are normal training images (n, 1, s, s); flattened to pixel vectors. When
    ``sigma`` is None it is chosen by :func:`matching_sigma`.
    """
    x = _subsample(_flatten(images), max_points)
    sigma = matching_sigma(x) if sigma is None else float(sigma)
    info = information_at_resolution(x, sigma)
    id_two, id_mle = twonn(x), levina_bickel(x)
    return {
        "sigma": sigma,
        "info_x": info["value"],
        "info_x_lower": info["lower"],
        "info_x_upper": info["upper"],
        "id_twonn_x": id_two.value,
        "id_twonn_x_stderr": id_two.stderr,
        "id_mle_x": id_mle.value,
        "id_mle_x_stderr": id_mle.stderr,
        "n_x": int(len(x)),
    }


def code_measurements(z_train, sigma: float) -> dict:
    """The same counterparts for codes of normal training images (n, d), at the reference sigma."""
    z = _subsample(np.asarray(z_train, dtype=np.float64), MAX_POINTS)
    out = {}
    info = information_at_resolution(z, sigma)
    out.update(info_z=info["value"], info_z_lower=info["lower"], info_z_upper=info["upper"])
    info_pd = information_at_resolution(z, sigma, standardize="per-dim")
    out["info_z_perdim"] = info_pd["value"]
    for name, fn in (("id_twonn_z", twonn), ("id_mle_z", levina_bickel)):
        try:
            est = fn(z)
            out[name], out[name + "_stderr"] = est.value, est.stderr
        except ValueError as err:  # e.g. a collapsed code with too few distinct points
            warnings.warn(f"{name}: {err}", RuntimeWarning, stacklevel=2)
            out[name], out[name + "_stderr"] = float("nan"), float("nan")
    return out


# ----------------------------------------------------------------- what the code knows about lesions


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
    est = _estimators()
    h_n = float(est.entropy(zn, method=method, **options))
    h_a = float(est.entropy(za, method=method, **options))
    labels = np.r_[np.zeros(m, np.int64), np.ones(m, np.int64)]
    mi = float(est.mutual_information_discrete(np.concatenate([zn, za]), labels))
    return {
        "mi_code_label": mi,
        "h_z_test_normal": h_n,
        "h_z_test_abnormal": h_a,
        "h_z_abnormal_excess": h_a - h_n,
        "n_per_class": int(m),
    }


def run_measurements(run_dir, data, sigma: float, method: str = "knn", latents: dict | None = None) -> dict:
    """Every entropy measurement of one run, as one flat dict (a row of the results table).

    A measurement that cannot be made (e.g. a collapsed code with tied points that an estimator
    refuses) is recorded as NaN with its reason under ``"errors"`` and a warning, so the training
    is never lost for it.
    """
    latents = _latents_of(run_dir, data, latents)
    out: dict = {}
    errors: dict = {}

    def attempt(name, fn):
        try:
            out.update(fn())
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as err:
            errors[name] = f"{type(err).__name__}: {err}"
            warnings.warn(f"{run_dir}: {name} measurement failed: {err}", RuntimeWarning, stacklevel=3)

    def h_z():
        h = run_entropy(run_dir, data, method=method, split="train", latents=latents)
        return {"h_z": h["h_z"], "h_z_stderr": h["stderr"], "h_z_gaussian": h["h_z_gaussian"],
                "h_z_method": method, "h_z_n": h["n"]}

    attempt("h_z", h_z)
    attempt("code", lambda: code_measurements(latents["train_normal"], sigma))
    if len(latents.get("test_abnormal", ())) >= 10 and len(latents.get("test_normal", ())) >= 10:
        attempt("label", lambda: label_information(latents["test_normal"], latents["test_abnormal"], method=method))
    if errors:
        out["errors"] = errors
    return out
