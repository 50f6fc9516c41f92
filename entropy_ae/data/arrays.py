"""In-memory arrays (numpy or torch) as anomaly-detection data, for notebooks."""

from __future__ import annotations

import re

import numpy as np

from ._contract import AnomalyData, DataError, assemble
from ._images import (
    VAL_FRACTION, as_numpy, check_count, check_int, check_labels, images_to_unit, resize_images, resize_masks,
    split_val,
)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def from_arrays(
    train,
    test,
    test_labels,
    test_masks=None,
    val=None,
    name: str = "arrays",
    image_size: int | None = None,
    value_range: tuple[float, float] | None = None,
    seed: int = 0,
) -> AnomalyData:
    """Build :class:`AnomalyData` from in-memory numpy arrays or torch tensors (for notebooks).

    Parameters
    ----------
    train, test, val : array-like, shape (n, s, s) or (n, 1, s, s)
        Normal training images, test images, optional held-out normal images, square
        (non-square images are refused: crop or pad them first). When ``val`` is
        None, a fraction ``VAL_FRACTION`` (at least one image) of ``train`` is held out, chosen
        with ``seed``.
    test_labels : array-like of int, shape (n_test,)
        0 normal, 1 abnormal.
    test_masks : array-like, shape like ``test``, optional
        Pixel ground truth (nonzero = anomalous).
    name : str
        Filesystem-safe name (letters, digits, ``.``, ``_``, ``-``), used in run paths.
    image_size : int, optional
        Resize to this side (bilinear); default: keep the arrays' size (must be square).
    value_range : (low, high), optional
        Intensity range of the inputs, mapped linearly onto [-1, 1], e.g. ``(0, 255)``, ``(0, 1)``
        or ``(-1, 1)``. Optional for uint8 arrays (then ``(0, 255)``); required for float arrays,
        because a float image in [0, 1] and one in [-1, 1] cannot be told apart reliably.
        Values outside the range are an error.
    seed : int
        Seed of the validation split when ``val`` is None.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DataError(f"name={name!r} is not filesystem-safe; use letters, digits, '.', '_' and '-' only")
    arrays = {"train": train, "test": test}
    if val is not None:
        arrays["val"] = val
    images = {}
    for field, arr in arrays.items():
        images[field] = images_to_unit(as_numpy(arr, field), field, value_range)
    sizes = {a.shape[-2:] for a in images.values()}
    if image_size is None:
        if len(sizes) != 1 or next(iter(sizes))[0] != next(iter(sizes))[1]:
            raise DataError(
                f"images have sizes {sorted(sizes)}; pass image_size= to resize them to one square size"
            )
        image_size = next(iter(sizes))[0]
    check_int("image_size", image_size, minimum=1)

    labels = check_labels(as_numpy(test_labels, "test_labels"), len(images["test"]), "test_labels")
    masks = None
    if test_masks is not None:
        masks = as_numpy(test_masks, "test_masks")
        if masks.ndim == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        if masks.shape != images["test"].shape:
            raise DataError(
                f"test_masks has shape {masks.shape} but test images have shape {images['test'].shape} "
                "(after dropping the channel axis); give one mask per test image with the image's size"
            )
        if masks.dtype.kind == "f" and not np.all(np.isfinite(masks)):
            raise DataError("test_masks contains NaN or infinite values")
        masks = resize_masks(masks != 0, image_size)

    resized = {k: resize_images(v, image_size) for k, v in images.items()}
    if val is None:
        train_r, val_r = split_val(resized["train"], VAL_FRACTION, seed, "train")
    else:
        train_r, val_r = resized["train"], resized["val"]
    check_count(train_r, 2, "train (normal training images)")
    spec = {
        "source": "arrays",
        "name": name,
        "image_size": image_size,
        "seed": seed,
        "n_train": len(train_r),
        "n_val": len(val_r),
        "n_test": len(labels),
    }
    return assemble(name, spec, train_r, val_r, resized["test"], labels, masks)
