"""Shared test set-up: one torch thread (the test machine is shared) and a tiny data set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entropy_ae.data import AnomalyData

torch.set_num_threads(1)


def make_tiny_data(image_size: int = 16, n_train: int = 40, n_val: int = 10, n_test: int = 20,
                   masks: bool = True, seed: int = 0) -> AnomalyData:
    """Random normal images in [-1, 1]; abnormal test images carry a bright square with an exact mask.

    Half of the test images are abnormal. Built directly as an ``AnomalyData`` so it
    needs no loader and takes milliseconds.
    """
    rng = np.random.default_rng(seed)

    def normal(n):
        return rng.uniform(-1.0, -0.5, size=(n, 1, image_size, image_size)).astype(np.float32)

    test = normal(n_test)
    labels = np.zeros(n_test, dtype=np.int64)
    labels[n_test // 2:] = 1
    test_masks = np.zeros(test.shape, dtype=bool)
    side = image_size // 4
    for i in np.flatnonzero(labels):
        r, c = rng.integers(0, image_size - side, size=2)
        test_masks[i, 0, r:r + side, c:c + side] = True
    test[test_masks] = 1.0
    spec = {"source": "tiny-random", "image_size": image_size, "seed": seed}
    return AnomalyData(name="tiny", spec=spec, train=normal(n_train), val=normal(n_val), test=test,
                       test_labels=labels, test_masks=test_masks if masks else None)


@pytest.fixture
def tiny_data() -> AnomalyData:
    """40 train, 10 val, 20 test (10 abnormal, with masks) random 16x16 images."""
    return make_tiny_data()
