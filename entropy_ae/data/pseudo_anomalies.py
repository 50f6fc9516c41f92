"""Pseudo-anomalies: synthetic defects with exact masks, made from NORMAL images only.

On the codes of normal images a deterministic encoder can only show that a latent code is too
small (by data processing, nothing measured there exceeds what the normal images hold). Whether
a code is too large -- whether it also carries, and so reconstructs, what is not normal (the
identical shortcut) -- has to be measured on inputs that are not normal. These are made from the
held-out normal *validation* images, never from test images, so every measurement on them stays
free of test labels.

Families (``FAMILIES``); every one is ``x' = clip(x + strength * D)`` for a defect ``D`` drawn
once per image from ``seed``, so at a fixed seed the change grows monotonically with
``strength`` in (0, 1] and the mask (the region the defect may change) does not depend on it:

``patch_interpolation``
    A rectangle blended towards the same rectangle of another normal image (foreign-patch
    interpolation; Tan et al., MELBA 2022): ``D = x_other - x`` inside the rectangle.
``perlin_texture``
    A thresholded Perlin-noise region filled with a foreign texture (after DRAEM; Zavrtanik et
    al., ICCV 2021): ``D = t - x`` inside the region, ``t`` a random smooth texture in [-1, 1].
``intensity_blob``
    A smooth round blob of random sign with a flat core and compact support: ``D = +-blob``
    (at strength 1 a contrast of 1 on the [-1, 1] scale).
``cutpaste``
    A rectangle of the same image pasted elsewhere in it (Li et al., CVPR 2021):
    ``D = x[source] - x`` inside the target rectangle.

Regions are placed on the image's foreground (pixels above its darkest 5 % of the range), so
a defect on a black background, trivially detectable, is rare.
"""

from __future__ import annotations

import numpy as np

from ._contract import DataError

FAMILIES = ("patch_interpolation", "perlin_texture", "intensity_blob", "cutpaste")
# Side of the rectangles and blobs, as a fraction of the image side (uniform in this range).
REGION_SIZE = (0.15, 0.35)
# Fewest images for a pseudo-anomaly score whose AUROC has a standard error below ~0.05.
MIN_IMAGES = 20


def make_pseudo_anomalies(images: np.ndarray, family: str, strength: float = 1.0,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Perturb every image of ``images`` with one pseudo-anomaly of ``family``.

    Parameters
    ----------
    images : float array, shape (n, 1, s, s), values in [-1, 1]
        Normal images (use held-out validation images, never test images). ``n >= 2``: the
        foreign-patch family takes its patches from the other images.
    family : str
        One of :data:`FAMILIES`.
    strength : float in (0, 1]
        Fraction of the defect applied; the change grows monotonically with it.
    seed : int
        Seed of the defects' placement, shape and content (the same for every strength).

    Returns
    -------
    perturbed : float32 array, shape like ``images``, clipped to [-1, 1]
    masks : bool array, shape like ``images``
        The region each defect may change (exact: no pixel outside it changes).
    """
    if family not in FAMILIES:
        raise DataError(f"unknown pseudo-anomaly family {family!r}; the families are {', '.join(FAMILIES)}")
    if not (isinstance(strength, (int, float)) and 0.0 < strength <= 1.0):
        raise DataError(f"pseudo-anomaly strength must be in (0, 1], got {strength!r}")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3] or len(images) < 2:
        raise DataError(f"pseudo-anomalies need at least 2 images of shape (n, 1, s, s); got {images.shape}")
    rng = np.random.default_rng(seed)
    defects = np.empty_like(images)
    masks = np.zeros(images.shape, dtype=bool)
    make = _DEFECTS[family]
    for i in range(len(images)):
        defects[i, 0], masks[i, 0] = make(images, i, rng)
    perturbed = np.clip(images + np.float32(strength) * defects * masks, -1.0, 1.0).astype(np.float32)
    return perturbed, masks


# ------------------------------------------------------------------------------------ placement


def _foreground_centre(image: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    low, high = float(image.min()), float(image.max())
    rows, cols = np.nonzero(image > low + 0.05 * (high - low))
    if len(rows) == 0:  # a flat image: anywhere
        return int(rng.integers(image.shape[0])), int(rng.integers(image.shape[1]))
    j = int(rng.integers(len(rows)))
    return int(rows[j]), int(cols[j])


def _rectangle(image: np.ndarray, rng: np.random.Generator) -> tuple[slice, slice]:
    """A rectangle of random side (``REGION_SIZE``) centred on the foreground, inside the image."""
    s = image.shape[0]
    h, w = (max(2, int(round(rng.uniform(*REGION_SIZE) * s))) for _ in range(2))
    r, c = _foreground_centre(image, rng)
    top = int(np.clip(r - h // 2, 0, s - h))
    left = int(np.clip(c - w // 2, 0, s - w))
    return slice(top, top + h), slice(left, left + w)


# -------------------------------------------------------------------------------------- defects


def _patch_interpolation(images, i, rng):
    image = images[i, 0]
    other = images[(i + int(rng.integers(1, len(images)))) % len(images), 0]
    rows, cols = _rectangle(image, rng)
    mask = np.zeros(image.shape, dtype=bool)
    mask[rows, cols] = True
    return other - image, mask


def _cutpaste(images, i, rng):
    image = images[i, 0]
    rows, cols = _rectangle(image, rng)
    h, w = rows.stop - rows.start, cols.stop - cols.start
    s = image.shape[0]
    top, left = int(rng.integers(0, s - h + 1)), int(rng.integers(0, s - w + 1))
    pasted = image.copy()
    pasted[rows, cols] = image[top:top + h, left:left + w]
    mask = np.zeros(image.shape, dtype=bool)
    mask[rows, cols] = True
    return pasted - image, mask


def _intensity_blob(images, i, rng):
    image = images[i, 0]
    s = image.shape[0]
    r0, c0 = _foreground_centre(image, rng)
    radius = 0.5 * rng.uniform(*REGION_SIZE) * s
    yy, xx = np.mgrid[0:s, 0:s]
    dist = np.hypot(yy - r0, xx - c0)
    # Flat core out to 0.5 r, cosine fall-off to exactly 0 at r: compact support, exact mask.
    t = np.clip((dist - 0.5 * radius) / (0.5 * radius), 0.0, 1.0)
    blob = np.where(dist < radius, 0.5 + 0.5 * np.cos(np.pi * t), 0.0)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    return (sign * blob).astype(np.float32), dist < radius


def _perlin_texture(images, i, rng):
    image = images[i, 0]
    s = image.shape[0]
    region = _perlin(s, cells=4, rng=rng)
    rows, cols = _rectangle(image, rng)
    mask = np.zeros(image.shape, dtype=bool)
    # The part of the noise's top 40 % inside a rectangle on the foreground: a blotchy region.
    mask[rows, cols] = region[rows, cols] > np.quantile(region[rows, cols], 0.6)
    texture = _perlin(s, cells=8, rng=rng)
    texture = (texture - texture.min()) / max(float(np.ptp(texture)), 1e-6) * 2.0 - 1.0
    return (texture - image).astype(np.float32), mask


def _perlin(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """2-D gradient (Perlin) noise on a ``cells`` x ``cells`` lattice, sampled at ``size`` x ``size``."""
    angles = rng.uniform(0.0, 2 * np.pi, size=(cells + 1, cells + 1))
    gx, gy = np.cos(angles), np.sin(angles)
    coords = (np.arange(size) + 0.5) / size * cells
    y, x = np.meshgrid(coords, coords, indexing="ij")
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0

    def corner(dx, dy):
        return gx[y0 + dy, x0 + dx] * (fx - dx) + gy[y0 + dy, x0 + dx] * (fy - dy)

    def fade(t):
        return t * t * t * (t * (t * 6 - 15) + 10)

    u, v = fade(fx), fade(fy)
    top = corner(0, 0) * (1 - u) + corner(1, 0) * u
    bottom = corner(0, 1) * (1 - u) + corner(1, 1) * u
    return (top * (1 - v) + bottom * v).astype(np.float32)


_DEFECTS = {"patch_interpolation": _patch_interpolation, "perlin_texture": _perlin_texture,
            "intensity_blob": _intensity_blob, "cutpaste": _cutpaste}
