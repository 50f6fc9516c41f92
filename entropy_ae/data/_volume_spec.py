"""The grammar of volume specs: ``nifti:ROOT[key=value,...]`` / ``dicom:ROOT[...]``, options and defaults.

:mod:`entropy_ae.data.volumes` documents the options and loads the data; this module only turns
spec strings and dicts into the canonical, JSON-serialisable spec dict, checking every value.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._contract import DataError
from ._images import VAL_FRACTION
from ._volume_io import is_nifti

SOURCES = ("nifti", "dicom")
# CT windows in Hounsfield units, (low, high) = level -/+ width / 2 (radiology's usual settings).
WINDOW_PRESETS = {
    "brain": (0.0, 80.0),  # W 80, L 40
    "soft_tissue": (-160.0, 240.0),  # W 400, L 40
    "lung": (-1350.0, 150.0),  # W 1500, L -600
    "bone": (-500.0, 1300.0),  # W 1800, L 400
}
MODALITIES = ("auto", "ct", "mr")
DEFAULTS = {
    "modality": "auto",
    "window": None,
    "percentiles": [1.0, 99.0],
    "axis": 2,
    "slice_range": None,
    "min_foreground": 0.01,
    "min_lesion_voxels": 1,
    "val_fraction": VAL_FRACTION,
}
SPEC_EXAMPLE = "nifti:/data/brats[axis=2,min_lesion_voxels=10] or dicom:/data/ct[window=lung,slice_range=10,90]"
_SPEC_RE = re.compile(r"^(nifti|dicom):(.*?)(?:\[(.*)\])?$", re.DOTALL)
_ITEM_SPLIT_RE = re.compile(r",(?=\s*[A-Za-z_]+\s*=)")  # commas before "key=": values may hold commas


def match(text: str) -> bool:
    """True when ``text`` is a ``nifti:`` or ``dicom:`` spec string."""
    return bool(_SPEC_RE.match(text.strip()))


def looks_like_nifti_root(path: Path) -> bool:
    """A folder whose ``train/`` holds NIfTI files (so a plain folder path means ``nifti:PATH``)."""
    train = path / "train"
    return train.is_dir() and any(is_nifti(p) for p in train.iterdir())


def parse(text: str, base: dict, options: dict | None = None) -> dict:
    """``nifti:PATH[key=value,...]`` / ``dicom:PATH[...]`` -> the canonical spec dict.

    ``options`` (from the command line) add keys; a key both there and in the brackets is an error.
    """
    m = _SPEC_RE.match(text.strip())
    if not m:
        raise DataError(f"{text!r} is not a volume spec; e.g. {SPEC_EXAMPLE}")
    source, path, body = m.group(1), m.group(2).strip(), m.group(3)
    if not path:
        raise DataError(f"volume spec {text!r} has no folder; e.g. {SPEC_EXAMPLE}")
    given = {}
    for item in _ITEM_SPLIT_RE.split(body) if body and body.strip() else []:
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not key or not value:
            raise DataError(f"volume option {item.strip()!r} is not 'key=value'; e.g. {SPEC_EXAMPLE}")
        if key in given:
            raise DataError(f"volume option {key!r} is given twice in {text!r}")
        given[key] = value
    for key, value in (options or {}).items():
        if key in given:
            raise DataError(f"volume option {key!r} is given both in the spec {text!r} and on the command line; "
                            "give it once")
        given[key] = value
    spec = {"source": source, "path": str(Path(path).expanduser().resolve()), **given, **base}
    return canonical(spec)


def canonical(spec: dict) -> dict:
    """Check and complete a volume spec dict: every option parsed, defaults filled, JSON types only."""
    known = {"source", "path", "image_size", "seed", *DEFAULTS}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise DataError(f"unknown volume option(s) {unknown}; valid options: {', '.join(DEFAULTS)}")
    out = {"source": spec["source"], "path": str(spec["path"])}
    for key, default in DEFAULTS.items():
        value = spec.get(key, default)
        out[key] = None if value is None else _PARSERS[key](value)
    out["image_size"], out["seed"] = spec["image_size"], spec["seed"]
    if out["modality"] == "mr" and out["window"] is not None:
        raise DataError("a window (in Hounsfield units) applies to CT only; drop window= / --window for "
                        "modality=mr, or use percentiles= to set the MR normalisation")
    return out


def _pair(value, key: str, cast=float) -> list:
    items = value.split(",") if isinstance(value, str) else value
    try:
        pair = [cast(v.strip() if isinstance(v, str) else v) for v in items]
    except (TypeError, ValueError):
        pair = []
    if len(pair) != 2 or (cast is int and any(isinstance(v, float) and not v.is_integer() for v in items)):
        raise DataError(f"volume option {key}={value!r} must be two numbers LOW,HIGH")
    return pair


def _window(value) -> list[float]:
    if isinstance(value, str) and value.strip().lower().replace(" ", "_") in WINDOW_PRESETS:
        return list(WINDOW_PRESETS[value.strip().lower().replace(" ", "_")])
    if isinstance(value, str) and "," not in value:
        raise DataError(f"unknown CT window {value!r}; use a preset ({', '.join(WINDOW_PRESETS)}) or LOW,HIGH in HU")
    low, high = _pair(value, "window")
    if not high > low:
        raise DataError(f"window={value!r}: the high end must exceed the low end (LOW,HIGH in HU, e.g. -160,240)")
    return [low, high]


def _percentiles(value) -> list[float]:
    low, high = _pair(value, "percentiles")
    if not 0.0 <= low < high <= 100.0:
        raise DataError(f"percentiles={value!r} must be LOW,HIGH with 0 <= LOW < HIGH <= 100 (default 1,99)")
    return [low, high]


def _slice_range(value) -> list[int]:
    start, stop = _pair(value, "slice_range", cast=int)
    if not 0 <= start < stop:
        raise DataError(f"slice_range={value!r} must be START,STOP with 0 <= START < STOP (slice indices, STOP "
                        "excluded)")
    return [start, stop]


def _number(key: str, cast, low: float, high: float, low_open: bool = False, high_open: bool = False):
    def parse(value):
        try:
            if isinstance(value, bool) or (cast is int and isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number = cast(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise DataError(f"volume option {key}={value!r} must be a{'n integer' if cast is int else ' number'}") \
                from None
        if number < low or number > high or (low_open and number == low) or (high_open and number == high):
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            raise DataError(f"volume option {key}={value!r} must lie in {lo}{low:g}, {high:g}{hi}")
        return number
    return parse


def _modality(value) -> str:
    text = str(value).strip().lower()
    if text not in MODALITIES:
        raise DataError(f"modality={value!r}; choose one of {', '.join(MODALITIES)}")
    return text


_PARSERS = {
    "modality": _modality,
    "window": _window,
    "percentiles": _percentiles,
    "axis": _number("axis", int, 0, 2),
    "slice_range": _slice_range,
    "min_foreground": _number("min_foreground", float, 0.0, 1.0),
    "min_lesion_voxels": _number("min_lesion_voxels", int, 1, float("inf")),
    "val_fraction": _number("val_fraction", float, 0.0, 1.0, low_open=True, high_open=True),
}
