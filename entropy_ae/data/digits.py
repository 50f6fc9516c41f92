"""scikit-learn's bundled 8x8 digits (no download) as anomaly-detection data: class C normal."""

from __future__ import annotations

import numpy as np

from ._contract import AnomalyData, DataError, assemble
from ._images import resize_images

# Split of the normal class (the other classes supply the abnormal test images).
DIGITS_TEST_FRACTION = 0.3
DIGITS_VAL_FRACTION = 0.1


def load(spec: dict) -> AnomalyData:
    from sklearn.datasets import load_digits

    c = spec.get("normal_class", 0)
    if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= 9:
        raise DataError(f"digits class {c!r} has no images: the digits dataset has classes 0..9 (use 'digits:C')")
    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0 * 2.0 - 1.0  # pixel values are 0..16
    labels = bunch.target
    rng = np.random.default_rng(spec["seed"])

    normal = rng.permutation(np.flatnonzero(labels == c))
    n_test = int(round(DIGITS_TEST_FRACTION * len(normal)))
    n_val = int(round(DIGITS_VAL_FRACTION * len(normal)))
    test_n, val_n, train_n = normal[:n_test], normal[n_test : n_test + n_val], normal[n_test + n_val :]
    # Balanced test set: as many abnormal as normal images, spread evenly over the other nine classes.
    others = [k for k in range(10) if k != c]
    per_class = np.full(9, n_test // 9)
    per_class[: n_test % 9] += 1
    test_a = np.concatenate(
        [rng.choice(np.flatnonzero(labels == k), size=m, replace=False) for k, m in zip(others, per_class)]
    )
    s = spec["image_size"]
    test = np.concatenate([images[test_n], images[test_a]])
    test_labels = np.concatenate([np.zeros(len(test_n), np.int64), np.ones(len(test_a), np.int64)])
    canonical = {"source": "digits", "normal_class": c, "image_size": s, "seed": spec["seed"]}
    return assemble(
        f"digits-{c}",
        canonical,
        resize_images(images[train_n], s),
        resize_images(images[val_n], s),
        resize_images(test, s),
        test_labels,
        None,
    )
