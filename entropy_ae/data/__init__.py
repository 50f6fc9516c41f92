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
``synthetic`` / ``synthetic[k=4,n_train=1000,...]`` / ``synthetic:PRESET[...]``
    The built-in synthetic data (:mod:`entropy_ae.data.synthetic`), rendered directly at
    ``image_size``. Keys are the fields of :class:`entropy_ae.data.synthetic.SyntheticConfig`;
    presets (``synthetic.PRESETS``, e.g. ``shortcut``) set several of them at once.
``digits`` / ``digits:C``
    scikit-learn's bundled 8x8 digits (no download); class C (default 0) is normal.
``<folder>``
    ``images/`` + ``data.json`` (MedIAnomaly layout) or ``train/`` + ``test/`` (MVTec /
    MedIAnomaly-BraTS layout), with optional masks. See :func:`entropy_ae.data.folder.load`.
``<file>.npz``
    MedMNIST format; ``normal_labels`` picks the normal classes. See :func:`entropy_ae.data.npz.load`.
``nifti:ROOT`` / ``dicom:ROOT`` / ``nifti:ROOT[key=value,...]``
    3-D volumes (NIfTI files or DICOM series; ``ROOT/train``, ``ROOT/test``, ``ROOT/labels``) as
    2-D slices, split by patient; a plain folder whose ``train/`` holds ``.nii`` files is
    ``nifti:``. Needs ``pip install entropy-ae[medical]``. See :mod:`entropy_ae.data.volumes`.

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
from pathlib import Path

from . import digits, folder, npz, volumes
from . import synthetic as _synthetic
from ._contract import SPLITS, AnomalyData, DataError, assemble
from ._images import VAL_FRACTION, check_int
from .arrays import from_arrays

__all__ = ["AnomalyData", "DataError", "SPLITS", "load_data", "parse_spec", "from_arrays"]

VALID_SPECS = (
    "valid data specs: 'synthetic', 'synthetic[k=4,n_train=1000,n_val=200,n_test=400]', 'synthetic:shortcut', "
    "'digits', 'digits:C' (C = 0..9), a folder path (images/ + data.json, or train/ + test/), "
    "a MedMNIST-style '.npz' file path, or 'nifti:ROOT' / 'dicom:ROOT' (3-D volumes as slices, options in "
    "[key=value,...])"
)
_SYNTHETIC_RE = re.compile(r"^synthetic(?::([A-Za-z0-9_-]*))?(?:\[(.*)\])?$", re.DOTALL)
_DIGITS_RE = re.compile(r"^digits(?::(.*))?$")


def load_data(spec: str | dict, image_size: int = 64, seed: int = 0, normal_labels=None,
              volume_options: dict | None = None) -> AnomalyData:
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
    volume_options : dict, optional
        For ``nifti:`` / ``dicom:`` specs only: options such as ``{"window": "lung", "axis": 2}``
        (the keys of :data:`entropy_ae.data.volumes.DEFAULTS`; values as in the spec string),
        added to those in the spec's brackets.

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
        for key, value in (volume_options or {}).items():
            spec.setdefault(key, value)
    elif isinstance(spec, (str, os.PathLike)):
        spec = parse_spec(os.fspath(spec), image_size=image_size, seed=seed, normal_labels=normal_labels,
                          volume_options=volume_options)
    else:
        raise DataError(f"data spec must be a string or a dict, got {type(spec).__name__}; {VALID_SPECS}")
    check_int("image_size", spec["image_size"], minimum=1)
    check_int("seed", spec["seed"], minimum=0)
    if (normal_labels is not None or spec.get("normal_labels") is not None) and spec.get("source") != "npz":
        raise DataError("normal_labels only applies to '.npz' data specs; leave it unset for other sources")

    if volume_options and spec.get("source") not in volumes.SOURCES:
        raise DataError(f"volume options {sorted(volume_options)} (--window, --slice-axis, ...) only apply to "
                        "'nifti:' / 'dicom:' volume specs; drop them for this data")
    loaders = {"synthetic": _load_synthetic, "digits": digits.load, "folder": folder.load, "npz": npz.load,
               "nifti": volumes.load, "dicom": volumes.load}
    source = spec.get("source")
    if source == "arrays":
        raise DataError(
            "this spec describes in-memory arrays (from_arrays), which cannot be rebuilt from the spec; "
            "pass the AnomalyData object itself"
        )
    if source not in loaders:
        raise DataError(f"data spec dict has source={source!r}; expected one of {sorted(loaders)}")
    return loaders[source](spec)


def parse_spec(text: str, image_size: int = 64, seed: int = 0, normal_labels=None,
               volume_options: dict | None = None) -> dict:
    """Turn a spec string into the canonical, JSON-serialisable spec dict (without loading data)."""
    text = text.strip()
    base = {"image_size": image_size, "seed": seed}
    if volumes.match(text):
        return volumes.parse(text, base, volume_options)
    m = _SYNTHETIC_RE.match(text)
    if m:
        return {"source": "synthetic", **_parse_synthetic_params(m.group(2), m.group(1)), **base}
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
        labels = None if normal_labels is None else npz.parse_normal_labels(normal_labels)
        return {"source": "npz", "path": str(path.resolve()), "normal_labels": labels, **base}
    if path.is_dir() and volumes.looks_like_nifti_root(path):
        return volumes.parse(f"nifti:{path}", base, volume_options)
    if path.is_dir():
        return {"source": "folder", "path": str(path.resolve()), "val_fraction": VAL_FRACTION, **base}
    if path.exists():
        raise DataError(f"data spec {text!r} is a file but not a '.npz' file; {VALID_SPECS}")
    raise DataError(f"data spec {text!r} is not a built-in dataset and no such file or folder exists; {VALID_SPECS}")


def _parse_synthetic_params(body: str | None, preset: str | None = None) -> dict:
    types = _synthetic.SyntheticConfig.field_types()
    params = _synthetic.SyntheticConfig().to_dict()
    if preset is not None:
        if preset not in _synthetic.PRESETS:
            raise DataError(f"unknown synthetic preset {preset!r}; the presets are "
                            f"{', '.join(_synthetic.PRESETS)} (e.g. 'synthetic:{next(iter(_synthetic.PRESETS))}')")
        params.update(_synthetic.PRESETS[preset])
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
            params[key] = value if types[key] is str else types[key](value) if types[key] is float else _parse_int(value)
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
    return assemble(name, canonical, out["train"], out["val"], out["test"], out["test_labels"], out["test_masks"])

