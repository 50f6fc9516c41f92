"""AUROC of the paper's AE on the built-in synthetic data at several latent sizes.

Checks that the synthetic dataset shows the paper's phenomenon: image AUROC is
low for too-small codes (normal variation not captured) and for too-large codes
(lesions copied through), best in between, near the known factor count k.

Training is ``entropy_ae.training.train_model`` (Adam lr 1e-3, batch 64, MSE) and
scoring ``entropy_ae.evaluation.evaluate_model`` (image score = mean squared error).
``entropy-ae sweep`` measures the same and more; this script is the minimal version.

Command behind the README table (32x32, 30 epochs; about 1 min per latent size on one
CPU core, 6-8 min in all on the shared 2-core machine)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/synthetic_latent_sizes.py \
        --data synthetic --image-size 32 --epochs 30 --latent-sizes 1,2,4,8,16,64 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from entropy_ae.data import load_data
from entropy_ae.evaluation import evaluate_model
from entropy_ae.reproducibility import environment_info
from entropy_ae.training import TrainConfig, train_model

COLUMNS = ("auroc", "ap", "rec_error_train_normal", "rec_error_test_normal", "rec_error_test_abnormal")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic", help="data spec (default: synthetic)")
    p.add_argument("--latent-sizes", default="1,2,4,8,16,64", help="comma-separated latent sizes")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="0", help="comma-separated training seeds")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: shared machine)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_data(args.data, image_size=args.image_size)
    print(f"# data {data.name} spec={json.dumps(data.spec)}", flush=True)
    print(f"# environment {json.dumps(environment_info('cpu'))}", flush=True)
    print("latent_size,seed,auroc,ap,rec_error_train_normal,rec_error_test_normal,rec_error_test_abnormal,seconds")
    rows = []
    for d in [int(v) for v in args.latent_sizes.split(",")]:
        for seed in [int(v) for v in args.seeds.split(",")]:
            t0 = time.perf_counter()
            config = TrainConfig(latent_size=d, epochs=args.epochs, seed=seed, device="cpu")
            model, _ = train_model(data, config, progress=False)
            metrics = evaluate_model(model, data, device="cpu")
            row = dict(latent_size=d, seed=seed, **{k: float(metrics[k]) for k in COLUMNS},
                       seconds=time.perf_counter() - t0)
            rows.append(row)
            print(",".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"data": data.spec, "epochs": args.epochs, "rows": rows}, fh, indent=1)
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
