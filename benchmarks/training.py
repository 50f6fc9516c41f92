"""Training throughput: entropy-ae's reference loop against a loop in the style of the paper's code.

Both train the same model (``entropy_ae.model.Autoencoder``) with Adam and MSE
on the same normal training images for the same number of epochs, in the same
process, alternating so that load from other processes affects both alike.

* ``entropy-ae``: ``entropy_ae.training.train_model`` -- the whole training set
  is one tensor on the device, batches are index slices of a seeded permutation.
* ``paper-style``: the structure of the authors' code (MedIAnomaly): a
  ``torch.utils.data.Dataset`` holding PIL images whose ``__getitem__``
  converts one image to a tensor and normalises it to [-1, 1] (torchvision's
  ``ToTensor`` + ``Normalize(0.5, 0.5)``, written here with PIL + numpy since
  torchvision is not a dependency) and returns a dict with image, label and
  name; a ``DataLoader(batch_size=64, shuffle=True)``; ``loss.item()`` every
  step for the running-average log.

Throughput is training images per second (forward + backward + step),
median over ``--repeats`` alternating repeats; the ratio is entropy-ae / paper-style.
``--memory-format`` also times the entropy-ae loop with contiguous (NCHW) conv
weights instead of its CPU default, channels-last
(``entropy_ae.training.loop.training_memory_format``), in the same alternation.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/training.py --data synthetic --epochs 2 --threads 1
    .venv/bin/python benchmarks/training.py --epochs 2 --threads 2 --memory-format
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from entropy_ae.data import load_data
from entropy_ae.model import Autoencoder
from entropy_ae.reproducibility import environment_info, resolve_device, seed_everything
from entropy_ae.training import loop as training
from entropy_ae.training import TrainConfig, train_model


def pil_to_normalised_tensor(image: Image.Image) -> torch.Tensor:
    """torchvision's ``Normalize((0.5,), (0.5,))(ToTensor()(image))`` for an 8-bit grey PIL image."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return (torch.from_numpy(array).unsqueeze(0) - 0.5) / 0.5


class PaperStyleDataset(Dataset):
    """Preloaded PIL images, transformed one at a time in ``__getitem__`` (as the paper's ``MedAD``)."""

    def __init__(self, images: np.ndarray):
        uint8 = np.round((images[:, 0] + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
        self.images = [Image.fromarray(a) for a in uint8]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"img": pil_to_normalised_tensor(self.images[index]), "label": 0, "name": str(index)}


def paper_style_training(images: np.ndarray, config: TrainConfig, num_workers: int) -> int:
    """Train like the paper's code; return the number of images trained on."""
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model = Autoencoder(config.latent_size, images.shape[-1]).to(device)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    loader = DataLoader(PaperStyleDataset(images), batch_size=config.batch_size, shuffle=True,
                        num_workers=num_workers, drop_last=False)
    seen = 0
    running = 0.0
    for _ in range(config.epochs):
        for batch in loader:
            x = batch["img"].to(device)
            if len(x) < 2:  # BatchNorm cannot train on one image; the paper's sizes never hit this
                continue
            x_hat, _ = model(x)
            loss = F.mse_loss(x_hat, x)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            running += loss.item()  # the paper's AverageMeter logging syncs every step
            seen += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen


def ours_training(data, config: TrainConfig) -> int:
    train_model(data, config, progress=False)
    if resolve_device(config.device).type == "cuda":
        torch.cuda.synchronize()
    n = len(data.train)
    per_epoch = n - (1 if n % config.batch_size == 1 else 0)
    return per_epoch * config.epochs


def contiguous_format():
    """The entropy-ae loop with contiguous conv weights (the format before channels-last)."""
    return mock.patch.object(training, "training_memory_format", lambda device: torch.contiguous_format)


def ours_pipeline(x_train: torch.Tensor, batch_size: int, seed: int) -> int:
    """One epoch of the entropy-ae loop's data path only: permutation and index gathers."""
    generator = torch.Generator().manual_seed(seed)
    seen = 0
    for idx in torch.randperm(len(x_train), generator=generator).split(batch_size):
        seen += len(x_train[idx.to(x_train.device)])
    return seen


def paper_style_pipeline(loader: DataLoader) -> int:
    """One epoch of the paper-style data path only: per-item PIL transform and collate."""
    seen = 0
    for batch in loader:
        seen += len(batch["img"])
    return seen


def timed(fn) -> float:
    start = time.perf_counter()
    seen = fn()
    return seen / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="synthetic", help="data spec for load_data (default: synthetic)")
    parser.add_argument("--image-size", type=int, default=64, help="image side (default: 64, the paper's)")
    parser.add_argument("--latent-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed training (default: 2)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; the median is reported")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda[:i] (default: cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--num-workers", type=int, default=0,
                        help="DataLoader workers of the paper-style loop (default: 0)")
    parser.add_argument("--memory-format", action="store_true",
                        help="also time the entropy-ae loop with contiguous instead of channels-last weights")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    data = load_data(args.data, image_size=args.image_size)
    config = TrainConfig(latent_size=args.latent_size, epochs=args.epochs, device=args.device)
    env = environment_info(resolve_device(args.device))
    print(f"data {data.name}: {len(data.train)} train images {data.image_size}x{data.image_size}; "
          f"latent_size={config.latent_size}, batch {config.batch_size}, "
          f"{config.epochs} epochs x {args.repeats} repeats")
    print(f"device {env['device']} ({env['device_name']}), torch {env['versions']['torch']}, "
          f"{args.threads} thread(s), paper-style num_workers={args.num_workers}")

    # One untimed short run of each first: allocator and kernel warm-up should not count.
    warm = TrainConfig(latent_size=args.latent_size, epochs=1, device=args.device)
    ours_training(data, warm)
    paper_style_training(data.train, warm, args.num_workers)

    if args.memory_format:
        with contiguous_format():
            ours_training(data, warm)
    ours, paper, nchw = [], [], []
    for _ in range(args.repeats):
        ours.append(timed(lambda: ours_training(data, config)))
        paper.append(timed(lambda: paper_style_training(data.train, config, args.num_workers)))
        if args.memory_format:
            with contiguous_format():
                nchw.append(timed(lambda: ours_training(data, config)))
    ours_ips, paper_ips = statistics.median(ours), statistics.median(paper)
    print(f"entropy-ae loop : {ours_ips:8.1f} images/s  (repeats: {', '.join(f'{v:.1f}' for v in ours)}; "
          f"conv weights {training.training_memory_format(resolve_device(args.device))})")
    print(f"paper-style loop: {paper_ips:8.1f} images/s  (repeats: {', '.join(f'{v:.1f}' for v in paper)})")
    print(f"ratio entropy-ae / paper-style: {ours_ips / paper_ips:.2f}x")
    if nchw:
        nchw_ips = statistics.median(nchw)
        print(f"entropy-ae loop, contiguous weights: {nchw_ips:8.1f} images/s  "
              f"(repeats: {', '.join(f'{v:.1f}' for v in nchw)}); default / contiguous {ours_ips / nchw_ips:.2f}x")

    # The data path alone, without the model: the ceiling each loop puts on a fast accelerator.
    device = resolve_device(args.device)
    x_train = torch.as_tensor(data.train, device=device)
    loader = DataLoader(PaperStyleDataset(data.train), batch_size=config.batch_size, shuffle=True,
                        num_workers=args.num_workers)
    ours_data = statistics.median(timed(lambda: ours_pipeline(x_train, config.batch_size, 0)) for _ in range(5))
    paper_data = statistics.median(timed(lambda: paper_style_pipeline(loader)) for _ in range(5))
    print(f"data path only  : entropy-ae {ours_data:,.0f} images/s, paper-style {paper_data:,.0f} images/s "
          f"(ratio {ours_data / paper_data:.0f}x)")
    epoch_seconds = len(data.train) / ours_ips
    print(f"entropy-ae epoch time on this device: {epoch_seconds:.2f} s for {len(data.train)} images")


if __name__ == "__main__":
    main()
