"""Ties in continuous data: rounding-level duplicates, repeated samples and quantised values."""

from __future__ import annotations

import numpy as np

from ._validation import warn


def _on_a_grid(col: np.ndarray) -> bool:
    """True when the distinct values are spaced by integer multiples of one step (quantised data)."""
    gaps = np.diff(np.unique(col))
    if len(gaps) == 0:
        return True
    ratio = gaps / gaps.min()
    return bool(np.all(np.abs(ratio - np.round(ratio)) < 1e-6 * ratio))


def has_repeated_rows(x: np.ndarray) -> bool:
    # Cheap test first: identical rows need a tie in every column, so a tie-free column rules them out.
    if not (np.diff(np.sort(x[:, 0])) == 0).any():
        return False
    return len(np.unique(x, axis=0)) < len(x)


#: Rounding-level duplicates (see :func:`rounding_ties`): at most this share of the sample ...
ROUNDING_MAX_SHARE = 0.01
#: ... and a column resolution (smallest gap between distinct values) at most this fraction of the
#: median gap between neighbouring distinct values.
ROUNDING_MAX_STEP = 0.01


def rounding_ties(x: np.ndarray) -> bool:
    """True when the repeated rows of ``x`` (one variable) are rounding of a continuous variable.

    Float32 data (codes from torch) hold exact duplicates by rounding alone: a
    1-D float32 Gaussian has about 1 in 5000 values duplicated at n = 5000, 0.7 %
    at n = 1e6. They are told from real ties (repeated images, quantised codes,
    an atom such as ReLU zeros) by two tests on every tied column: the
    duplicates are at most ``ROUNDING_MAX_SHARE`` of the sample, and the
    column's resolution (its smallest gap between distinct values) is at most
    ``ROUNDING_MAX_STEP`` of its median gap. Breaking such a tie by jitter within
    the resolution then moves the tied points by less than 1 % of a gap to their
    neighbours, so no k-NN distance changes by more than the rounding did
    already. Quantised data have a resolution equal to their typical gap, and
    repeats or atoms a large share. A repeated row in two or more columns is
    never rounding (each column would have to collide at once).
    """
    if x.shape[1] != 1:
        return False
    col = x[:, 0]
    values = np.unique(col)
    if len(values) < 3 or len(col) - len(values) > ROUNDING_MAX_SHARE * len(col):
        return False
    gaps = np.diff(values)
    return bool(gaps.min() <= ROUNDING_MAX_STEP * np.median(gaps))


def drop_repeated_rows(arrays: list[np.ndarray], names: str) -> list[np.ndarray]:
    """Drop repeated samples of continuous data (e.g. the same image twice), with a warning.

    A repeated sample is not a new independent draw, and k-NN estimators read it
    as a zero distance: the estimate explodes. When no column is quantised (its
    values are not on a grid), the ties can only come from repeated samples and
    the estimate is made on the distinct rows. Quantised data are left to
    ``dequantise``, and so are rounding-level duplicates of one column
    (:func:`rounding_ties`).
    """
    joint = np.hstack(arrays)
    if not has_repeated_rows(joint) or rounding_ties(joint):
        return arrays
    _, first = np.unique(joint, axis=0, return_index=True)
    if any(_on_a_grid(joint[:, j]) for j in range(joint.shape[1])):
        return arrays
    warn(f"{names}: {len(joint) - len(first)} repeated samples (identical rows) dropped; k-NN estimators need "
         f"distinct samples. Estimating on the {len(first)} distinct rows.")
    keep = np.sort(first)
    return [a[keep] for a in arrays]


def dequantise(x: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """Break ties by uniform jitter of one quantisation step per column, with a warning.

    Duplicate points make k-NN distances zero and the estimates -inf (NPEET's
    1e-10 noise turns them into about -80 nats). Data with ties are treated as
    a quantised continuous variable: each tied column gets uniform noise of
    width equal to its smallest gap between distinct values, so the estimate is
    that of the dequantised variable (for an integer-valued x, H = H_discrete).
    The jitter is relative to each column's own resolution, never absolute.
    Rounding-level duplicates (:func:`rounding_ties`, e.g. float32 data) cannot
    affect the estimate: only the tied values are jittered, within the
    resolution, and nothing is reported.
    """
    if not has_repeated_rows(x):
        return x
    rng = np.random.default_rng(seed)
    out = x.copy()
    if rounding_ties(x):
        col = x[:, 0]
        order = np.argsort(col, kind="stable")
        tied = np.zeros(len(col), dtype=bool)
        same = np.diff(col[order]) == 0
        tied[order[1:][same]] = tied[order[:-1][same]] = True
        step = np.diff(np.unique(col)).min()
        out[tied, 0] += rng.uniform(-0.5 * step, 0.5 * step, size=int(tied.sum()))
        return out
    steps = []
    for j in range(x.shape[1]):
        values = np.unique(x[:, j])
        if len(values) == len(x) or len(values) < 2:
            continue
        step = np.diff(values).min()
        steps.append(step)
        out[:, j] += rng.uniform(-0.5 * step, 0.5 * step, size=len(x))
    warn(f"{name} has {len(x) - len(np.unique(x, axis=0))} duplicate samples (ties); estimating for the "
         f"dequantised variable (uniform jitter of one quantisation step per tied column, smallest step "
         f"{min(steps) if steps else float('nan'):.3g}).")
    return out
