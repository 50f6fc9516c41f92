"""Strict JSON for every file and ``--json`` output of the toolkit (no torch import: the CLI starts fast).

``json.dumps`` writes NaN and Infinity, which are not JSON (other parsers reject them), and
cannot write numpy scalars. :func:`to_json` turns non-finite numbers into ``null`` (a metric that
is undefined, as elsewhere), numpy scalars into Python numbers, and refuses anything left over.
"""

from __future__ import annotations

import json
import math

import numpy as np


def jsonable(value):
    """``value`` with nested dicts, lists and tuples converted, numpy scalars made Python numbers
    and every NaN or infinite float replaced by ``None``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def to_json(value, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON text of ``value`` (see :func:`jsonable`); ``allow_nan=False`` guarantees no NaN slips out."""
    return json.dumps(jsonable(value), indent=indent, sort_keys=sort_keys, allow_nan=False)
