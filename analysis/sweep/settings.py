"""The settings a run was trained with against the settings a sweep asks for.

A completed run is only reused when its config.json records the settings that were asked for
(epochs, batch size, learning rate, image size, data spec); otherwise the sweep refuses before
training anything (:class:`SettingsMismatch`), so one sweep directory never mixes settings
silently. A results table that mixes them anyway (runs retrained in place) is flagged by
:func:`mixed_settings`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from entropy_ae.io import to_json
from entropy_ae.runs import is_complete, load_config

from analysis.sweep.layout import RUN_GLOB, grid_point
from analysis.sweep.plan import RunItem

# Settings that define a run besides the latent size and seed naming its directory: one column
# each in the results table, and one value per dataset in a consistent sweep directory.
SETTING_COLUMNS = ("epochs", "batch_size", "lr", "image_size", "data_spec", "model_options")


class SettingsMismatch(ValueError):
    """Completed runs in the sweep directory were trained with other settings than requested."""


class MixedSettingsWarning(UserWarning):
    """One dataset of a results table holds runs trained with different settings."""


def canonical(value):
    """JSON round trip, so a recorded value and a requested one compare equal when they mean the same."""
    return json.loads(to_json(value, indent=None, sort_keys=True))


def run_settings(config: dict) -> dict:
    """The settings that define a run, from its config.json content, flattened.

    Every ``train`` entry except ``device`` (where it ran, not what it is), plus the model's
    kind (``model``; ``ae`` for a run that predates kinds), its settings (``model_options``),
    ``latent_size`` and ``image_size``, and the data spec.
    """
    train = {k: v for k, v in (config.get("train") or {}).items() if k != "device"}
    model = config.get("model") or {}
    return canonical({**train, "model": model.get("kind", "ae"), "model_options": model.get("options", {}),
                      "latent_size": model.get("latent_size"), "image_size": model.get("image_size"),
                      "data": config.get("data")})


def requested_settings(item: RunItem) -> dict:
    """:func:`run_settings` of the config.json that training ``item`` would write."""
    train = item.train_config().to_dict()
    model = {"kind": train.pop("model"), "options": train.pop("model_options"),
             "latent_size": train.pop("latent_size"), "image_size": item.image_size}
    return run_settings({"train": train, "model": model, "data": item.data_spec})


def settings_differences(run_dir, item: RunItem) -> dict:
    """``{setting: (recorded, requested)}`` for each setting of a completed run that differs from ``item``."""
    recorded, wanted = run_settings(load_config(run_dir)), requested_settings(item)
    return {k: (recorded.get(k), wanted.get(k)) for k in sorted(set(recorded) | set(wanted))
            if recorded.get(k) != wanted.get(k)}


def describe(differences: dict) -> str:
    """One line naming each differing setting, with its recorded and requested value."""
    parts = []
    for key, (recorded, wanted) in differences.items():
        if key == "data" and isinstance(recorded, dict) and isinstance(wanted, dict):
            keys = sorted(k for k in set(recorded) | set(wanted)
                          if recorded.get(k) != wanted.get(k) and k not in differences)  # said once
            parts += [f"data {k}: {recorded.get(k)!r} in the run, {wanted.get(k)!r} requested" for k in keys]
        else:
            parts.append(f"{key}: {recorded!r} in the run, {wanted!r} requested")
    return "; ".join(parts)


def check_completed_runs(items: list[RunItem], out, overwrite: bool = False) -> list[RunItem]:
    """Compare every completed run of the dataset in ``out`` with the requested settings.

    Returns ``items`` with ``overwrite=True`` on the grid points whose completed run differs (only
    when ``overwrite``). Raises :class:`SettingsMismatch`, listing the differing settings and how
    to go on, when a completed run differs and ``overwrite`` is false, or when a differing run
    lies outside the requested grid (it would end up in the same results table).
    """
    if not items:
        return items
    by_dir = {Path(i.run_dir): i for i in items}
    runs_dir = Path(items[0].run_dir).parent.parent  # the folder of this model kind's runs
    stale, outside = [], []
    for run_dir in sorted(p for p in runs_dir.glob(RUN_GLOB) if is_complete(p)):
        item = by_dir.get(run_dir)
        if item is None:  # a run of an earlier grid: it goes into the same table, so it must match too
            try:
                d, s = grid_point(run_dir)
            except ValueError:
                continue
            probe = replace(items[0], latent_size=d, seed=s, run_dir=str(run_dir))
            differences = settings_differences(run_dir, probe)
            if differences:
                outside.append((run_dir, differences))
            continue
        differences = settings_differences(run_dir, item)
        if differences:
            stale.append((run_dir, differences))
    if outside or (stale and not overwrite):
        raise SettingsMismatch(_mismatch_message(out, stale if not overwrite else [], outside))
    stale_dirs = {run_dir for run_dir, _ in stale}
    return [replace(i, overwrite=True) if Path(i.run_dir) in stale_dirs else i for i in items]


def _mismatch_message(out, stale: list, outside: list) -> str:
    runs = stale + outside
    lines = [f"{len(runs)} completed run(s) in {out} were trained with other settings than requested; "
             "nothing was trained:"]
    for run_dir, differences in runs[:10]:
        lines.append(f"  {Path(run_dir).relative_to(out)}: {describe(differences)}")
    if len(runs) > 10:
        lines.append(f"  ... and {len(runs) - 10} more")
    fixes = ["a new --out DIR for these settings", "the settings those runs were trained with"]
    if outside:
        lines.append(f"{len(outside)} of them lie outside the requested grid (--overwrite retrains only runs in "
                     "the grid): delete those run directories, or add their latent sizes and seeds to the grid")
    else:
        fixes.append("--overwrite to retrain those runs with the new settings (their results are replaced)")
    lines.append("Use " + ", or ".join(fixes) + ".")
    return "\n".join(lines)


def mixed_settings(results) -> list[str]:
    """One message per dataset (and model kind) whose runs in ``results`` differ in any of :data:`SETTING_COLUMNS`.

    Averages over such runs (Table 1, the plots, the recommendation) would mix trainings that are
    not replicates of each other; callers print these messages loudly.
    """
    messages = []
    if results.empty or "dataset" not in results.columns:
        return messages
    keys = ["dataset", "model"] if "model" in results.columns else ["dataset"]
    for key, group in results.groupby(keys, sort=True):
        name = key[0] if keys == ["dataset"] or key[1] == "ae" else f"{key[0]} ({key[1]})"
        parts = []
        for column in SETTING_COLUMNS:
            if column not in group.columns:
                continue
            counts = group[column].astype(str).value_counts(dropna=False).sort_index()
            if len(counts) > 1:
                shown = ", ".join(f"{value} ({n} runs)" for value, n in counts.items())
                parts.append(f"{column}: {shown}")
        if parts:
            messages.append(f"dataset {name}: runs trained with different settings are mixed in one table "
                            f"({'; '.join(parts)}); means over seeds and the recommendation mix them. Re-train "
                            "them with one setting (entropy-ae sweep --overwrite) or keep each setting in its "
                            "own sweep directory.")
    return messages
