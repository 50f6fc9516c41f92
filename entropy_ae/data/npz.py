"""MedMNIST-style ``.npz`` files, read without unpickling (see :func:`load`)."""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ._contract import AnomalyData, DataError, assemble
from ._images import VAL_FRACTION, check_count, check_square, resize_images, safe_name, split_val

# First bytes of a zip archive (an .npz is one; "PK\x05\x06" opens an empty one) and of a lone .npy array.
_ZIP_MAGIC = b"PK"
_NPY_MAGIC = b"\x93NUMPY"
_NPZ_REDOWNLOAD = "truncated or corrupt download? re-download it (or re-create it with np.savez)"


def load(spec: dict) -> AnomalyData:
    """Load a MedMNIST-format ``.npz``: ``train_images``, ``train_labels``, ``test_images``,
    ``test_labels`` and optionally ``val_images`` + ``val_labels``.

    Images are uint8, ``(n, H, W)`` grey or ``(n, H, W, 3)`` RGB (converted to grey with the ITU-R
    601-2 luma weights Pillow uses). Labels are ``(n,)`` or ``(n, 1)`` class labels, in which case
    ``normal_labels`` (default ``[0]``) lists the normal classes; or multi-label ``(n, c)`` 0/1 rows
    (e.g. ChestMNIST), in which case an image is normal iff its row is all zeros ("no finding") and
    ``normal_labels`` must not be given. Abnormal training/validation images are dropped; the test
    set is kept whole, in file order. Without ``val_*`` arrays, ``VAL_FRACTION`` of the training
    normals is held out with the seed. The file is read with ``allow_pickle=False``.
    """
    path = Path(spec["path"])
    if not path.is_file():
        raise DataError(f"npz file {path} does not exist")
    arrays = _read_npz(path)
    required = ("train_images", "train_labels", "test_images", "test_labels")
    missing = [k for k in required if k not in arrays]
    if missing:
        raise DataError(
            f"npz file {path} lacks {', '.join(missing)} (it has {', '.join(sorted(arrays)) or 'nothing'}); "
            f"a MedMNIST-format file needs {', '.join(required)} and optionally val_images, val_labels"
        )
    if ("val_images" in arrays) != ("val_labels" in arrays):
        raise DataError(f"npz file {path} has only one of val_images / val_labels; give both or neither")
    normal_labels = spec.get("normal_labels")
    normal_labels = None if normal_labels is None else parse_normal_labels(normal_labels)
    multi_label = arrays["train_labels"].ndim == 2 and arrays["train_labels"].shape[1] > 1
    if normal_labels is None and not multi_label:
        normal_labels = [0]
    s = spec["image_size"]

    splits = {}
    for split in ("train", "val", "test"):
        if f"{split}_images" not in arrays:
            continue
        images = _npz_images(arrays[f"{split}_images"], f"{split}_images", path)
        is_normal = _npz_normal(arrays[f"{split}_labels"], len(images), f"{split}_labels", path, normal_labels)
        splits[split] = (images, is_normal)

    train_images, train_normal = splits["train"]
    if normal_labels is not None:
        present = np.unique(_class_labels(arrays["train_labels"]))
        absent = [c for c in normal_labels if c not in present]
        if absent:
            raise DataError(
                f"normal label(s) {absent} do not occur in train_labels of {path} (labels present: "
                f"{present.tolist()}); choose normal_labels among them"
            )
    train = resize_images(train_images[train_normal], s)
    if "val" in splits:
        val_images, val_normal = splits["val"]
        val = resize_images(val_images[val_normal], s)
        check_count(val, 1, f"normal val_images in {path}")
    else:
        train, val = split_val(train, VAL_FRACTION, spec["seed"], f"normal train_images in {path}")
    check_count(train, 2, f"normal train_images in {path}")
    test_images, test_normal = splits["test"]
    labels = (~test_normal).astype(np.int64)
    if labels.min() == labels.max():
        which = "abnormal" if labels[0] == 0 else "normal"
        raise DataError(f"test set of {path} has no {which} images under normal_labels={normal_labels}")
    labels_tag = "-nofinding" if normal_labels is None else "-normal" + "-".join(str(c) for c in normal_labels)
    canonical = {"source": "npz", "path": str(path), "normal_labels": normal_labels, "image_size": s, "seed": spec["seed"]}
    return assemble(safe_name(path.stem + labels_tag), canonical, train, val, resize_images(test_images, s), labels, None)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path``; DataError for anything else.

    The file's first bytes are checked before numpy sees it: given a file that is
    neither a zip archive nor an ``.npy`` array, ``np.load`` would try to unpickle
    it and, with ``allow_pickle=False``, advise enabling pickles -- which this
    loader never does, since unpickling an untrusted file can run code.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_NPY_MAGIC))
    except OSError as err:
        raise DataError(f"cannot read npz file {path}: {err}") from None
    if not head:
        raise DataError(f"cannot read npz file {path}: the file is empty (0 bytes); {_NPZ_REDOWNLOAD}")
    if head.startswith(_NPY_MAGIC):
        raise DataError(
            f"cannot read npz file {path}: it holds a single .npy array, not an .npz archive of named arrays; "
            "save train_images, train_labels, test_images and test_labels together with np.savez"
        )
    if not head.startswith(_ZIP_MAGIC):
        raise DataError(
            f"cannot read npz file {path}: it is not a valid .npz archive of arrays (no zip signature); "
            f"pickled content is refused for safety; {_NPZ_REDOWNLOAD}"
        )
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as f:
            for key in f.files:
                arrays[key] = _npz_member(f, key, path)
    except DataError:  # already says what is wrong (DataError is a ValueError)
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"cannot read npz file {path}: it is not a readable .npz file ({err}); {_NPZ_REDOWNLOAD}") from None
    return arrays


def _npz_member(npz, key: str, path: Path) -> np.ndarray:
    try:
        value = npz[key]
    except ValueError as err:
        if "pickle" not in str(err):
            raise
        raise DataError(
            f"cannot read npz file {path}: {key!r} is an object (pickled) array, not an array of numbers; "
            "pickled content is refused for safety; save plain numeric arrays (uint8 images, integer labels)"
        ) from None
    if not isinstance(value, np.ndarray):  # a zip member that is not an .npy file comes back as bytes
        raise DataError(
            f"cannot read npz file {path}: member {key!r} is not a numpy array; it is not a valid .npz archive "
            f"of arrays; {_NPZ_REDOWNLOAD}"
        )
    return value


def _npz_images(images: np.ndarray, key: str, path: Path) -> np.ndarray:
    if images.dtype != np.uint8:
        raise DataError(
            f"{key} in {path} has dtype {images.dtype}; MedMNIST images are uint8 0..255 "
            "(for other arrays use from_arrays(..., value_range=...))"
        )
    if images.ndim == 4 and images.shape[-1] == 3:
        images = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif images.ndim != 3:
        raise DataError(f"{key} in {path} has shape {images.shape}; expected (n, H, W) grey or (n, H, W, 3) RGB")
    check_square(*images.shape[1:], f"{key} in {path} (shape {images.shape})")
    return images.astype(np.float32) / 127.5 - 1.0


def _class_labels(labels: np.ndarray) -> np.ndarray:
    return labels.reshape(len(labels), -1)[:, 0] if labels.ndim == 2 else labels


def _npz_normal(labels: np.ndarray, n: int, key: str, path: Path, normal_labels) -> np.ndarray:
    if len(labels) != n:
        raise DataError(f"{key} in {path} has {len(labels)} rows but its images have {n}")
    if labels.dtype.kind not in "iub":
        raise DataError(f"{key} in {path} must hold integers, got dtype {labels.dtype}")
    if labels.ndim == 2 and labels.shape[1] > 1:
        if normal_labels is not None:
            raise DataError(
                f"{key} in {path} is multi-label ({labels.shape[1]} columns): normal means an all-zero row, "
                "so leave normal_labels unset"
            )
        if not np.isin(labels, (0, 1)).all():
            raise DataError(f"multi-label {key} in {path} must contain only 0 and 1")
        return ~labels.any(axis=1)
    if labels.ndim not in (1, 2):
        raise DataError(f"{key} in {path} has shape {labels.shape}; expected (n,), (n, 1) or (n, c)")
    if normal_labels is None:
        raise DataError(f"{key} in {path} holds class labels but train_labels is multi-label; make them agree")
    return np.isin(_class_labels(labels), normal_labels)


def parse_normal_labels(value) -> list[int]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or not all(re.fullmatch(r"\d+", p) for p in parts):
            raise DataError(f"normal_labels={value!r} must be comma-separated non-negative integers, e.g. '0' or '0,1'")
        labels = [int(p) for p in parts]
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        labels = [int(value)]
    else:
        try:
            labels = [int(v) for v in value if not isinstance(v, bool) and int(v) == v]
            ok = len(labels) == len(list(value)) and len(labels) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise DataError(f"normal_labels={value!r} must be an int, a list of ints or a string like '0,1'")
    if any(v < 0 for v in labels):
        raise DataError(f"normal_labels={value!r} must be non-negative")
    return sorted(set(labels))
