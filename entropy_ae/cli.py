"""The ``entropy-ae`` command line.

``entropy-ae train`` trains and evaluates one autoencoder and writes a run
directory; ``entropy-ae evaluate`` scores a saved run. The analysis package adds
its own subcommands (``sweep``, ``entropy``, ``report``, ``recommend``,
``study``) through ``analysis.cli.register(subparsers)``.

Each subcommand sets ``func`` (``args -> int | None``) with
``set_defaults``. Bad input -- unusable data, a wrong option value, a corrupt run
directory -- prints one line ``entropy-ae: error: ...`` to stderr and exits with
status 2 instead of a traceback. Option errors found by argparse itself (a bad
``--latent-size``, an unknown option) print the same one line through
:class:`Parser`, which the analysis subcommands inherit, and raise ``SystemExit(2)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .jsonio import to_json

DATA_HELP = (
    "data spec: 'synthetic' (the built-in synthetic data), 'synthetic[k=4,n_train=1000,n_test=400]', "
    "'digits' or 'digits:C' (scikit-learn digits, class C normal), a folder in the medical AD "
    "benchmark layout, or a MedMNIST-style .npz file"
)
HEADLINE = (
    "auroc", "ap", "pixel_ap", "best_dice", "threshold", "sensitivity", "specificity",
    "rec_error_train_normal", "rec_error_test_normal", "rec_error_test_abnormal",
)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line ``entropy-ae: error: ...`` (status 2).

    ``add_subparsers`` builds subcommand parsers of the parent's class, so every
    subcommand, the analysis ones included, reports errors this way.
    """

    def error(self, message: str):
        self.exit(2, f"entropy-ae: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(minimum: int, what: str):
    """An argparse ``type`` accepting integers >= ``minimum``, with a message naming the expectation."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value

    parse.__name__ = f"{what} integer"
    return parse


positive_int = _int_at_least(1, "positive")
non_negative_int = _int_at_least(0, "non-negative")


def add_data_options(parser: argparse.ArgumentParser, *, data_default: str | None) -> None:
    """Add ``--data``, ``--normal-labels`` and ``--data-seed`` (shared by the core and analysis commands)."""
    if data_default is None:
        parser.add_argument("--data", metavar="SPEC", default=None,
                            help=DATA_HELP + "; default: the data recorded in the run's config.json")
    else:
        parser.add_argument("--data", metavar="SPEC", default=data_default,
                            help=DATA_HELP + f" (default: {data_default})")
    only = "" if data_default is not None else " (only with --data)"
    parser.add_argument("--normal-labels", metavar="LABELS", default=None,
                        help="for a .npz file: comma-separated labels that count as normal, e.g. '0' or '0,1'" + only)
    parser.add_argument("--data-seed", type=non_negative_int, default=0, metavar="S",
                        help="seed of the train/val/test split and of synthetic data generation (default: 0); "
                             "kept apart from --seed so every training seed sees the same data" + only)


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:<index>' (default: auto)")
    parser.add_argument("--target-fpr", type=float, default=0.05, metavar="F",
                        help="false-positive rate on held-out normal images that fixes the decision threshold "
                             "(default: 0.05)")
    parser.add_argument("--json", action="store_true", help="print all metrics as JSON instead of the headline table")


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


def _load_data_arg(args, image_size: int):
    from .data import load_data

    kwargs = {"image_size": image_size, "seed": args.data_seed}
    if args.normal_labels is not None:
        kwargs["normal_labels"] = args.normal_labels
    return load_data(args.data, **kwargs)


def cmd_train(args) -> int:
    from .checkpoint import check_not_complete, run_training
    from .model import check_sizes
    from .reproducibility import resolve_device
    from .training import TrainConfig

    config = TrainConfig(latent_size=args.latent_size, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, device=args.device)
    # Check every option before loading data, which can take a while, and before any output.
    check_sizes(config.latent_size, args.image_size)
    device = resolve_device(config.device)
    check_not_complete(Path(args.out), args.overwrite)
    if not 0 < args.target_fpr < 1:
        raise ValueError(f"--target-fpr must be strictly between 0 and 1, got {args.target_fpr}")
    data = _load_data_arg(args, image_size=args.image_size)
    progress = False if args.quiet else None
    if not args.quiet:
        print(f"training on {data.name}: {len(data.train)} normal images {data.image_size}x{data.image_size}, "
              f"latent_size={config.latent_size}, {config.epochs} epochs, seed={config.seed}, device={device}",
              file=sys.stderr)
    metrics = run_training(data, config, args.out, progress=progress, target_fpr=args.target_fpr,
                           overwrite=args.overwrite)
    _print_metrics(metrics, args.json)
    if not args.json:
        print(f"run saved to {args.out} (train {metrics['train_seconds']:.1f} s, "
              f"final loss {metrics['final_loss']:.5f})")
    return 0


def cmd_evaluate(args) -> int:
    from .checkpoint import data_from_config, load_model
    from .evaluation import evaluate_model

    model, config = load_model(args.run_dir, device=args.device)
    if args.data is None:
        data = data_from_config(config)  # the run's own data, split seed included
    else:
        data = _load_data_arg(args, image_size=model.image_size)
    metrics = evaluate_model(model, data, target_fpr=args.target_fpr)
    metrics["dataset"] = data.name
    metrics["latent_size"] = model.latent_size
    if not args.json:
        print(f"{args.run_dir} (latent_size={model.latent_size}) on {data.name}: {metrics['n_test_normal']} normal "
              f"+ {metrics['n_test_abnormal']} abnormal test images")
    _print_metrics(metrics, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="entropy-ae",
        description="Latent-entropy analysis of autoencoders for medical anomaly detection.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = subparsers.add_parser(
        "train", help="train and evaluate one autoencoder, save a run directory",
        description="Train the paper's autoencoder on the normal training images, evaluate it on the test set "
                    "and save weights.safetensors, config.json, metrics.json and loss_history.csv in --out.",
    )
    add_data_options(train, data_default="synthetic")
    train.add_argument("--latent-size", type=positive_int, default=16, metavar="D",
                       help="dimension of the latent code z, 1 to 1024 (default: 16, the paper's default)")
    train.add_argument("--epochs", type=positive_int, default=20, metavar="E",
                       help="passes over the training images (default: 20; the paper trains 250)")
    train.add_argument("--seed", type=non_negative_int, default=0, metavar="S",
                       help="seed of the weight initialisation and the batch order (default: 0)")
    train.add_argument("--out", required=True, metavar="DIR", help="run directory to create")
    train.add_argument("--batch-size", type=positive_int, default=64, metavar="B",
                       help="images per optimiser step, at least 2 (default: 64)")
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    train.add_argument("--image-size", type=positive_int, default=64, metavar="S",
                       help="side of the square images fed to the model, a multiple of 16; data are resized "
                            "to it (default: 64)")
    train.add_argument("--overwrite", action="store_true", help="replace a completed run already in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar or start message")
    _add_common_options(train)
    train.set_defaults(func=cmd_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="score a saved run on its own or other data",
        description="Load a run directory's model and print its metrics on the run's data or on --data. "
                    "Nothing is written.",
    )
    evaluate.add_argument("run_dir", metavar="DIR", help="run directory written by 'entropy-ae train'")
    add_data_options(evaluate, data_default=None)
    _add_common_options(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    _register_analysis(subparsers)
    return parser


def _register_analysis(subparsers) -> None:
    try:
        analysis_cli = importlib.import_module("analysis.cli")
    except ModuleNotFoundError as err:
        # Tolerate only the analysis CLI being absent; a broken import inside it must surface.
        if err.name not in ("analysis", "analysis.cli"):
            raise
        return
    analysis_cli.register(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from .checkpoint import CheckpointError
    from .data import DataError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except (DataError, CheckpointError, ValueError, FileExistsError, FileNotFoundError, FloatingPointError) as err:
        print(f"entropy-ae: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("entropy-ae: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


if __name__ == "__main__":
    sys.exit(main())
