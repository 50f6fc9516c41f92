"""I_sigma: the information a representation carries about *which* input it came from, at noise level sigma.

A representation (n, D) is scaled to unit total variance (:func:`normalise`) and Gaussian noise of
standard deviation ``sigma`` is added per coordinate. Noise along directions the data do not
occupy cancels exactly, so the ambient dimension drops out and the number is comparable between a
d-dimensional code and 4096-pixel images. It is computed in closed form from pairwise distances
with the Kolchinsky-Tracey (2017) mixture bounds.
"""

from __future__ import annotations

import math

import numpy as np

UNITS = "nats"
# Subsample size for pairwise-distance statistics: O(n^2) memory and time, and plenty for a mean.
MAX_POINTS = 2000


def flatten(x) -> np.ndarray:
    """``x`` as float64 rows (n, D); images (n, 1, s, s) become pixel vectors."""
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), -1)


def subsample(x: np.ndarray, max_points: int, seed: int = 0) -> np.ndarray:
    """At most ``max_points`` rows of ``x``, drawn without replacement and kept in their order."""
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
    x = flatten(x)
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
    x = subsample(normalise(x, standardize), max_points)
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
    x = subsample(normalise(x, standardize), max_points)
    d2 = _squared_distances(x)
    target = fraction * math.log(len(x))
    lo, hi = math.log(1e-4), math.log(10.0)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        value = 0.5 * sum(_mixture_information(d2, math.exp(mid), c)[0] for c in (8.0, 2.0))
        lo, hi = (mid, hi) if value > target else (lo, mid)
    return float(math.exp(0.5 * (lo + hi)))
