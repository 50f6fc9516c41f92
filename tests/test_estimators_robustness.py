"""Bad and awkward inputs: ties, constant columns, NaN/inf, too few samples, wrong shapes or names."""

import math
import warnings

import numpy as np
import pytest
import torch

from entropy_ae.estimators import (
    EstimatorWarning,
    conditional_mutual_information,
    entropy,
    mutual_information,
    mutual_information_discrete,
    permutation_test,
)

torch.set_num_threads(1)


def test_ties_are_dequantised_not_minus_82_nats():
    # Integer data uniform on 0..147: the dequantised variable has H = log 148 = 5.0 nats;
    # NPEET returns about -80 here. Remaining error: KL's boundary bias (~0.02) + noise.
    x = np.random.default_rng(0).integers(0, 148, size=4000).astype(float)
    with pytest.warns(EstimatorWarning, match="duplicate"):
        value = entropy(x)
    assert value == pytest.approx(math.log(148), abs=0.1)


def test_jitter_is_relative_to_the_data_scale():
    # Same quantised data in micro-units: the estimate shifts by exactly log(1e-6) up to the
    # jitter (same seed, same relative jitter), not swamped by an absolute noise level.
    x = np.random.default_rng(1).integers(0, 50, size=(3000, 2)).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EstimatorWarning)
        assert entropy(1e-6 * x) == pytest.approx(entropy(x) + 2 * math.log(1e-6), abs=1e-6)


def test_duplicated_rows_in_mi_are_handled():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1500, 2))
    y = x + rng.standard_normal((1500, 2))
    xx, yy = np.vstack([x, x]), np.vstack([y, y])  # every sample twice (repeated images)
    with pytest.warns(EstimatorWarning, match="repeated samples"):
        value = mutual_information(xx, yy)
    # The repeats are dropped, so the estimate is the one for the 1500 distinct samples.
    assert value == pytest.approx(mutual_information(x, y), abs=1e-12)


def test_constant_columns():
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.standard_normal(1000), np.full(1000, 2.0)])
    with pytest.warns(EstimatorWarning, match="constant"):
        assert entropy(x) == -math.inf
    y = x[:, :1] + rng.standard_normal((1000, 1))
    with pytest.warns(EstimatorWarning, match="constant"):
        with_const = mutual_information(x, y)
    assert with_const == pytest.approx(mutual_information(x[:, :1], y), abs=1e-12)
    with pytest.warns(EstimatorWarning, match="constant"):
        assert mutual_information(np.ones((100, 2)), y[:100]) == 0.0


def test_singular_covariance_gives_minus_inf_with_warning():
    z = np.random.default_rng(4).standard_normal((500, 2))
    x = np.column_stack([z, z[:, 0] + z[:, 1]])  # on a plane in R^3
    with pytest.warns(EstimatorWarning, match="lower-dimensional"):
        assert entropy(x) == -math.inf


def test_nan_policy():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((800, 2)), rng.standard_normal((800, 1))
    x[3, 1], y[10, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        entropy(x)
    with pytest.raises(ValueError, match="nan_policy='omit'"):
        mutual_information(x, y)
    keep = np.isfinite(x).all(1) & np.isfinite(y).all(1)
    assert mutual_information(x, y, nan_policy="omit") == pytest.approx(mutual_information(x[keep], y[keep]))
    assert entropy(x, nan_policy="omit") == pytest.approx(entropy(x[np.isfinite(x).all(1)]))
    with pytest.raises(ValueError, match="nan_policy must be"):
        entropy(x, nan_policy="propagate")


@pytest.mark.parametrize("call, match", [
    (lambda: entropy(np.ones((3, 2)) * np.arange(3)[:, None], k=3), "n = 3 <= k = 3"),
    (lambda: entropy(np.float64(1.0)), "0-d"),
    (lambda: entropy(np.zeros((4, 3, 2))), "reshape"),
    (lambda: entropy(np.zeros((10, 0))), "d = 0"),
    (lambda: entropy(np.arange(10.0), k=0), "positive integer"),
    (lambda: entropy(np.arange(10.0), method="kl"), "unknown method 'kl'"),
    (lambda: entropy(np.arange(10.0), base=1), "base"),
    (lambda: entropy(["a", "b", "c", "d", "e"]), "numeric"),
    (lambda: mutual_information(np.arange(10.0), np.arange(9.0)), "same number of samples"),
    (lambda: mutual_information(np.arange(10.0), np.arange(10.0), method="mine"), "choose one of"),
    (lambda: mutual_information(np.arange(10.0), np.arange(10.0), correction="jackknife"), "correction"),
    (lambda: mutual_information(np.arange(10.0), np.arange(10.0), norm="l1"), "unknown norm 'l1'"),
    (lambda: conditional_mutual_information(np.arange(10.0), np.arange(10.0), np.arange(8.0)), "same number"),
    (lambda: mutual_information_discrete(np.arange(10.0), [0] * 8 + [1] * 2), "class 1 has 2 samples"),
    (lambda: mutual_information_discrete(np.arange(10.0), np.zeros((10, 2))), "1-D"),
    (lambda: permutation_test(np.arange(10.0), np.arange(10.0), n_permutations=0), "n_permutations"),
])
def test_clear_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_torch_tensors_and_1d_inputs():
    x = torch.randn(1000, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    assert entropy(x) == pytest.approx(entropy(x.numpy()[:, None]), abs=1e-12)
    assert mutual_information(x, 2 * x + 1e-3 * torch.randn(1000, dtype=torch.float64)) > 3.0
