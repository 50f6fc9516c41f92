"""How far training many models at once can go on this CPU: one model on 1 and on 2 threads, and
two single-thread models side by side, all in one run.

The batched sweep's CPU strategy (``per_core``) runs one model per core. Its best case over
one-by-one training on all threads is ``2 * t(2 threads) / t(two side by side)``. When the cores
contend (shared caches, memory bandwidth, a VM's vCPUs), two side by side are each slower than
one alone and that bound falls; this script measures it. Training steps of the paper's AE
(64x64, batch 64, channels-last as the reference loop on CPU), random images, no data loading.

Usage::

    .venv/bin/python benchmarks/cpu_contention.py [--steps 30] [--repeats 2]
"""

from __future__ import annotations

import argparse
import threading
import time

import torch
import torch.nn.functional as F

from entropy_ae.model import Autoencoder


def _trainer(seed: int):
    torch.manual_seed(seed)
    model = Autoencoder(16, 64).to(memory_format=torch.channels_last).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(64, 1, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1

    def run(steps: int) -> None:
        for _ in range(steps):
            x_hat, _ = model(x)
            loss = F.mse_loss(x_hat, x)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

    return run


def _seconds_per_step(run, steps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    run(3)  # oneDNN primitives are made on the first steps
    start = time.perf_counter()
    run(steps)
    return (time.perf_counter() - start) / steps


def _side_by_side(runs, steps: int) -> float:
    """Seconds per step of each of ``runs`` trained at once, one thread each."""

    def work(run):
        torch.set_num_threads(1)  # per thread: intra-op threads of this worker
        run(steps)

    for run in runs:
        run(3)
    threads = [threading.Thread(target=work, args=(run,)) for run in runs]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (time.perf_counter() - start) / steps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per measurement")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    a, b = _trainer(0), _trainer(1)
    print("| repeat | 1 thread ms/step | 2 threads ms/step | scaling | two side by side ms/step (each) "
          "| slow-down of each | per-core bound 2*t2/t_pair |")
    print("|---|---|---|---|---|---|---|")
    for r in range(args.repeats):
        t1 = _seconds_per_step(a, args.steps, 1)
        t2 = _seconds_per_step(a, args.steps, 2)
        pair = _side_by_side([a, b], args.steps)
        print(f"| {r + 1} | {t1 * 1e3:.0f} | {t2 * 1e3:.0f} | {t1 / t2:.2f}x | {pair * 1e3:.0f} | {pair / t1:.2f}x "
              f"| {2 * t2 / pair:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
