"""The data contract: :class:`AnomalyData`, :class:`DataError`, the split names, and assembly.

Every loader ends in :func:`assemble`, which checks the spec is JSON and fixes dtypes and layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

# The four image sets every run is judged on, by their one name in code, CLI, files and docs.
SPLITS = ("train_normal", "val_normal", "test_normal", "test_abnormal")


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

    def split(self, name: str) -> np.ndarray:
        """The images of one split (see :data:`SPLITS`): ``train_normal``, ``val_normal``,
        ``test_normal`` or ``test_abnormal``."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; the splits are {', '.join(SPLITS)}")
        if name == "train_normal":
            return self.train
        if name == "val_normal":
            return self.val
        return self.test[self.test_labels == (0 if name == "test_normal" else 1)]


def assemble(name, spec, train, val, test, labels, masks) -> AnomalyData:
    return AnomalyData(
        name=name,
        spec=json.loads(json.dumps(spec)),  # proves it is JSON-serialisable and detaches it
        train=np.ascontiguousarray(train, dtype=np.float32),
        val=np.ascontiguousarray(val, dtype=np.float32),
        test=np.ascontiguousarray(test, dtype=np.float32),
        test_labels=np.ascontiguousarray(labels, dtype=np.int64),
        test_masks=None if masks is None else np.ascontiguousarray(masks, dtype=bool).reshape(test.shape),
    )
