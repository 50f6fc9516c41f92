"""Input checks and MI-invariant preprocessing, done once at the public edge."""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import warnings

import numpy as np
from scipy.special import gammaincinv, ndtri
from scipy.stats import rankdata

from ._columns import centre, column_std, constant_columns, covariance, radial_scale, row_norms, scatter_scores

NAN_POLICIES = ("raise", "omit")


class EstimatorWarning(UserWarning):
    """An estimate was returned but may be unreliable (ties, high dimension, bound exceeded)."""


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning raised in :func:`warn` at the first frame outside this package.

    The estimators call each other at varying depths, so a fixed stacklevel lands on
    internal lines (e.g. ``value = _ESTIMATORS[method](...)``); the user needs the line
    that called the public function.
    """
    frame, level = sys._getframe(1), 1  # frame 1 = warn(), the function calling warnings.warn
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _PACKAGE_DIR:
        frame, level = frame.f_back, level + 1
    return level


_COLLECTED = threading.local()


def warn(message: str) -> None:
    """Warn the caller, or, inside a :func:`one_warning` call, keep the message for its single warning."""
    pending = getattr(_COLLECTED, "messages", None)
    if pending is not None:
        if message not in pending:
            pending.append(message)
        return
    warnings.warn(message, EstimatorWarning, stacklevel=_caller_stacklevel())


def collecting(function):
    """``function`` made to return ``(result, messages)``: the messages it would :func:`warn`, kept apart.

    It may then run in another thread (whose warnings would otherwise bypass the
    caller's :func:`one_warning` call); the caller passes the messages to
    :func:`warn` in the order it chooses.
    """
    def run():
        previous = getattr(_COLLECTED, "messages", None)
        _COLLECTED.messages = []
        try:
            return function(), _COLLECTED.messages
        finally:
            _COLLECTED.messages = previous
    return run


def one_warning(function):
    """Decorate a public estimator so that one call raises at most one EstimatorWarning.

    The messages of everything the call reports (ties, dimension, degeneracy) are
    joined into that one warning; a nested public call adds its messages to the
    outer call's.
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if getattr(_COLLECTED, "messages", None) is not None:
            return function(*args, **kwargs)
        _COLLECTED.messages = []
        try:
            return function(*args, **kwargs)
        finally:
            messages, _COLLECTED.messages = _COLLECTED.messages, None
            if messages:
                warnings.warn(" Also: ".join(messages), EstimatorWarning, stacklevel=_caller_stacklevel())
    return wrapper


def as_samples(x, name: str = "x") -> np.ndarray:
    """Return ``x`` as a float64 array of shape (n, d); accepts numpy arrays, torch tensors, lists."""
    if hasattr(x, "detach"):  # torch tensor, on any device
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array of shape (n,) or (n, d); {err}") from None
    if arr.ndim == 0:
        raise ValueError(f"{name} is a scalar (0-d); pass samples as shape (n,) or (n, d).")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} has shape {arr.shape}; pass (n,) or (n, d), e.g. x.reshape(len(x), -1).")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has shape {arr.shape}: no features (d = 0).")
    return arr


def check_inputs(arrays: dict, k: int | None, nan_policy: str) -> list[np.ndarray]:
    """Validate named arrays together: shapes, equal lengths, finiteness (``nan_policy``) and k."""
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}; got {nan_policy!r}.")
    out = [as_samples(v, name) for name, v in arrays.items()]
    lengths = {name: len(a) for name, a in zip(arrays, out)}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have the same number of samples (rows); got {lengths}.")
    finite = np.ones(len(out[0]), dtype=bool)
    for a in out:
        finite &= np.isfinite(a).all(axis=1)
    if not finite.all():
        bad = int((~finite).sum())
        if nan_policy == "raise":
            raise ValueError(
                f"{bad} of {len(finite)} samples contain NaN or inf; clean them or pass nan_policy='omit' "
                "to drop those rows (from all inputs together)."
            )
        out = [a[finite] for a in out]
    n = len(out[0])
    if k is not None:
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}.")
        if n <= k:
            raise ValueError(f"need more samples than neighbours: n = {n} <= k = {k}; pass more samples or lower k.")
    elif n < 2:
        raise ValueError(f"need at least 2 samples; got n = {n}.")
    return out


def check_method(method: str, methods, what: str = "method") -> None:
    if method not in methods:
        raise ValueError(f"unknown {what} {method!r}; choose one of {tuple(methods)}.")


def log_base(base: float) -> float:
    """log(base), the divisor that converts nats to the requested unit."""
    if not (isinstance(base, (int, float)) and base > 0 and base != 1 and math.isfinite(base)):
        raise ValueError(f"base must be a positive number other than 1 (math.e: nats, 2: bits); got {base!r}.")
    return math.log(base)


def drop_constant(x: np.ndarray, name: str) -> np.ndarray:
    """Remove constant columns (they carry no information, so MI ignores them)."""
    const = constant_columns(x)
    if const.any():
        warn(f"{name}: dropped {int(const.sum())} constant column(s) {np.flatnonzero(const).tolist()}; "
             "they carry no information.")
    return x[:, ~const]


def covariance_eigh(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Column scales and the eigen-decomposition of the correlation matrix of ``x`` (n, d), with a rank mask.

    Returns ``(scale, eigval, eigvec, keep)``: the sample covariance is
    diag(scale) V diag(eigval) V^T diag(scale), and ``keep`` marks the eigenvalues
    that are not numerically zero. The one singularity rule of the package
    (Gaussian bound, whitening, MI degeneracy): an eigenvalue of the correlation
    matrix counts as zero when it is at most ``max(n, d) * eps * lambda_max``.
    The float64 covariance of n rows is a sum of n rounded products, accurate to
    about n * eps relative to its largest eigenvalue, so anything smaller cannot be
    told from 0 (numpy's ``matrix_rank`` uses the same max(M, N) * eps rule).
    Working on the correlation matrix makes the rule independent of each column's
    units (1e-7 and 1e7 side by side stay full rank), as linear dependence is.
    With n <= d the covariance has rank at most n - 1 < d whatever the rounding,
    so such a sample is always singular. A constant column (scale 0) is singular.
    """
    n, d = x.shape
    scale = column_std(x) if n > 1 else np.zeros(d)
    safe = np.where(scale > 0, scale, 1.0)
    if d == 1 and n > 1:
        # np.cov's arithmetic (centre, dot product, times 1 / (n - 1)) without its overhead; a 1x1
        # matrix is its own eigenvalue, with eigenvector 1.
        xc = x[:, 0] / safe[0]
        xc = xc - xc.mean()
        eigval, eigvec = np.array([float(xc @ xc) * (1.0 / (n - 1))]), np.ones((1, 1))
    else:
        corr = covariance(x / safe) if n > 1 else np.zeros((d, d))
        eigval, eigvec = np.linalg.eigh(corr)
    keep = _nonzero(eigval, n, d)
    if n <= d:
        keep[: d - n + 1] = False  # the d - n + 1 smallest (eigh sorts ascending) are exactly 0 in exact arithmetic
    return safe, eigval, eigvec, keep


def _nonzero(eigval: np.ndarray, n: int, d: int) -> np.ndarray:
    """The eigenvalues of a correlation matrix of n rows, d columns that are not numerically zero
    (the rule of :func:`covariance_eigh`)."""
    return eigval > max(n, d) * np.finfo(float).eps * max(eigval.max(), np.finfo(float).tiny)


def pair_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """The sample correlation of two 1-D columns (NaN if one is constant), without ``np.cov``'s overhead."""
    ac, bc = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float(ac @ ac) * float(bc @ bc))
    return float(ac @ bc) / denominator if denominator > 0 else math.nan


def pair_singular(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two columns are linearly dependent by the rule of :func:`covariance_eigh`: their 2 x 2
    correlation matrix has the eigenvalues 1 - |r| and 1 + |r|."""
    r = abs(pair_correlation(a, b))
    return not (r <= 1.0 and _nonzero(np.array([1.0 - r, 1.0 + r]), len(a), 2).all())


def whiten(x: np.ndarray, subspace: bool = False) -> tuple[np.ndarray, float]:
    """Centre and whiten with the sample covariance; return (z, log|det W|) so H(x) = H(z) - log|det W|.

    Raises ``np.linalg.LinAlgError`` when the covariance is singular (data on a
    lower-dimensional subspace, see :func:`covariance_eigh`), unless ``subspace``:
    then z holds the whitened coordinates within the subspace the data span
    (fewer columns; an invertible map of the sample, so it keeps MI).
    """
    xc = centre(x)
    return whiten_centred(xc, covariance_eigh(xc), subspace)


def whiten_centred(xc: np.ndarray, decomposition, subspace: bool = False) -> tuple[np.ndarray, float]:
    """:func:`whiten` of already centred data ``xc``, given its :func:`covariance_eigh`."""
    scale, eigval, eigvec, keep = decomposition
    if not keep.all():
        if not subspace:
            raise np.linalg.LinAlgError("singular covariance")
        eigval, eigvec = eigval[keep], eigvec[:, keep]
    z = (xc / scale) @ eigvec / np.sqrt(eigval)
    return z, -float(np.log(scale).sum()) - 0.5 * float(np.log(eigval).sum())


def label_codes(labels, name: str = "labels") -> np.ndarray:
    """Integer class codes of ``labels`` (n,) or (n, m) as float64 (n,), NaN where a label is missing.

    Missing = NaN, inf or None, so ``check_inputs`` applies ``nan_policy`` to labels as
    to continuous data (``np.unique`` would otherwise make NaN a class of its own).
    """
    arr = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    if arr.ndim == 0:
        raise ValueError(f"{name} is a scalar (0-d); pass one label per sample, shape (n,).")
    rows = arr.reshape(len(arr), -1)
    if rows.dtype.kind in "fc":
        missing = ~np.isfinite(rows).all(axis=1)
    elif rows.dtype.kind == "O":
        missing = np.array([any(v is None or (isinstance(v, (float, np.floating)) and not math.isfinite(v))
                                for v in row) for row in rows], dtype=bool)
    else:
        missing = np.zeros(len(rows), dtype=bool)
    codes = np.full(len(rows), np.nan)
    if (~missing).any():
        present = rows[~missing]
        if present.dtype.kind == "O":
            present = present.astype(str)  # mixed Python objects: compare by their text
        codes[~missing] = np.unique(present, axis=0, return_inverse=True)[1].reshape(-1)
    return codes


def copula_normal(x: np.ndarray) -> np.ndarray:
    """Per-column rank transform to standard-normal scores (average ranks for ties).

    Strictly increasing maps of each coordinate leave MI unchanged, so this
    makes the MI estimators exactly invariant to them and tames heavy tails.
    """
    n = len(x)
    columns = np.ascontiguousarray(x.T)  # one contiguous row per column: faster sorts
    # No ties: the ranks are the inverse permutation, and the scores one fixed vector in that order.
    out = scatter_scores(columns, np.argsort(columns, axis=1), _normal_scores(n))
    return ndtri(rankdata(x, axis=0) / (n + 1.0)) if out is None else out


@functools.lru_cache(maxsize=8)
def _normal_scores(n: int) -> np.ndarray:
    """Normal quantiles of the ranks 1..n over n + 1: one vector per sample size, read-only."""
    scores = ndtri(np.arange(1, n + 1) / (n + 1.0))
    scores.flags.writeable = False
    return scores


def chi_quantile(q: np.ndarray, d: int) -> np.ndarray:
    """Quantiles of the chi distribution with d degrees of freedom: scipy's ``chi.ppf``, without its overhead."""
    return np.sqrt(2.0 * gammaincinv(0.5 * d, q))


def _average_ranks(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array, ties sharing their average (scipy's ``rankdata``), given an argsort."""
    ordered = values[order]
    first = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    group = np.cumsum(first)
    bounds = np.concatenate([np.flatnonzero(first), [len(values)]])
    ranks = np.empty(len(values))
    ranks[order] = 0.5 * (bounds[group] + bounds[group - 1] + 1)
    return ranks


@functools.lru_cache(maxsize=8)
def _chi_scores(n: int, d: int) -> np.ndarray:
    """chi(d) quantiles of the ranks 1, ..., n over n + 1, entry rank - 1.

    One vector per shape, shared by the data and the reference.
    """
    scores = chi_quantile(np.arange(1, n + 1) / (n + 1.0), d)
    scores.flags.writeable = False
    return scores


def radial_gaussianise(x: np.ndarray) -> np.ndarray:
    """Map each point's radius through its empirical CDF and the chi(d) quantile; keep its direction.

    ``x`` should be centred and whitened. The map x -> x * g(|x|) / |x|, with g
    the rank of |x| sent to the chi(d) quantile, is strictly increasing in the
    radius along each ray, so it is invertible on the sample whatever the
    distribution and leaves MI unchanged. For an elliptical variable (after
    whitening) it gives exactly N(0, I) up to the empirical CDF: heavy-tailed
    scale mixtures (Student-t) become Gaussian. This is the radial step of
    radial Gaussianisation (Lyu & Simoncelli 2009, Neural Computation 21,
    1485-1519).
    """
    n, d = x.shape
    radius = row_norms(x)
    order = np.argsort(radius)
    if d > 1:
        scale = radial_scale(radius, order, _chi_scores(n, d))  # None where radii are tied
        if scale is not None:
            return x * scale[:, None]
    ranks = _average_ranks(radius, order)
    if d == 1:
        # |N(0, 1)| quantiles, 25x faster than the incomplete-gamma inverse (equal to 1e-13).
        target = ndtri(0.5 + 0.5 * ranks / (n + 1.0))
    else:
        whole = ranks.astype(np.int64)
        if (whole == ranks).all():
            target = _chi_scores(n, d)[whole - 1]
        else:  # tied radii share a half-integer rank: the same function, evaluated at those ranks
            target = chi_quantile(ranks / (n + 1.0), d)
    # A point exactly at the centre has no direction; it stays there (the map is still invertible).
    scale = np.divide(target, radius, out=np.ones(n), where=radius > 0)
    return x * scale[:, None]
