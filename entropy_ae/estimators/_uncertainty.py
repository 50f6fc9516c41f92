"""Standard errors by the grouped jackknife, and a permutation test for I(X;Y) > 0."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import t as student_t

from ._mutual_info import MI_METHODS, _prepare, _raw, _ross
from ._validation import check_inputs, check_method, label_codes, log_base


@dataclass(frozen=True)
class Estimate:
    """An estimate with its grouped-jackknife standard error and confidence interval (same units)."""

    value: float
    stderr: float
    ci_low: float
    ci_high: float
    confidence: float
    n: int
    n_groups: int

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)


def with_error(estimator, *arrays, n_groups: int = 10, confidence: float = 0.95, seed: int = 0,
               **kwargs) -> Estimate:
    """Run ``estimator(*arrays, **kwargs)`` and attach a grouped-jackknife standard error.

    The rows are split at random into ``n_groups`` groups; the estimator is rerun
    with each group left out, and var = (G - 1)/G * sum_g (theta_g - mean)^2.
    The interval is value +- t_{G-1} * stderr. Subsets never repeat a sample: a
    with-replacement bootstrap creates duplicate points, which k-NN estimators
    read as zero distances, so its intervals miss the truth.

    The jackknife variance is conservative (Efron & Stein 1981), but the
    interval is centred on the estimate and so covers the truth only when the
    bias is small against the standard error (low d relative to n; see the
    estimators' measured biases). Measured coverage of nominal 95 % intervals:
    see tests/test_estimators_uncertainty.py.

    Parameters
    ----------
    estimator : callable
        ``entropy``, ``mutual_information``, ``conditional_mutual_information``
        or ``mutual_information_discrete`` (anything taking row-aligned arrays).
    *arrays : array_like
        Row-aligned inputs, e.g. ``x`` or ``x, y``.
    n_groups : int
        Number of jackknife groups G (>= 2); cost is G + 1 estimates.
    confidence : float
        Two-sided level of the interval.
    seed : int
        Seed of the random group assignment.
    **kwargs
        Passed to ``estimator`` (method, k, base, ...).

    Returns
    -------
    Estimate
    """
    if not (isinstance(n_groups, int) and n_groups >= 2):
        raise ValueError(f"n_groups must be an integer >= 2; got {n_groups!r}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}.")
    arrays = [a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if n < 2 * n_groups:
        raise ValueError(f"need at least 2 samples per jackknife group: n = {n}, n_groups = {n_groups}.")
    value = float(estimator(*arrays, **kwargs))
    group = np.random.default_rng(seed).permutation(n) % n_groups
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # already shown once for the full data
        loo = np.array([estimator(*[a[group != g] for a in arrays], **kwargs) for g in range(n_groups)])
    if not np.all(np.isfinite(loo)):
        stderr = math.nan
    else:
        stderr = float(np.sqrt((n_groups - 1) / n_groups * ((loo - loo.mean()) ** 2).sum()))
    half = student_t.ppf(0.5 + confidence / 2, n_groups - 1) * stderr
    return Estimate(value, stderr, float(value - half), float(value + half), confidence, n, n_groups)


@dataclass(frozen=True)
class PermutationResult:
    """Observed statistic, permutation p-value and the null distribution (units of log(base))."""

    statistic: float
    pvalue: float
    null_distribution: np.ndarray = field(repr=False)


def permutation_test(x, y, method: str = "ksg", k: int = 3, n_permutations: int = 199, seed: int = 0,
                     base: float = math.e, nan_policy: str = "raise", discrete_y: bool = False,
                     device: str | None = None) -> PermutationResult:
    """Permutation test of H0: I(X; Y) = 0 against I(X; Y) > 0.

    The rows of ``y`` are shuffled ``n_permutations`` times; p = (1 + #{null >=
    observed}) / (1 + n_permutations), exact under H0 for any statistic. The
    statistic is the classic estimator (no Gaussian correction, which would only
    add run time and noise) on the invariant preprocessing; with
    ``discrete_y=True`` it is Ross's estimator with ``y`` as labels.

    Parameters
    ----------
    x, y : array_like
        Paired samples; ``y`` holds labels when ``discrete_y``.
    method : {"ksg", "kde", "binned"}
        Ignored when ``discrete_y``.
    n_permutations : int
        The smallest attainable p-value is 1 / (1 + n_permutations).
    seed : int
        Seed of the permutations.

    Returns
    -------
    PermutationResult
    """
    check_method(method, MI_METHODS)
    divisor = log_base(base)
    if not (isinstance(n_permutations, int) and n_permutations >= 1):
        raise ValueError(f"n_permutations must be a positive integer; got {n_permutations!r}.")
    rng = np.random.default_rng(seed)
    if discrete_y:
        x, codes = check_inputs({"x": x, "labels": label_codes(y)}, k, nan_policy)  # NaN/None label = missing
        (x,) = _prepare([x], ["x"])
        codes = np.unique(codes[:, 0], return_inverse=True)[1].reshape(-1)
        stat = lambda perm: _ross(x, codes[perm], k, device)  # noqa: E731
    else:
        x, y = check_inputs({"x": x, "y": y}, k if method == "ksg" else None, nan_policy)
        x, y = _prepare([x, y], ["x", "y"])
        if x.shape[1] == 0 or y.shape[1] == 0:
            raise ValueError("x or y has only constant columns: there is nothing to test.")
        stat = lambda perm: _raw([x, y[perm]], method, k, device)  # noqa: E731
    n = len(x)
    observed = stat(np.arange(n))
    null = np.array([stat(rng.permutation(n)) for _ in range(n_permutations)])
    pvalue = (1.0 + np.sum(null >= observed)) / (1.0 + n_permutations)
    return PermutationResult(observed / divisor, float(pvalue), null / divisor)
