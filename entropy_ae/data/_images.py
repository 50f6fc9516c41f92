"""Pixel handling shared by the loaders: conversion to [-1, 1], resizing, validation split and checks.

Images are grey and must be square (non-square ones are refused rather than squashed); they are
resized with bilinear interpolation (Pillow, which low-pass filters when shrinking) and scaled
linearly to [-1, 1]; masks are resized with nearest-neighbour and binarised (> 0).
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from ._contract import DataError

VAL_FRACTION = 0.1  # share of normal training images held out as validation when a source has none


def as_numpy(arr, field: str) -> np.ndarray:
    if hasattr(arr, "detach") and hasattr(arr, "cpu"):  # torch tensor, without importing torch here
        arr = arr.detach().cpu().numpy()
    try:
        return np.asarray(arr)
    except (TypeError, ValueError) as err:
        raise DataError(f"{field} cannot be converted to an array: {err}") from None


def images_to_unit(images: np.ndarray, field: str, value_range) -> np.ndarray:
    """(n, s, s) or (n, 1, s, s) array -> float32 (n, s, s) in [-1, 1]."""
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or len(images) == 0:
        raise DataError(f"{field} has shape {images.shape}; expected a non-empty (n, s, s) or (n, 1, s, s) array")
    check_square(*images.shape[1:], f"{field} (shape {images.shape})")
    if images.dtype.kind not in "uif":
        raise DataError(f"{field} has dtype {images.dtype}; expected numbers")
    if value_range is None:
        if images.dtype != np.uint8:
            raise DataError(
                f"{field} has dtype {images.dtype}: pass value_range=(low, high), e.g. (0, 1), (-1, 1) or "
                "(0, 255), so the intensities map onto [-1, 1] correctly (only uint8 implies (0, 255))"
            )
        value_range = (0.0, 255.0)
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise DataError(f"value_range={value_range!r} must be (low, high) with high > low")
    x = images.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise DataError(f"{field} contains NaN or infinite values")
    tol = 1e-6 * (high - low)
    if x.min() < low - tol or x.max() > high + tol:
        raise DataError(
            f"{field} has values in [{x.min():g}, {x.max():g}], outside value_range=({low:g}, {high:g}); "
            "pass the range the images are really in"
        )
    return np.clip((x - low) / (high - low) * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)


def resize_one(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape == (size, size):
        return image.astype(np.float32, copy=False)
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), -1.0, 1.0)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(n, h, w) float in [-1, 1] -> float32 (n, 1, size, size), bilinear."""
    images = images[:, 0] if images.ndim == 4 else images
    out = np.empty((len(images), 1, size, size), dtype=np.float32)
    for i, img in enumerate(images):
        out[i, 0] = resize_one(img, size)
    return out


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """(n, h, w) bool -> bool (n, 1, size, size), nearest neighbour."""
    out = np.empty((len(masks), 1, size, size), dtype=bool)
    for i, m in enumerate(masks):
        img = Image.fromarray(m.astype(np.uint8) * 255)
        out[i, 0] = np.asarray(img.resize((size, size), Image.NEAREST)) > 0
    return out


def split_val(images: np.ndarray, fraction: float, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Hold out round(fraction * n) (at least one) images, chosen with ``seed``; order kept."""
    n = len(images)
    check_count(images, 3, what + " (to hold out validation images and keep 2 for training)")
    n_val = min(max(1, int(round(fraction * n))), n - 2)
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return images[train_idx], images[val_idx]


def check_labels(labels: np.ndarray, n: int, field: str) -> np.ndarray:
    labels = labels.reshape(-1) if labels.ndim == 2 and 1 in labels.shape else labels
    if labels.ndim != 1 or len(labels) != n:
        raise DataError(f"{field} has shape {labels.shape}; expected ({n},), one label per test image")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
        raise DataError(f"{field} contains NaN or infinite values")
    if not np.isin(labels, (0, 1)).all():
        bad = np.unique(labels[~np.isin(labels, (0, 1))])[:5]
        raise DataError(f"{field} has values {bad.tolist()} outside {{0, 1}}; use 0 for normal, 1 for abnormal")
    labels = labels.astype(np.int64)
    if labels.min() == labels.max():
        raise DataError(f"{field} contains only label {labels[0]}; the test set needs normal (0) and abnormal (1) images")
    return labels


def check_square(height: int, width: int, what: str) -> None:
    """Refuse non-square images: resizing them to ``image_size`` x ``image_size`` would distort them."""
    if height != width:
        side = min(height, width)
        raise DataError(
            f"{what}: images are {height}x{width} pixels (height x width) but must be square, since they are "
            f"resized to image_size x image_size and would be squashed; crop or pad them to square first "
            f"(e.g. centre-crop to {side}x{side})"
        )


def check_count(images: np.ndarray, minimum: int, what: str) -> None:
    if len(images) < minimum:
        raise DataError(f"need at least {minimum} {what}, found {len(images)}")


def check_int(field: str, value, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise DataError(f"{field} must be an integer >= {minimum}, got {value!r}")


def safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return name or "data"
