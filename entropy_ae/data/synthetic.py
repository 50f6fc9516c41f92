"""Built-in synthetic "medical-like" anomaly-detection data with a known number of factors.

Generative model
----------------
A normal image is a rendered "organ" (a brain-slice-like ellipse on a black
background) fully determined by ``k`` continuous factors
``f = (f_1, ..., f_k)``, each drawn i.i.d. uniform on [-1, 1]. The factors are
taken in this fixed order (``FACTOR_NAMES``); factors beyond ``k`` are held at
their mid value 0, so they do not vary:

==  ==============  ==========================================================
 1  size            organ scale ``0.58 + 0.14 f`` (half-width units of the image)
 2  x_position      centre shift ``0.15 f`` to the right
 3  y_position      centre shift ``0.15 f`` downwards
 4  intensity       tissue grey level ``0.15 + 0.30 f`` (image scale [-1, 1])
 5  aspect          axis ratio ``exp(0.25 f)``
 6  rotation        angle ``0.6 f`` radians
 7  inner_size      scale ``0.35 + 0.12 f`` of the two dark inner structures
 8  texture_phase   phase ``pi f`` of the parenchyma texture
==  ==============  ==========================================================

Everything else is fixed anatomy attached to the organ's own frame: a bright
rim (cortex-like, +0.35), two dark inner structures (ventricle-like, -0.45)
and a smooth parenchyma texture of amplitude 0.08. Boundaries are linear
ramps 0.06 half-widths wide (2 pixels at 64x64, never under one pixel), so the
images look alike at every size, each image is a smooth function of the factors and
the normal images form a k-dimensional manifold in pixel space: the intrinsic
dimension of the normal data is exactly ``k`` (when ``noise == 0``).

An abnormal image is a fresh normal image plus ``1..max_lesions`` lesions:
round blobs with a flat core and a soft edge, radius uniform in
``[lesion_radius_min, lesion_radius_max]`` (half-width units; the default
0.1-0.25 is 3-8 pixels at 64x64), contrast of random sign and magnitude uniform in
``[lesion_contrast_min, lesion_contrast_max]`` (default 0.3-0.8), added inside the organ (the
blob is multiplied by the organ's coverage, so it never leaks onto the
background) and clipped to [-1, 1]. The pixel mask is exactly the set of pixels
the lesions changed (``abnormal != underlying normal image``), computed before
the optional noise.

``detail`` (default 0) adds fine tissue detail: ``detail_grid**2`` (default 25)
soft bumps on a fixed grid in the organ's frame with amplitudes uniform in
[-detail, detail] (that many small extra factors, so the intrinsic dimension is
then k large + detail_grid**2 small). ``lesion_type="detail_block"`` makes the
lesion out of that detail instead of a blob: a block of neighbouring bumps all
set to one sign, each value within the normal range, only their combination
rare. A small code cannot reconstruct such a combination; a code large enough
to copy its input (the identical shortcut) can, so the anomaly score of these
lesions falls again at large latent sizes.

``noise`` (default 0) is the standard deviation of i.i.d. Gaussian pixel noise
added to every image (train, val and test) after rendering, then clipped to
[-1, 1]. With noise > 0 the data are no longer exactly k-dimensional.

Every split has its own random stream spawned from ``numpy.random.SeedSequence
(seed)``, so e.g. the training images do not change when ``n_test`` changes.
The same parameters and seed give bit-identical arrays.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

FACTOR_NAMES = (
    "size",
    "x_position",
    "y_position",
    "intensity",
    "aspect",
    "rotation",
    "inner_size",
    "texture_phase",
)
MAX_FACTORS = len(FACTOR_NAMES)

_RIM_WIDTH = 0.12  # fraction of the organ radius covered by the bright rim
_RIM_CONTRAST = 0.35
_INNER_CONTRAST = -0.45
_TEXTURE_AMPLITUDE = 0.08
LESION_TYPES = ("blob", "detail_block")
# Named parameter sets (``synthetic:NAME``, overridable: ``synthetic:NAME[n_train=500]``).
PRESETS = {
    # Normal images: 2 global factors and a grid of small local variations; lesion: a block of
    # neighbouring bumps set to one sign, every value within the normal range. A small code
    # cannot reconstruct the rare combination, a code large enough to copy does: AUROC peaks at
    # an interior latent size, the paper's curve.
    "shortcut": {"k": 2, "detail": 0.4, "detail_grid": 4, "detail_width": 0.18, "lesion_type": "detail_block",
                 "lesion_block": 2, "lesion_level": 1.0},
}
# A detail-block lesion's mask: the pixels it changes by more than this (1 % of the [-1, 1] range).
BLOCK_MASK_THRESHOLD = 0.02
_EDGE_WIDTH = 0.06  # width of the soft tissue boundaries, half-width units (2 px at 64x64)


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic dataset (all have CPU-friendly defaults).

    Attributes
    ----------
    k : int
        Number of varying factors, 1 to 8 (intrinsic dimension of the normal data).
    n_train, n_val, n_test : int
        Normal training images, held-out normal validation images, test images.
    abnormal_fraction : float
        Fraction of the test images that are abnormal (rounded to an integer count).
    max_lesions : int
        Each abnormal image gets 1 to ``max_lesions`` lesions.
    lesion_radius_min, lesion_radius_max : float
        Lesion radius range in units of the image half-width (image spans [-1, 1]).
    lesion_contrast_min, lesion_contrast_max : float
        Range of the absolute lesion contrast on the [-1, 1] intensity scale.
    noise : float
        Standard deviation of additive Gaussian pixel noise (0 = noise-free).
    detail : float
        Amplitude of the fine tissue detail: ``detail_grid**2`` soft bumps on a fixed grid in the
        organ's frame with i.i.d. uniform amplitudes in ``[-detail, detail]`` (0 = none, the default;
        with detail > 0 the normal data have ``k`` large and ``detail_grid**2`` small factors).
    detail_grid : int
        Bumps per side of the detail grid (default 5).
    detail_width : float
        Width (standard deviation) of a detail bump in organ-radius units (default 0.16).
    lesion_type : {"blob", "detail_block"}
        ``"blob"`` (default): round blobs of random contrast (``lesion_radius_*``,
        ``lesion_contrast_*``). ``"detail_block"``: a ``lesion_block`` x ``lesion_block`` block of
        neighbouring detail bumps all set to the same sign, ``+-lesion_level * detail``. With
        ``lesion_level <= 1`` every local value stays inside the normal range; only the
        combination is rare, so an AE that reconstructs it must have learnt to copy, not to model
        (the identical shortcut). Needs ``detail > 0``.
    lesion_block : int
        Side of the block of a ``"detail_block"`` lesion, in bumps (1 to ``detail_grid``).
    lesion_level : float
        Amplitude of the block's bumps as a fraction of ``detail`` (0 < level <= 2).
    """

    k: int = 4
    n_train: int = 1000
    n_val: int = 200
    n_test: int = 400
    abnormal_fraction: float = 0.5
    max_lesions: int = 1
    lesion_radius_min: float = 0.1
    lesion_radius_max: float = 0.25
    lesion_contrast_min: float = 0.3
    lesion_contrast_max: float = 0.8
    noise: float = 0.0
    detail: float = 0.0
    detail_grid: int = 5
    detail_width: float = 0.16
    lesion_type: str = "blob"
    lesion_block: int = 3
    lesion_level: float = 1.0

    def __post_init__(self):
        problems = []
        if not 1 <= self.k <= MAX_FACTORS:
            problems.append(f"k must be from 1 to {MAX_FACTORS}, got {self.k}")
        if self.n_train < 2:
            problems.append(f"n_train must be at least 2 (BatchNorm needs batches of 2), got {self.n_train}")
        if self.n_val < 1:
            problems.append(f"n_val must be at least 1, got {self.n_val}")
        if not 0.0 < self.abnormal_fraction < 1.0:
            problems.append(f"abnormal_fraction must be strictly between 0 and 1, got {self.abnormal_fraction}")
        elif self.n_abnormal < 1 or self.n_abnormal >= self.n_test:
            problems.append(
                f"n_test={self.n_test} with abnormal_fraction={self.abnormal_fraction} must give at least one "
                "normal and one abnormal test image"
            )
        if self.max_lesions < 1:
            problems.append(f"max_lesions must be at least 1, got {self.max_lesions}")
        if not 0.0 < self.lesion_radius_min <= self.lesion_radius_max <= 1.0:
            problems.append("need 0 < lesion_radius_min <= lesion_radius_max <= 1 (half-width units)")
        if not 0.0 < self.lesion_contrast_min <= self.lesion_contrast_max <= 2.0:
            problems.append("need 0 < lesion_contrast_min <= lesion_contrast_max <= 2")
        if not (self.noise >= 0.0 and math.isfinite(self.noise)):
            problems.append(f"noise must be a finite number >= 0, got {self.noise}")
        if not 0.0 <= self.detail <= 0.5:
            problems.append(f"detail must be from 0 to 0.5, got {self.detail}")
        if not 1 <= self.detail_grid <= 12:
            problems.append(f"detail_grid must be from 1 to 12, got {self.detail_grid}")
        if not 0.02 <= self.detail_width <= 1.0:
            problems.append(f"detail_width must be from 0.02 to 1 (organ-radius units), got {self.detail_width}")
        if self.lesion_type not in LESION_TYPES:
            problems.append(f"lesion_type must be one of {', '.join(LESION_TYPES)}, got {self.lesion_type!r}")
        elif self.lesion_type == "detail_block" and self.detail <= 0:
            problems.append("lesion_type=detail_block changes the fine detail: it needs detail > 0")
        if not 1 <= self.lesion_block <= self.detail_grid:
            problems.append(f"lesion_block must be from 1 to detail_grid={self.detail_grid}, got {self.lesion_block}")
        if not 0.0 < self.lesion_level <= 2.0:
            problems.append(f"lesion_level must be in (0, 2], got {self.lesion_level}")
        if problems:
            raise ValueError("invalid synthetic parameters: " + "; ".join(problems))

    @property
    def n_abnormal(self) -> int:
        return int(round(self.n_test * self.abnormal_fraction))

    @classmethod
    def field_types(cls) -> dict[str, type]:
        return {f.name: type(f.default) for f in dataclasses.fields(cls)}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sample_factors(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Draw ``(n, MAX_FACTORS)`` factors: the first ``k`` uniform on [-1, 1], the rest 0."""
    factors = np.zeros((n, MAX_FACTORS), dtype=np.float64)
    factors[:, :k] = rng.uniform(-1.0, 1.0, size=(n, k))
    return factors


def _soft_inside(signed_dist: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] of a region from its signed distance in edge widths (positive inside):
    a linear ramp one edge width wide."""
    return np.clip(signed_dist + np.float32(0.5), 0.0, 1.0)


def _grid(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]; x to the right, y downwards, shape (1, s, s)."""
    c = ((np.arange(image_size, dtype=np.float64) + 0.5) / image_size) * 2.0 - 1.0
    y, x = np.meshgrid(c, c, indexing="ij")
    return x[None], y[None]


def render_normal(
    factors: np.ndarray, image_size: int, detail: np.ndarray | None = None, chunk: int = 128,
    detail_width: float = 0.16,
) -> tuple[np.ndarray, np.ndarray]:
    """Render normal images from factors.

    Parameters
    ----------
    factors : (n, 8) array
        Factor values in [-1, 1] (see the module docstring for their meaning).
    image_size : int
        Side of the square images in pixels.
    detail : (n, g**2) array, optional
        Amplitudes of the fine-detail bumps on a g x g grid, row by row (None = no detail).
    chunk : int
        Images rendered per vectorised block (keeps temporaries cache-sized).
    detail_width : float
        Width of a detail bump in organ-radius units.

    Returns
    -------
    images : (n, s, s) float32 in [-1, 1]
    organ : (n, s, s) float32 organ coverage in [0, 1] (where lesions may appear)
    """
    n = len(factors)
    images = np.empty((n, image_size, image_size), dtype=np.float32)
    organ = np.empty_like(images)
    for i in range(0, n, chunk):
        block_detail = None if detail is None else detail[i : i + chunk]
        images[i : i + chunk], organ[i : i + chunk] = _render_block(factors[i : i + chunk], image_size, block_detail,
                                                                  detail_width)
    return images, organ


def _render_block(factors: np.ndarray, image_size: int, detail: np.ndarray | None,
                  detail_width: float) -> tuple[np.ndarray, np.ndarray]:
    # Per-image parameters in float64, pixel maps in float32 (speed; the values are O(1)).
    f = [factors[:, i, None, None] for i in range(MAX_FACTORS)]
    edge = max(_EDGE_WIDTH, 2.0 / image_size)  # never sharper than one pixel (anti-aliasing)
    x, y = (g.astype(np.float32) for g in _grid(image_size))

    scale = 0.58 + 0.14 * f[0]
    cx, cy = 0.15 * f[1], 0.15 * f[2]
    tissue = 0.15 + 0.30 * f[3]
    aspect = np.exp(0.25 * f[4])
    theta = 0.6 * f[5]
    inner = 0.35 + 0.12 * f[6]
    phase = np.pi * f[7]
    rx, ry = scale * 0.95 * np.sqrt(aspect), scale * 0.80 / np.sqrt(aspect)

    def c32(a):
        return np.asarray(a, dtype=np.float32)

    # Organ frame: centred, rotated, and normalised by the semi-axes.
    dx, dy = x - c32(cx), y - c32(cy)
    cos_t, sin_t = c32(np.cos(theta)), c32(np.sin(theta))
    xo = (cos_t * dx + sin_t * dy) / c32(rx)
    yo = (cos_t * dy - sin_t * dx) / c32(ry)
    rho = np.sqrt(xo * xo + yo * yo)
    radius = c32(np.minimum(rx, ry) / edge)  # normalised distance -> units of the edge width

    organ = _soft_inside((1.0 - rho) * radius)
    value = _RIM_CONTRAST * _soft_inside((rho - (1.0 - _RIM_WIDTH)) * radius)
    inner_cov = np.zeros_like(rho)
    inner_a, inner_b = c32(0.55 * inner), c32(0.95 * inner)
    for side in (-1.0, 1.0):  # two mirrored ventricle-like structures
        ux = (xo - side * 0.38) / inner_a
        uy = (yo + 0.05) / inner_b
        cov = _soft_inside((1.0 - np.sqrt(ux * ux + uy * uy)) * (inner_a * radius))
        np.maximum(inner_cov, cov, out=inner_cov)
    value += _INNER_CONTRAST * inner_cov
    value += _TEXTURE_AMPLITUDE * np.cos(c32(2 * np.pi * 1.5) * xo + c32(phase)) * np.cos(c32(2 * np.pi * 1.2) * yo)
    if detail is not None:
        # Separable Gaussian bumps: 2 * g exponentials instead of g**2.
        grid = math.isqrt(detail.shape[1])
        centres = np.linspace(-0.6, 0.6, grid, dtype=np.float32)
        scale_ = np.float32(-0.5 / detail_width**2)
        gx = [np.exp((xo - c) ** 2 * scale_) for c in centres]
        gy = [np.exp((yo - c) ** 2 * scale_) for c in centres]
        for j in range(grid**2):
            value += c32(detail[:, j, None, None]) * (gy[j // grid] * gx[j % grid])
    value += c32(tissue) + 1.0
    value *= organ
    value -= 1.0
    return value, organ


def add_lesions(
    images: np.ndarray, organ: np.ndarray, rng: np.random.Generator, config: SyntheticConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Add 1..max_lesions lesions to each image inside the organ.

    Returns the abnormal images (float32, clipped to [-1, 1]) and the exact masks
    ``abnormal != images`` (bool), both ``(n, s, s)``.
    """
    n, s, _ = images.shape
    pixel = 2.0 / s
    x, y = _grid(s)
    # Organ centre of mass and extent, to place lesion centres inside the organ.
    weight = organ.astype(np.float64)
    total = weight.sum(axis=(1, 2))
    mx = (weight * x).sum(axis=(1, 2)) / total
    my = (weight * y).sum(axis=(1, 2)) / total
    extent = np.sqrt(total * pixel**2 / np.pi)  # radius of a disc with the organ's area

    change = np.zeros((n, s, s), dtype=np.float64)
    n_lesions = rng.integers(1, config.max_lesions + 1, size=n)
    for j in range(config.max_lesions):
        active = (n_lesions > j)[:, None, None]
        radius = rng.uniform(config.lesion_radius_min, config.lesion_radius_max, size=n)
        contrast = rng.uniform(config.lesion_contrast_min, config.lesion_contrast_max, size=n)
        contrast *= rng.choice([-1.0, 1.0], size=n)
        # Centre uniform in a disc of 60% of the organ's equivalent radius around its centre.
        r0 = 0.6 * extent * np.sqrt(rng.uniform(0.0, 1.0, size=n))
        ang = rng.uniform(0.0, 2 * np.pi, size=n)
        lx, ly = mx + r0 * np.cos(ang), my + r0 * np.sin(ang)
        dist = np.sqrt((x - lx[:, None, None]) ** 2 + (y - ly[:, None, None]) ** 2)
        r = radius[:, None, None]
        # Flat core out to 0.6 r, smooth (cosine) fall-off to exactly 0 at r.
        t = np.clip((dist - 0.6 * r) / (0.4 * r), 0.0, 1.0)
        blob = np.where(dist < r, 0.5 + 0.5 * np.cos(np.pi * t), 0.0)
        change += active * blob * contrast[:, None, None]
    abnormal = np.clip(images + (change * organ).astype(np.float32), -1.0, 1.0).astype(np.float32)
    return abnormal, abnormal != images


def add_detail_block_lesions(
    base: np.ndarray, factors: np.ndarray, detail: np.ndarray, image_size: int, rng: np.random.Generator,
    config: SyntheticConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-render each image with one block of neighbouring detail bumps set to one sign.

    Block position (uniform over the grid) and sign (+-) are random per image; the block's
    amplitudes become ``sign * lesion_level * detail``, the other bumps keep theirs. The mask is
    the set of pixels the lesion changes by more than ``BLOCK_MASK_THRESHOLD``.
    """
    g, b = config.detail_grid, config.lesion_block
    n = len(base)
    rows = rng.integers(0, g - b + 1, size=n)
    cols = rng.integers(0, g - b + 1, size=n)
    signs = rng.choice([-1.0, 1.0], size=n)
    changed = detail.copy()
    for i in range(n):
        block = (np.arange(rows[i], rows[i] + b)[:, None] * g + np.arange(cols[i], cols[i] + b)[None, :]).ravel()
        changed[i, block] = signs[i] * config.lesion_level * config.detail
    abnormal, _ = render_normal(factors, image_size, changed, detail_width=config.detail_width)
    abnormal = np.clip(abnormal, -1.0, 1.0).astype(np.float32)
    return abnormal, np.abs(abnormal - base) > BLOCK_MASK_THRESHOLD


def generate(config: SyntheticConfig, image_size: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Generate all splits.

    Returns
    -------
    dict with ``train``, ``val`` (normal), ``test`` (normal first, then abnormal),
    ``test_labels`` (int64 0/1), ``test_masks`` (bool), ``test_normal_base`` (the
    lesion-free images under the abnormal test images) and the factors of every split
    (``train_factors``, ``val_factors``, ``test_factors``, each ``(n, k)``). Images are
    ``(n, 1, s, s)`` float32 in [-1, 1].
    """
    ss = np.random.SeedSequence(seed)
    # Children 6-9 (detail amplitudes) come after the original six, so detail=0 data are unchanged.
    rngs = [np.random.default_rng(c) for c in ss.spawn(10)]
    rng_train, rng_val, rng_test_n, rng_test_a, rng_lesion, rng_noise = rngs[:6]
    n_abn = config.n_abnormal
    n_norm = config.n_test - n_abn
    k = config.k

    fac = {
        "train": sample_factors(rng_train, config.n_train, k),
        "val": sample_factors(rng_val, config.n_val, k),
        "test_normal": sample_factors(rng_test_n, n_norm, k),
        "test_abnormal": sample_factors(rng_test_a, n_abn, k),
    }
    det = {}
    for split, rng in zip(fac, rngs[6:]):
        det[split] = (
            rng.uniform(-config.detail, config.detail, size=(len(fac[split]), config.detail_grid**2))
            if config.detail > 0
            else None
        )
    width = config.detail_width
    train, _ = render_normal(fac["train"], image_size, det["train"], detail_width=width)
    val, _ = render_normal(fac["val"], image_size, det["val"], detail_width=width)
    test_n, _ = render_normal(fac["test_normal"], image_size, det["test_normal"], detail_width=width)
    base, organ = render_normal(fac["test_abnormal"], image_size, det["test_abnormal"], detail_width=width)
    if config.lesion_type == "blob":
        test_a, masks_a = add_lesions(base, organ, rng_lesion, config)
    else:
        test_a, masks_a = add_detail_block_lesions(base, fac["test_abnormal"], det["test_abnormal"], image_size,
                                                   rng_lesion, config)

    test = np.concatenate([test_n, test_a])
    masks = np.concatenate([np.zeros_like(test_n, dtype=bool), masks_a])
    labels = np.concatenate([np.zeros(n_norm, np.int64), np.ones(n_abn, np.int64)])
    if config.noise > 0:
        train, val, test = (
            np.clip(a + rng_noise.normal(0.0, config.noise, size=a.shape).astype(np.float32), -1.0, 1.0)
            for a in (train, val, test)
        )
    return {
        "train": train[:, None],
        "val": val[:, None],
        "test": test[:, None],
        "test_labels": labels,
        "test_masks": masks[:, None],
        "test_normal_base": base[:, None],
        "train_factors": fac["train"][:, :k],
        "val_factors": fac["val"][:, :k],
        "test_factors": np.concatenate([fac["test_normal"], fac["test_abnormal"]])[:, :k],
    }
