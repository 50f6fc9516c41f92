"""Intrinsic-dimension estimators: TwoNN and the Levina-Bickel maximum-likelihood estimator.

Both see only nearest-neighbour distance *ratios*, so they are invariant to a global rescaling of
the data and to its ambient dimension: an image set on a k-dimensional manifold inside 4096
pixels and a k-dimensional code of it give the same answer. That is what makes them a fair
yardstick between the code Z and the normal images X_n (see :mod:`analysis.measures`).

Inputs are checked by the estimators' own validation (:func:`entropy_ae.estimators._validation.check_inputs`);
images (n, 1, s, s) are flattened to pixel vectors first.

References
----------
Facco, d'Errico, Rodriguez, Laio (2017), "Estimating the intrinsic dimension of datasets by a
minimal neighborhood information", Scientific Reports 7, 12140.
Levina, Bickel (2004), "Maximum likelihood estimation of intrinsic dimension", NeurIPS 17;
with the MacKay-Ghahramani (2005) correction: average the inverse local estimates.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors

from entropy_ae.estimators._validation import check_inputs

ID_METHODS = ("twonn", "levina_bickel")


@dataclass(frozen=True)
class IntrinsicDimension:
    """An intrinsic-dimension estimate with its standard error (both in dimensions)."""

    value: float
    stderr: float
    method: str
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def _as_points(x, nan_policy: str) -> np.ndarray:
    """``x`` as a float64 ``(n, D)`` array; images (n, 1, s, s) become pixel vectors."""
    if getattr(x, "ndim", 2) > 2:
        x = x.reshape(len(x), -1)
    (x,) = check_inputs({"x": x}, None, nan_policy)
    return x


def _neighbour_distances(x: np.ndarray, k: int) -> np.ndarray:
    """Distances to the k nearest *distinct* neighbours, shape (n, k); duplicates are dropped.

    scikit-learn's exact search rather than the entropy estimators' ``knn_distances``: the two
    round the distances differently in the last bits, and these are the recorded numbers.
    """
    unique, index = np.unique(x, axis=0, return_index=True)
    if len(unique) < len(x):
        warnings.warn(
            f"{len(x) - len(unique)} duplicate points dropped before the intrinsic-dimension "
            "estimate (a zero neighbour distance has no log ratio)",
            RuntimeWarning,
            stacklevel=3,
        )
        x = x[np.sort(index)]
    if len(x) <= k + 1:
        raise ValueError(f"need more than {k + 1} distinct points for this estimate, got {len(x)}")
    algorithm = "brute" if x.shape[1] > 16 else "auto"
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm=algorithm).fit(x)
    dist, _ = nn.kneighbors(x)
    return dist[:, 1:]  # column 0 is the point itself


def twonn(x, discard_fraction: float = 0.1, nan_policy: str = "raise") -> IntrinsicDimension:
    """TwoNN estimate (Facco et al. 2017).

    mu = r2 / r1 (second over first neighbour distance) is Pareto(d) distributed on a locally
    uniform d-manifold, so the MLE is d = n / sum(log mu). The largest ``discard_fraction`` of
    mu are dropped (they come from density changes and noise, as the authors recommend) and the
    truncated-Pareto likelihood is maximised in closed form.

    Parameters
    ----------
    x : array_like, shape (n, D) or images (n, 1, s, s)
    discard_fraction : float in [0, 1)
    nan_policy : {"raise", "omit"}
        ``"omit"`` drops points holding NaN or inf, as the entropy estimators do.

    Returns
    -------
    IntrinsicDimension
        ``stderr = value / sqrt(n)`` from the Pareto likelihood's Fisher information.
    """
    x = _as_points(x, nan_policy)
    if not 0 <= discard_fraction < 1:
        raise ValueError(f"discard_fraction must be in [0, 1), got {discard_fraction}")
    dist = _neighbour_distances(x, 2)
    log_mu = np.sort(np.log(dist[:, 1] / dist[:, 0]))
    n = len(log_mu)
    keep = max(2, int(np.floor(n * (1 - discard_fraction))))
    kept, cut = log_mu[:keep], log_mu[keep - 1]
    # Pareto likelihood with the n - keep largest values censored at `cut`.
    denom = kept.sum() + (n - keep) * cut
    if denom <= 0:
        raise ValueError("all neighbour-distance ratios are 1: the points lie on a regular grid")
    value = keep / denom
    return IntrinsicDimension(float(value), float(value / np.sqrt(keep)), "twonn", n)


def levina_bickel(x, k1: int = 10, k2: int = 20, nan_policy: str = "raise") -> IntrinsicDimension:
    """Levina-Bickel MLE averaged over neighbourhood sizes k1..k2.

    For each point and k, m_k(x)^-1 = 1/(k-1) * sum_{j<k} log(T_k / T_j); the estimate at k is the
    inverse of the mean of m_k^-1 over points (MacKay-Ghahramani), and the result averages over
    k in [k1, k2]. Larger k smooths pixel noise (which is full-dimensional at the smallest scales)
    at the price of curvature bias.

    Parameters
    ----------
    x : array_like, shape (n, D) or images (n, 1, s, s)
    k1, k2 : int
        Smallest and largest neighbourhood size, ``2 <= k1 <= k2``.
    nan_policy : {"raise", "omit"}

    Returns
    -------
    IntrinsicDimension
        ``stderr`` from the spread of per-point inverse estimates at k2 (delta method).
    """
    x = _as_points(x, nan_policy)
    if not 2 <= k1 <= k2:
        raise ValueError(f"need 2 <= k1 <= k2, got k1={k1}, k2={k2}")
    dist = _neighbour_distances(x, k2)
    log_t = np.log(dist)
    estimates = []
    inv_k2 = None
    for k in range(k1, k2 + 1):
        inv = (log_t[:, k - 1 : k] - log_t[:, : k - 1]).sum(axis=1) / (k - 1)
        estimates.append(1.0 / inv.mean())
        inv_k2 = inv
    value = float(np.mean(estimates))
    stderr = float(value**2 * inv_k2.std(ddof=1) / np.sqrt(len(inv_k2)))
    return IntrinsicDimension(value, stderr, "levina_bickel", len(x))


ESTIMATORS = {"twonn": twonn, "levina_bickel": levina_bickel}


def intrinsic_dimension(x, method: str = "levina_bickel", **options) -> IntrinsicDimension:
    """Intrinsic dimension of points ``x`` (n, D) or images (n, 1, s, s); ``method`` in :data:`ID_METHODS`."""
    if method not in ESTIMATORS:
        raise ValueError(f"unknown intrinsic-dimension method {method!r}; choose one of {ID_METHODS}")
    return ESTIMATORS[method](x, **options)
