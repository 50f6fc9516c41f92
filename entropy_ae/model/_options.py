"""Checking a model kind's settings (the ``options`` of ``config.json``'s ``model`` section)."""

from __future__ import annotations

import math


def resolve_options(kind: str, defaults: dict, options: dict | None) -> dict:
    """``defaults`` updated with ``options``, each value checked against its default's type.

    Integer settings (e.g. ``memory_size``) must be positive integers; the others positive
    finite numbers. Raises ``ValueError`` naming the setting, the value and the known settings.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) if defaults else "none"
        raise ValueError(f"model {kind!r} has no setting(s) {unknown}; its settings are: {known}")
    resolved = dict(defaults)
    for key, value in options.items():
        want_int = isinstance(defaults[key], int)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"model {kind!r}: {key} must be a number, got {value!r}")
        if want_int and (value != int(value) or value < 1):
            raise ValueError(f"model {kind!r}: {key} must be a positive integer, got {value!r}")
        if not want_int and not (math.isfinite(value) and value > 0):
            raise ValueError(f"model {kind!r}: {key} must be a positive finite number, got {value!r}")
        resolved[key] = int(value) if want_int else float(value)
    return resolved
