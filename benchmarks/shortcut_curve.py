"""Does the built-in data show both sides of the paper's curve? AUROC against latent size, over seeds.

Trains the project's AE (``entropy_ae.training``, batched one model per core on a CPU) at every
latent size and seed of the grid, for each training length, on one data spec, and prints per
latent size the mean and standard deviation over seeds of the test AUROC, the pseudo-anomaly
AUROC and copy ratio (normal data only), and the validation reconstruction error. Then the
issue's two gaps: best d against d = 1 and against the largest d, each with twice the seeds'
standard deviation of the difference. The linear limit of the design (PCA reconstruction) is
printed beside it: its interior peak is what a shortcut-free code of the right size achieves.

Usage::

    .venv/bin/python benchmarks/shortcut_curve.py [--data synthetic:shortcut] [--epochs 15,30]
        [--latent-sizes 1,2,4,8,16,32,64,128] [--seeds 0,1,2] [--image-size 32] [--out DIR]

Test labels are used here only to judge (AUROC), never to choose anything.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from entropy_ae.data import load_data
from entropy_ae.evaluation import evaluate_model
from entropy_ae.io import atomic_write_json
from entropy_ae.options import parse_int_list
from entropy_ae.reproducibility import environment_info
from entropy_ae.training import TrainConfig
from entropy_ae.training.batched import BatchedOptions, train_models_batched

COLUMNS = ("auroc", "pseudo_auroc", "copy_ratio", "rec_error_val_normal")


def pca_curve(data, latent_sizes) -> dict[int, float]:
    """Test AUROC of PCA reconstruction (fitted on the normal training images) per latent size."""
    train = data.train.reshape(len(data.train), -1).astype(np.float64)
    mean = train.mean(axis=0)
    _, _, components = np.linalg.svd(train - mean, full_matrices=False)
    test = data.test.reshape(len(data.test), -1) - mean
    out = {}
    for d in latent_sizes:
        basis = components[: min(d, len(components))]
        residual = test - (test @ basis.T) @ basis
        out[d] = float(roc_auc_score(data.test_labels, (residual ** 2).mean(axis=1)))
    return out


def measure(data, latent_sizes, seeds, epochs) -> dict:
    configs = [TrainConfig(latent_size=d, epochs=epochs, seed=s, device="cpu") for d in latent_sizes for s in seeds]
    start = time.perf_counter()
    # One model per core, each on one thread: the CPU default of a sweep, as fast as it gets here.
    trained = train_models_batched(data, configs, progress=False, options=BatchedOptions(cpu_workers=os.cpu_count()))
    seconds = time.perf_counter() - start
    rows = []
    for config, (model, _history) in zip(configs, trained):
        metrics = evaluate_model(model, data)
        rows.append({"latent_size": config.latent_size, "seed": config.seed,
                     **{c: metrics[c] for c in COLUMNS}})
    return {"epochs": epochs, "train_seconds": seconds, "rows": rows}


def summary(rows, latent_sizes) -> dict:
    """Per latent size: mean and sd over seeds of every column."""
    out = {}
    for d in latent_sizes:
        values = {c: np.array([r[c] for r in rows if r["latent_size"] == d], dtype=float) for c in COLUMNS}
        out[d] = {c: (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")) for c, v in values.items()}
    return out


def gaps(rows, latent_sizes) -> dict:
    """Best d by mean AUROC; its per-seed AUROC differences to d = min and d = max (mean, sd)."""
    by_size = {d: {r["seed"]: r["auroc"] for r in rows if r["latent_size"] == d} for d in latent_sizes}
    best = max(latent_sizes, key=lambda d: np.mean(list(by_size[d].values())))
    out = {"best": best}
    for name, other in (("vs_smallest", min(latent_sizes)), ("vs_largest", max(latent_sizes))):
        diff = np.array([by_size[best][s] - by_size[other][s] for s in by_size[best]])
        sd = float(diff.std(ddof=1)) if len(diff) > 1 else float("nan")
        out[name] = {"other": other, "mean": float(diff.mean()), "sd": sd,
                     "meets": bool(diff.mean() >= 0.05 and diff.mean() > 2 * sd)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="synthetic:shortcut")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--latent-sizes", default="1,2,4,8,16,32,64,128")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", default="30", help="comma-separated training lengths")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON there")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sizes, seeds = parse_int_list(args.latent_sizes, "latent sizes"), parse_int_list(args.seeds, "seeds")
    data = load_data(args.data, image_size=args.image_size)
    pca = pca_curve(data, sizes)
    results = {"data": args.data, "dataset": data.name, "image_size": args.image_size, "seeds": seeds,
               "pca_auroc": pca, "runs": [], "environment": environment_info("cpu")}
    print(f"{args.data} ({data.name}), {len(data.train)} normal training images {args.image_size}x{args.image_size}, "
          f"seeds {seeds}; mean +- sd over seeds, in %")
    for epochs in parse_int_list(args.epochs, "epochs"):
        run = measure(data, sizes, seeds, epochs)
        run["summary"], run["gaps"] = summary(run["rows"], sizes), gaps(run["rows"], sizes)
        results["runs"].append(run)
        print(f"\n{epochs} epochs ({run['train_seconds']:.0f} s of training for {len(run['rows'])} models)")
        print("| d | PCA AUROC | AUROC | pseudo AUROC | copy ratio | val rec. error |")
        print("|---:|---:|---:|---:|---:|---:|")
        for d in sizes:
            s = run["summary"][d]
            print(f"| {d} | {100 * pca[d]:.1f} | {100 * s['auroc'][0]:.1f} +- {100 * s['auroc'][1]:.1f} | "
                  f"{100 * s['pseudo_auroc'][0]:.1f} +- {100 * s['pseudo_auroc'][1]:.1f} | "
                  f"{s['copy_ratio'][0]:.3f} +- {s['copy_ratio'][1]:.3f} | {s['rec_error_val_normal'][0]:.5f} |")
        g = run["gaps"]
        for name in ("vs_smallest", "vs_largest"):
            x = g[name]
            print(f"best d = {g['best']} {name.replace('_', ' ')} (d = {x['other']}): "
                  f"{100 * x['mean']:+.1f} points, sd {100 * x['sd']:.1f}; goal (>= 5 and > 2 sd) "
                  f"{'met' if x['meets'] else 'NOT met'}")
        if args.out is not None:
            atomic_write_json(args.out / "shortcut_curve.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
