"""Coverage of the grouped-jackknife intervals and validity of the permutation test."""

import math

import numpy as np
import pytest
import torch

from entropy_ae.estimators import entropy, mutual_information, permutation_test, with_error

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::entropy_ae.estimators.EstimatorWarning")

# 60 independent data sets per check. If the true coverage were 0.95, fewer than 51 hits
# (0.85) would have probability ~3e-4 (binomial, sd 1.7 hits); the bar is 0.90.
REPLICATES, MIN_HITS = 60, 51


def test_entropy_interval_covers_truth():
    truth = math.log(2 * math.pi * math.e)  # d = 2 standard Gaussian
    hits = 0
    for seed in range(REPLICATES):
        x = np.random.default_rng(100 + seed).standard_normal((600, 2))
        est = with_error(entropy, x, seed=seed)
        hits += est.ci_low <= truth <= est.ci_high
    assert hits >= MIN_HITS


def test_mi_interval_covers_truth():
    rho = 0.6
    truth = -0.5 * math.log(1 - rho**2)
    hits = 0
    for seed in range(REPLICATES):
        rng = np.random.default_rng(200 + seed)
        x = rng.standard_normal(500)
        y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(500)
        est = with_error(mutual_information, x, y, n_groups=8, seed=seed)
        hits += est.ci_low <= truth <= est.ci_high
    assert hits >= MIN_HITS


def test_estimate_fields_and_errors():
    x = np.random.default_rng(7).standard_normal((400, 1))
    est = with_error(entropy, x, confidence=0.9, base=2)
    assert est.ci == (est.ci_low, est.ci_high) and est.ci_low < est.value < est.ci_high
    assert est.value == pytest.approx(entropy(x, base=2)) and est.stderr > 0 and est.n == 400
    with pytest.raises(ValueError, match="n_groups"):
        with_error(entropy, x, n_groups=1)
    with pytest.raises(ValueError, match="confidence"):
        with_error(entropy, x, confidence=95)


def test_permutation_test():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((400, 2))
    dependent = x[:, :1] + rng.standard_normal((400, 1))
    res = permutation_test(x, dependent, n_permutations=49)
    # Smallest attainable p-value = 1 / (1 + 49): all 49 shuffles fall below the observed MI.
    assert res.pvalue == pytest.approx(1 / 50) and res.null_distribution.shape == (49,)
    independent = rng.standard_normal((400, 1))
    # Under H0 p is uniform on {1/50, ..., 1}; p <= 0.1 has probability 0.1 (fixed seed: deterministic).
    assert permutation_test(x, independent, n_permutations=49).pvalue > 0.1
    labels = (x[:, 0] > 0).astype(int)
    assert permutation_test(x, labels, discrete_y=True, n_permutations=19).pvalue == pytest.approx(1 / 20)
