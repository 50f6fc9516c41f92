"""Anomaly-detection data: normal training images, labelled test images, optional masks.

CONTRACT (the data helper fills in the loaders; other modules rely only on this):

    AnomalyData fields
        name         str, short and filesystem-safe, e.g. "synthetic-k4", "digits-0"
        spec         dict, JSON-serialisable, enough for load_data(spec) to rebuild it exactly
        train        float32 np.ndarray (n_train, 1, s, s) in [-1, 1], normal images only
        val          float32 np.ndarray (n_val, 1, s, s) in [-1, 1], held-out normal images
                     (used to fix a threshold at a target false-positive rate)
        test         float32 np.ndarray (n_test, 1, s, s) in [-1, 1]
        test_labels  int64 np.ndarray (n_test,), 0 normal / 1 abnormal
        test_masks   bool np.ndarray (n_test, 1, s, s) or None (pixel ground truth)

    load_data(spec: str | dict, image_size: int = 64, seed: int = 0) -> AnomalyData
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """Raised for unusable input data; the message names the file or field at fault."""


@dataclass
class AnomalyData:
    name: str
    spec: dict
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    test_masks: np.ndarray | None = None

    @property
    def image_size(self) -> int:
        return int(self.train.shape[-1])
