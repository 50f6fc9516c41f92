"""Command-line pieces every ``entropy-ae`` command shares (argparse only: no torch, no scikit-learn).

The ``entropy-ae`` entry point lives in the top layer (:mod:`analysis.cli`); the options that
commands of both layers take -- the data spec, integer types, the one-line error format -- live
here, in the core, so the analysis layer imports them and the core never imports the analysis
layer. :func:`load_data_from_args` is the one place where parsed options become data.
"""

from __future__ import annotations

import argparse

DATA_HELP = (
    "data spec: 'synthetic' (the built-in synthetic data), 'synthetic[k=4,n_train=1000,n_test=400]', "
    "'digits' or 'digits:C' (scikit-learn digits, class C normal), a folder in the medical AD "
    "benchmark layout, a MedMNIST-style .npz file, or 'nifti:ROOT' / 'dicom:ROOT' (3-D volumes in "
    "ROOT/train, ROOT/test, ROOT/labels, sliced; options below or as nifti:ROOT[key=value,...])"
)
# The command-line spellings of the volume options of nifti:/dicom: specs: (flag, spec key, metavar,
# help). The keys, defaults and parsing live in entropy_ae.data.volumes (DEFAULTS); the values are
# passed on as text and parsed there, exactly as inside a spec's brackets.
VOLUME_OPTIONS = (
    ("--modality", "modality", "M", "auto, ct or mr: how intensities are mapped (auto: CT when a window is "
                                    "given or a DICOM series says CT, else MR)"),
    ("--window", "window", "LOW,HIGH", "CT window in Hounsfield units, LOW,HIGH (write --window=-160,240 when LOW "
                                       "is negative) or a preset: brain, soft_tissue, lung, bone"),
    ("--percentiles", "percentiles", "LOW,HIGH", "MR: normalise each volume between these percentiles of its "
                                                 "foreground voxels (default 1,99)"),
    ("--slice-axis", "axis", "A", "volume axis 0, 1 or 2 to cut slices along (default 2)"),
    ("--slice-range", "slice_range", "START,STOP", "keep only slice indices START..STOP-1 along the axis"),
    ("--min-foreground", "min_foreground", "F", "skip slices with a smaller foreground share than F (default 0.01)"),
    ("--min-lesion-voxels", "min_lesion_voxels", "N", "a test slice is abnormal from N lesion voxels of its "
                                                      "segmentation on; slices with 1..N-1 are left out (default 1)"),
)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line ``entropy-ae: error: ...`` (status 2).

    ``add_subparsers`` builds subcommand parsers of the parent's class, so every subcommand
    reports errors this way.
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


def parse_int_list(text, name: str = "list") -> list[int]:
    """Parse ``"1,2,4"`` (or a list of integers) into sorted distinct non-negative integers.

    Raises ValueError naming ``name`` and the expected form.
    """
    if isinstance(text, (list, tuple)):
        values = list(text)
    else:
        try:
            values = [int(v) for v in str(text).replace(" ", "").split(",") if v != ""]
        except ValueError as err:
            raise ValueError(f"{name} must be comma-separated integers such as 1,2,4, got {text!r}") from err
    # numpy integers pass through int(); bools and floats do not count as integers here
    if not values or any(isinstance(v, bool) or not hasattr(v, "__index__") or v < 0 for v in values):
        raise ValueError(f"{name} must be a non-empty list of non-negative integers, got {text!r}")
    return sorted(set(int(v) for v in values))


def int_list(text: str) -> list[int]:
    """An argparse ``type`` for ``1,2,4`` (see :func:`parse_int_list`)."""
    try:
        return parse_int_list(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_data_options(parser: argparse.ArgumentParser, *, data_default: str | None,
                     data_help: str | None = None, seed_help: str | None = None) -> None:
    """Add ``--data``, ``--normal-labels``, ``--data-seed`` and the volume options (:data:`VOLUME_OPTIONS`).

    With ``data_default=None`` the data are optional (a command that falls back on a run's own
    data); ``data_help`` and ``seed_help`` replace the generic help texts for one command.
    """
    if data_help is None:
        data_help = DATA_HELP + ("; default: the data recorded in the run's config.json" if data_default is None
                                 else f" (default: {data_default})")
    parser.add_argument("--data", metavar="SPEC", default=data_default, help=data_help)
    only = "" if data_default is not None else " (only with --data)"
    parser.add_argument("--normal-labels", metavar="LABELS", default=None,
                        help="for a .npz file: comma-separated labels that count as normal, e.g. '0' or '0,1'" + only)
    if seed_help is None:
        seed_help = ("seed of the train/val/test split and of synthetic data generation (default: 0); "
                     "kept apart from the training seed so every training seed sees the same data" + only)
    parser.add_argument("--data-seed", type=non_negative_int, default=0, metavar="S", help=seed_help)
    volume = parser.add_argument_group("volume data (nifti: and dicom: specs only)")
    for flag, key, metavar, text in VOLUME_OPTIONS:
        volume.add_argument(flag, dest=f"volume_{key}", metavar=metavar, default=None, help=text + only)


def load_data_from_args(args: argparse.Namespace, image_size: int):
    """The :class:`~entropy_ae.data.AnomalyData` that ``--data``, ``--normal-labels``, ``--data-seed`` and the
    volume options name."""
    from .data import load_data

    kwargs = {"image_size": image_size, "seed": args.data_seed}
    if args.normal_labels is not None:
        kwargs["normal_labels"] = args.normal_labels
    volume = {key: getattr(args, f"volume_{key}") for _, key, _, _ in VOLUME_OPTIONS
              if getattr(args, f"volume_{key}", None) is not None}
    if volume:
        kwargs["volume_options"] = volume
    return load_data(args.data, **kwargs)


# The model kinds of entropy_ae.model.MODEL_KINDS, spelled here too so that --help needs no torch
# (tests/test_model_kinds_cli.py checks that the two agree).
MODEL_KINDS_HELP = "ae (the paper's AE), vae, memae, ceae, dae, or nested or gated (capacity chosen in one training)"


def model_option(text: str) -> tuple[str, float]:
    """``KEY=VALUE`` of ``--model-option`` as ``(key, number)``; an argparse type."""
    key, sep, value = text.partition("=")
    try:
        if not sep or not key:
            raise ValueError
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KEY=NUMBER such as kl_weight=0.01, got {text!r}") from None
    return key.strip(), number  # an integer setting (memory_size) takes 50.0 as 50


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model KIND`` and repeatable ``--model-option KEY=VALUE`` (the kind's settings)."""
    parser.add_argument("--model", default="ae", metavar="KIND",
                        help=f"model kind: {MODEL_KINDS_HELP} (default: ae; see docs/models)")
    parser.add_argument("--model-option", type=model_option, action="append", default=[], metavar="KEY=VALUE",
                        dest="model_options",
                        help="a setting of the model kind, e.g. kl_weight=0.01 (vae), memory_size=50 (memae), "
                             "noise_std=0.1 (dae); repeat for several; unset ones keep the kind's defaults")
