"""Anomaly-detection data: normal training images, labelled test images, optional masks.

CONTRACT (other modules rely only on this):

    AnomalyData fields
        name         str, short and filesystem-safe, e.g. "synthetic-k4", "digits-0"
        spec         dict, JSON-serialisable, enough for load_data(spec) to rebuild it exactly
        train        float32 np.ndarray (n_train, 1, s, s) in [-1, 1], normal images only
        val          float32 np.ndarray (n_val, 1, s, s) in [-1, 1], held-out normal images
                     (used to fix a threshold at a target false-positive rate)
        test         float32 np.ndarray (n_test, 1, s, s) in [-1, 1]
        test_labels  int64 np.ndarray (n_test,), 0 normal / 1 abnormal
        test_masks   bool np.ndarray (n_test, 1, s, s) or None (pixel ground truth)

    load_data(spec: str | dict, image_size: int = 64, seed: int = 0, normal_labels=None) -> AnomalyData
    from_arrays(train, test, test_labels, test_masks=None, val=None, name="arrays", image_size=None,
                value_range=None) -> AnomalyData

Sources (spec strings)
----------------------
``synthetic`` / ``synthetic[k=4,n_train=1000,...]``
    The built-in synthetic data (:mod:`entropy_ae.data.synthetic`), rendered directly at
    ``image_size``. Keys are the fields of :class:`entropy_ae.data.synthetic.SyntheticConfig`.
``digits`` / ``digits:C``
    scikit-learn's bundled 8x8 digits (no download); class C (default 0) is normal.
``<folder>``
    ``images/`` + ``data.json`` (MedIAnomaly layout) or ``train/`` + ``test/`` (MVTec /
    MedIAnomaly-BraTS layout), with optional masks. See :func:`_load_folder`.
``<file>.npz``
    MedMNIST format; ``normal_labels`` picks the normal classes. See :func:`_load_npz`.

All images are grey and must be square (non-square ones are refused rather than
squashed: crop or pad them first); they are resized to ``image_size`` x ``image_size``
with bilinear interpolation (Pillow, which low-pass filters when shrinking) and scaled
linearly to [-1, 1]; masks are resized with nearest-neighbour and binarised (> 0).
Bad input raises :class:`DataError` naming the file or field and how to fix it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from entropy_ae.data import synthetic as _synthetic


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


# The four image sets every run is judged on, by their one name in code, CLI, files and docs.
SPLITS = ("train_normal", "val_normal", "test_normal", "test_abnormal")


VALID_SPECS = (
    "valid data specs: 'synthetic', 'synthetic[k=4,n_train=1000,n_val=200,n_test=400]', "
    "'digits', 'digits:C' (C = 0..9), a folder path (images/ + data.json, or train/ + test/), "
    "or a MedMNIST-style '.npz' file path"
)
VAL_FRACTION = 0.1  # share of normal training images held out as validation when a source has none
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
MASK_FOLDERS = ("masks", "annotation", "ground_truth")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SYNTHETIC_RE = re.compile(r"^synthetic(?:\[(.*)\])?$", re.DOTALL)
_DIGITS_RE = re.compile(r"^digits(?::(.*))?$")
# Digits split of the normal class (the rest of the classes supply the abnormal test images).
DIGITS_TEST_FRACTION = 0.3
DIGITS_VAL_FRACTION = 0.1
# First bytes of a zip archive (an .npz is one; "PK\x05\x06" opens an empty one) and of a lone .npy array.
_ZIP_MAGIC = b"PK"
_NPY_MAGIC = b"\x93NUMPY"
_NPZ_REDOWNLOAD = "truncated or corrupt download? re-download it (or re-create it with np.savez)"


# ----------------------------------------------------------------------------- entry points


def load_data(spec: str | dict, image_size: int = 64, seed: int = 0, normal_labels=None) -> AnomalyData:
    """Load an anomaly-detection dataset from a spec string or a spec dict.

    Parameters
    ----------
    spec : str or dict
        A spec string (see the module docstring, or ``VALID_SPECS``) or the ``spec`` dict of a
        previously loaded :class:`AnomalyData`. A dict is the full recipe: its own
        ``image_size``, ``seed`` and ``normal_labels`` are used and the arguments below only
        fill in keys it lacks, so ``load_data(data.spec)`` rebuilds identical arrays.
    image_size : int, default 64
        Side of the square output images in pixels.
    seed : int, default 0
        Seed of everything random: the synthetic images, the digits split and the
        validation split of folders / ``.npz`` files without their own validation set.
    normal_labels : int, str or list of int, optional
        For ``.npz`` specs only: class labels that count as normal (e.g. ``[0]`` or ``"0,1"``);
        default ``[0]``.

    Returns
    -------
    AnomalyData
    """
    if isinstance(spec, dict):
        spec = dict(spec)
        spec.setdefault("image_size", image_size)
        spec.setdefault("seed", seed)
        if normal_labels is not None:
            spec.setdefault("normal_labels", normal_labels)
    elif isinstance(spec, (str, os.PathLike)):
        spec = parse_spec(os.fspath(spec), image_size=image_size, seed=seed, normal_labels=normal_labels)
    else:
        raise DataError(f"data spec must be a string or a dict, got {type(spec).__name__}; {VALID_SPECS}")
    _check_int("image_size", spec["image_size"], minimum=1)
    _check_int("seed", spec["seed"], minimum=0)
    if (normal_labels is not None or spec.get("normal_labels") is not None) and spec.get("source") != "npz":
        raise DataError("normal_labels only applies to '.npz' data specs; leave it unset for other sources")

    loaders = {"synthetic": _load_synthetic, "digits": _load_digits, "folder": _load_folder, "npz": _load_npz}
    source = spec.get("source")
    if source == "arrays":
        raise DataError(
            "this spec describes in-memory arrays (from_arrays), which cannot be rebuilt from the spec; "
            "pass the AnomalyData object itself"
        )
    if source not in loaders:
        raise DataError(f"data spec dict has source={source!r}; expected one of {sorted(loaders)}")
    return loaders[source](spec)


def parse_spec(text: str, image_size: int = 64, seed: int = 0, normal_labels=None) -> dict:
    """Turn a spec string into the canonical, JSON-serialisable spec dict (without loading data)."""
    text = text.strip()
    base = {"image_size": image_size, "seed": seed}
    m = _SYNTHETIC_RE.match(text)
    if m:
        return {"source": "synthetic", **_parse_synthetic_params(m.group(1)), **base}
    m = _DIGITS_RE.match(text)
    if m:
        cls = m.group(1)
        if cls is None or cls == "":
            normal_class = 0
        elif re.fullmatch(r"[+-]?\d+", cls.strip()):
            normal_class = int(cls)
        else:
            raise DataError(f"data spec {text!r}: the digit class must be an integer 0..9; {VALID_SPECS}")
        return {"source": "digits", "normal_class": normal_class, **base}
    path = Path(text).expanduser()
    if text.lower().endswith(".npz"):
        labels = None if normal_labels is None else _parse_normal_labels(normal_labels)
        return {"source": "npz", "path": str(path.resolve()), "normal_labels": labels, **base}
    if path.is_dir():
        return {"source": "folder", "path": str(path.resolve()), "val_fraction": VAL_FRACTION, **base}
    if path.exists():
        raise DataError(f"data spec {text!r} is a file but not a '.npz' file; {VALID_SPECS}")
    raise DataError(f"data spec {text!r} is not a built-in dataset and no such file or folder exists; {VALID_SPECS}")


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
        images[field] = _images_to_unit(_as_numpy(arr, field), field, value_range)
    sizes = {a.shape[-2:] for a in images.values()}
    if image_size is None:
        if len(sizes) != 1 or next(iter(sizes))[0] != next(iter(sizes))[1]:
            raise DataError(
                f"images have sizes {sorted(sizes)}; pass image_size= to resize them to one square size"
            )
        image_size = next(iter(sizes))[0]
    _check_int("image_size", image_size, minimum=1)

    labels = _check_labels(_as_numpy(test_labels, "test_labels"), len(images["test"]), "test_labels")
    masks = None
    if test_masks is not None:
        masks = _as_numpy(test_masks, "test_masks")
        if masks.ndim == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        if masks.shape != images["test"].shape:
            raise DataError(
                f"test_masks has shape {masks.shape} but test images have shape {images['test'].shape} "
                "(after dropping the channel axis); give one mask per test image with the image's size"
            )
        if masks.dtype.kind == "f" and not np.all(np.isfinite(masks)):
            raise DataError("test_masks contains NaN or infinite values")
        masks = _resize_masks(masks != 0, image_size)

    resized = {k: _resize_images(v, image_size) for k, v in images.items()}
    if val is None:
        train_r, val_r = _split_val(resized["train"], VAL_FRACTION, seed, "train")
    else:
        train_r, val_r = resized["train"], resized["val"]
    _check_count(train_r, 2, "train (normal training images)")
    spec = {
        "source": "arrays",
        "name": name,
        "image_size": image_size,
        "seed": seed,
        "n_train": len(train_r),
        "n_val": len(val_r),
        "n_test": len(labels),
    }
    return _assemble(name, spec, train_r, val_r, resized["test"], labels, masks)


# ----------------------------------------------------------------------------- synthetic


def _parse_synthetic_params(body: str | None) -> dict:
    types = _synthetic.SyntheticConfig.field_types()
    params = _synthetic.SyntheticConfig().to_dict()
    if body is None or not body.strip():
        return params
    seen = set()
    for item in body.split(","):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not key or not value:
            raise DataError(
                f"synthetic parameter {item.strip()!r} is not 'key=value'; "
                f"example 'synthetic[k=4,n_train=1000]', keys: {', '.join(types)}"
            )
        if key not in types:
            raise DataError(f"unknown synthetic parameter {key!r}; valid keys: {', '.join(types)}")
        if key in seen:
            raise DataError(f"synthetic parameter {key!r} is given twice")
        seen.add(key)
        try:
            params[key] = types[key](value) if types[key] is float else _parse_int(value)
        except ValueError:
            raise DataError(
                f"synthetic parameter {key}={value!r} is not a valid {types[key].__name__}"
            ) from None
    return params


def _parse_int(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(text)
    return int(text)


def _load_synthetic(spec: dict) -> AnomalyData:
    fields = _synthetic.SyntheticConfig.field_types()
    unknown = set(spec) - set(fields) - {"source", "image_size", "seed"}
    if unknown:
        raise DataError(f"unknown synthetic spec keys {sorted(unknown)}; valid keys: {', '.join(fields)}")
    try:
        config = _synthetic.SyntheticConfig(**{k: spec[k] for k in fields if k in spec})
    except (ValueError, TypeError) as err:
        raise DataError(str(err)) from None
    out = _synthetic.generate(config, image_size=spec["image_size"], seed=spec["seed"])
    canonical = {"source": "synthetic", **config.to_dict(), "image_size": spec["image_size"], "seed": spec["seed"]}
    defaults = _synthetic.SyntheticConfig().to_dict()
    name = f"synthetic-k{config.k}"
    changed = {k: v for k, v in config.to_dict().items() if k != "k" and v != defaults[k]}
    if spec["seed"] != 0:
        changed["seed"] = spec["seed"]
    if changed:  # distinct data must not share run directories
        name += "-" + hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
    return _assemble(name, canonical, out["train"], out["val"], out["test"], out["test_labels"], out["test_masks"])


# ----------------------------------------------------------------------------- digits


def _load_digits(spec: dict) -> AnomalyData:
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
    return _assemble(
        f"digits-{c}",
        canonical,
        _resize_images(images[train_n], s),
        _resize_images(images[val_n], s),
        _resize_images(test, s),
        test_labels,
        None,
    )


# ----------------------------------------------------------------------------- folders


def _load_folder(spec: dict) -> AnomalyData:
    """Load a folder dataset in one of two layouts.

    (a) MedIAnomaly (Cai et al.): ``ROOT/images/`` and ``ROOT/data.json`` =
        ``{"train": {"0": [names]}, "test": {"0": [names], "1": [names]}}`` (names relative to
        ``images/``), optionally ``"val": {"0": [names]}``. Optional masks in ``ROOT/masks/``,
        ``ROOT/annotation/`` or ``ROOT/ground_truth/``.
    (b) MVTec / MedIAnomaly-BraTS: ``ROOT/train/good/`` (or ``train/normal/``, or images directly
        in ``train/``), ``ROOT/test/good/`` (or ``test/normal/``) and one folder per defect
        ``ROOT/test/<defect>/``; optional masks ``ROOT/ground_truth/<defect>/<stem>_mask.png``
        (MVTec) or ``ROOT/test/annotation/`` (BraTS: ``*flair*`` -> ``*seg*``).

    A mask for test image ``NAME`` (stem ``STEM``) is looked for as ``NAME``, ``STEM_mask.<ext>``,
    ``STEM.<ext>`` and ``NAME`` with ``flair`` -> ``seg``, inside the mask folder (and its
    ``<defect>/`` subfolder). When a mask folder exists, every abnormal test image needs a mask;
    normal test images get empty masks. Without a validation list, ``val_fraction`` of the
    training normals (at least one) is held out, chosen with the seed.
    """
    root = Path(spec["path"])
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist (or is not a folder)")
    val_fraction = spec.get("val_fraction", VAL_FRACTION)
    if not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")
    if (root / "data.json").is_file():
        lists = _medianomaly_lists(root)
    elif (root / "train").is_dir() and (root / "test").is_dir():
        lists = _mvtec_lists(root)
    else:
        raise DataError(
            f"data folder {root} has neither 'data.json' + 'images/' (MedIAnomaly layout) nor "
            "'train/' + 'test/' (MVTec layout: train/good, test/good, test/<defect>)"
        )
    s = spec["image_size"]
    train = _read_images(lists["train"], s)
    _check_count(train, 1, f"training images in {root}")
    if lists.get("val"):
        val = _read_images(lists["val"], s)
    else:
        train, val = _split_val(train, val_fraction, spec["seed"], f"training images in {root}")
    _check_count(train, 2, f"training images in {root} (after holding out validation images)")
    test_normal, test_abnormal = lists["test_normal"], lists["test_abnormal"]
    if not test_normal or not test_abnormal:
        which = "normal" if not test_normal else "abnormal"
        raise DataError(f"data folder {root} has no {which} test images; AUROC needs both classes")
    test = _read_images(test_normal + test_abnormal, s)
    labels = np.concatenate([np.zeros(len(test_normal), np.int64), np.ones(len(test_abnormal), np.int64)])
    masks = None
    if lists["mask_paths"] is not None:
        masks = np.zeros((len(labels), s, s), dtype=bool)
        for i, (img_path, mask_path) in enumerate(zip(test_abnormal, lists["mask_paths"]), start=len(test_normal)):
            masks[i] = _read_mask(mask_path, img_path, s)
    canonical = {
        "source": "folder",
        "path": str(root),
        "val_fraction": val_fraction,
        "image_size": s,
        "seed": spec["seed"],
    }
    return _assemble(_safe_name(root.name), canonical, train, val, test, labels, masks)


def _medianomaly_lists(root: Path) -> dict:
    json_path = root / "data.json"
    try:
        index = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read {json_path}: {err}") from None
    img_dir = root / "images"
    if not img_dir.is_dir():
        raise DataError(f"{json_path} exists but the image folder {img_dir} is missing")

    def names(split: str, label: str, required: bool = True) -> list[str]:
        section = index.get(split) if isinstance(index, dict) else None
        if section is None and not required:
            return []
        if not isinstance(section, dict):
            raise DataError(f'{json_path}: missing "{split}" section; expected {{"{split}": {{"0": [file names]}}}}')
        bad = sorted(set(section) - {"0", "1"})
        if bad:
            raise DataError(f'{json_path}: "{split}" has label keys {bad}; labels must be "0" (normal) or "1" (abnormal)')
        if split in ("train", "val") and "1" in section and section["1"]:
            raise DataError(f'{json_path}: "{split}" lists abnormal ("1") images; training/validation must be normal')
        value = section.get(label)
        if value is None:
            if required:
                raise DataError(f'{json_path}: missing "{split}" -> "{label}" list of image file names')
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DataError(f'{json_path}: "{split}" -> "{label}" must be a list of file names')
        return value

    def paths(split, label, required=True):
        return [img_dir / n for n in names(split, label, required)]

    test_abnormal = paths("test", "1")
    mask_dir = next((root / d for d in MASK_FOLDERS if (root / d).is_dir()), None)
    mask_paths = None if mask_dir is None else [_find_mask(p, [mask_dir]) for p in test_abnormal]
    return {
        "train": paths("train", "0"),
        "val": paths("val", "0", required=False),
        "test_normal": paths("test", "0"),
        "test_abnormal": test_abnormal,
        "mask_paths": mask_paths,
    }


def _mvtec_lists(root: Path) -> dict:
    train_dir = _first_dir(root / "train", ("good", "normal")) or root / "train"
    test_dir = root / "test"
    normal_dir = _first_dir(test_dir, ("good", "normal"))
    if normal_dir is None:
        raise DataError(f"{test_dir} has no 'good/' (or 'normal/') folder of normal test images")
    mask_names = {"annotation", "ground_truth", "masks"}
    defect_dirs = sorted(
        d for d in test_dir.iterdir() if d.is_dir() and d != normal_dir and d.name not in mask_names
    )
    test_abnormal = [p for d in defect_dirs for p in _list_images(d)]
    mask_roots = [d for d in (root / "ground_truth", test_dir / "annotation", root / "masks") if d.is_dir()]
    mask_paths = None
    if mask_roots:
        mask_paths = [_find_mask(p, [m / p.parent.name for m in mask_roots] + mask_roots) for p in test_abnormal]
    return {
        "train": _list_images(train_dir),
        "val": [],
        "test_normal": _list_images(normal_dir),
        "test_abnormal": test_abnormal,
        "mask_paths": mask_paths,
    }


def _first_dir(parent: Path, names) -> Path | None:
    return next((parent / n for n in names if (parent / n).is_dir()), None)


def _list_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _find_mask(image_path: Path, folders: list[Path]) -> Path:
    stem, name = image_path.stem, image_path.name
    candidates = [name, name.replace("flair", "seg")]
    candidates += [stem + "_mask" + ext for ext in IMAGE_EXTENSIONS] + [stem + ext for ext in IMAGE_EXTENSIONS]
    for folder in folders:
        for c in candidates:
            if (folder / c).is_file():
                return folder / c
    raise DataError(
        f"no mask for abnormal test image {image_path}: looked for {name}, {stem}_mask.png (etc.) in "
        f"{', '.join(str(f) for f in folders if f.is_dir())}; add the mask, or remove the mask folder to load "
        "the data without pixel ground truth"
    )


def _open_grey(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"image file {path} does not exist")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}; replace or remove the file") from None


def _read_images(paths: list[Path], size: int) -> np.ndarray:
    out = np.empty((len(paths), 1, size, size), dtype=np.float32)
    for i, p in enumerate(paths):
        image = _open_grey(p)
        _check_square(*image.shape, f"image {p}")
        out[i, 0] = _resize_one(image / 127.5 - 1.0, size)
    return out


def _read_mask(mask_path: Path, image_path: Path, size: int) -> np.ndarray:
    mask = _open_grey(mask_path)
    with Image.open(image_path) as img:
        image_shape = img.size[::-1]
    if mask.shape != image_shape:
        raise DataError(
            f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} pixels but its image {image_path} is "
            f"{image_shape[1]}x{image_shape[0]}; masks must have the size of their image"
        )
    return _resize_masks(mask[None] > 0, size)[0, 0]


# ----------------------------------------------------------------------------- MedMNIST npz


def _load_npz(spec: dict) -> AnomalyData:
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
    normal_labels = None if normal_labels is None else _parse_normal_labels(normal_labels)
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
    train = _resize_images(train_images[train_normal], s)
    if "val" in splits:
        val_images, val_normal = splits["val"]
        val = _resize_images(val_images[val_normal], s)
        _check_count(val, 1, f"normal val_images in {path}")
    else:
        train, val = _split_val(train, VAL_FRACTION, spec["seed"], f"normal train_images in {path}")
    _check_count(train, 2, f"normal train_images in {path}")
    test_images, test_normal = splits["test"]
    labels = (~test_normal).astype(np.int64)
    if labels.min() == labels.max():
        which = "abnormal" if labels[0] == 0 else "normal"
        raise DataError(f"test set of {path} has no {which} images under normal_labels={normal_labels}")
    labels_tag = "-nofinding" if normal_labels is None else "-normal" + "-".join(str(c) for c in normal_labels)
    canonical = {"source": "npz", "path": str(path), "normal_labels": normal_labels, "image_size": s, "seed": spec["seed"]}
    return _assemble(_safe_name(path.stem + labels_tag), canonical, train, val, _resize_images(test_images, s), labels, None)


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
    _check_square(*images.shape[1:], f"{key} in {path} (shape {images.shape})")
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


def _parse_normal_labels(value) -> list[int]:
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


# ----------------------------------------------------------------------------- shared pieces


def _as_numpy(arr, field: str) -> np.ndarray:
    if hasattr(arr, "detach") and hasattr(arr, "cpu"):  # torch tensor, without importing torch here
        arr = arr.detach().cpu().numpy()
    try:
        return np.asarray(arr)
    except (TypeError, ValueError) as err:
        raise DataError(f"{field} cannot be converted to an array: {err}") from None


def _images_to_unit(images: np.ndarray, field: str, value_range) -> np.ndarray:
    """(n, s, s) or (n, 1, s, s) array -> float32 (n, s, s) in [-1, 1]."""
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or len(images) == 0:
        raise DataError(f"{field} has shape {images.shape}; expected a non-empty (n, s, s) or (n, 1, s, s) array")
    _check_square(*images.shape[1:], f"{field} (shape {images.shape})")
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


def _resize_one(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape == (size, size):
        return image.astype(np.float32, copy=False)
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), -1.0, 1.0)


def _resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(n, h, w) float in [-1, 1] -> float32 (n, 1, size, size), bilinear."""
    images = images[:, 0] if images.ndim == 4 else images
    out = np.empty((len(images), 1, size, size), dtype=np.float32)
    for i, img in enumerate(images):
        out[i, 0] = _resize_one(img, size)
    return out


def _resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """(n, h, w) bool -> bool (n, 1, size, size), nearest neighbour."""
    out = np.empty((len(masks), 1, size, size), dtype=bool)
    for i, m in enumerate(masks):
        img = Image.fromarray(m.astype(np.uint8) * 255)
        out[i, 0] = np.asarray(img.resize((size, size), Image.NEAREST)) > 0
    return out


def _split_val(images: np.ndarray, fraction: float, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Hold out round(fraction * n) (at least one) images, chosen with ``seed``; order kept."""
    n = len(images)
    _check_count(images, 3, what + " (to hold out validation images and keep 2 for training)")
    n_val = min(max(1, int(round(fraction * n))), n - 2)
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return images[train_idx], images[val_idx]


def _check_labels(labels: np.ndarray, n: int, field: str) -> np.ndarray:
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


def _check_square(height: int, width: int, what: str) -> None:
    """Refuse non-square images: resizing them to ``image_size`` x ``image_size`` would distort them."""
    if height != width:
        side = min(height, width)
        raise DataError(
            f"{what}: images are {height}x{width} pixels (height x width) but must be square, since they are "
            f"resized to image_size x image_size and would be squashed; crop or pad them to square first "
            f"(e.g. centre-crop to {side}x{side})"
        )


def _check_count(images: np.ndarray, minimum: int, what: str) -> None:
    if len(images) < minimum:
        raise DataError(f"need at least {minimum} {what}, found {len(images)}")


def _check_int(field: str, value, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise DataError(f"{field} must be an integer >= {minimum}, got {value!r}")


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return name or "data"


def _assemble(name, spec, train, val, test, labels, masks) -> AnomalyData:
    return AnomalyData(
        name=name,
        spec=json.loads(json.dumps(spec)),  # proves it is JSON-serialisable and detaches it
        train=np.ascontiguousarray(train, dtype=np.float32),
        val=np.ascontiguousarray(val, dtype=np.float32),
        test=np.ascontiguousarray(test, dtype=np.float32),
        test_labels=np.ascontiguousarray(labels, dtype=np.int64),
        test_masks=None if masks is None else np.ascontiguousarray(masks, dtype=bool).reshape(test.shape),
    )
