"""Analysis subcommands of ``entropy-ae``: ``sweep``, ``entropy``, ``report``, ``recommend``, ``study``.

``entropy_ae.cli`` calls :func:`register` with its subparsers. Every command sets ``func``
(``args -> int``); bad input raises ValueError / FileNotFoundError, which the main CLI prints
as one ``entropy-ae: error: ...`` line. Every ``--json`` output goes through :func:`print_json`
(strict JSON: NaN and infinities become null).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from entropy_ae.cli import DATA_HELP, add_data_options, positive_int

from analysis.recommend import DEFAULT_CRITERION, RULES
from analysis.executors import add_executor_options, executor_options

# The study's built-in data: the synthetic set at 32x32 with fewer images than its default, so the
# whole sweep (7 latent sizes x 2 seeds) finishes in a few minutes on 2 CPU cores. Its default
# lesions are 1-3 pixels at 32x32, which a 15-epoch AE cannot see (AUROC about 0.5 at every latent
# size, measured); larger, stronger lesions and fine tissue detail make the latent size matter.
STUDY_DATA = ("synthetic[k=4,n_train=600,n_val=100,n_test=300,lesion_radius_min=0.1,lesion_radius_max=0.25,"
              "lesion_contrast_min=0.3,lesion_contrast_max=0.8,detail=0.15]")
STUDY_LATENT_SIZES = "1,2,4,8,16,32,64"
STUDY_SEEDS = "0,1"
STUDY_EPOCHS = 15
STUDY_IMAGE_SIZE = 32


def print_json(payload) -> None:
    """Print strict JSON (``allow_nan=False``: a NaN becomes null, never the invalid ``NaN``)."""
    from entropy_ae.jsonio import to_json

    print(to_json(payload))


def _warn(messages) -> None:
    for message in messages:
        print(f"entropy-ae: WARNING: {message}", file=sys.stderr)


def _set_help(parser: argparse.ArgumentParser, dest: str, text: str) -> None:
    """Reword the help of an option added by a shared helper (``add_data_options``) for one command."""
    for action in parser._actions:
        if action.dest == dest:
            action.help = text
            return
    raise KeyError(dest)


class _DeprecatedAlias(argparse.Action):
    """An old option spelling that still works and says which one to use instead."""

    def __init__(self, option_strings, dest, replacement: str, **kwargs):
        self.replacement = replacement
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"entropy-ae: warning: {option_string} is deprecated here; use {self.replacement} "
              "(same meaning)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _int_list(text: str) -> list[int]:
    from analysis.sweep import parse_int_list

    try:
        return parse_int_list(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_sweep_options(parser: argparse.ArgumentParser, *, data: str, latent_sizes: str, seeds: str, epochs: int,
                       image_size: int, out: str | None) -> None:
    add_data_options(parser, data_default=data)
    _set_help(parser, "data_seed", "seed of the train/val/test split and of synthetic data generation (default: 0); "
                                   "kept apart from --seeds so every training seed sees the same data")
    parser.add_argument("--latent-sizes", type=_int_list, default=_int_list(latent_sizes), metavar="D1,D2,...",
                        help=f"comma-separated latent sizes to train (default: {latent_sizes})")
    parser.add_argument("--seeds", type=_int_list, default=_int_list(seeds), metavar="S1,S2,...",
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
    parser.add_argument("--executor", default=None, choices=("sequential", "local", "slurm", "ray"),
                        help="how to run the grid: 'local' process pool, 'sequential' in this process, 'slurm' "
                             "or 'ray'. Default: on a CPU (and without --workers or executor options) the models "
                             "train batched in this process, one per core (fastest there, same results as "
                             "'local'); on a GPU 'local'")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="runs at once (default: the executor's choice, one per core or GPU)")
    parser.add_argument("--batched", action="store_true",
                        help="train all pending models of the grid together (entropy_ae.batched); same results "
                             "(the default on a CPU when no executor is given)")
    parser.add_argument("--method", default="knn", choices=("knn", "kde", "binned", "gaussian"),
                        help="entropy estimator for H(Z) (default: knn)")
    parser.add_argument("--overwrite", action="store_true",
                        help="retrain completed runs of the grid whose recorded settings (epochs, batch size, lr, "
                             "image size, data) differ from these; without it such runs stop the sweep before "
                             "any training")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_executor_options(parser)


def _sweep(args, warn_mixed: bool = True):
    from entropy_ae.data import load_data

    from analysis.sweep import MixedSettingsWarning, check_executor, check_grid, mixed_settings, run_sweep

    # Everything that can be checked without the data first: loading it can take a while.
    check_grid(args.latent_sizes, args.image_size)
    options = executor_options(args)
    check_executor(args.executor, args.batched, options, progress=False)
    data_kwargs = {}
    if args.normal_labels is not None:
        data_kwargs["normal_labels"] = args.normal_labels
    data = load_data(args.data, image_size=args.image_size, seed=args.data_seed, **data_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixedSettingsWarning)  # printed below, once, as a CLI warning
        table = run_sweep(data, args.latent_sizes, args.seeds, args.epochs, args.out, batch_size=args.batch_size,
                          lr=args.lr, device=args.device, executor=args.executor, workers=args.workers,
                          batched=args.batched, method=args.method, progress=not args.quiet,
                          overwrite=args.overwrite, **options)
    if warn_mixed:  # the study's report prints them itself
        _warn(mixed_settings(table))
    return table


def cmd_sweep(args) -> int:
    from analysis.sweep import SweepError

    try:
        table = _sweep(args)
    except SweepError as err:
        print(f"entropy-ae: error: {err}", file=sys.stderr)
        return 1
    print(f"{len(table)} completed runs; results in {Path(args.out) / 'results.csv'}")
    return 0


def cmd_entropy(args) -> int:
    from analysis.entropy import run_entropy

    data = None
    if args.data is not None:
        from entropy_ae.checkpoint import load_config
        from entropy_ae.data import load_data

        image_size = int(load_config(args.run_dir)["model"]["image_size"])
        kwargs = {"normal_labels": args.normal_labels} if args.normal_labels is not None else {}
        data = load_data(args.data, image_size=image_size, seed=args.data_seed, **kwargs)
    result = run_entropy(args.run_dir, data, method=args.method, split=args.split)
    if args.json:
        print_json(result)
        return 0
    error = f" ± {result['stderr']:.4f}" if "stderr_note" not in result else ""
    print(f"H(Z) = {result['h_z']:.4f}{error} {result['units']} "
          f"({result['method']} estimator, {result['n']} {args.split} codes, latent_size={result['latent_size']}); "
          f"Gaussian bound {result['h_z_gaussian']:.4f} {result['units']}")
    if "stderr_note" in result:
        print(f"no standard error: {result['stderr_note']}")
    return 0


def cmd_report(args) -> int:
    from analysis.report import write_report

    done = write_report(args.dir, figures_dir=args.figures_dir, paper_reference=not args.no_paper_reference,
                        criterion=args.criterion, copy_figures_to=args.copy_figures_to)
    _warn(done["warnings"])
    print(f"report: {done['markdown']} and {done['html']}; {len(done['figures'])} figures"
          + (f" (WARNING: mixed settings, see {done['markdown']})" if done["warnings"] else ""))
    return 0


def cmd_recommend(args) -> int:
    from analysis.recommend import recommend_from_data, write_recommendation

    if args.dir is None and args.data is None:
        raise ValueError("give a sweep directory (after a sweep) or --data SPEC (before any sweep)")
    if args.dir is not None:
        rec = write_recommendation(args.dir, args.criterion)
        print_json(rec)
        print(f"written to {Path(args.dir) / 'recommendation.json'}", file=sys.stderr)
        return 0
    from entropy_ae.data import load_data

    kwargs = {"normal_labels": args.normal_labels} if args.normal_labels is not None else {}
    data = load_data(args.data, image_size=args.image_size, seed=args.data_seed, **kwargs)
    print_json(recommend_from_data(data))
    return 0


def cmd_study(args) -> int:
    from analysis.report import write_report
    from analysis.sweep import SweepError

    start = time.perf_counter()
    try:
        _sweep(args, warn_mixed=False)
    except SweepError as err:
        print(f"entropy-ae: error: {err}", file=sys.stderr)
        return 1
    done = write_report(args.out, copy_figures_to=args.copy_figures_to)
    _warn(done["warnings"])
    rec = done["recommendation"]
    if "latent_size" in rec:
        print(f"recommended latent size: {rec['latent_size']} ({rec['criterion']})")
    print(f"study done in {time.perf_counter() - start:.0f} s: report {done['markdown']} and {done['html']}, "
          f"recommendation {Path(args.out) / 'recommendation.json'}"
          + (f", figures copied to {args.copy_figures_to}" if args.copy_figures_to else ""))
    return 0


def register(subparsers) -> None:
    """Add the analysis subcommands to the ``entropy-ae`` parser."""
    sweep = subparsers.add_parser(
        "sweep", help="train one autoencoder per (latent size, seed); resumable",
        description="Train every (latent size, seed) of the grid into DIR/<dataset>/latent_size=<d>/seed=<s>/, "
                    "skipping runs already complete (re-run the same command to resume an interrupted sweep), "
                    "measure the entropy of every code, and write DIR/results.csv (and results.parquet).")
    _add_sweep_options(sweep, data="synthetic", latent_sizes="1,2,4,8,16,32,64,128", seeds="0,1,2", epochs=20,
                       image_size=64, out=None)
    sweep.set_defaults(func=cmd_sweep)

    entropy = subparsers.add_parser(
        "entropy", help="H(Z) of a trained run's code, with its standard error",
        description="Encode images with a run's model and print the differential entropy H(Z) of the codes "
                    "(nats) with a standard error, the estimator, and the Gaussian upper bound.")
    entropy.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by 'entropy-ae train' or a sweep")
    add_data_options(entropy, data_default=None)
    _set_help(entropy, "data_seed", "seed of the train/val/test split and of synthetic data generation for --data "
                                    "(default: 0; without --data the run's own data, split seed included)")
    entropy.add_argument("--method", default="knn", choices=("knn", "kde", "binned", "gaussian"),
                         help="entropy estimator (default: knn, Kozachenko-Leonenko)")
    entropy.add_argument("--split", default="train", choices=("train", "val", "test-normal", "test-abnormal"),
                         help="which images to encode (default: train, the normal training images)")
    entropy.add_argument("--json", action="store_true",
                         help='print {"h_z", "stderr", "units", "method", "n", "latent_size", ...} as JSON')
    entropy.set_defaults(func=cmd_entropy)

    report = subparsers.add_parser(
        "report", help="figures, Table 1 and the recommendation of a finished sweep",
        description="Write DIR/report.md, DIR/report.html, DIR/figures/*.png and DIR/recommendation.json "
                    "from DIR/results.csv.")
    report.add_argument("dir", metavar="DIR", help="sweep directory")
    report.add_argument("--figures-dir", default=None, metavar="PATH", help="where to write figures (default: DIR/figures)")
    report.add_argument("--copy-figures-to", default=None, metavar="PATH", help="also copy the figures there")
    report.add_argument("--no-paper-reference", action="store_true", help="leave the paper's Fig. 3 curves out")
    report.add_argument("--criterion", default=DEFAULT_CRITERION, choices=tuple(RULES),
                        help=f"recommendation rule (default: {DEFAULT_CRITERION})")
    report.set_defaults(func=cmd_report)

    recommend = subparsers.add_parser(
        "recommend", help="recommend a latent size from normal data only",
        description="After a sweep: write DIR/recommendation.json from the sweep's normal-data measurements "
                    "(never test labels). Before any sweep: --data SPEC recommends from the intrinsic "
                    "dimension of the normal training images alone.")
    recommend.add_argument("dir", nargs="?", default=None, metavar="DIR", help="sweep directory")
    add_data_options(recommend, data_default=None)
    _set_help(recommend, "data", DATA_HELP + "; the normal images to recommend from before any sweep "
                                             "(give either DIR or --data)")
    _set_help(recommend, "data_seed", "seed of the train/val/test split and of synthetic data generation "
                                      "(default: 0; only with --data)")
    recommend.add_argument("--image-size", type=positive_int, default=64, metavar="S",
                           help="image side for --data (default: 64)")
    recommend.add_argument("--criterion", default=DEFAULT_CRITERION, choices=tuple(RULES),
                           help=f"rule after a sweep (default: {DEFAULT_CRITERION})")
    recommend.set_defaults(func=cmd_recommend)

    study = subparsers.add_parser(
        "study", help="the whole latent-size study on built-in data: sweep, report, figures, recommendation",
        description="A small latent-size sweep on the built-in synthetic data (a few minutes on 2 CPU cores), "
                    "then the report, the figures and the recommendation. Resumable like 'sweep'.")
    _add_sweep_options(study, data=STUDY_DATA, latent_sizes=STUDY_LATENT_SIZES, seeds=STUDY_SEEDS,
                       epochs=STUDY_EPOCHS, image_size=STUDY_IMAGE_SIZE, out="runs/study")
    study.add_argument("--copy-figures-to", default=None, metavar="PATH",
                       help="also copy the figures there, e.g. figures/ of the repository (as for 'report'; "
                            "the figures themselves go to OUT/figures)")
    study.add_argument("--figures-dir", dest="copy_figures_to", action=_DeprecatedAlias,
                       replacement="--copy-figures-to", metavar="PATH",
                       help="deprecated spelling of --copy-figures-to (for 'report', --figures-dir is where the "
                            "figures are written)")
    study.set_defaults(func=cmd_study)
