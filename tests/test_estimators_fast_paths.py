"""The fast paths of the default MI (tabulated 1 vs 1 reference, the reference's sampled counts, grid k-NN,
small-n brute force), the float32 duplicate rule, classic KSG against npeet-plus on raw data, and the one
warning per call."""

import math
import warnings

import npeet_plus
import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

import entropy_ae.estimators._mutual_info as mi_module
from entropy_ae.estimators import EstimatorWarning, entropy, mutual_information
from entropy_ae.estimators._grid_knn import grid_knn, sweep_knn
from entropy_ae.estimators._kernels import ksg_counts_brute
from entropy_ae.estimators._neighbors import (EUCLIDEAN_INFLATE, count_within, knn_distances, ksg_counts, ksg_tree_path,
                                              sampled_mi_counts)
from entropy_ae.estimators._reference import INFO, LOG2_N, STDERR, direct_terms, tabulated_correction
from entropy_ae.estimators._ties import rounding_ties

torch.set_num_threads(1)


def estimator_warnings(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = call()
    return value, [str(w.message) for w in caught if issubclass(w.category, EstimatorWarning)]


def gaussian_pair(n, d, mi, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    rho = math.sqrt(1 - math.exp(-2 * mi / d))
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))


# --- the tabulated Gaussian reference (1 vs 1, Euclidean, k = 3) --------------------------------------------

@pytest.mark.parametrize("n, info, replicates", [(700, 1.8, 200), (3000, 0.6, 60), (20000, 0.3, 12)])
def test_tabulated_correction_matches_direct_computation(n, info, replicates):
    # Off the grid in both n and I_G, so the interpolation is checked too. The direct mean over fresh seeds
    # (not the table's) has standard error sd / sqrt(R); the table's own is STDERR (about 1e-3). Their
    # difference is within 4 combined standard errors unless the table (or its interpolation) is off.
    terms = direct_terms(n, info, replicates, seed=12345)
    table_se = float(STDERR.max())
    tolerance = 4 * math.hypot(terms.std(ddof=1) / math.sqrt(replicates), table_se)
    rho = math.sqrt(-math.expm1(-2 * info))
    assert tabulated_correction(n, 3, rho) == pytest.approx(terms.mean(), abs=tolerance)


def test_table_applies_only_where_it_was_computed():
    rho = math.sqrt(-math.expm1(-2 * 1.0))
    assert tabulated_correction(1000, 3, rho) is not None
    assert tabulated_correction(1000, 5, rho) is None  # another k
    assert tabulated_correction(int(2 ** LOG2_N[-1]) + 1, 3, rho) is None  # beyond the largest n
    assert tabulated_correction(int(2 ** LOG2_N[0]) - 1, 3, rho) is None
    assert tabulated_correction(1000, 3, math.sqrt(-math.expm1(-2 * (INFO[-1] + 0.1)))) is None


def test_default_mi_at_1_vs_1_uses_the_table_and_others_the_direct_reference(monkeypatch):
    calls = []
    original = mi_module._reference_term
    monkeypatch.setattr(mi_module, "_reference_term", lambda *a: calls.append(a[1]) or original(*a))
    x, y = gaussian_pair(3000, 1, 1.0, 0)
    assert abs(mutual_information(x, y) - 1.0) < 0.08  # 4 sd of the estimate (~0.017) plus the table error
    assert calls == []
    mutual_information(x, y, norm="max")  # no table for the max-norm: one direct reference sample
    assert calls == [[1, 1]]


def test_tabulated_default_is_unbiased_at_1_vs_1():
    # 12 data seeds at n = 3000, I = 1: the default's sd over data seeds is about 0.017 nats, so the mean is
    # within 4 standard errors (4 * 0.017 / sqrt(12) = 0.02) of the truth, plus 2e-3 for the table.
    values = [mutual_information(*gaussian_pair(3000, 1, 1.0, seed)) for seed in range(12)]
    assert abs(np.mean(values) - 1.0) < 0.022


# --- the Gaussian reference's counts on a sample of its points (_sampled_bi_ksg) ------------------------------

def prepared_reference(n, d, seed):
    x, y = gaussian_pair(n, d, 1.0, seed)
    return mi_module._shape_for("euclidean", mi_module._prepare([x, y], ["x", "y"]))


def test_sampled_counts_are_the_full_counts_where_sampled():
    x, y = prepared_reference(6000, 2, 0)  # D = 4, n above KSG_BRUTE_MAX_N[4]: the kd-tree
    sampled = np.random.default_rng(1).random(6000) < 0.2
    eps, n_x, n_y = sampled_mi_counts(x, y, 3, sampled)
    full = ksg_counts([x, y], [(0,), (1,)], 3, metric="euclidean")
    want = knn_distances(np.hstack([x, y]), 3, "euclidean")[:, -1] * EUCLIDEAN_INFLATE
    np.testing.assert_array_equal(eps, want)
    np.testing.assert_array_equal(n_x[sampled], full[0][sampled])
    np.testing.assert_array_equal(n_y[sampled], full[1][sampled])
    assert ksg_tree_path((6000, 4), "euclidean") and not ksg_tree_path((3000, 4), "euclidean")


def test_reference_counts_a_sample_on_the_tree_path_of_large_samples_only(monkeypatch):
    calls = []
    original = mi_module._sampled_bi_ksg
    monkeypatch.setattr(mi_module, "_sampled_bi_ksg", lambda *a: calls.append(len(a[0][0])) or original(*a))
    large = mi_module.REFERENCE_SAMPLING_MIN_N
    x, y = gaussian_pair(large, 2, 1.0, 0)
    mutual_information(x[1:], y[1:])  # D = 4 on the kd-tree, but a small sample
    mutual_information(x, y, norm="max")  # max-norm boxes: all points counted
    assert calls == []
    assert not mi_module._samples_reference("ksg", "euclidean", 2, (large, 4), "cpu")  # a torch device: brute force
    mutual_information(x, y)
    assert calls == [large]


def test_sampled_reference_with_every_point_counted_is_bi_ksg(monkeypatch):
    blocks = prepared_reference(6000, 2, 2)
    monkeypatch.setattr(mi_module, "REFERENCE_COUNT_SHARE", 1)
    sampled = mi_module._sampled_bi_ksg(blocks, 3, np.random.default_rng(0))
    assert sampled == pytest.approx(mi_module._bi_ksg(blocks, 3, None), abs=1e-12)


def test_sampled_reference_is_unbiased_and_quiet_over_the_draw_of_its_sample():
    # Over R draws of the counted 1 in REFERENCE_COUNT_SHARE the mean is the full-count BI-KSG of the same
    # sample within 4 standard errors (unbiased by construction: mean_all(c) + mean_S(t - c)). The control
    # variate makes t - c nearly constant (variance about 0.01 against about 1 for t itself,
    # benchmarks/reference_subsample.py): the sd over draws, about sqrt(0.01 * 7 / n), is below half the
    # reference term's own sd over Gaussian samples (about 0.71 / sqrt(n) nats); without the control variate
    # it would be about 4 times that sd.
    n, replicates = 6000, 24
    blocks = prepared_reference(n, 2, 3)
    full = mi_module._bi_ksg(blocks, 3, None)
    draws = np.array([mi_module._sampled_bi_ksg(blocks, 3, np.random.default_rng(s)) for s in range(replicates)])
    assert abs(draws.mean() - full) < 4 * draws.std(ddof=1) / math.sqrt(replicates)
    assert draws.std(ddof=1) < 0.5 * 0.71 / math.sqrt(n)


# --- neighbour searches: grid k-NN and small-n brute force give the tree's numbers ---------------------------

@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("euclidean", [True, False])
@pytest.mark.parametrize("data", ["continuous", "quantised", "correlated"])
def test_grid_knn_equals_tree(d, euclidean, data):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6000, d))
    if data == "quantised":
        x = np.round(x, 1)  # many exact ties and duplicate points (distance 0)
    elif data == "correlated" and d == 2:
        x[:, 1] = 0.99 * x[:, 0] + 0.14 * x[:, 1]
    ref = cKDTree(x).query(x, k=4, p=2.0 if euclidean else np.inf)[0][:, 1:]
    np.testing.assert_array_equal(grid_knn(x, 3, euclidean, 1), ref)


@pytest.mark.parametrize("euclidean", [True, False])
@pytest.mark.parametrize("data", ["continuous", "quantised", "correlated"])
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("k", [3, 2, 5])  # k = 3 has a kernel of its own (_sweep_kernel_3)
def test_sweep_knn_equals_tree(euclidean, data, workers, k):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 2))
    if data == "quantised":
        x = np.round(x, 1)  # ties along the sorted axis and duplicate points (distance 0)
    elif data == "correlated":
        x[:, 1] = 0.99 * x[:, 0] + 0.14 * x[:, 1]
    ref = cKDTree(x).query(x, k=k + 1, p=2.0 if euclidean else np.inf)[0][:, 1:]
    np.testing.assert_array_equal(sweep_knn(x, k, euclidean, workers), ref)


@pytest.mark.parametrize("metric", ["euclidean", "chebyshev"])
def test_small_n_brute_force_counts_equal_tree_counts(metric):
    x, y = gaussian_pair(1000, 4, 1.0, 4)  # D = 8, n = 1000: the compiled brute force
    inflate = 1.0 if metric == "chebyshev" else 1.0 + 2e-9
    eps = knn_distances(np.hstack([x, y]), 3, metric)[:, -1] * inflate
    tree = [count_within(b, eps, metric) for b in (x, y)]
    # ksg_counts takes the single-precision MI kernel here (tests/test_estimators_single_precision.py): the
    # tree's counts except for a point within float32 rounding of a radius, by one. The general
    # double-precision kernel gives them exactly.
    for got, want in zip(ksg_counts([x, y], [(0,), (1,)], 3, None, metric), tree):
        assert np.abs(got - want).max() <= 1 and (got != want).mean() <= 1e-3
    shrink = (inflate * (1 - 1e-9)) ** (2 if metric == "euclidean" else 1)
    for got, want in zip(ksg_counts_brute([x, y], [(0,), (1,)], 3, metric == "euclidean", shrink, 2), tree):
        np.testing.assert_array_equal(got, want)  # two threads: the same counts


# --- float32 duplicates: rounding against real ties ----------------------------------------------------------

def float32_gaussian(n, seed=0):
    x64 = np.random.default_rng(seed).standard_normal(n)
    x32 = x64.astype(np.float32)
    assert len(np.unique(x32)) < n, "expected rounding duplicates in the float32 sample"
    return x64, x32


def test_float32_rounding_duplicates_are_silent_and_harmless():
    x64, x32 = float32_gaussian(5000, seed=0)
    value, caught = estimator_warnings(lambda: entropy(x32))
    assert caught == []
    # Rounding moves each value by at most 2.4e-7, under 1/1000 of the typical 3rd-neighbour distance
    # (~1.5e-3 here), so each log-distance moves by < 1e-3 and their mean (the estimate) by far less;
    # the estimator's own sd is ~0.02 nats.
    assert value == pytest.approx(entropy(x64), abs=1e-3)
    noise = np.random.default_rng(5).standard_normal(5000)
    y32 = (x32 + noise).astype(np.float32)
    value, caught = estimator_warnings(lambda: mutual_information(x32, y32))
    assert caught == []
    assert value == pytest.approx(mutual_information(x64, x64 + noise), abs=2e-3)


def test_torch_float32_codes_are_silent():
    codes = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    assert len(torch.unique(codes)) < 20000  # a few rounding duplicates
    assert estimator_warnings(lambda: entropy(codes))[1] == []


@pytest.mark.parametrize("case", ["quantised", "atom", "repeated"])
def test_real_ties_are_handled_and_reported(case):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(5000)
    if case == "quantised":  # codes rounded to 0.1: the resolution is the typical gap
        x = np.round(x, 1)
        match = "duplicate"
    elif case == "atom":  # ReLU-like codes: 20 % exact zeros, a point mass, not rounding
        x[:1000] = 0.0
        match = "repeated samples"
    else:  # 2 % of the samples repeated (the same image twice): more than rounding explains
        x[:100] = x[100:200]
        match = "repeated samples"
    assert not rounding_ties(x[:, None])
    value, caught = estimator_warnings(lambda: entropy(x))
    assert len(caught) == 1 and match in caught[0]
    assert np.isfinite(value)
    if case == "quantised":
        # Dequantised by uniform jitter of one step: the entropy of the jittered variable, which for a
        # step of 0.1 is that of N(0, 1) within the KL bias (~0.01) and noise (~0.02); 4 sd bound.
        assert value == pytest.approx(0.5 * math.log(2 * math.pi * math.e), abs=0.08)


def test_rounding_rule_limits():
    x = np.random.default_rng(7).standard_normal(5000)
    x[:40] = x[40:80]  # 0.8 % duplicates of continuous values: within the share limit
    assert rounding_ties(x[:, None])
    x[:60] = x[60:120]  # 1.2 %: beyond it
    assert not rounding_ties(x[:, None])
    assert not rounding_ties(np.column_stack([x, x]))  # a repeated row in two columns is never rounding


# --- classic KSG is NPEET's estimator on the raw data -------------------------------------------------------

def equicorrelated(n, d, r, seed):
    m = 2 * d
    cov = np.full((m, m), r) + (1 - r) * np.eye(m)
    z = np.random.default_rng(seed).standard_normal((n, m)) @ np.linalg.cholesky(cov).T
    return z[:, :d], z[:, d:]


def test_classic_ksg_agrees_with_npeet_on_raw_correlated_data():
    # Dependence spread over all coordinates (truth 0.593 nats). Classic KSG runs on normal scores without
    # whitening; whitening first moved it to 0.39. Measured |classic - npeet| over 8 seeds: mean 0.001,
    # max 0.004 (the rank transform only), against an estimator sd of 0.009 over data seeds: 0.02 is two
    # such sd and excludes the whitened result by 8.
    x, y = equicorrelated(5000, 5, 0.5, 0)
    classic = mutual_information(x, y, correction=None, norm="max")
    assert classic == pytest.approx(npeet_plus.mi(x, y, k=3, base=math.e), abs=0.02)
    assert classic < 0.593


# --- warnings: one per call, and the dimension warning says what to do ---------------------------------------

def test_joint_dimension_warning_is_single_and_actionable():
    x, y = gaussian_pair(300, 8, 1.0, 8)
    _, caught = estimator_warnings(lambda: mutual_information(x, y, correction=None))
    assert len(caught) == 1 and "too high" in caught[0] and "correction='gaussian'" in caught[0]
    _, caught = estimator_warnings(lambda: mutual_information(x, y))
    assert len(caught) == 1 and "overshoots" in caught[0] and "fewer dimensions" in caught[0]
    quantised = np.random.default_rng(9).integers(0, 2, size=(300, 8)).astype(float)  # repeated rows
    _, caught = estimator_warnings(lambda: mutual_information(quantised, y))
    assert len(caught) == 1 and "duplicate" in caught[0] and "too high" in caught[0]


# --- per-shape caches and one-column shortcuts give the general computation's numbers ----------------------

def test_cached_normal_scores_and_one_column_covariance_equal_the_direct_computation():
    from scipy.special import ndtri
    from scipy.stats import rankdata

    from entropy_ae.estimators._validation import copula_normal, covariance_eigh

    rng = np.random.default_rng(7)
    x = rng.standard_normal((501, 3)) * [1.0, 5.0, 1e-3]
    direct = ndtri(rankdata(x, axis=0) / (len(x) + 1.0))
    np.testing.assert_array_equal(copula_normal(x), direct)
    np.testing.assert_array_equal(copula_normal(x[::-1]), direct[::-1])  # the cached vector is not altered
    for column in x.T:
        scale, eigval, eigvec, keep = covariance_eigh(column[:, None])
        general = np.linalg.eigh(np.atleast_2d(np.cov(column / scale[0])))
        assert scale[0] == column.std(ddof=1)
        np.testing.assert_array_equal(eigval, general[0])
        np.testing.assert_array_equal(np.abs(eigvec), np.abs(general[1]))
        assert keep.all()


def test_two_column_singularity_rule_and_correlation_equal_the_eigen_decomposition():
    from entropy_ae.estimators._validation import covariance_eigh, pair_correlation, pair_singular

    rng = np.random.default_rng(3)
    x = rng.standard_normal(400)
    n, eps = len(x), np.finfo(float).eps
    # Independent, dependent, exact copies and reflections, and just either side of the rounding threshold.
    for y in (rng.standard_normal(n), 0.9 * x + 0.1 * rng.standard_normal(n), x, -3.0 * x + 2.0,
              x + 1e-9 * rng.standard_normal(n), x + 1e-5 * rng.standard_normal(n)):
        general = not covariance_eigh(np.column_stack([x, y]))[3].all()
        assert pair_singular(x, y) == general
        assert abs(pair_correlation(x, y) - np.corrcoef(x, y)[0, 1]) <= 8 * eps
    assert pair_singular(x, x) and not pair_singular(x, x + 1e-5 * rng.standard_normal(n))
    assert math.isnan(pair_correlation(x, np.ones(n))) and pair_singular(x, np.ones(n))


def test_compiled_column_statistics_return_numpys_numbers_to_the_bit():
    from entropy_ae.estimators import _columns

    rng = np.random.default_rng(11)
    for n, d in ((2, 2), (5, 3), (1000, 4), (3001, 8), (20000, 5), (700, 64), (300, 1)):
        x = rng.standard_normal((n, d)) * rng.uniform(1e-3, 1e3, d) + rng.uniform(-50, 50, d)
        for array in (x, np.asfortranarray(x)):  # the second takes numpy's own (pairwise) sums
            np.testing.assert_array_equal(_columns.centre(array), array - array.mean(axis=0))
            np.testing.assert_array_equal(_columns.column_std(array), array.std(axis=0, ddof=1))
            np.testing.assert_array_equal(_columns.covariance(array), np.atleast_2d(np.cov(array, rowvar=False)))
            np.testing.assert_array_equal(_columns.row_norms(array), np.sqrt((array * array).sum(axis=1)))
    x = rng.standard_normal((50, 4))
    x[:, 1], x[:, 3] = 2.5, 0.0
    x[7, 3] = -0.0  # equal to 0.0: still constant
    np.testing.assert_array_equal(_columns.constant_columns(x), [False, True, False, True])
    np.testing.assert_array_equal(_columns.constant_columns(x[:1]), [True] * 4)


def test_compiled_rank_scatters_give_the_ranked_values_and_refuse_ties():
    from entropy_ae.estimators import _columns

    rng = np.random.default_rng(12)
    x = rng.standard_normal((200, 3))
    columns = np.ascontiguousarray(x.T)
    scores = np.sort(rng.standard_normal(200))
    out = _columns.scatter_scores(columns, np.argsort(columns, axis=1), scores)
    ranks = np.argsort(np.argsort(x, axis=0), axis=0)
    np.testing.assert_array_equal(out, scores[ranks])
    x[17, 2] = x[3, 2]
    columns = np.ascontiguousarray(x.T)
    assert _columns.scatter_scores(columns, np.argsort(columns, axis=1), scores) is None
    radius = np.abs(x[:, 0])
    radius[5] = 0.0
    scale = _columns.radial_scale(radius, np.argsort(radius), scores)
    ranked = scores[np.argsort(np.argsort(radius))]
    np.testing.assert_array_equal(scale[radius > 0], ranked[radius > 0] / radius[radius > 0])
    assert scale[5] == 1.0  # a point at the centre stays there
    radius[9] = radius[4]
    assert _columns.radial_scale(radius, np.argsort(radius), scores) is None
