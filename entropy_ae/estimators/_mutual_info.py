"""Mutual information I(X;Y), conditional MI I(X;Y|Z) and MI with a discrete label (nats internally)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
from scipy.special import chndtr, digamma

from ._columns import centre, constant_columns, covariance
from ._entropy import _entropy_nats, _plugin_mm, log_unit_ball_volume
from ._neighbors import count_within, knn_distances, ksg_counts, ksg_tree_path, sampled_mi_counts
from ._one_vs_one import one_vs_one_counts, scores_at, tie_free_order
from ._reference import _gaussian_information, _plug_in_bias, tabulated_correction
from ._threads import alongside, one_blas_thread, workers
from ._ties import dequantise, drop_repeated_rows
from ._validation import (
    check_inputs,
    check_method,
    collecting,
    copula_normal,
    covariance_eigh,
    drop_constant,
    label_codes,
    log_base,
    one_warning,
    pair_correlation,
    pair_singular,
    radial_gaussianise,
    warn,
    whiten_centred,
)

MI_METHODS = ("ksg", "kde", "binned")
CORRECTIONS = ("gaussian", None)
NORMS = ("auto", "max", "euclidean")
#: ``norm="auto"`` uses Euclidean balls up to this joint dimension and the max-norm above. Measured
#: crossover, n = 1e4, k = 3, Gaussian correction on: Student-t (nu = 2) 6 vs 6 Euclidean -0.19
#: against max-norm -0.24 nats; 8 vs 8 -0.31 against -0.25; 16 vs 16 -0.60 against -0.20
#: (Gaussian data: equal within 0.01 at 4 vs 4 and 8 vs 8).
EUCLIDEAN_MAX_JOINT_DIM = 12
#: Gaussian reference samples averaged by ``correction="gaussian"`` (see ``mutual_information``). Measured at
#: n = 3000 over 20 reference seeds: one term with the plug-in control variate has sd 0.013 nats at
#: 1 vs 1 and 4 vs 4, against 0.017 for the uncorrected (Euclidean) estimate over data seeds at 1 vs 1.
#: One replicate adds 26 % to the sd (sqrt(1 + (0.013 / 0.017)^2)); two would add 13 % but cost 1.5x the
#: time (3 KSG runs instead of 2) -- less than what the same time spent on more samples buys, so one.
REFERENCE_REPLICATES = 1
#: The Gaussian reference's BI-KSG counts the neighbours of 1 point in this many where its k-NN search is a
#: tree or a grid (there the counts cost about as much as the search); a control variate stands in for the
#: others (``_sampled_bi_ksg``), adding a variance of about 0.01 * (REFERENCE_COUNT_SHARE - 1) / n nats^2
#: (``benchmarks/reference_subsample.py``), against about 0.5 / n of the reference term itself
#: (the estimators benchmark page, "The reference's counts sampled").
REFERENCE_COUNT_SHARE = 8
#: ... from this many points on. Below, all are counted: the call takes milliseconds there, and the residual's
#: variance grows as n falls (0.02 at 2 vs 2, n = 4000), so the sampling would cost more accuracy for less time.
REFERENCE_SAMPLING_MIN_N = 20_000
#: ... and there, from this joint dimension on, the data's pass and the reference's run one after the other on
#: every thread, not at once on a share each (``benchmarks/pass_order.py``; the estimators benchmark page,
#: "The reference's counts sampled").
SEQUENTIAL_MIN_JOINT_DIM = 6
#: Resolution at which the prepared data seed the Gaussian reference (see ``_data_seed``).
SEED_GRID = 2.0**-20
#: Measured bias of the default call at high joint dimension, quoted by its warning (Gaussian data, one seed,
#: ``benchmarks/estimators.py --speed`` and the equicorrelated case of the estimators page).
HIGH_DIMENSION_BIAS = ("measured at 64 vs 64 dimensions with I = 1 nat +1.93 nats at n = 1000, +0.70 at n = 3000 "
                       "and +0.18 at n = 1e4, and +0.23 at 50 vs 50, n = 5000 (equicorrelated, truth 1.62)")


@one_warning
@one_blas_thread
def mutual_information(x, y, method: str = "ksg", k: int = 3, base: float = math.e, nan_policy: str = "raise",
                       correction: str | None = "gaussian", device: str | None = None, norm: str = "auto") -> float:
    """Mutual information I(X; Y) between continuous variables.

    Parameters
    ----------
    x, y : array_like or torch.Tensor, shape (n,) or (n, d_x), (n, d_y)
        Paired samples, one per row.
    method : {"ksg", "kde", "binned"}
        * ``"ksg"`` -- Kraskov-Stoegbauer-Grassberger estimator 1:
          psi(k) + psi(n) - <psi(n_x + 1) + psi(n_y + 1)> (max-norm), or with
          Euclidean balls (``norm``, see Notes). Biased towards 0 for strong
          dependence and high dimension.
        * ``"kde"`` -- H(X) + H(Y) - H(X, Y) with leave-one-out Gaussian-kernel
          entropies (Scott's bandwidth).
        * ``"binned"`` -- plug-in with Miller-Madow corrections on one common grid:
          n^{1/(D+1)} equal-width bins per axis over +-3 of the normal scores,
          D = d_x + d_y. Biased towards 0 by the coarse grid.
    k : int
        Neighbour order for ``"ksg"``.
    base : float
        ``math.e`` for nats, 2 for bits.
    nan_policy : {"raise", "omit"}
    correction : {"gaussian", None}
        Gaussian-copula bias correction (see Notes).
    device : str or None
        Torch device for neighbour searches; None chooses automatically.
    norm : {"auto", "max", "euclidean"}
        Ball of ``"ksg"`` (see Notes). ``"max"``: classic KSG (max-norm boxes).
        ``"euclidean"``: Euclidean balls (BI-KSG) on radially Gaussianised
        variables. ``"auto"``: Euclidean up to a joint dimension of
        ``EUCLIDEAN_MAX_JOINT_DIM`` (12), max-norm above. ``correction=None``
        with the max-norm is the classic KSG estimator of NPEET, on the normal
        scores without whitening (see Notes).

    Returns
    -------
    float
        I(X; Y) in units of log(base). Not clipped at 0: negative values mean
        "indistinguishable from 0" within the estimator's noise. ``inf`` (with a
        warning) when x and y are linearly dependent after the rank transform,
        e.g. y a copy or monotone function of x (see "Degenerate inputs").

    Notes
    -----
    The estimate is computed on preprocessed data: constant columns dropped,
    ties dequantised (rounding-level duplicates of float32 data silently),
    each coordinate rank-transformed to normal scores and, except for classic
    KSG, each variable whitened. These are invertible maps of one variable at
    a time, which leave (conditional) MI unchanged, so the estimate is exactly
    invariant to rescaling and to any strictly monotone map of a coordinate.
    Whitening changes the bias of uncorrected max-norm KSG (it concentrates
    dependence spread over many coordinates into few), so ``correction=None``
    with the max-norm (and uncorrected CMI) skips it, as NPEET does; only a
    variable with linearly dependent columns is then reduced to their span.

    ``norm="max"`` is classic KSG (Kraskov et al. 2004). ``norm="euclidean"``
    uses Euclidean balls (BI-KSG, Gao, Oh & Viswanath 2018) after radially
    Gaussianising each whitened variable (Lyu & Simoncelli 2009: each point
    keeps its direction, its radius goes through the empirical CDF of the
    radii and the chi(d) quantile; a strictly increasing map of the radius, so
    MI is unchanged). ``norm="auto"`` uses Euclidean balls up to a joint
    dimension of ``EUCLIDEAN_MAX_JOINT_DIM`` and the max-norm above, where
    Euclidean marginal balls stop being local. CMI always uses the max-norm.

    ``correction="gaussian"`` (default) is a parametric-bootstrap bias
    correction at the Gaussian copula of the data:
    I = I_hat(data) - (E[I_hat(G)] - I_G), with G a Gaussian sample of the
    same size and covariance as the prepared data, prepared and estimated
    exactly as the data, and I_G its exact MI. E[I_hat(G)] - I_G is taken from
    ``REFERENCE_REPLICATES`` samples, each with a control variate (the exact
    bias of the plug-in Gaussian MI of the sample's own covariance, from the
    Wishart log-determinant). The samples are seeded from a hash of the
    prepared data, so the same input gives the same number. The correction
    removes the bias exactly (up to Monte Carlo noise) when the copula is
    Gaussian and only partly otherwise (e.g. heavy-tailed Student-t
    dependence stays biased towards 0). It costs a second KSG run, except at
    1 vs 1 dimensions with Euclidean balls and k = 3, where E[I_hat(G)] - I_G
    depends only on n and the correlation and is read from a table
    (``_reference.CORRECTION``, standard error about 1e-3 nats). Where the
    reference's k-NN search is a tree or a grid and n is at least
    ``REFERENCE_SAMPLING_MIN_N``, its marginal counts are taken for a random 1
    in ``REFERENCE_COUNT_SHARE`` of its points, with a control variate for the
    others (``_sampled_bi_ksg``; unbiased, a little more noise). At high joint
    dimension it overshoots (``HIGH_DIMENSION_BIAS``).
    ``correction=None, norm="max"`` is the classic, uncorrected estimator,
    biased towards 0 for strong dependence and high dimension.

    Degenerate inputs. When one variable is a copy, a linear or a strictly
    monotone function of the other, I(X;Y) is +inf for continuous variables,
    and ``inf`` is returned with a warning. For I(X;Y|Z) with x or y (partly)
    a function of z the Gaussian reference is undefined, so the uncorrected
    Frenzel-Pompe estimate (about 0, the truth) is returned with a warning.
    Linearly dependent columns within one variable are reduced to the
    subspace they span, with a warning.

    Measured bias and run time against NPEET: see the documentation's
    estimators page (``docs/content/estimators.md``) and its estimators
    benchmark page.

    References
    ----------
    Kraskov, Stoegbauer & Grassberger (2004), Phys. Rev. E 69, 066138.
    Gao, Oh & Viswanath (2018), Demystifying fixed k-nearest neighbor
    information estimators, IEEE Trans. Inf. Theory 64, 5629-5661.
    Lyu & Simoncelli (2009), Nonlinear extraction of independent components of
    natural images using radial Gaussianization, Neural Computation 21, 1485-1519.
    """
    check_method(method, MI_METHODS)
    check_method(norm, NORMS, "norm")
    divisor = log_base(base)
    x, y = check_inputs({"x": x, "y": y}, k if method == "ksg" else None, nan_policy)
    return _estimate([x, y], ["x", "y"], method, k, correction, device, norm) / divisor


@one_warning
@one_blas_thread
def conditional_mutual_information(x, y, z, method: str = "ksg", k: int = 3, base: float = math.e,
                                   nan_policy: str = "raise", correction: str | None = "gaussian",
                                   device: str | None = None) -> float:
    """Conditional mutual information I(X; Y | Z) between continuous variables.

    ``"ksg"`` is the Frenzel-Pompe estimator psi(k) - <psi(n_xz + 1) +
    psi(n_yz + 1) - psi(n_z + 1)>; ``"kde"`` and ``"binned"`` combine entropies
    H(X,Z) + H(Y,Z) - H(Z) - H(X,Y,Z). Parameters and units as in
    :func:`mutual_information`; the same preprocessing and Gaussian-copula bias
    correction (with I_G the Gaussian conditional MI) apply. Degenerate inputs
    (see the Notes of :func:`mutual_information`): when x or y is a copy or a
    monotone or linear function of z (where I(X;Y|Z) = 0 by definition) the
    Gaussian reference is undefined, so the uncorrected estimate (here ~0) is
    returned with a warning; when x and y determine each other given z, ``inf``.

    References
    ----------
    Frenzel & Pompe (2007), Phys. Rev. Lett. 99, 204101.
    """
    check_method(method, MI_METHODS)
    divisor = log_base(base)
    x, y, z = check_inputs({"x": x, "y": y, "z": z}, k if method == "ksg" else None, nan_policy)
    return _estimate([x, y, z], ["x", "y", "z"], method, k, correction, device) / divisor


@one_warning
@one_blas_thread
def mutual_information_discrete(x, labels, k: int = 3, base: float = math.e, nan_policy: str = "raise",
                                device: str | None = None) -> float:
    """Mutual information I(X; L) between continuous codes ``x`` and a discrete label.

    Ross's k-NN estimator: psi(n) + psi(k) - <psi(n_L)> - <psi(m)>, where for
    each sample the k-th neighbour within its own class sets a radius and m
    counts all samples within it (Euclidean, on the same invariant preprocessing
    as :func:`mutual_information`). At most log(number of classes) nats; small
    negative values mean no detectable dependence. Bias: towards 0, small at
    low d (measured < 0.02 nats for two Gaussian classes in d = 2, n = 2000).

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (n,) or (n, d)
    labels : array_like, shape (n,)
        Class of each sample (any hashable values: ints, strings, bools); every
        class needs more than k samples. NaN or None is a missing label, handled
        by ``nan_policy`` as NaN in ``x`` ("omit" drops those rows).
    nan_policy : {"raise", "omit"}

    References
    ----------
    Ross (2014), PLoS ONE 9(2): e87357.
    """
    divisor = log_base(base)
    shape = np.shape(labels)
    if len(shape) != 1:
        raise ValueError(f"labels must be 1-D (n,); got shape {shape}.")
    # Missing labels (NaN, None) are NaN codes here, so nan_policy treats them like NaN in x.
    x, codes_f = check_inputs({"x": x, "labels": label_codes(labels)}, k, nan_policy)
    codes = np.unique(codes_f[:, 0], return_inverse=True)[1].reshape(-1)  # 0..m-1 after dropped rows
    (x,) = _prepare([x], ["x"])
    if x.shape[1] == 0:
        return 0.0
    return _ross(x, codes, k, device) / divisor


# --- preprocessing ---------------------------------------------------------------------------------------


def _prepare(blocks: list[np.ndarray], names: list[str], whitened: bool = True) -> list[np.ndarray]:
    """MI-invariant per-variable preprocessing (see the Notes of ``mutual_information``).

    Constant columns dropped, ties dequantised, normal scores; then each variable
    whitened, or, with ``whitened=False`` (classic KSG), only one whose columns are
    linearly dependent, onto the subspace they span.
    """
    out = []
    for block, name in zip(blocks, names):
        block = drop_constant(block, name)
        order = tie_free_order(block[:, 0]) if block.shape[1] == 1 else None
        if order is not None:  # one tie-free column: the same numbers, read at its ranks (_one_vs_one)
            out.append(scores_at(order, "whitened" if whitened else "scores"))
            continue
        if block.shape[1]:
            block = copula_normal(dequantise(block, name))
            centred = centre(block)
            decomposition = covariance_eigh(centred)  # for the rank here and for the whitening
            rank = int(decomposition[3].sum())
            if rank < block.shape[1]:
                warn(f"{name}: its {block.shape[1]} columns are linearly dependent after the rank transform (n <= d, "
                     f"or a column is a copy or monotone function of another); estimating on the {rank}-dimensional "
                     f"subspace they span, which carries the same information.")
            if whitened or rank < block.shape[1]:
                block = whiten_centred(centred, decomposition, subspace=True)[0]
        out.append(block)
    return out


def _classic(method: str, correction: str | None, norm: str, n_blocks: int) -> bool:
    """Uncorrected max-norm KSG (or Frenzel-Pompe): NPEET's estimator, on normal scores without whitening."""
    return method == "ksg" and correction is None and (norm == "max" or n_blocks == 3)


def _resolve_norm(norm: str, method: str, blocks: list[np.ndarray]) -> str:
    """The KSG ball for these prepared blocks: Euclidean only for two-variable KSG at low joint dimension."""
    if method != "ksg" or len(blocks) != 2:
        return "max"  # CMI (Frenzel-Pompe) is implemented with the max-norm only
    if norm == "auto":
        return "euclidean" if sum(b.shape[1] for b in blocks) <= EUCLIDEAN_MAX_JOINT_DIM else "max"
    return norm


def _shape_for(norm: str, blocks: list[np.ndarray]) -> list[np.ndarray]:
    """Radial Gaussianisation of every variable before Euclidean KSG (an MI-invariant map, see Notes)."""
    if norm != "euclidean":
        return blocks
    return [radial_gaussianise(b) if b.shape[1] else b for b in blocks]


def _estimate(blocks, names, method, k, correction, device, norm="max") -> float:
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}; got {correction!r}.")
    if method == "ksg" and norm != "max" and device is None and [b.shape[1] for b in blocks] == [1, 1]:
        value = _one_vs_one(blocks, k, correction)
        if value is not None:
            return value
    blocks = drop_repeated_rows(blocks, "(" + ", ".join(names) + ")")
    if norm == "auto" and len(blocks) == 2 and method == "ksg" and correction is None:
        # Classic or not depends on the joint dimension after constant columns are dropped.
        kept = sum(int((~constant_columns(b)).sum()) for b in blocks)
        norm = "euclidean" if kept <= EUCLIDEAN_MAX_JOINT_DIM else "max"
    blocks = _prepare(blocks, names, whitened=not _classic(method, correction, norm, len(blocks)))
    if blocks[0].shape[1] == 0 or blocks[1].shape[1] == 0:
        return 0.0  # a variable with only constant columns carries no information
    conditional = len(blocks) == 3
    if conditional and blocks[2].shape[1] == 0:
        blocks, conditional = blocks[:2], False  # conditioning on a constant changes nothing
    n, total_d = len(blocks[0]), sum(b.shape[1] for b in blocks)
    if total_d > math.log2(n):
        _warn_joint_dimension(n, total_d, correction)
    degenerate = _degeneracy(blocks)
    if degenerate == "infinite":
        return math.inf
    norm = _resolve_norm(norm, method, blocks)
    blocks = _shape_for(norm, blocks)
    if correction != "gaussian" or degenerate is not None:
        return _raw(blocks, method, k, device, norm)
    at_once = _passes_at_once(method, norm, len(blocks), (n, total_d), device)
    (value, raw_messages), (reference, reference_messages) = alongside(
        collecting(lambda: _raw(blocks, method, k, device, norm)),
        collecting(lambda: _gaussian_reference(blocks, method, k, device, norm)), workers() if at_once else 1)
    for message in raw_messages + reference_messages:  # the order of running them one after the other
        warn(message)
    return value + reference


def _passes_at_once(method: str, norm: str, n_blocks: int, shape: tuple[int, int], device) -> bool:
    """Whether the data's KSG pass and the reference's, independent, run at once (each on its share of the
    threads) rather than one after the other (each on all of them).

    At once on the CPU, except where the reference counts a sample of its points (and is the shorter
    part) from ``SEQUENTIAL_MIN_JOINT_DIM`` on.
    """
    if device is not None:
        return False
    return not (_samples_reference(method, norm, n_blocks, shape, device) and shape[1] >= SEQUENTIAL_MIN_JOINT_DIM)


def _samples_reference(method: str, norm: str, n_blocks: int, shape: tuple[int, int], device) -> bool:
    """Whether the Gaussian reference of prepared data of ``shape`` (n, D) counts the neighbours of a sample
    of its points (``_sampled_bi_ksg``): two-variable BI-KSG on the CPU's tree path, where the counts cost
    about as much as the search, from ``REFERENCE_SAMPLING_MIN_N`` points on."""
    return (method == "ksg" and norm == "euclidean" and n_blocks == 2 and device is None
            and shape[0] >= REFERENCE_SAMPLING_MIN_N and ksg_tree_path(shape, "euclidean"))


def _one_vs_one(blocks, k, correction) -> float | None:
    """The default MI of two tie-free columns from their ranks (:mod:`._one_vs_one`): the number of the
    general path (Euclidean balls, whitened), without its extra sorts; None where that path is needed."""
    orders = [tie_free_order(b[:, 0]) for b in blocks]
    if orders[0] is None or orders[1] is None or len(orders[0]) < 4:  # ties, or the dimension warning's n
        return None
    whitened = [scores_at(order, "whitened") for order in orders]
    counts = one_vs_one_counts(orders[0], orders[1], k, workers())
    if counts is None:
        return None
    degenerate = _degeneracy(whitened)
    if degenerate == "infinite":
        return math.inf
    value = _bi_ksg_value(len(orders[0]), [1, 1], k, *counts)
    if correction == "gaussian" and degenerate is None:
        shaped = [scores_at(order, "shaped") for order in orders]
        value += _gaussian_reference(shaped, "ksg", k, None, "euclidean")
    return value


def _warn_joint_dimension(n: int, total_d: int, correction: str | None) -> None:
    """The one warning of a k-NN MI at a joint dimension above log2(n), with what to do about it."""
    if correction is None:
        advice = ("Use the default Gaussian-copula correction (correction='gaussian'), which removes this bias "
                  "as far as the dependence is Gaussian, or fewer dimensions (e.g. the leading principal "
                  "components of each variable)")
    else:
        advice = ("The Gaussian-copula correction removes this bias only as far as the dependence is Gaussian, and "
                  f"at high dimension it overshoots: {HIGH_DIMENSION_BIAS}. For a tighter estimate use fewer "
                  "dimensions (e.g. the leading principal components of each variable) or more samples")
    warn(f"joint dimension {total_d} is too high for n = {n} (n^(1/D) < 2 samples per axis): uncorrected k-NN MI "
         f"is biased towards 0 by a large fraction here. {advice}.")


def _singular(blocks, parts) -> bool:
    columns = np.hstack([blocks[p] for p in parts])
    if columns.shape[1] == 2 and len(columns) > 2:
        return pair_singular(columns[:, 0], columns[:, 1])  # the same rule, without an eigen-decomposition
    return not covariance_eigh(columns)[3].all()


def _degeneracy(blocks) -> str | None:
    """None, or how prepared (per-variable full-rank) blocks are linearly dependent, with a warning.

    ``"infinite"``: I(X;Y) or I(X;Y|Z) is +inf. ``"uncorrected"``: x or y is (partly) a
    linear function of z, or n <= the joint dimension; the Gaussian reference is undefined
    there and the correction is skipped. See "Degenerate inputs" in the Notes of ``mutual_information``.
    """
    if not _singular(blocks, range(len(blocks))):
        return None
    if len(blocks[0]) <= sum(block.shape[1] for block in blocks):
        warn("n <= joint dimension: the sample covariance is singular whatever the dependence, so the Gaussian "
             "reference is undefined and the correction is skipped (uncorrected estimate). Use more samples.")
        return "uncorrected"
    if len(blocks) == 3 and (_singular(blocks, (0, 2)) or _singular(blocks, (1, 2))):
        warn("x or y is (partly) a linear function of z after the rank transform (e.g. y is a copy or monotone "
             "function of z, where I(X;Y|Z) = 0): the Gaussian-copula reference has a singular covariance, so "
             "the correction is skipped and the uncorrected Frenzel-Pompe estimate returned. Drop from y (or x) "
             "what z determines to get the corrected estimate of the rest.")
        return "uncorrected"
    given = " given z" if len(blocks) == 3 else ""
    warn(f"x and y are linearly dependent{given} after the rank transform (e.g. y is a copy, a linear or a "
         f"monotone function of x): for continuous variables the mutual information is +inf, returned as inf. "
         f"A k-NN estimate here would only reflect the sample size (about log n).")
    return "infinite"


def _gaussian_reference(blocks, method, k, device, norm="max") -> float:
    """I_G - E[I_hat(G)] for Gaussian samples G with the data's size and covariance (see ``mutual_information``).

    Mean over ``REFERENCE_REPLICATES`` samples of I_plug(G_r) - I_hat(G_r), minus the
    exact bias of the plug-in I_plug; seeded from the data (deterministic per input).
    At 1 vs 1 dimensions with Euclidean balls and k = 3 it is read from a table of its
    expectation instead (:mod:`._reference`), which is exact up to the table's
    Monte Carlo error and costs nothing.
    """
    sizes = [b.shape[1] for b in blocks]
    if method == "ksg" and norm == "euclidean" and sizes == [1, 1]:
        tabulated = tabulated_correction(len(blocks[0]), k, pair_correlation(blocks[0][:, 0], blocks[1][:, 0]))
        if tabulated is not None:
            return tabulated
    joint = np.hstack(blocks)
    root = np.linalg.cholesky(covariance(joint))
    rng = np.random.default_rng(_data_seed(joint))
    return float(np.mean([_reference_term(root, sizes, len(joint), rng, method, k, device, norm)
                          for _ in range(REFERENCE_REPLICATES)]))


def _reference_term(root, sizes, n, rng, method, k, device, norm) -> float:
    """I_plug(G) - I_hat(G) - (E[I_plug] - I_G) for one sample G of n rows from N(0, root root^T).

    Its expectation is I_G - E[I_hat(G)], the correction; G is prepared and
    estimated exactly as the data.
    """
    g = rng.standard_normal((n, len(root))) @ root.T
    plug_in = _gaussian_information(covariance(g), sizes)
    g_blocks = _shape_for(norm, _prepare(np.split(g, np.cumsum(sizes)[:-1], axis=1), ["g"] * len(sizes)))
    if _samples_reference(method, norm, len(g_blocks), (n, sum(b.shape[1] for b in g_blocks)), device):
        estimate = _sampled_bi_ksg(g_blocks, k, rng)
    else:
        estimate = _raw(g_blocks, method, k, device, norm)
    return plug_in - estimate - _plug_in_bias(sizes, n)


def _sampled_bi_ksg(blocks, k, rng) -> float:
    """BI-KSG of a prepared Gaussian reference sample, from the counts of a random 1 in ``REFERENCE_COUNT_SHARE``
    of its points (and the k-NN radii of all).

    BI-KSG needs the mean over all n points of t_i = log n_x(i) + log n_y(i). With
    the radius eps_i of every point known, it is estimated as
    mean_all(c) + mean_S(t - c) over a uniform random subset S, with the control
    variate c_i = log P_x(B(x_i, eps_i)) + log P_y(B(y_i, eps_i)), P the standard
    normal that the prepared reference's marginals follow (P(B) a noncentral
    chi-square CDF). Unbiased over the draw of S whatever c is; c only makes the
    variance small, since t - c is nearly constant (the counts of a ball are close
    to n times its probability).
    """
    x, y = blocks
    n = len(x)
    sampled = np.zeros(n, dtype=bool)
    sampled[rng.choice(n, -(-n // REFERENCE_COUNT_SHARE), replace=False)] = True
    eps, n_x, n_y = sampled_mi_counts(x, y, k, sampled)
    control = ball_log_probabilities(blocks, eps)
    mean_log_counts = control.mean() + (np.log(n_x[sampled]) + np.log(n_y[sampled]) - control[sampled]).mean()
    return _bi_ksg_from(n, [x.shape[1], y.shape[1]], k, float(mean_log_counts))


def ball_log_probabilities(blocks: list[np.ndarray], eps: np.ndarray) -> np.ndarray:
    """sum over the blocks b of log P(B(b_i, eps_i)), P the standard normal of b's dimension: the control
    variate of ``_sampled_bi_ksg`` (the probability of a ball is a noncentral chi-square CDF)."""
    tiny = np.finfo(np.float64).tiny  # P(B) underflows only far out in the tails; any finite c is unbiased
    return sum(np.log(np.maximum(chndtr(eps**2, b.shape[1], np.einsum("ij,ij->i", b, b)), tiny)) for b in blocks)


def _data_seed(joint: np.ndarray) -> int:
    """A seed from the prepared data: same input, same reference samples.

    The data are hashed on a grid of ``SEED_GRID`` (the prepared values are
    normal scores, of order 1), so rounding in the last bits -- another BLAS
    build, another summation order in the preparation -- gives the same seed.
    """
    grid = np.round(np.ascontiguousarray(joint) / SEED_GRID).astype(np.int64)
    return int.from_bytes(hashlib.blake2b(grid.tobytes(), digest_size=8).digest(), "little")


# --- estimators on prepared blocks -----------------------------------------------------------------------


def _raw(blocks, method, k, device, norm="max") -> float:
    if method == "ksg":
        return _ksg(blocks, k, device, norm)
    if method == "kde":
        h = lambda *parts: _entropy_nats(np.hstack([blocks[p] for p in parts]), "kde", k, device)  # noqa: E731
    else:
        h = _binned_joint_entropy(blocks)
    if len(blocks) == 2:
        return h(0) + h(1) - h(0, 1)
    return h(0, 2) + h(1, 2) - h(2) - h(0, 1, 2)


def _ksg(blocks, k, device, norm="max") -> float:
    """KSG estimator 1 (two blocks) or Frenzel-Pompe (three blocks, last = Z), max-norm or Euclidean."""
    n = len(blocks[0])
    if norm == "euclidean":
        return _bi_ksg(blocks, k, device)
    subsets = [(0,), (1,)] if len(blocks) == 2 else [(0, 2), (1, 2), (2,)]
    avg_psi = [float(digamma(c + 1).mean()) for c in ksg_counts(blocks, subsets, k, device)]
    if len(blocks) == 2:
        return float(digamma(k) + digamma(n)) - avg_psi[0] - avg_psi[1]
    return float(digamma(k)) - avg_psi[0] - avg_psi[1] + avg_psi[2]


def _bi_ksg(blocks, k, device) -> float:
    """KSG with Euclidean balls (BI-KSG, Gao, Oh & Viswanath 2018, eq. 7), two blocks.

    psi(k) + log n + log(c_dx c_dy / c_D) - <log n_x + log n_y>, with c_d the
    volume of the unit d-ball and n_x, n_y the points within the joint k-NN
    distance (inclusive) in each marginal space.
    """
    n_x, n_y = ksg_counts(blocks, [(0,), (1,)], k, device, metric="euclidean")
    return _bi_ksg_value(len(blocks[0]), [b.shape[1] for b in blocks], k, n_x, n_y)


def _bi_ksg_value(n: int, dims: list[int], k: int, n_x: np.ndarray, n_y: np.ndarray) -> float:
    return _bi_ksg_from(n, dims, k, float(np.log(n_x).mean() + np.log(n_y).mean()))


def _bi_ksg_from(n: int, dims: list[int], k: int, mean_log_counts: float) -> float:
    """BI-KSG from <log n_x + log n_y>."""
    volumes = log_unit_ball_volume(dims[0]) + log_unit_ball_volume(dims[1]) - log_unit_ball_volume(sum(dims))
    return float(digamma(k) + math.log(n) + volumes - mean_log_counts)


def _binned_joint_entropy(blocks):
    """Entropy (plug-in + Miller-Madow) of the bin indices of a subset of blocks on one common grid."""
    data = np.hstack(blocks)
    n, total_d = data.shape
    bins = max(2, int(n ** (1.0 / (total_d + 1))))
    edges = np.cumsum([0] + [b.shape[1] for b in blocks])
    # The blocks are normal scores, so equal-width bins over +-3 sd use the same rule on every axis.
    index = np.clip(np.floor((data + 3.0) / 6.0 * bins), 0, bins - 1).astype(np.int64)

    def h(*parts):
        cols = np.concatenate([np.arange(edges[p], edges[p + 1]) for p in parts])
        _, counts = np.unique(index[:, cols], axis=0, return_counts=True)
        return _plugin_mm(counts.astype(np.float64))

    return h


def _ross(x: np.ndarray, codes: np.ndarray, k: int, device) -> float:
    n = len(x)
    radius = np.empty(n)
    class_size = np.bincount(codes)[codes]
    for c in np.unique(codes):
        mask = codes == c
        if mask.sum() <= k:
            raise ValueError(f"class {c} has {int(mask.sum())} samples; every class needs more than k = {k} "
                             f"(merge rare classes or lower k).")
        radius[mask] = knn_distances(x[mask], k, "euclidean", device)[:, -1]
    # m counts the k same-class neighbours (the k-th sits on the radius) and any other-class points inside.
    m = count_within(x, radius, "euclidean", device) + 1
    return float(digamma(n) + digamma(k) - digamma(class_size).mean() - digamma(m).mean())
