"""The ``entropy-ae`` command line: every command's options, and the entry point :func:`main`.

Core commands: ``train`` (train, evaluate and save one run directory) and ``evaluate`` (score a
saved run). Analysis commands: ``sweep``, ``entropy``, ``report``, ``recommend``, ``study``.
What each command does is in :mod:`analysis.commands`, imported only once the arguments are
parsed, so ``entropy-ae --help`` and ``entropy-ae COMMAND --help`` import neither torch nor
scikit-learn.

Bad input -- unusable data, a wrong option value, a corrupt run directory -- prints one line
``entropy-ae: error: ...`` to stderr and exits with status 2 instead of a traceback; argparse's
own errors (an unknown option, a bad integer) print the same one line through
:class:`entropy_ae.options.Parser`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from entropy_ae import __version__
from entropy_ae.data import SPLITS
from entropy_ae.options import (
    DATA_HELP,
    MODEL_KINDS_HELP,
    Parser,
    add_data_options,
    add_model_options,
    int_list,
    non_negative_int,
    positive_int,
)

from analysis.executors import EXECUTORS, add_executor_options
from analysis.recommend import DEFAULT_CRITERION, FALLBACK_CRITERION, RULES

# The study's built-in data: normal images with 2 global factors and a grid of small local
# variations; lesions made of a rare combination of those variations. Small codes cannot hold
# the normal content, codes large enough to copy reconstruct the lesions too, so AUROC peaks at an
# interior latent size -- the paper's curve, both sides of it. It needs 60 epochs to show both
# sides (at 30 the large-d side is within the seeds' noise; docs: benchmarks/shortcut_curve).
STUDY_DATA = "synthetic:shortcut"
STUDY_LATENT_SIZES = "1,2,4,8,16,32,64"
STUDY_SEEDS = "0,1"
STUDY_EPOCHS = 60
STUDY_IMAGE_SIZE = 32
# The latent size of the methods beside the AE in the study's Table 2 (the paper's: d=16).
STUDY_METHODS_LATENT_SIZE = 16
METHOD_HELP = ("entropy estimator of entropy_ae.estimators.entropy: knn (Kozachenko-Leonenko, the default), "
               "kde, binned or gaussian")


def _add_device_and_threshold(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:<index>' (default: auto)")
    parser.add_argument("--target-fpr", type=float, default=0.05, metavar="F",
                        help="false-positive rate on held-out normal images that fixes the decision threshold "
                             "(default: 0.05)")
    parser.add_argument("--json", action="store_true", help="print all metrics as JSON instead of the headline table")


def _add_train(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train and evaluate one autoencoder, save a run directory",
        description="Train the paper's autoencoder (or another --model) on the normal training images, evaluate "
                    "it on the test set and save weights.safetensors, config.json, metrics.json and "
                    "loss_history.csv in --out.")
    add_data_options(train, data_default="synthetic")
    add_model_options(train)
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
    _add_device_and_threshold(train)
    train.set_defaults(command_name="train")


def _add_evaluate(subparsers) -> None:
    evaluate = subparsers.add_parser(
        "evaluate", help="score a saved run on its own or other data",
        description="Load a run directory's model and print its metrics on the run's data or on --data. "
                    "Nothing is written.")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by 'entropy-ae train' or a sweep")
    add_data_options(evaluate, data_default=None)
    _add_device_and_threshold(evaluate)
    evaluate.set_defaults(command_name="evaluate")


def _add_sweep_options(parser: argparse.ArgumentParser, *, data: str, latent_sizes: str, seeds: str, epochs: int,
                       image_size: int, out: str | None) -> None:
    add_data_options(parser, data_default=data,
                     seed_help="seed of the train/val/test split and of synthetic data generation (default: 0); "
                               "kept apart from --seeds so every training seed sees the same data")
    parser.add_argument("--latent-sizes", type=int_list, default=int_list(latent_sizes), metavar="D1,D2,...",
                        help=f"comma-separated latent sizes to train (default: {latent_sizes})")
    parser.add_argument("--seeds", type=int_list, default=int_list(seeds), metavar="S1,S2,...",
                        help=f"comma-separated training seeds per latent size (default: {seeds})")
    parser.add_argument("--epochs", type=positive_int, default=epochs, metavar="E",
                        help=f"training epochs per run (default: {epochs}; the paper trains 250)")
    parser.add_argument("--image-size", type=positive_int, default=image_size, metavar="S",
                        help=f"side of the square images, a multiple of 16 (default: {image_size})")
    parser.add_argument("--batch-size", type=positive_int, default=64, metavar="B", help="batch size (default: 64)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    parser.add_argument("--device", default="auto",
                        help="'auto' (a GPU when there is one, else the CPU; the local executor gives each "
                             "worker its own GPU), 'cpu', 'cuda' or 'cuda:<i>', for every run (default: auto)")
    if out is None:
        parser.add_argument("--out", required=True, metavar="DIR", help="sweep directory (created; resumed if present)")
    else:
        parser.add_argument("--out", default=out, metavar="DIR", help=f"sweep directory (default: {out})")
    parser.add_argument("--executor", default=None, choices=EXECUTORS,
                        help="where the grid's runs go (see docs/cluster): " + ", ".join(EXECUTORS) + ". Default: "
                             "on a CPU (and without --workers or executor options) the models train batched in "
                             "this process, one per core (fastest there, same results as 'local'); on a GPU 'local'")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="runs at once (default: the executor's choice, one per core or GPU)")
    parser.add_argument("--batched", action="store_true",
                        help="train all pending models of the grid together (entropy_ae.training.batched); same "
                             "results (the default on a CPU when no executor is given)")
    parser.add_argument("--method", default="knn", metavar="METHOD", help=METHOD_HELP + " (for H(Z))")
    parser.add_argument("--overwrite", action="store_true",
                        help="retrain completed runs of the grid whose recorded settings (epochs, batch size, lr, "
                             "image size, data) differ from these; without it such runs stop the sweep before "
                             "any training")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_executor_options(parser)


def _add_analysis(subparsers) -> None:
    sweep = subparsers.add_parser(
        "sweep", help="train one autoencoder per (latent size, seed); resumable",
        description="Train every (latent size, seed) of the grid into DIR/<dataset>/latent_size=<d>/seed=<s>/ "
                    "(another --model into DIR/<dataset>/model=<kind>/...), "
                    "skipping runs already complete (re-run the same command to resume an interrupted sweep), "
                    "measure the entropy of every code, and write DIR/results.csv (and results.parquet).")
    _add_sweep_options(sweep, data="synthetic", latent_sizes="1,2,4,8,16,32,64,128", seeds="0,1,2", epochs=20,
                       image_size=64, out=None)
    add_model_options(sweep)
    sweep.set_defaults(command_name="sweep")

    entropy = subparsers.add_parser(
        "entropy", help="H(Z) of a trained run's code, with its standard error",
        description="Encode images with a run's model and print the differential entropy H(Z) of the codes "
                    "(nats) with a standard error, the estimator, and the Gaussian upper bound; then, from "
                    "pseudo-anomalies made from the validation images (normal data only), the copy ratio, "
                    "the pseudo-anomaly AUROC and I(Z; perturbed).")
    entropy.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by 'entropy-ae train' or a sweep")
    add_data_options(entropy, data_default=None,
                     seed_help="seed of the train/val/test split and of synthetic data generation for --data "
                               "(default: 0; without --data the run's own data, split seed included)")
    entropy.add_argument("--method", default="knn", metavar="METHOD", help=METHOD_HELP)
    entropy.add_argument("--split", default=SPLITS[0], choices=SPLITS,
                         help=f"which images to encode (default: {SPLITS[0]}, the normal training images)")
    entropy.add_argument("--json", action="store_true",
                         help='print {"h_z", "stderr", "units", "method", "n", "latent_size", ..., '
                              '"pseudo_anomalies": {...}} as JSON')
    entropy.set_defaults(command_name="entropy")

    report = subparsers.add_parser(
        "report", help="figures, Table 1 and the recommendation of a finished sweep",
        description="Write DIR/report.md, DIR/report.html, DIR/figures/*.png and DIR/recommendation.json "
                    "from DIR/results.csv.")
    report.add_argument("dir", metavar="DIR", help="sweep directory")
    report.add_argument("--copy-figures-to", default=None, metavar="PATH",
                        help="also copy the figures (always written to DIR/figures) there, e.g. figures/ of a "
                             "repository")
    report.add_argument("--no-paper-reference", action="store_true", help="leave the paper's Fig. 3 curves out")
    report.add_argument("--criterion", default=DEFAULT_CRITERION, choices=tuple(RULES),
                        help=f"recommendation rule (default: {DEFAULT_CRITERION}); a dataset it cannot be applied "
                             f"to (a sweep that predates the pseudo-anomaly metrics) gets {FALLBACK_CRITERION} "
                             "instead, with a warning in the report")
    report.set_defaults(command_name="report")

    recommend = subparsers.add_parser(
        "recommend", help="recommend a latent size from normal data only",
        description="After a sweep: write DIR/recommendation.json from the sweep's normal-data measurements "
                    "(never test labels). Before any sweep: --data SPEC recommends from the intrinsic "
                    "dimension of the normal training images alone.")
    recommend.add_argument("dir", nargs="?", default=None, metavar="DIR", help="sweep directory")
    add_data_options(recommend, data_default=None,
                     data_help=DATA_HELP + "; the normal images to recommend from before any sweep "
                                           "(give either DIR or --data)",
                     seed_help="seed of the train/val/test split and of synthetic data generation "
                               "(default: 0; only with --data)")
    recommend.add_argument("--image-size", type=positive_int, default=64, metavar="S",
                           help="image side for --data (default: 64)")
    recommend.add_argument("--criterion", default=DEFAULT_CRITERION, choices=tuple(RULES),
                           help=f"rule after a sweep (default: {DEFAULT_CRITERION})")
    recommend.set_defaults(command_name="recommend")

    study = subparsers.add_parser(
        "study", help="the whole latent-size study on built-in data: sweep, report, figures, recommendation",
        description="A small latent-size sweep on the built-in synthetic data (a few minutes on 2 CPU cores), "
                    "then the report, the figures and the recommendation. Resumable like 'sweep'.")
    _add_sweep_options(study, data=STUDY_DATA, latent_sizes=STUDY_LATENT_SIZES, seeds=STUDY_SEEDS,
                       epochs=STUDY_EPOCHS, image_size=STUDY_IMAGE_SIZE, out="runs/study")
    study.add_argument("--models", default="ae", metavar="KIND1,KIND2,...",
                       help=f"model kinds to compare ({MODEL_KINDS_HELP}), e.g. ae,vae,memae,ceae,dae: the AE is "
                            "always swept over --latent-sizes (the recommendation needs it); the others are "
                            "trained at --methods-latent-size (nested and gated: at the largest of --latent-sizes, "
                            "their capacity chosen in one training) with the same seeds and epochs, at their "
                            "default settings, and the report adds the paper's Table 2 (default: ae)")
    study.add_argument("--methods-latent-size", type=positive_int, default=STUDY_METHODS_LATENT_SIZE, metavar="D",
                       help=f"latent size of the other --models (default: {STUDY_METHODS_LATENT_SIZE}, as the "
                            "paper's Table 2)")
    study.add_argument("--copy-figures-to", default=None, metavar="PATH",
                       help="also copy the figures (always written to OUT/figures) there, e.g. figures/ of the "
                            "repository (as for 'report')")
    study.set_defaults(command_name="study")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``entropy-ae`` command."""
    parser = Parser(prog="entropy-ae",
                    description="Latent-entropy analysis of autoencoders for medical anomaly detection.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(subparsers)
    _add_evaluate(subparsers)
    _add_analysis(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    from analysis import commands  # torch, scikit-learn and pandas load here, after parsing

    try:
        status = commands.COMMANDS[args.command_name](args)
    except commands.USER_ERRORS as err:
        print(f"entropy-ae: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("entropy-ae: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


if __name__ == "__main__":
    sys.exit(main())
