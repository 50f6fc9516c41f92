"""Reading image and segmentation volumes: NIfTI files (nibabel) and DICOM series folders (pydicom).

nibabel and pydicom are optional (``pip install entropy-ae[medical]``) and imported here only,
when a volume is read, so the rest of entropy-ae never pays for them.

A :class:`Volume` is a 3-D array indexed ``(i, j, k)`` with its 4x4 voxel-to-world affine
(RAS+, millimetres, nibabel's convention) and its voxel spacing. A DICOM series gets the voxel
grid nibabel's own DICOM conversion uses: ``i`` runs along a row (the column index), ``j`` down
a column (the row index) and ``k`` over the slices in order of their position along the slice
normal (``ImagePositionPatient`` projected on ``row direction x column direction``); stored
values are converted with ``RescaleSlope`` and ``RescaleIntercept`` (Hounsfield units for CT).
"""

from __future__ import annotations

import importlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._contract import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
# Relative tolerances of the image / segmentation agreement checks (float32 headers round).
SPACING_RTOL = 1e-3
AFFINE_ATOL_MM = 1e-3
# A gap between neighbouring DICOM slices this many times the smallest gap means slices are missing.
MISSING_SLICE_GAP = 1.5


@dataclass
class Volume:
    """One 3-D volume: voxels, geometry and (for DICOM) the series' modality."""

    path: Path
    array: np.ndarray  # float32 (i, j, k)
    affine: np.ndarray  # float64 (4, 4), voxel index -> RAS+ mm
    spacing: tuple  # (di, dj, dk) in mm
    modality: str | None = None  # DICOM Modality ("CT", "MR", ...); None for NIfTI


def require(module: str):
    """Import nibabel or pydicom, or say how to install them."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(
            f"reading medical volumes needs {module}, which is not installed; "
            "install the optional extra with: pip install 'entropy-ae[medical]' (nibabel and pydicom)"
        ) from None


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES) and not path.name.startswith(".")


def volume_stem(path: Path) -> str:
    """The name of a volume without ``.nii`` / ``.nii.gz`` (a DICOM series folder: its name)."""
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_volume(path) -> Volume:
    """Read a NIfTI file (``.nii``, ``.nii.gz``) or a DICOM series folder as a :class:`Volume`.

    Use it to write a segmentation on a DICOM series' voxel grid: save an array of the volume's
    shape with ``nibabel.Nifti1Image(seg, read_volume(series).affine)``.
    """
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path)
    return read_nifti(path)


def read_nifti(path: Path) -> Volume:
    nib = require("nibabel")
    if not path.is_file():
        raise DataError(f"NIfTI file {path} does not exist")
    try:
        img = nib.load(str(path))
        array = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as err:  # nibabel raises many kinds (ImageFileError, EOFError, zlib.error, ...)
        raise DataError(f"cannot read NIfTI file {path} ({type(err).__name__}: {err}); "
                        "replace it with a complete .nii / .nii.gz file or remove it") from None
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise DataError(f"NIfTI file {path} holds a {array.ndim}-D array of shape {array.shape}; "
                        "give one 3-D volume per file (split a 4-D file into one file per modality or time point)")
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    return Volume(path, array, np.asarray(img.affine, dtype=np.float64), spacing)


def check_not_empty(volume: Volume, what: str) -> None:
    """Refuse a volume without voxels, with NaN/inf, or whose voxels all have one value."""
    a = volume.array
    if a.size == 0:
        raise DataError(f"{what} {volume.path} is empty (shape {a.shape}); remove it or replace it")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{what} {volume.path} contains NaN or infinite voxels; fix or remove the volume")
    if a.min() == a.max():
        raise DataError(f"{what} {volume.path} is empty: every voxel has the value {float(a.min()):g}; "
                        "remove it (a blank export?) or replace it with the real volume")


def check_segmentation(image: Volume, seg: Volume) -> np.ndarray:
    """The lesion mask (any nonzero label) of ``seg``, after checking it lies on ``image``'s voxel grid."""
    fix = "the segmentation must be on its image's voxel grid (same shape, spacing and affine)"
    if seg.array.shape != image.array.shape:
        raise DataError(f"segmentation {seg.path} has shape {seg.array.shape} but its image {image.path} has "
                        f"shape {image.array.shape}; {fix}: resample it onto the image, or pair it with its own image")
    if not np.allclose(seg.spacing, image.spacing, rtol=SPACING_RTOL, atol=0):
        raise DataError(f"segmentation {seg.path} has voxel spacing {_mm(seg.spacing)} but its image {image.path} "
                        f"has {_mm(image.spacing)}; {fix}: resample it onto the image")
    if not np.allclose(seg.affine, image.affine, rtol=0, atol=AFFINE_ATOL_MM + SPACING_RTOL * np.abs(image.affine)):
        raise DataError(f"segmentation {seg.path} and its image {image.path} have different affines (positions in "
                        f"space): {_affine(seg.affine)} vs {_affine(image.affine)}; {fix}: it may belong to another "
                        "volume, or have been re-oriented or flipped; write it with the image's affine")
    if not np.all(np.isfinite(seg.array)):
        raise DataError(f"segmentation {seg.path} contains NaN or infinite voxels; labels must be integers "
                        "(0 background, nonzero lesion)")
    return seg.array != 0


def _mm(spacing) -> str:
    return "x".join(f"{s:g}" for s in spacing) + " mm"


def _affine(affine: np.ndarray) -> str:
    return np.array2string(np.asarray(affine)[:3], precision=3, separator=",", suppress_small=True).replace("\n", "")


# ----------------------------------------------------------------------------------------------- DICOM

def read_dicom_series(folder: Path) -> Volume:
    """Read every DICOM file of one series folder as a volume ordered by slice position.

    Every non-hidden file of the folder (``DICOMDIR`` excepted) must be a single-frame slice of
    the same series (one ``SeriesInstanceUID``), with the same size and orientation, evenly spaced
    along the slice normal; anything else is an error naming the file and the fix.
    """
    pydicom = require("pydicom")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and not p.name.upper().startswith("DICOMDIR"))
    if not files:
        raise DataError(f"DICOM series folder {folder} holds no files; put the series' DICOM files in it "
                        "or remove the folder")
    slices = []
    for path in files:
        try:
            ds = pydicom.dcmread(str(path))
        except Exception as err:  # InvalidDicomError, OSError, truncated files, ...
            raise DataError(f"{path} is not a readable DICOM file ({err}); a series folder must hold only the "
                            "series' DICOM files: move or delete it") from None
        slices.append((path, ds))
    _check_one_series(folder, slices)
    first = slices[0][1]
    for path, ds in slices:
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise DataError(f"{path} is a multi-frame DICOM file; only series of single-frame slices are read "
                            "(convert it to NIfTI, e.g. with dcm2niix, and use a nifti: spec)")
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise DataError(f"{path} is a colour image; CT and MR series are grey (one sample per pixel)")
        if (ds.get("Rows"), ds.get("Columns")) != (first.get("Rows"), first.get("Columns")):
            raise DataError(f"{path} is {ds.get('Rows')}x{ds.get('Columns')} pixels but {slices[0][0]} is "
                            f"{first.get('Rows')}x{first.get('Columns')}; all slices of a series have one size")
    row_dir, col_dir = _orientation(slices)
    normal = np.cross(row_dir, col_dir)
    positions = _positions(slices, normal)
    order = np.argsort(positions, kind="stable")
    slices = [slices[i] for i in order]
    positions = positions[order]
    step = _check_spacing(folder, slices, positions)
    pixels = np.stack([_hounsfield(path, ds) for path, ds in slices])  # (k, row, column)
    row_spacing, col_spacing = (float(v) for v in first.get("PixelSpacing", (1.0, 1.0)))
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing  # i: the column index, along a row
    lps[:3, 1] = col_dir * row_spacing  # j: the row index, down a column
    lps[:3, 2] = normal * step
    origin = slices[0][1].get("ImagePositionPatient")
    lps[:3, 3] = [float(v) for v in origin] if origin is not None else 0.0
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM's LPS to NIfTI's RAS
    modality = str(first.get("Modality", "")).upper() or None
    return Volume(folder, np.ascontiguousarray(pixels.transpose(2, 1, 0)), affine, (col_spacing, row_spacing, step),
                  modality)


def _check_one_series(folder: Path, slices) -> None:
    uids = Counter(str(ds.get("SeriesInstanceUID", "")) for _, ds in slices)
    if len(uids) > 1:
        listed = "; ".join(f"{uid or '(none)'}: {n} files" for uid, n in uids.most_common())
        raise DataError(f"DICOM folder {folder} mixes {len(uids)} series (SeriesInstanceUID {listed}); "
                        "put each series in its own folder (one folder = one volume)")


def _orientation(slices) -> tuple[np.ndarray, np.ndarray]:
    path0, ds0 = slices[0]
    iop = ds0.get("ImageOrientationPatient")
    if iop is None:
        if len(slices) > 1:
            raise DataError(f"{path0} lacks ImageOrientationPatient, so the series' slices cannot be ordered "
                            "in space; export the series with its geometry tags")
        iop = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    iop = np.array([float(v) for v in iop])
    for path, ds in slices[1:]:
        other = ds.get("ImageOrientationPatient")
        if other is None or not np.allclose([float(v) for v in other], iop, atol=1e-4):
            raise DataError(f"{path} has ImageOrientationPatient {other} but {path0} has {iop.tolist()}; a series "
                            "must have one orientation (is it a localiser or another series?): remove the odd file")
    return iop[:3], iop[3:]


def _positions(slices, normal: np.ndarray) -> np.ndarray:
    if len(slices) == 1:
        return np.zeros(1)
    out = []
    for path, ds in slices:
        ipp = ds.get("ImagePositionPatient")
        if ipp is None:
            raise DataError(f"{path} lacks ImagePositionPatient, so its place in the series is unknown; export "
                            "the series with its geometry tags")
        out.append(float(np.dot([float(v) for v in ipp], normal)))
    return np.asarray(out)


def _check_spacing(folder: Path, slices, positions: np.ndarray) -> float:
    """The slice step (mm) of a sorted series; refuse duplicated positions and missing slices."""
    if len(slices) == 1:
        ds = slices[0][1]
        return float(ds.get("SpacingBetweenSlices", ds.get("SliceThickness", 1.0)) or 1.0)
    gaps = np.diff(positions)
    dup = np.flatnonzero(gaps < 1e-3)
    if dup.size:
        i = int(dup[0])
        raise DataError(f"DICOM series {folder}: {slices[i][0].name} and {slices[i + 1][0].name} lie at the same "
                        f"position ({positions[i]:g} mm along the slice normal); remove the duplicate slice")
    step = float(gaps.min())
    wide = np.flatnonzero(gaps > MISSING_SLICE_GAP * step)
    if wide.size:
        i = int(wide[0])
        missing = int(round(gaps[i] / step)) - 1
        raise DataError(
            f"DICOM series {folder} has missing slices: a gap of {gaps[i]:g} mm between {slices[i][0].name} "
            f"(InstanceNumber {slices[i][1].get('InstanceNumber')}) and {slices[i + 1][0].name} (InstanceNumber "
            f"{slices[i + 1][1].get('InstanceNumber')}) where the slices are {step:g} mm apart (about {missing} "
            f"missing); copy the complete series into the folder"
        )
    return step


def _hounsfield(path: Path, ds) -> np.ndarray:
    """Stored pixel values times RescaleSlope plus RescaleIntercept (HU for CT), float32 (rows, columns)."""
    try:
        pixels = np.asarray(ds.pixel_array, dtype=np.float32)
    except Exception as err:  # a compressed transfer syntax without its decoder, truncated data, ...
        raise DataError(f"cannot decode the pixel data of {path} ({err}); install the decoder pydicom names, "
                        "or decompress the series first (e.g. gdcmconv --raw)") from None
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return pixels * slope + intercept
