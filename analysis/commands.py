"""What each ``entropy-ae`` command does, given its parsed arguments (the options are in :mod:`analysis.cli`).

Every function takes the ``argparse.Namespace`` and returns the exit status. Bad input raises one
of :data:`USER_ERRORS`, which :func:`analysis.cli.main` prints as one ``entropy-ae: error: ...``
line. Every ``--json`` output goes through :func:`entropy_ae.io.to_json` (strict JSON: NaN and
infinities become null).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

from entropy_ae.data import DataError
from entropy_ae.io import to_json
from entropy_ae.options import load_data_from_args
from entropy_ae.runs import RunDirError

USER_ERRORS = (DataError, RunDirError, ValueError, FileExistsError, FileNotFoundError, FloatingPointError)
HEADLINE = (
    "auroc", "ap", "pixel_ap", "best_dice", "threshold", "sensitivity", "specificity",
    "rec_error_train_normal", "rec_error_test_normal", "rec_error_test_abnormal",
)


def _warn(messages) -> None:
    for message in messages:
        print(f"entropy-ae: WARNING: {message}", file=sys.stderr)


def _format_value(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return str(value)


def _print_metrics(metrics: dict, as_json: bool) -> None:
    if as_json:
        print(to_json(metrics))  # strict: an undefined (NaN) metric is null
        return
    width = max(len(k) for k in HEADLINE)
    for key in HEADLINE:
        note = "  (oracle upper bound)" if key == "best_dice" and metrics.get(key) is not None else ""
        print(f"{key:<{width}}  {_format_value(metrics.get(key))}{note}")
    if "effective_latent_size" in metrics:  # nested and gated models: the capacity they chose
        print(f"{'effective_latent_size':<{width}}  {metrics['effective_latent_size']}")


def _check_entropy_method(method: str) -> None:
    from entropy_ae.estimators import ENTROPY_METHODS

    if method not in ENTROPY_METHODS:
        raise ValueError(f"--method {method!r} is not an entropy estimator; choose one of {', '.join(ENTROPY_METHODS)}")


# ----------------------------------------------------------------------------------------- core


def train(args) -> int:
    from entropy_ae.model import ADAPTIVE_KINDS, check_sizes
    from entropy_ae.reproducibility import resolve_device
    from entropy_ae.runs import check_not_complete
    from entropy_ae.training import TrainConfig, run_training

    config = TrainConfig(latent_size=args.latent_size, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, device=args.device, model=args.model,
                         model_options=dict(args.model_options))
    # Check every option before loading data, which can take a while, and before any output.
    check_sizes(config.latent_size, args.image_size)
    device = resolve_device(config.device)
    check_not_complete(Path(args.out), args.overwrite)
    if not 0 < args.target_fpr < 1:
        raise ValueError(f"--target-fpr must be strictly between 0 and 1, got {args.target_fpr}")
    data = load_data_from_args(args, image_size=args.image_size)
    if not args.quiet:
        print(f"training on {data.name}: {len(data.train)} normal images {data.image_size}x{data.image_size}, "
              f"model={config.model}, latent_size={config.latent_size}, {config.epochs} epochs, seed={config.seed}, "
              f"device={device}",
              file=sys.stderr)
    if config.model in ADAPTIVE_KINDS:  # one training; its capacity chosen from normal data
        from analysis.adaptive import run_adaptive_training

        metrics = run_adaptive_training(data, config, args.out, progress=False if args.quiet else None,
                                        target_fpr=args.target_fpr, overwrite=args.overwrite)
    else:
        metrics = run_training(data, config, args.out, progress=False if args.quiet else None,
                               target_fpr=args.target_fpr, overwrite=args.overwrite)
    _print_metrics(metrics, args.json)
    if not args.json:
        print(f"run saved to {args.out} (train {metrics['train_seconds']:.1f} s, "
              f"final loss {metrics['final_loss']:.5f})")
    return 0


def evaluate(args) -> int:
    from entropy_ae.evaluation import evaluate_model
    from entropy_ae.runs import data_from_config, load_model

    model, config = load_model(args.run_dir, device=args.device)
    if args.data is None:
        data = data_from_config(config)  # the run's own data, split seed included
    else:
        data = load_data_from_args(args, image_size=model.image_size)
    metrics = evaluate_model(model, data, target_fpr=args.target_fpr)
    metrics["dataset"] = data.name
    metrics["latent_size"] = model.latent_size
    if not args.json:
        print(f"{args.run_dir} (latent_size={model.latent_size}) on {data.name}: {metrics['n_test_normal']} normal "
              f"+ {metrics['n_test_abnormal']} abnormal test images")
    _print_metrics(metrics, args.json)
    return 0


# ------------------------------------------------------------------------------------- analysis


def _study_models(args) -> list[tuple[str, dict, list[int]]]:
    """``(kind, settings, latent sizes)`` of each sweep a command runs: ``--model``, or the study's ``--models``."""
    from entropy_ae.model import ADAPTIVE_KINDS, check_model

    if not hasattr(args, "models"):  # sweep: one kind over the grid
        check_model(args.model, dict(args.model_options))
        return [(args.model, dict(args.model_options), args.latent_sizes)]
    kinds = list(dict.fromkeys(k.strip() for k in args.models.split(",") if k.strip()))
    for kind in kinds:
        check_model(kind)
    # An adaptive kind chooses its own capacity up to the largest swept size; the others sit at one size.
    largest = [max(args.latent_sizes)]
    return [("ae", {}, args.latent_sizes)] + [(k, {}, largest if k in ADAPTIVE_KINDS else [args.methods_latent_size])
                                              for k in kinds if k != "ae"]


def _sweep(args, warn_mixed: bool = True):
    from analysis.executors import executor_options
    from analysis.sweep import MixedSettingsWarning, check_executor, check_grid, mixed_settings, run_sweep

    # Everything that can be checked without the data first: loading it can take a while.
    _check_entropy_method(args.method)
    sweeps = _study_models(args)
    for _kind, _settings, sizes in sweeps:
        check_grid(sizes, args.image_size)
    options = executor_options(args)
    check_executor(args.executor, args.batched, options, progress=False)
    data = load_data_from_args(args, image_size=args.image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixedSettingsWarning)  # printed below, once, as a CLI warning
        for kind, settings, sizes in sweeps:
            table = run_sweep(data, sizes, args.seeds, args.epochs, args.out, batch_size=args.batch_size,
                              lr=args.lr, device=args.device, executor=args.executor, workers=args.workers,
                              batched=args.batched, method=args.method, progress=not args.quiet,
                              overwrite=args.overwrite, model=kind, model_options=settings, **options)
    if warn_mixed:  # the study's report prints them itself
        _warn(mixed_settings(table))
    return table


def sweep(args) -> int:
    from analysis.sweep import SweepError
    from analysis.sweep.layout import RESULTS_CSV

    try:
        table = _sweep(args)
    except SweepError as err:
        print(f"entropy-ae: error: {err}", file=sys.stderr)
        return 1
    print(f"{len(table)} completed runs; results in {Path(args.out) / RESULTS_CSV}")
    return 0


def _pseudo_leakage(run_dir, data, method: str) -> dict:
    """:func:`analysis.measures.run_pseudo_leakage`, or ``{"unavailable": reason}`` when it cannot be measured."""
    from entropy_ae.estimators import EstimatorWarning

    from analysis.measures import run_pseudo_leakage

    try:
        with warnings.catch_warnings():
            # k-NN entropies of ~100 large codes warn about their dimension; the line says it is a k-NN estimate
            warnings.simplefilter("ignore", EstimatorWarning)
            return run_pseudo_leakage(run_dir, data, method=method)
    except ValueError as err:
        return {"unavailable": str(err)}


def _pseudo_line(pseudo: dict) -> str:
    """The second line of ``entropy-ae entropy``: the run's pseudo-anomaly measurements (normal data only)."""
    if "unavailable" in pseudo:
        return f"pseudo-anomalies (normal data only): not measured: {pseudo['unavailable']}"

    def value(key):
        v = pseudo.get(key)
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else _format_value(v)

    n_families = len(pseudo["pseudo_families"].split(","))
    return (f"pseudo-anomalies (normal data only; {pseudo['n_pseudo_codes']} validation images, {n_families} "
            f"families): copy ratio {value('copy_ratio')}, pseudo AUROC {value('pseudo_auroc')}, "
            f"I(Z; perturbed) = {value('mi_code_pseudo')} nats (k-NN)")


def entropy(args) -> int:
    from analysis.measures import run_entropy

    _check_entropy_method(args.method)
    data = None
    if args.data is not None:
        from entropy_ae.runs import load_config

        data = load_data_from_args(args, image_size=int(load_config(args.run_dir)["model"]["image_size"]))
    result = run_entropy(args.run_dir, data, method=args.method, split=args.split)
    result["pseudo_anomalies"] = _pseudo_leakage(args.run_dir, data, args.method)
    if args.json:
        print(to_json(result))
        return 0
    error = f" ± {result['stderr']:.4f}" if "stderr_note" not in result else ""
    print(f"H(Z) = {result['h_z']:.4f}{error} {result['units']} "
          f"({result['method']} estimator, {result['n']} {args.split} codes, latent_size={result['latent_size']}); "
          f"Gaussian bound {result['h_z_gaussian']:.4f} {result['units']}")
    print(_pseudo_line(result["pseudo_anomalies"]))
    if "stderr_note" in result:
        print(f"no standard error: {result['stderr_note']}")
    return 0


def report(args) -> int:
    from analysis.report import write_report

    done = write_report(args.dir, paper_reference=not args.no_paper_reference, criterion=args.criterion,
                        copy_figures_to=args.copy_figures_to)
    _warn(done["warnings"] + done["fallbacks"])
    print(f"report: {done['markdown']} and {done['html']}; {len(done['figures'])} figures"
          + (f" (WARNING: mixed settings, see {done['markdown']})" if done["warnings"] else ""))
    return 0


def recommend(args) -> int:
    from analysis.recommend import recommend_from_data, write_recommendation
    from analysis.sweep.layout import RECOMMENDATION

    if args.dir is None and args.data is None:
        raise ValueError("give a sweep directory (after a sweep) or --data SPEC (before any sweep)")
    if args.dir is not None:
        rec = write_recommendation(args.dir, args.criterion)
        print(to_json(rec))
        print(f"written to {Path(args.dir) / RECOMMENDATION}", file=sys.stderr)
        return 0
    print(to_json(recommend_from_data(load_data_from_args(args, image_size=args.image_size))))
    return 0


def study(args) -> int:
    from analysis.report import write_report
    from analysis.sweep import SweepError
    from analysis.sweep.layout import RECOMMENDATION

    start = time.perf_counter()
    try:
        _sweep(args, warn_mixed=False)
    except SweepError as err:
        print(f"entropy-ae: error: {err}", file=sys.stderr)
        return 1
    done = write_report(args.out, copy_figures_to=args.copy_figures_to)
    _warn(done["warnings"] + done["fallbacks"])
    rec = done["recommendation"]
    if "latent_size" in rec:
        print(f"recommended latent size: {rec['latent_size']} ({rec['criterion']})")
    print(f"study done in {time.perf_counter() - start:.0f} s: report {done['markdown']} and {done['html']}, "
          f"recommendation {Path(args.out) / RECOMMENDATION}"
          + (f", figures copied to {args.copy_figures_to}" if args.copy_figures_to else ""))
    return 0


COMMANDS = {"train": train, "evaluate": evaluate, "sweep": sweep, "entropy": entropy, "report": report,
            "recommend": recommend, "study": study}
