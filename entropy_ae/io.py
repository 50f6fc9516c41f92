"""Files the toolkit writes: strict JSON and atomic writes (no torch import: the CLI starts fast).

Every file and ``--json`` output goes through here, so there is one answer to "what does a NaN
become" and one way a file appears on disk.

- :func:`to_json`: ``json.dumps`` writes NaN and Infinity, which are not JSON (other parsers
  reject them), and cannot write numpy scalars. Here non-finite numbers become ``null`` (a metric
  that is undefined), numpy scalars become Python numbers, and anything else non-JSON is refused.
- :func:`atomic_write`: a file is written beside its destination under a hidden temporary name
  and renamed onto it with ``os.replace``, so a reader (or a resumed sweep) sees the old file or
  the new one, never half of one, and an interrupted write leaves no partial file behind.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path

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


def _new_temp_file(path: Path) -> tuple[int, Path]:
    """Create a hidden temporary sibling of ``path`` (same suffix); return (fd, tmp path).

    Unlike ``tempfile.mkstemp`` (always 0600), the file is created with mode 0666 filtered by the
    process umask (and any default ACL) like any ordinary file, so the file that replaces ``path``
    gets the usual permissions, e.g. 0644 under umask 022. The suffix is kept so writers that pick
    a format from the file name (matplotlib, pyarrow) still do.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp{path.suffix}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary sibling, which then replaces ``path``.

    ``write`` receives the temporary path (an existing empty file with the destination's suffix)
    and must write the whole content there. On any error, Ctrl-C included, the temporary file is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = _new_temp_file(path)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, payload, sort_keys: bool = True) -> None:
    """Write ``payload`` as strict, indented JSON (see :func:`to_json`) to ``path`` atomically.

    The text is made before the file is touched, so a value that is not JSON fails without debris.
    """
    atomic_write_text(path, to_json(payload, sort_keys=sort_keys) + "\n")
