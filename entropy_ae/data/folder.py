"""Image folders in the MedIAnomaly or MVTec layout (see :func:`load`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._contract import AnomalyData, DataError, assemble
from ._images import VAL_FRACTION, check_count, check_square, resize_masks, resize_one, safe_name, split_val

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
MASK_FOLDERS = ("masks", "annotation", "ground_truth")


def load(spec: dict) -> AnomalyData:
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
    check_count(train, 1, f"training images in {root}")
    if lists.get("val"):
        val = _read_images(lists["val"], s)
    else:
        train, val = split_val(train, val_fraction, spec["seed"], f"training images in {root}")
    check_count(train, 2, f"training images in {root} (after holding out validation images)")
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
    return assemble(safe_name(root.name), canonical, train, val, test, labels, masks)


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
        check_square(*image.shape, f"image {p}")
        out[i, 0] = resize_one(image / 127.5 - 1.0, size)
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
    return resize_masks(mask[None] > 0, size)[0, 0]
