"""The run-directory format: the one writer (:func:`save_run`) and the one reader of run directories.

A run directory holds one trained model and everything needed to rebuild and judge it:

``weights.safetensors``
    The model's state dict (parameters and BatchNorm buffers), safetensors
    format: loading it can never execute code, unlike a pickle.
``config.json``
    ``{"format_version": 1, "model": {"kind", "latent_size", "image_size", "options"},
    "train": {epochs, batch_size, lr, seed, device}, "data": <AnomalyData.spec>,
    "parameter_count", "environment": versions and device, "created": ISO time}``
    -- everything needed to rebuild the model and the data. ``kind`` is one of
    :data:`entropy_ae.model.MODEL_KINDS` and ``options`` its full settings; a run
    written before model kinds existed has neither and is read as ``"ae"``.
``metrics.json``
    :func:`entropy_ae.evaluation.evaluate_model`'s output plus ``dataset``,
    ``latent_size``, ``seed``, ``epochs``, ``train_seconds``, ``final_loss``.
    Written last: its presence means the run is complete.
``loss_history.csv``
    ``epoch,loss`` -- the mean training MSE of each epoch.

Saving is atomic: files are written into a temporary sibling directory that is
then renamed onto ``run_dir``, so an interrupted run never looks complete.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .data import SPLITS, AnomalyData, DataError, load_data
from .evaluation import encode_images
from .io import to_json
from .model import MODEL_KINDS, Autoencoder, build_model, count_parameters
from .reproducibility import environment_info, resolve_device

FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
LOSS_HISTORY = "loss_history.csv"


class RunDirError(ValueError):
    """A run directory is missing, incomplete, corrupt or inconsistent; the message names the file."""


# ----------------------------------------------------------------------------------------------- saving

def is_complete(run_dir: str | os.PathLike) -> bool:
    """True when ``run_dir`` holds a finished run (its ``metrics.json`` exists)."""
    return (Path(run_dir) / METRICS).is_file()


def check_not_complete(run_dir: Path, overwrite: bool) -> None:
    """Refuse (``FileExistsError``) to write into a finished run unless ``overwrite``."""
    if is_complete(run_dir) and not overwrite:
        raise FileExistsError(
            f"{run_dir} already holds a completed run ({METRICS} exists); choose another directory, "
            f"delete it, or pass overwrite=True (--overwrite on the command line)"
        )


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_json(path: Path, obj) -> None:
    """Write into the run's temporary directory (the directory rename is the atomic step)."""
    path.write_text(to_json(obj) + "\n", encoding="utf-8")


def build_config(model: Autoencoder, config, data: AnomalyData, extra: dict | None = None) -> dict:
    """The ``config.json`` content for a model trained with ``config`` on ``data``."""
    train = config.to_dict()
    for key in ("latent_size", "model", "model_options"):  # live under "model", once
        del train[key]
    out = {
        "format_version": FORMAT_VERSION,
        "model": {"kind": model.kind, "latent_size": model.latent_size, "image_size": model.image_size,
                  "options": model.options()},
        "train": train,
        "data": data.spec,
        "parameter_count": count_parameters(model),
        "environment": environment_info(next(model.parameters()).device),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if extra is not None:
        out["extra"] = extra
    return out


def save_run(
    run_dir: str | os.PathLike,
    model: Autoencoder,
    config,
    data: AnomalyData,
    metrics: dict,
    loss_history: list[float],
    extra: dict | None = None,
    *,
    train_seconds: float | None = None,
    overwrite: bool = False,
) -> dict:
    """Write a run directory atomically and return the metrics as saved.

    ``dataset``, ``latent_size``, ``seed``, ``epochs``, ``final_loss`` and
    ``train_seconds`` (from the argument, else from ``metrics``) are added to
    ``metrics``. Files go into a temporary sibling directory first; when
    ``run_dir`` does not exist yet that directory is renamed onto it in one
    step. When ``run_dir`` exists but is not complete (e.g. it holds a log), the
    files are moved in one by one with ``metrics.json`` last, so the completion
    marker still appears only once everything else is in place.

    Raises
    ------
    FileExistsError
        ``run_dir`` already holds a complete run and ``overwrite`` is false.
    """
    run_dir = Path(run_dir)
    check_not_complete(run_dir, overwrite)
    if model.latent_size != config.latent_size:
        raise ValueError(f"model has latent_size={model.latent_size} but config says {config.latent_size}")
    if model.kind != config.model or model.options() != config.model_options:
        raise ValueError(f"model is {model.kind!r} with settings {model.options()} but config says "
                         f"{config.model!r} with {config.model_options}")
    if model.image_size != data.image_size:
        raise ValueError(f"model takes {model.image_size}x{model.image_size} images but data {data.name!r} has "
                         f"{data.image_size}x{data.image_size}")
    saved_metrics = dict(metrics)
    saved_metrics.update(
        dataset=data.name,
        model=model.kind,
        latent_size=config.latent_size,
        seed=config.seed,
        epochs=config.epochs,
        train_seconds=train_seconds if train_seconds is not None else metrics.get("train_seconds"),
        final_loss=float(loss_history[-1]) if len(loss_history) else None,
    )
    config_json = build_config(model, config, data, extra)
    # Serialise before touching the disk, so a non-JSON value fails without leaving debris.
    to_json(config_json)
    to_json(saved_metrics)

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    # Hidden name: globs such as seed=* used by sweeps never see a half-written run.
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.tmp-", dir=run_dir.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700); a run dir is ordinary
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "entropy-ae", "format_version": str(FORMAT_VERSION),
                                                    "model": model.kind})
        os.chmod(tmp / WEIGHTS, 0o666 & ~_umask())  # safetensors writes it owner-only
        _write_json(tmp / CONFIG, config_json)
        with open(tmp / LOSS_HISTORY, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", "loss"])
            writer.writerows((i + 1, repr(float(v))) for i, v in enumerate(loss_history))
        _write_json(tmp / METRICS, saved_metrics)
        if overwrite and is_complete(run_dir):
            os.remove(run_dir / METRICS)  # mark incomplete before replacing anything
        if not run_dir.exists():
            try:
                os.replace(tmp, run_dir)
                return saved_metrics
            except OSError:
                if not run_dir.is_dir():  # something else went wrong than a racing creator
                    raise
        run_dir.mkdir(exist_ok=True)
        check_not_complete(run_dir, overwrite=False)  # a concurrent writer may have finished it
        for name in (WEIGHTS, CONFIG, LOSS_HISTORY, METRICS):
            os.replace(tmp / name, run_dir / name)
        return saved_metrics
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- loading

def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise RunDirError(f"{path} is missing; is {path.parent} a run directory written by entropy-ae?")
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(obj, dict):
        raise RunDirError(f"{path} should hold a JSON object, found {type(obj).__name__}")
    return obj


def _run_path(run_dir: str | os.PathLike) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist or is not a directory")
    return run_dir


def load_config(run_dir: str | os.PathLike) -> dict:
    """Read and check a run's ``config.json``."""
    path = _run_path(run_dir) / CONFIG
    config = _read_json(path)
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise RunDirError(
            f"{path} has format_version {version!r}; this entropy-ae reads format_version {FORMAT_VERSION}"
        )
    model = config.get("model")
    if not isinstance(model, dict) or "latent_size" not in model or "image_size" not in model:
        raise RunDirError(f"{path} lacks the 'model' section with 'latent_size' and 'image_size'")
    kind = model.setdefault("kind", "ae")  # runs written before model kinds were all the plain AE
    model.setdefault("options", {})
    if kind not in MODEL_KINDS:
        raise RunDirError(f"{path} has model kind {kind!r}; this entropy-ae knows {', '.join(MODEL_KINDS)}")
    return config


def model_kind(config: dict) -> str:
    """The model kind of a run's ``config.json`` content (as read by :func:`load_config`)."""
    return config["model"]["kind"]


def load_metrics(run_dir: str | os.PathLike) -> dict:
    """Read a complete run's ``metrics.json``."""
    path = _run_path(run_dir) / METRICS
    if not path.is_file():
        raise RunDirError(f"{path} is missing: the run in {path.parent} is not complete")
    return _read_json(path)


def load_loss_history(run_dir: str | os.PathLike) -> list[float]:
    """Read a run's ``loss_history.csv`` as a list of per-epoch losses."""
    path = _run_path(run_dir) / LOSS_HISTORY
    if not path.is_file():
        raise RunDirError(f"{path} is missing")
    with open(path, newline="", encoding="utf-8") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def _describe_mismatch(expected: dict, found: dict, weights: Path, config_path: Path, model: Autoencoder) -> str | None:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected tensors {extra[:5]}{' ...' if len(extra) > 5 else ''}")
        return f"{weights} does not match the model described in {config_path}: " + "; ".join(parts)
    code_layer = "encoder_fc.4.weight"  # Linear(1024, code units): its rows are the latent size (VAE: 2x)
    if code_layer in found and found[code_layer].shape != expected[code_layer].shape:
        found_size = found[code_layer].shape[0] * model.latent_size // model.code_units()
        return (
            f"{weights} holds weights for latent_size={found_size} but {config_path} says "
            f"latent_size={model.latent_size}"
        )
    for name, tensor in expected.items():
        if found[name].shape != tensor.shape:
            return (
                f"{weights} does not match {config_path}: tensor {name} has shape {tuple(found[name].shape)}, "
                f"the model (latent_size={model.latent_size}, image_size={model.image_size}) needs "
                f"{tuple(tensor.shape)}"
            )
        if found[name].dtype != tensor.dtype:
            return f"{weights}: tensor {name} has dtype {found[name].dtype}, expected {tensor.dtype}"
        if tensor.is_floating_point() and not torch.isfinite(found[name]).all():
            return f"{weights}: tensor {name} holds NaN or infinite values (corrupt weights)"
    return None


def load_model(run_dir: str | os.PathLike, device: str | torch.device = "cpu", model: str | None = None
               ) -> tuple[Autoencoder, dict]:
    """Rebuild a run's model from ``config.json`` and ``weights.safetensors``.

    Never unpickles: weights are read with safetensors only. ``model`` (a kind such as
    ``"vae"``), when given, is the kind the caller expects: a run of another kind is refused
    rather than loaded as something it is not.

    Returns
    -------
    (model, config)
        The model in eval mode on ``device`` and the parsed ``config.json``.

    Raises
    ------
    RunDirError
        Missing or corrupt files, unknown ``format_version``, a model kind other than
        ``model``, weights of another kind than ``config.json`` says, or weights that do
        not fit the configured model (missing, extra or wrong-shaped tensors).
    """
    run_dir = _run_path(run_dir)
    config = load_config(run_dir)
    config_path = run_dir / CONFIG
    kind = model_kind(config)
    if model is not None and model != kind:
        raise RunDirError(f"{run_dir} holds a {kind!r} model, not {model!r}; load it as {kind!r} (or pick a run "
                          f"of kind {model!r})")
    section = config["model"]
    try:
        net = build_model(kind, section["latent_size"], section["image_size"], section["options"])
    except ValueError as err:
        raise RunDirError(f"{config_path}: {err}") from err
    weights = run_dir / WEIGHTS
    if not weights.is_file():
        raise RunDirError(f"{weights} is missing")
    try:
        state = load_file(str(weights))
        with safe_open(str(weights), framework="pt") as f:
            weights_kind = (f.metadata() or {}).get("model", "ae")
    except (SafetensorError, OSError, ValueError) as err:
        raise RunDirError(
            f"{weights} is not a readable safetensors file (truncated, corrupt, or another format such as a "
            f"pickle; entropy-ae never unpickles): {err}"
        ) from err
    if weights_kind != kind:
        raise RunDirError(f"{weights} holds the weights of a {weights_kind!r} model but {config_path} says "
                          f"{kind!r}; the two files come from different runs")
    problem = _describe_mismatch(net.state_dict(), state, weights, config_path, net)
    if problem:
        raise RunDirError(problem)
    net.load_state_dict(state, strict=True)
    net.to(resolve_device(device)).eval()
    return net, config


def extract_latents(
    run_dir: str | os.PathLike,
    data: AnomalyData | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 512,
) -> dict[str, np.ndarray]:
    """Latent codes of a saved run's model, computed in eval mode.

    Parameters
    ----------
    run_dir : path
        A run directory (see the module docstring).
    data : AnomalyData, optional
        Images to encode; ``None`` rebuilds the run's own data from the spec in
        ``config.json``.
    device : str, default "auto"
    batch_size : int, default 512

    Returns
    -------
    dict
        ``train_normal``, ``val_normal``, ``test_normal``, ``test_abnormal``:
        float32 arrays of shape ``(n, latent_size)``.
    """
    model, config = load_model(run_dir, device=device)
    if data is None:
        data = data_from_config(config)
    if data.image_size != model.image_size:
        raise ValueError(
            f"data {data.name!r} has {data.image_size}x{data.image_size} images but the model in {run_dir} "
            f"takes {model.image_size}x{model.image_size}; load the data with image_size={model.image_size}"
        )
    latents = {}
    for name in SPLITS:
        images = data.split(name)
        if len(images) == 0:
            latents[name] = np.zeros((0, model.latent_size), dtype=np.float32)
        else:
            latents[name] = encode_images(model, images, batch_size=batch_size)
    return latents


def data_from_config(config: dict) -> AnomalyData:
    """Rebuild the data a run was trained on from its ``config.json`` content."""
    spec = config.get("data")
    if spec is None:
        raise RunDirError(f"{CONFIG} has no 'data' spec; pass the data explicitly")
    # The spec dict carries its own split seed and image size; image_size only fills a gap.
    try:
        return load_data(spec, image_size=config["model"]["image_size"])
    except DataError as err:
        raise DataError(f"cannot rebuild the run's data from {CONFIG}: {err}; give the data explicitly "
                        f"(data=... in Python, --data SPEC on the command line)") from err
