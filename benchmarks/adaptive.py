"""One training instead of a sweep: do the nested and gated models reach the sweep's best latent size?

On the datasets of ``benchmarks/recommendation.py`` (same specs, epochs, seeds, 32x32 images), it
trains each adaptive kind once per seed at d = ``--max-latent-size`` (``analysis.adaptive``:
``nested`` picks a truncation with the two_sided rule from normal data; ``gated`` opens its own
units), and compares its test AUROC with the latent-size sweep of that benchmark (resumed or
trained through ``analysis.sweep.run_sweep`` in the same directory):

* the sweep's **oracle** d (best seed-mean test AUROC: it uses test labels),
* the sweep's **recommended** d (two_sided on the sweep, normal data only).

Goals (the issue's): AUROC within 1 point of the oracle and no worse than the recommendation.
Compute: image-steps (training images x epochs) of one adaptive training against the sweep's
(latent sizes x that), per seed, and, with ``--timing``, wall time measured in one run on the first
dataset: the sweep's sizes for one seed trained one after another, then each adaptive kind,
all on one thread.

Roles as in ``benchmarks/recommendation.py``: the two_sided rule's constants were tuned on the
``dev`` datasets, and so was ``gate_share``'s default (``--tune-gate-share``); neither saw a
``judge`` dataset. Test labels judge; they never choose.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adaptive.py --out runs/bench-recommendation [--kinds nested]
    # another gate_share, its runs apart, on the dev datasets only:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adaptive.py --out runs/bench-recommendation --kinds gated \
        --gate-share 0.01 --adaptive-out runs/bench-adaptive-share0.01 --roles dev
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adaptive.py --out runs/bench-recommendation --timing
    # gate_share chosen on the dev datasets among several, then judged once on the judge datasets:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adaptive.py --out runs/bench-recommendation \
        --tune-gate-share 0.003,0.01,0.03
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import recommend as rec  # noqa: E402
from analysis.adaptive import TABLE_COLUMNS, run_adaptive_training  # noqa: E402
from analysis.sweep import run_sweep  # noqa: E402
from analysis.sweep.layout import run_dir_for  # noqa: E402
from entropy_ae.data import load_data  # noqa: E402
from entropy_ae.io import atomic_write_json  # noqa: E402
from entropy_ae.options import parse_int_list  # noqa: E402
from entropy_ae.reproducibility import environment_info  # noqa: E402
from entropy_ae.runs import is_complete, load_metrics  # noqa: E402
from entropy_ae.training import TrainConfig, train_model  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_recommendation", Path(__file__).with_name("recommendation.py"))
_recommendation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_recommendation)
DATASETS, QUICK_DATASETS = _recommendation.DATASETS, _recommendation.QUICK_DATASETS


def adaptive_runs(data, kind: str, epochs: int, args) -> list[dict]:
    """Train (or read back) one adaptive run per seed; their metrics."""
    out = []
    for seed in args.seeds:
        run_dir = run_dir_for(args.adaptive_out or args.out, data.name, args.max_latent_size, seed, kind)
        if not is_complete(run_dir):
            options = {"gate_share": args.gate_share} if kind == "gated" and args.gate_share else {}
            config = TrainConfig(latent_size=args.max_latent_size, epochs=epochs, seed=seed, device="cpu", model=kind,
                                 model_options=options)
            run_adaptive_training(data, config, run_dir, progress=False)
        out.append(load_metrics(run_dir))
    return out


def summarise(name: str, role: str, sweep: pd.DataFrame, runs: dict, n_sizes: int) -> list[dict]:
    auroc = sweep.groupby("latent_size")["auroc"].mean() * 100
    oracle = int(auroc.idxmax())
    recommended = int(rec.recommend(sweep, "two_sided")["latent_size"])
    rows = [{"dataset": name, "role": role, "choice": f"sweep oracle d={oracle} (test labels)",
             "auroc": auroc[oracle], "sd": sweep[sweep.latent_size == oracle]["auroc"].std(ddof=1) * 100,
             "capacity": str(oracle), "image_steps_vs_sweep": 1.0},
            {"dataset": name, "role": role, "choice": f"sweep two_sided d={recommended}",
             "auroc": auroc[recommended], "sd": sweep[sweep.latent_size == recommended]["auroc"].std(ddof=1) * 100,
             "capacity": str(recommended), "image_steps_vs_sweep": 1.0}]
    for kind, metrics in runs.items():
        values = np.array([m["auroc"] for m in metrics]) * 100
        rows.append({"dataset": name, "role": role, "choice": kind, "auroc": values.mean(),
                     "sd": values.std(ddof=1) if len(values) > 1 else float("nan"),
                     "capacity": ",".join(str(m["effective_latent_size"]) for m in metrics),
                     "image_steps_vs_sweep": 1.0 / n_sizes})
    if "nested" in runs and len(runs["nested"]) > 1:
        rows.append(pooled_nested_row(name, role, runs["nested"], n_sizes))
    for row in rows:
        row["gap_to_oracle"] = auroc[oracle] - row["auroc"]
        row["vs_recommended"] = row["auroc"] - auroc[recommended]
    return rows


def pooled_nested_row(name: str, role: str, metrics: list[dict], n_sizes: int) -> dict:
    """Nested with one truncation for all seeds: two_sided on their truncation tables pooled, as on a sweep.

    The sweep's recommendation pools its seeds the same way; the seeds' own models are then read
    at that truncation (their recorded test AUROC there; the rule never reads it).
    """
    tables = [m["capacity"]["by_truncation"] for m in metrics]
    pooled = pd.DataFrame([{"dataset": name, "latent_size": int(j), "seed": seed,
                            **{column: table[column][j] for column in TABLE_COLUMNS}}
                           for seed, table in enumerate(tables) for j in table["auroc"]])
    chosen = int(rec.recommend(pooled, "two_sided")["latent_size"])
    values = np.array([table["auroc"][str(chosen)] if str(chosen) in table["auroc"] else table["auroc"][chosen]
                       for table in tables]) * 100
    return {"dataset": name, "role": role, "choice": "nested, truncation pooled over seeds", "auroc": values.mean(),
            "sd": values.std(ddof=1), "capacity": str(chosen), "image_steps_vs_sweep": 1.0 / n_sizes}


def timing(spec: str, epochs: int, args) -> dict:
    """Wall time of one seed's sweep (every size, one after another) against each adaptive kind, one thread."""
    torch.set_num_threads(1)
    data = load_data(spec, image_size=args.image_size)
    seconds = {}
    start = time.perf_counter()
    for d in args.latent_sizes:
        train_model(data, TrainConfig(latent_size=d, epochs=epochs, seed=0, device="cpu"))
    seconds["sweep"] = time.perf_counter() - start
    for kind in args.kinds:
        start = time.perf_counter()
        run_adaptive_training(data, TrainConfig(latent_size=args.max_latent_size, epochs=epochs, seed=0,
                                                device="cpu", model=kind), Path(args.out) / f".timing-{kind}",
                              progress=False, overwrite=True)
        seconds[kind] = time.perf_counter() - start
    return {"dataset": data.name, "epochs": epochs, "seconds": seconds,
            "ratio_to_sweep": {k: v / seconds["sweep"] for k, v in seconds.items() if k != "sweep"}}


def _gated_rows(spec: str, epochs: int, role: str, share: float, args) -> list[dict]:
    """The sweep's rows and gated's at ``gate_share=share`` (its runs apart, per share) on one dataset."""
    data = load_data(spec, image_size=args.image_size)
    table = run_sweep(data, args.latent_sizes, args.seeds, epochs, args.out, image_size=args.image_size,
                      progress=not args.quiet)
    sweep = table[(table["dataset"] == data.name) & (table["model"] == "ae")].reset_index(drop=True)
    share_args = argparse.Namespace(**{**vars(args), "gate_share": share,
                                       "adaptive_out": str(Path(args.out) / f"gated-share{share:g}")})
    rows = summarise(data.name, role, sweep, {"gated": adaptive_runs(data, "gated", epochs, share_args)},
                     len(args.latent_sizes))
    for row in rows:
        row["gate_share"] = share if row["choice"] == "gated" else float("nan")
    return rows


def tune_gate_share(args) -> None:
    """gate_share chosen on the dev datasets (least mean gap to the oracle), then judged on the judge datasets.

    The dev datasets' test labels choose the share, as the two_sided rule's constants were tuned there;
    the judge datasets are seen once, with the chosen share.
    """
    datasets = QUICK_DATASETS if args.quick else DATASETS
    dev = [d for d in datasets if d[2] == "dev"]
    rows = [row for share in args.tune_gate_share for spec, epochs, role in dev
            for row in _gated_rows(spec, epochs, role, share, args)]
    gated = pd.DataFrame([r for r in rows if r["choice"] == "gated"])
    gaps = gated.groupby("gate_share")["gap_to_oracle"].mean()
    chosen = float(gaps.idxmin())
    print(f"dev mean gap to the oracle per gate_share: {gaps.round(2).to_dict()}; chosen {chosen:g}")
    rows += [row for spec, epochs, role in datasets if role == "judge"
             for row in _gated_rows(spec, epochs, role, chosen, args)]
    result = pd.DataFrame(rows).drop_duplicates(subset=["dataset", "choice", "gate_share"])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(result.round(2).to_string(index=False))
    atomic_write_json(Path(args.out) / "adaptive-gated-tuned.json",
                      {"rows": result.to_dict("records"), "seeds": args.seeds, "shares": args.tune_gate_share,
                       "dev_mean_gap": {str(k): v for k, v in gaps.items()}, "chosen_gate_share": chosen,
                       "environment": environment_info("cpu")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench-recommendation")
    parser.add_argument("--kinds", default="nested,gated")
    parser.add_argument("--latent-sizes", type=parse_int_list, default=parse_int_list("1,2,4,8,16,32,64"))
    parser.add_argument("--max-latent-size", type=int, default=64)
    parser.add_argument("--seeds", type=parse_int_list, default=parse_int_list("0,1,2"))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="tiny datasets and 1 epoch (a smoke test)")
    parser.add_argument("--timing", action="store_true", help="only the one-run wall-time comparison")
    parser.add_argument("--gate-share", type=float, default=None, help="gated's gate_share (default: its own)")
    parser.add_argument("--adaptive-out", default=None,
                        help="where the adaptive runs go (default: --out); one directory per setting compared")
    parser.add_argument("--roles", default="dev,judge", help="which datasets: dev, judge or both")
    parser.add_argument("--tune-gate-share", type=lambda v: [float(t) for t in v.split(",")], default=None,
                        metavar="S1,S2,...", help="choose gated's gate_share among these on the dev datasets "
                                                  "(least mean gap to the oracle), then judge it on the judge ones")
    parser.add_argument("--specs", default=None, help="only the datasets whose spec contains one of these "
                                                       "comma-separated strings")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    roles = {r.strip() for r in args.roles.split(",")}
    datasets = [d for d in (QUICK_DATASETS if args.quick else DATASETS) if d[2] in roles]
    if args.specs:
        datasets = [d for d in datasets if any(part in d[0] for part in args.specs.split(","))]
    if args.timing:
        result = timing(datasets[0][0], datasets[0][1], args)
        print(result)
        atomic_write_json(Path(args.out) / "adaptive_timing.json", {**result, "environment": environment_info("cpu")})
        return
    if args.tune_gate_share:
        tune_gate_share(args)
        return
    rows = []
    for spec, epochs, role in datasets:
        data = load_data(spec, image_size=args.image_size)
        table = run_sweep(data, args.latent_sizes, args.seeds, epochs, args.out, image_size=args.image_size,
                          progress=not args.quiet)
        sweep = table[(table["dataset"] == data.name) & (table["model"] == "ae")].reset_index(drop=True)
        runs = {kind: adaptive_runs(data, kind, epochs, args) for kind in args.kinds}
        rows += summarise(data.name, role, sweep, runs, len(args.latent_sizes))
    result = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(result.round(2).to_string(index=False))
    name = f"adaptive-{'-'.join(args.kinds)}" + (f"-share{args.gate_share:g}" if args.gate_share else "")
    atomic_write_json(Path(args.adaptive_out or args.out) / f"{name}.json",
                      {"rows": result.to_dict("records"), "seeds": args.seeds, "gate_share": args.gate_share,
                       "environment": environment_info("cpu")})


if __name__ == "__main__":
    main()
