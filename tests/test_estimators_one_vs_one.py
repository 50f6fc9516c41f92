"""The 1 vs 1 path of the default MI (``_one_vs_one``): the general path's numbers from the ranks alone."""

import math
import multiprocessing
import warnings

import numpy as np
import pytest
import torch

import entropy_ae.estimators._mutual_info as mi_module
import entropy_ae.estimators._one_vs_one as one_module
from entropy_ae.estimators import EstimatorWarning, mutual_information
from entropy_ae.estimators import _threads
from entropy_ae.estimators._validation import copula_normal, radial_gaussianise, whiten

torch.set_num_threads(1)


def cases(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    return {
        "gaussian": (x, 0.8 * x + 0.6 * rng.standard_normal(n)),
        "heavy tails, monotone maps": (np.exp(x), x + rng.standard_t(2, n)),
        "independent": (x, rng.uniform(size=n)),
        "strong": (x, x + 1e-3 * rng.standard_normal(n)),
    }


def both_paths(monkeypatch, *args, **kwargs):
    """(the 1 vs 1 path, the general path) of one call, with any warnings recorded."""
    with warnings.catch_warnings(record=True) as fast_warnings:
        warnings.simplefilter("always")
        fast = mutual_information(*args, **kwargs)
    with monkeypatch.context() as patch, warnings.catch_warnings(record=True) as general_warnings:
        warnings.simplefilter("always")
        patch.setattr(mi_module, "_one_vs_one", lambda *a, **k: None)
        general = mutual_information(*args, **kwargs)
    return fast, general, [str(w.message) for w in fast_warnings], [str(w.message) for w in general_warnings]


@pytest.mark.parametrize("n", [7, 300, 4999, 5000, 60000])  # sweep / grid k-NN; one thread / the pool
@pytest.mark.parametrize("options", [{}, {"correction": None}, {"k": 5, "norm": "euclidean"}])
def test_one_vs_one_path_gives_the_general_number_to_the_bit(monkeypatch, n, options):
    torch.set_num_threads(2 if n >= one_module.THREADS_MIN_N else 1)
    try:
        for name, (x, y) in cases(n, seed=n).items():
            fast, general, fast_warnings, general_warnings = both_paths(monkeypatch, x, y, **options)
            assert fast == general, name
            assert fast_warnings == general_warnings, name
    finally:
        torch.set_num_threads(1)


def test_one_vs_one_path_handles_degenerate_pairs_as_the_general_path(monkeypatch):
    x = np.random.default_rng(0).standard_normal(500)
    fast, general, fast_warnings, _ = both_paths(monkeypatch, x, -(x ** 3))
    assert fast == general == math.inf
    assert any("+inf" in message for message in fast_warnings)


def test_one_vs_one_path_is_taken_only_for_tie_free_columns(monkeypatch):
    calls = []
    original = one_module.one_vs_one_counts
    monkeypatch.setattr(mi_module, "one_vs_one_counts", lambda *a: calls.append(1) or original(*a))
    rng = np.random.default_rng(1)
    x = rng.standard_normal(2000)
    mutual_information(x, x + rng.standard_normal(2000))
    assert calls == [1]
    quantised = np.round(x * 2)  # real ties: the general path (dequantisation, with its warning)
    with pytest.warns(EstimatorWarning, match="duplicate"):
        value = mutual_information(quantised, x + rng.standard_normal(2000))
    assert calls == [1] and math.isfinite(value)
    mutual_information(x, x + rng.standard_normal(2000), norm="max")  # classic balls: general path
    mutual_information(x, x + rng.standard_normal(2000), device="cpu")  # a forced device: general path
    assert calls == [1]


@pytest.mark.parametrize("n", [10, 999, 20000])
def test_prepared_forms_equal_the_preprocessing_functions(n):
    col = np.random.default_rng(n).standard_t(3, n)
    order = one_module.tie_free_order(col)
    scores = one_module.scores_at(order, "scores")
    np.testing.assert_array_equal(scores, copula_normal(col[:, None]))
    # Whitening sums in a different order here (the sorted vector): equal to rounding.
    whitened = one_module.scores_at(order, "whitened")
    np.testing.assert_allclose(whitened, whiten(scores)[0], rtol=0, atol=1e-14)
    np.testing.assert_array_equal(one_module.scores_at(order, "shaped"), radial_gaussianise(whitened))
    assert one_module.tie_free_order(np.r_[col, col[:1]]) is None


def test_counts_around_a_rank_equal_numpy_searchsorted():
    rng = np.random.default_rng(3)
    s = np.sort(rng.standard_normal(1000))
    pos = rng.integers(0, 1000, 5000)
    pos[:4] = [0, 999, 0, 999]  # the ends, with radii that reach past the other end too
    radius = rng.exponential(0.05, 5000) * (1.0 + (rng.uniform(size=5000) < 0.01) * 1e3)
    radius[2:4] = 10.0
    counts = np.empty((2, 5000), dtype=np.int64)
    one_module._sorted_counts(s, pos, pos[::-1].copy(), radius, counts, 0, 5000)
    for row, p in ((0, pos), (1, pos[::-1])):
        want = np.searchsorted(s, s[p] + radius, "left") - np.searchsorted(s, s[p] - radius, "right") - 1
        np.testing.assert_array_equal(counts[row], want)
    # Radii exactly at a neighbour's distance: strict inequality, so that neighbour is not counted.
    r_exact = s[501] - s[500]
    one_module._sorted_counts(s, np.array([500]), np.array([500]), np.array([r_exact]), counts[:, :1], 0, 1)
    assert counts[0, 0] == np.searchsorted(s, s[500] + r_exact, "left") - np.searchsorted(
        s, s[500] - r_exact, "right") - 1


def test_default_one_vs_one_stays_unbiased():
    # The closed form I = -log(1 - rho^2) / 2; 20 seeds at n = 2000: the mean is within 4 standard errors
    # (the default's bias at 1 vs 1 is below 0.003 nats there, see the estimators benchmark page).
    rho = 0.8
    truth = -0.5 * math.log1p(-rho * rho)
    values = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(2000)
        values.append(mutual_information(x, rho * x + math.sqrt(1 - rho * rho) * rng.standard_normal(2000)))
    se = np.std(values, ddof=1) / math.sqrt(len(values))
    assert abs(np.mean(values) - truth) < 4 * se + 0.003


def _child_sum(queue):
    out = np.zeros(4096)

    def kernel(start, stop):
        out[start:stop] = 1.0

    _threads.in_threads(kernel, len(out), 2)
    queue.put(float(out.sum()))


def test_thread_pool_works_in_a_forked_child():
    # The pool is kept between calls; a forked child inherits it without its threads and must get its own.
    _threads.in_threads(lambda start, stop: None, 4096, 2)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_sum, args=(queue,))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == 4096.0


def test_reference_seed_ignores_rounding_in_the_last_bits():
    # Another BLAS build or summation order moves the prepared values by a few ulps; the Gaussian reference
    # must be the same sample then, or results would differ by its Monte Carlo noise between machines.
    joint = np.random.default_rng(4).standard_normal((5000, 8))
    nudged = joint * (1.0 + 4.0 * np.finfo(float).eps * np.random.default_rng(5).choice([-1.0, 1.0], joint.shape))
    assert (nudged != joint).mean() > 0.5
    assert mi_module._data_seed(nudged) == mi_module._data_seed(joint)
    shifted = joint.copy()
    shifted[0, 0] += 1e-3  # a real change of the data: another seed
    assert mi_module._data_seed(shifted) != mi_module._data_seed(joint)
