"""AUROC of the paper's AE on the built-in synthetic data at several latent sizes.

Checks that the synthetic dataset shows the paper's phenomenon: image AUROC is
low for too-small codes (normal variation not captured) and for too-large codes
(lesions copied through), best in between, near the known factor count k.

Training follows the reference loop of CONTRACTS.md (Adam lr 1e-3, batch 64,
MSE, whole set in memory, CPU generator for the data order, last batch of size 1
skipped); it uses ``entropy_ae.training.train_model`` when that module exists,
otherwise the identical local copy below. Image score = mean squared error.

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

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score

from entropy_ae.data import load_data
from entropy_ae.model import Autoencoder
from entropy_ae.reproducibility import environment_info, seed_everything


def _reference_train(data, latent_size, epochs, seed, batch_size=64, lr=1e-3):
    seed_everything(seed)
    model = Autoencoder(latent_size, data.image_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_train = torch.as_tensor(data.train)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x_train), generator=gen).split(batch_size):
            if len(idx) < 2:
                continue
            x = x_train[idx]
            x_hat, _ = model(x)
            loss = F.mse_loss(x_hat, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def train(data, latent_size, epochs, seed):
    try:
        from entropy_ae.training import TrainConfig, train_model
    except ImportError:
        return _reference_train(data, latent_size, epochs, seed)
    cfg = TrainConfig(latent_size=latent_size, epochs=epochs, seed=seed, device="cpu")
    return train_model(data, cfg, progress=False)[0]


@torch.no_grad()
def scores(model, images, batch_size=256):
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.as_tensor(images[i : i + batch_size])
        out.append(((model(x)[0] - x) ** 2).mean(dim=(1, 2, 3)).numpy())
    return np.concatenate(out)


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
            model = train(data, d, args.epochs, seed)
            s_test = scores(model, data.test)
            y = data.test_labels
            row = dict(
                latent_size=d,
                seed=seed,
                auroc=float(roc_auc_score(y, s_test)),
                ap=float(average_precision_score(y, s_test)),
                rec_error_train_normal=float(scores(model, data.train).mean()),
                rec_error_test_normal=float(s_test[y == 0].mean()),
                rec_error_test_abnormal=float(s_test[y == 1].mean()),
                seconds=time.perf_counter() - t0,
            )
            rows.append(row)
            print(",".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"data": data.spec, "epochs": args.epochs, "rows": rows}, fh, indent=1)
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
