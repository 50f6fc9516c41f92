"""The executor options of ``entropy-ae sweep`` and ``study``, and their translation into ``map_runs`` options.

``--executor`` and ``--workers`` are the command's own; :func:`add_executor_options` adds the
backend options and :func:`executor_options` turns the parsed arguments into ``map_runs``
keyword arguments, refusing an option that does not apply to the chosen executor.
"""

from __future__ import annotations

from entropy_ae.options import positive_int

# dest -> (flag, executors it applies to, map_runs option name)
CLI_OPTIONS = {
    "timeout_min": ("--timeout-min", ("local", "slurm"), "timeout_min"),
    "slurm_partition": ("--slurm-partition", ("slurm",), "slurm_partition"),
    "slurm_gpus_per_node": ("--slurm-gpus-per-node", ("slurm",), "slurm_gpus_per_node"),
    "slurm_cpus_per_task": ("--slurm-cpus-per-task", ("slurm",), "cpus_per_task"),
    "slurm_mem_gb": ("--slurm-mem-gb", ("slurm",), "mem_gb"),
    "slurm_account": ("--slurm-account", ("slurm",), "slurm_account"),
    "slurm_setup": ("--slurm-setup", ("slurm",), "slurm_setup"),
    "slurm_param": ("--slurm-param", ("slurm",), "slurm_additional_parameters"),
    "ray_address": ("--ray-address", ("ray",), "address"),
    "ray_num_cpus": ("--ray-num-cpus", ("ray",), "num_cpus"),
    "ray_num_gpus": ("--ray-num-gpus", ("ray",), "num_gpus"),
}


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"expected a non-negative number, got {text!r}")
    return value


def add_executor_options(parser) -> None:
    """Add the backend options of ``map_runs`` to an argparse parser (``entropy-ae sweep``)."""
    group = parser.add_argument_group("executor options (--timeout-min: local and slurm; --slurm-*: slurm; --ray-*: ray)")
    group.add_argument("--timeout-min", type=positive_int, metavar="M",
                       help="time limit of one run in minutes (slurm: the job's --time, default 120; "
                            "local: the run is killed and reported as failed)")
    group.add_argument("--slurm-partition", metavar="P", help="SLURM partition of the job array")
    group.add_argument("--slurm-gpus-per-node", type=int, metavar="G", help="GPUs per run (e.g. 1)")
    group.add_argument("--slurm-cpus-per-task", type=positive_int, metavar="C",
                       help="CPU cores per run (also its torch threads)")
    group.add_argument("--slurm-mem-gb", type=_non_negative_float, metavar="GB", help="memory per run, GB")
    group.add_argument("--slurm-account", metavar="A", help="SLURM account to charge")
    group.add_argument("--slurm-setup", action="append", metavar="LINE",
                       help="shell line run before each run, e.g. 'module load cuda' (repeatable)")
    group.add_argument("--slurm-param", action="append", metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. qos=high or constraint=a100 (repeatable)")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="Ray cluster to join ('auto', 'ray://head:10001'; default $RAY_ADDRESS, "
                            "else a local Ray instance)")
    group.add_argument("--ray-num-cpus", type=_non_negative_float, metavar="C", help="CPUs per run (default 1)")
    group.add_argument("--ray-num-gpus", type=_non_negative_float, metavar="F",
                       help="GPUs per run; a fraction such as 0.25 packs several runs on one GPU (default 0)")


def executor_options(args) -> dict:
    """``map_runs`` keyword arguments from arguments parsed with :func:`add_executor_options`.

    Raises ValueError when an option does not apply to ``args.executor`` (e.g.
    ``--slurm-partition`` with ``--executor local``), rather than ignoring it. Without an
    executor the options of ``local`` apply.
    """
    executor = getattr(args, "executor", None) or "local"
    options, misplaced = {}, []
    for dest, (flag, executors, name) in CLI_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if executor not in executors:
            misplaced.append(flag)
            continue
        if dest == "slurm_param":
            value = dict(_key_value(text) for text in value)
        options[name] = value
    if misplaced:
        raise ValueError(f"{', '.join(misplaced)} do(es) not apply to --executor {executor}")
    return options


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--slurm-param expects KEY=VALUE (e.g. qos=high), got {text!r}")
    return key.strip(), value.strip()
