"""3-D medical volumes (NIfTI files or DICOM series) as 2-D slices, split by patient.

Layout of a volume root (``ROOT``)::

    ROOT/train/   normal volumes (healthy subjects): the training images
    ROOT/val/     optional: normal volumes held out to fix the decision threshold
    ROOT/test/    test volumes, healthy or not
    ROOT/labels/  segmentations (NIfTI, 0 background, nonzero lesion) on their image's voxel grid:
                  one per test volume (all zeros for a healthy one), optional for train/val ones

A volume is one ``.nii`` / ``.nii.gz`` file (``nifti:`` specs) or one folder of DICOM files of
one series (``dicom:`` specs). The segmentation of volume ``STEM`` (its name without
``.nii``/``.nii.gz``, or the series folder's name) is the first of ``labels/STEM``,
``labels/STEM_seg``, ``labels/STEM_mask``, ``STEM`` with ``flair`` -> ``seg`` and ``STEM`` with
its last ``_part`` -> ``_seg`` (BraTS: ``..._001_flair`` -> ``..._001_seg``), each with ``.nii.gz``
or ``.nii``. One volume is one patient: all slices of a volume go to one split (train, val or
test), and a volume name or identical voxels in two splits is an error. Without ``val/``,
``val_fraction`` of the training *volumes* (at least one) is held out, chosen with the seed.

Slices are taken along ``axis``, optionally only indices ``slice_range = [start, stop)``; a slice
whose foreground (pixels above the bottom of the intensity range, i.e. > -1 after mapping) is a
smaller share than ``min_foreground`` is skipped. Intensities: CT (``modality=ct``, or a
``window``, or a DICOM series with Modality CT) is clipped to a window in Hounsfield units
(:data:`WINDOW_PRESETS` or ``[low, high]``); MR (and other data) is normalised per volume between
the ``percentiles`` (default 1 and 99) of its foreground voxels (those above the volume's
minimum). Both map linearly onto [-1, 1]. Slices are padded to square with background, then
resized to ``image_size``. A test slice is abnormal when its segmentation has at least
``min_lesion_voxels`` lesion voxels and normal when it has none (slices in between are left out
as ambiguous); its mask is the segmentation slice. Train and val slices with lesion voxels in an
(optional) segmentation are left out.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from ._contract import AnomalyData, DataError, assemble
from ._images import check_count, resize_masks, resize_one, safe_name
from ._volume_io import Volume, check_not_empty, check_segmentation, is_nifti, read_nifti, read_volume, volume_stem
from ._volume_spec import (
    DEFAULTS, MODALITIES, SOURCES, SPEC_EXAMPLE, WINDOW_PRESETS, canonical, looks_like_nifti_root, match, parse,
)

__all__ = [
    "DEFAULTS", "MODALITIES", "SOURCES", "SPEC_EXAMPLE", "WINDOW_PRESETS", "Volume", "canonical", "load",
    "load_with_sources", "looks_like_nifti_root", "match", "parse", "read_volume",
]

_SEG_SUFFIXES = ("", "_seg", "_mask")


# -------------------------------------------------------------------------------------------- loading

def load(spec: dict) -> AnomalyData:
    """Load a volume root as slice data (see the module docstring); ``spec`` from :func:`parse`."""
    return load_with_sources(spec)[0]


def load_with_sources(spec: dict) -> tuple[AnomalyData, dict]:
    """:func:`load`, plus where each image came from.

    Returns
    -------
    data : AnomalyData
    sources : dict
        ``{"train": [(volume, slice_index), ...], "val": [...], "test": [...]}``, one entry per
        image of the split in order; ``volume`` is the volume's name (its stem).
    """
    spec = canonical(spec)
    root = Path(spec["path"])
    volumes = _layout(root, spec["source"])
    labels_dir = root / "labels"
    if not (root / "val").is_dir():
        volumes["val"] = _held_out(volumes["train"], spec["val_fraction"], spec["seed"], root)
        volumes["train"] = [p for p in volumes["train"] if p not in volumes["val"]]
    out = {}
    seen: dict[str, Path] = {}
    for split in ("train", "val", "test"):
        images, counts, masks, sources = [], [], [], []
        for path in volumes[split]:
            seg = _find_segmentation(path, labels_dir, required=split == "test", root=root)
            got = _volume_slices(path, seg, spec, split, seen)
            images += got[0]
            counts += got[1]
            masks += got[2]
            sources += [(volume_stem(path), k) for k in got[3]]
        out[split] = (images, np.asarray(counts, dtype=np.int64), masks, sources)
    s = spec["image_size"]

    def kept(split, keep):
        images, _, masks, sources = out[split]
        idx = np.flatnonzero(keep)
        if not len(idx):
            return np.zeros((0, 1, s, s), np.float32), None, []
        return (np.stack([images[i] for i in idx])[:, None], np.stack([masks[i] for i in idx])[:, None],
                [sources[i] for i in idx])

    train, _, train_src = kept("train", out["train"][1] == 0)
    val, _, val_src = kept("val", out["val"][1] == 0)
    check_count(train, 2, f"lesion-free training slices in {root}/train (check slice_range / min_foreground)")
    check_count(val, 1, f"lesion-free validation slices in {root} (check slice_range / min_foreground)")
    counts = out["test"][1]
    normal, abnormal = counts == 0, counts >= spec["min_lesion_voxels"]
    if not normal.any() or not abnormal.any():
        which = "normal (no lesion voxel)" if not normal.any() else f"abnormal (>= {spec['min_lesion_voxels']} " \
                                                                     "lesion voxels)"
        raise DataError(f"no test slice of {root}/test is {which}; AUROC needs both: add such volumes, or change "
                        "min_lesion_voxels / slice_range / min_foreground")
    test, test_masks, test_src = kept("test", normal | abnormal)
    labels = abnormal[normal | abnormal].astype(np.int64)
    data = assemble(_name(root, spec), spec, train, val, test, labels, test_masks)
    return data, {"train": train_src, "val": val_src, "test": test_src}


def _layout(root: Path, source: str) -> dict[str, list[Path]]:
    example = ("ROOT/train/ (normal volumes), ROOT/test/ (test volumes), ROOT/labels/ (their segmentations), "
               "optionally ROOT/val/")
    if not root.is_dir():
        raise DataError(f"volume folder {root} does not exist (or is not a folder); expected {example}")
    for name in ("train", "test"):
        if not (root / name).is_dir():
            raise DataError(f"volume folder {root} has no '{name}/' folder; expected {example}")
    found = {}
    for split in ("train", "val", "test"):
        folder = root / split
        if not folder.is_dir():
            found[split] = []
            continue
        if source == "nifti":
            vols = [p for p in sorted(folder.iterdir()) if is_nifti(p)]
            kind = "NIfTI volumes (.nii / .nii.gz files)"
        else:
            vols = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
            kind = "DICOM series (one folder of .dcm files per series)"
        if not vols:
            raise DataError(f"{folder} holds no {kind}; put the {split} volumes there"
                            + (" (or use a nifti: spec for .nii files)" if source == "dicom" else ""))
        stems = [volume_stem(p) for p in vols]
        dup = sorted({s for s in stems if stems.count(s) > 1})
        if dup:
            raise DataError(f"{folder} holds two volumes named {dup[0]!r} (e.g. .nii and .nii.gz); keep one")
        found[split] = vols
    where = {}
    for split, vols in found.items():
        for p in vols:
            stem = volume_stem(p)
            if stem in where:
                raise DataError(f"volume {stem!r} is in both {where[stem]}/ and {split}/ of {root}: slices of one "
                                "patient in two splits leak; keep each volume in one split")
            where[stem] = split
    return found


def _held_out(volumes: list[Path], fraction: float, seed: int, root: Path) -> list[Path]:
    """Hold out ``fraction`` of the training volumes (at least one, leaving one) as validation volumes."""
    if len(volumes) < 2:
        raise DataError(f"{root}/train holds {len(volumes)} volume: need at least 2 to hold out a whole validation "
                        "volume (patient-level split), or give normal volumes in ROOT/val/")
    n_val = min(max(1, int(round(fraction * len(volumes)))), len(volumes) - 1)
    chosen = np.sort(np.random.default_rng(seed).permutation(len(volumes))[:n_val])
    return [volumes[i] for i in chosen]


def _find_segmentation(image: Path, labels_dir: Path, required: bool, root: Path) -> Path | None:
    stem = volume_stem(image)
    names = [stem + s for s in _SEG_SUFFIXES] + [stem.replace("flair", "seg"), re.sub(r"_[^_]+$", "_seg", stem)]
    if labels_dir.is_dir():
        for name in dict.fromkeys(names):
            for ext in (".nii.gz", ".nii"):
                if (labels_dir / (name + ext)).is_file():
                    return labels_dir / (name + ext)
    if required:
        raise DataError(f"test volume {image} has no segmentation: looked for {stem}.nii.gz, {stem}_seg.nii.gz "
                        f"(etc.) in {labels_dir}; add it (all zeros for a healthy volume) on the volume's voxel grid")
    return None


def _intensity(volume, spec: dict, what: str) -> np.ndarray:
    """The volume mapped onto [-1, 1]: a CT window in HU, or per-volume percentiles (MR and others)."""
    modality, window = spec["modality"], spec["window"]
    dicom = volume.modality
    if modality == "auto":
        modality = "ct" if window is not None or dicom == "CT" else "mr"
    if modality == "ct" and dicom not in (None, "CT"):
        raise DataError(f"{what} {volume.path} is a DICOM {dicom} series, but CT windowing (in Hounsfield units) "
                        "was asked for; drop window= / modality=ct for it")
    if modality == "ct" and window is None:
        raise DataError(f"{what} {volume.path} is CT: give a window in Hounsfield units, a preset "
                        f"({', '.join(WINDOW_PRESETS)}) or LOW,HIGH (--window / window=)")
    a = volume.array
    if modality == "ct":
        low, high = window
    else:
        foreground = a[a > a.min()]
        low, high = (float(v) for v in np.percentile(foreground, spec["percentiles"]))
        if not high > low:
            low, high = float(foreground.min()), float(foreground.max())
        if not high > low:  # the volume's foreground has one value: shift it into range
            low = float(a.min())
    return np.clip((a - low) / (high - low) * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)


def _volume_slices(path: Path, seg_path: Path | None, spec: dict, split: str, seen: dict):
    """One volume's selected slices, resized at once (a study's slices at full size would not fit in memory).

    Returns lists of images ``(s, s)`` float32, lesion-voxel counts (at full resolution), masks
    ``(s, s)`` bool and slice indices.
    """
    what = f"{split} volume"
    volume = read_volume(path)
    check_not_empty(volume, what)
    digest = hashlib.sha1(np.ascontiguousarray(volume.array).tobytes()).hexdigest()
    if digest in seen:
        raise DataError(f"{what} {path} has the same voxels as {seen[digest]}: one scan in two places leaks "
                        "between splits (or duplicates training data); remove the copy")
    seen[digest] = path
    lesion = None if seg_path is None else check_segmentation(volume, read_nifti(seg_path))
    x = _intensity(volume, spec, what)
    axis = spec["axis"]
    start, stop = spec["slice_range"] or (0, x.shape[axis])
    images, counts, masks, indices = [], [], [], []
    for k in range(start, min(stop, x.shape[axis])):
        image = np.take(x, k, axis=axis)
        if np.mean(image > -1.0) < spec["min_foreground"]:
            continue
        mask = np.zeros(image.shape, bool) if lesion is None else np.take(lesion, k, axis=axis)
        images.append(resize_one(_pad_square(image, -1.0), spec["image_size"]))
        masks.append(resize_masks(_pad_square(mask, False)[None], spec["image_size"])[0, 0])
        counts.append(int(mask.sum()))
        indices.append(k)
    return images, counts, masks, indices


def _pad_square(image: np.ndarray, fill) -> np.ndarray:
    """Pad the short side symmetrically with ``fill`` (background) to make the slice square."""
    h, w = image.shape
    side = max(h, w)
    if h == w:
        return image
    top, left = (side - h) // 2, (side - w) // 2
    out = np.full((side, side), fill, dtype=image.dtype)
    out[top:top + h, left:left + w] = image
    return out


def _name(root: Path, spec: dict) -> str:
    """The root's name, plus a hash of the settings off their defaults (distinct data, distinct run paths)."""
    changed = {k: spec[k] for k in DEFAULTS if spec[k] != DEFAULTS[k]}
    if spec["seed"] != 0:
        changed["seed"] = spec["seed"]
    name = f"{safe_name(root.name)}-{spec['source']}"
    if changed:
        name += "-" + hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
    return name
