"""Latent-size sweep speed: batched training (entropy_ae.training.batched) against one model at a time.

Three parts, all in one run (ratios are only compared within a run):

* CPU (default): ``--latent-sizes`` x ``--seeds`` (4 x 2) trained three ways
  in rotating order, same process: one by one with this toolkit's own
  ``train_model`` on ``--threads`` threads; ``train_models_batched`` with its
  CPU default (``per_core``: one model per core, one thread each); and with
  the ``stacked`` strategy (the GPU path). Prints the wall times, the ratios
  and how far the results are from the one-by-one runs. ``--background-load
  N`` keeps N busy processes running meanwhile, as on a shared machine.
* ``--gpu``: the full Table-1 sweep (8 latent sizes x 3 seeds x 250 epochs,
  4000 images of 64x64, batch 64) batched, against the paper-style loop
  (DataLoader + per-item PIL transform, ``benchmarks/training.py``) run for
  every model. The paper-style loop is timed for ``--paper-epochs`` epochs per
  model and scaled linearly to the full epoch count (printed as such). Prints
  both times, the ratio, the device and the mean GPU utilisation sampled
  during the batched sweep.
* ``--gpu --variants fp32,bf16,...``: instead, each GPU switch of
  ``BatchedOptions`` (bf16 autocast, channels-last, torch.compile, CUDA
  graphs, or combinations with "+") timed for ``--variant-epochs`` epochs of
  the whole sweep, with its projected full-sweep time, utilisation, peak
  memory and how far its final losses are from float32 (float32 runs twice:
  that gap is the noise floor). Pick what pays, then run ``--gpu`` with it.
* ``--gpu --device cpu --rehearse``: the GPU code path on the CPU with tiny
  settings, to check the script before spending GPU time (no GPU figures).
* Always: FLOPs per image per training step of each model (counted with
  ``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix
  products, forward + backward), times the image-steps of the sweep, against
  the device peaks in ``--peak-tflops``: the time the sweep would take at 100%
  of peak, i.e. the hardware limit.

Usage::

    .venv/bin/python benchmarks/sweep.py --threads 2          # CPU, ~2-5 min on a 2-core machine
    .venv/bin/python benchmarks/sweep.py --threads 2 --background-load 1   # the same, one core taken
    .venv/bin/python benchmarks/sweep.py --gpu                # needs CUDA
    .venv/bin/python benchmarks/sweep.py --gpu --variants fp32,bf16,channels-last,bf16+channels-last,fused-adam,compile,cuda-graphs
    .venv/bin/python benchmarks/sweep.py --gpu --device cpu --rehearse --data 'synthetic[n_train=64]' \
        --image-size 16 --latent-sizes 2,4 --seeds 0 --epochs 2 --paper-epochs 1 --paper-runs 1
    .venv/bin/python benchmarks/sweep.py --flops-only         # the hardware-limit table only
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from entropy_ae.training.batched import BatchedOptions, estimate_group_bytes, train_models_batched
from entropy_ae.data import load_data
from entropy_ae.model import Autoencoder
from entropy_ae.reproducibility import environment_info, resolve_device
from entropy_ae.training import TrainConfig, train_model

TABLE1_LATENT_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
# Dense peaks of one H100 SXM (NVIDIA data sheet): FP32 (CUDA cores), TF32 and BF16 tensor cores.
DEFAULT_PEAKS = "h100-fp32=67,h100-tf32=494,h100-bf16=989"


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _paper_style_training():
    """``paper_style_training`` from benchmarks/training.py (one reference loop, not a copy)."""
    path = Path(__file__).with_name("training.py")
    spec = importlib.util.spec_from_file_location("_benchmarks_training", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.paper_style_training


# ----------------------------------------------------------------------------------------- FLOPs


def flops_per_image_step(latent_size: int, image_size: int) -> float:
    """FLOPs of one image in one training step (forward + backward; Adam and BatchNorm not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = Autoencoder(latent_size, image_size).train()
    x = torch.zeros(2, 1, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        x_hat, _ = model(x)
        torch.nn.functional.mse_loss(x_hat, x).backward()
    return counter.get_total_flops() / 2


def images_per_epoch(n: int, batch_size: int) -> int:
    return n - (1 if n % batch_size == 1 else 0)  # the reference loop skips a final batch of one


def hardware_limit(latent_sizes, n_seeds, epochs, n_images, image_size, batch_size, peaks) -> float:
    image_steps = images_per_epoch(n_images, batch_size) * epochs
    flops = {d: flops_per_image_step(d, image_size) for d in latent_sizes}
    total = sum(flops[d] for d in latent_sizes) * n_seeds * image_steps
    print(f"FLOPs per image per training step (fwd+bwd, {image_size}x{image_size}): "
          + ", ".join(f"d={d}: {flops[d] / 1e6:.1f} M" for d in latent_sizes))
    print(f"sweep: {len(latent_sizes)} latent sizes x {n_seeds} seeds x {epochs} epochs x {image_steps // epochs} "
          f"images = {len(latent_sizes) * n_seeds * image_steps:.3g} image-steps, {total / 1e12:.2f} TFLOP")
    for name, tflops in peaks.items():
        print(f"  at 100% of {name} peak ({tflops:g} TFLOP/s): {total / (tflops * 1e12):.3f} s")
    return total


# ------------------------------------------------------------------------------------------- CPU


def _same(a, b) -> bool:
    (ma, ha), (mb, hb) = a, b
    sa, sb = ma.state_dict(), mb.state_dict()
    return ha == hb and all(torch.equal(sa[k], sb[k]) for k in sa)


def _max_loss_gap(a, b) -> float:
    """Largest relative difference between two runs' final training losses."""
    return max(abs(ha[-1] - hb[-1]) / abs(hb[-1]) for (_ma, ha), (_mb, hb) in zip(a, b))


class _BackgroundLoad:
    """``n`` busy processes, to time the paths on a machine whose cores are not all free."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        code = "while True: pass"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
            proc.wait()


def cpu_benchmark(args) -> None:
    data = load_data(args.data, image_size=args.image_size)
    configs = [TrainConfig(latent_size=d, seed=s, epochs=args.epochs, batch_size=args.batch_size, device="cpu")
               for d in _ints(args.latent_sizes) for s in _ints(args.seeds)]
    threads = torch.get_num_threads()
    print(f"data {data.name}: {len(data.train)} train images {data.image_size}x{data.image_size}; "
          f"{len(configs)} models (latent sizes {args.latent_sizes} x seeds {args.seeds}), "
          f"{args.epochs} epochs, batch {args.batch_size}, {threads} torch thread(s), "
          f"{args.background_load} busy background process(es)")
    paths = {
        # The toolkit's own loop, one model after another, on all the threads.
        "one-by-one": lambda d: [train_model(d, c, progress=False) for c in configs],
        # The CPU default of train_models_batched: one model per core at a time.
        "per-core": lambda d: train_models_batched(d, configs, progress=False),
    }
    if not args.skip_stacked:
        paths["stacked"] = lambda d: train_models_batched(d, configs, progress=False,
                                                          options=BatchedOptions(strategy="stacked"))
    # Untimed warm-up of every path with the timed shapes, one step each (allocator, oneDNN
    # primitives are created per shape: the first step of a new shape is slow).
    one_step = dataclasses.replace(data, train=data.train[: args.batch_size])
    for run in paths.values():
        run(one_step)

    times = {name: [] for name in paths}
    results = {}
    names = list(paths)
    with _BackgroundLoad(args.background_load):
        for r in range(args.repeats):
            order = names[r % len(names):] + names[: r % len(names)]  # rotate: no path always goes first
            for name in order:
                start = time.perf_counter()
                results[name] = paths[name](data)
                times[name].append(time.perf_counter() - start)
                print(f"  {name:10s} {times[name][-1]:8.1f} s", flush=True)
    base = "one-by-one"
    for label, pick in (("median", statistics.median), ("min", min)):
        cells = ", ".join(f"{name} {pick(times[name]):.1f} s" for name in names)
        ratios = ", ".join(f"{name} {pick(times[base]) / pick(times[name]):.2f}x" for name in names if name != base)
        print(f"{label:6s}: {cells}; speed-up over one-by-one: {ratios}")
    # per-core runs the reference loop at 1 thread: bit-identical to train_model at 1 thread (tested in
    # tests/test_batched.py); against the one-by-one runs at `threads` threads only the rounding differs.
    print(f"largest relative gap of a final loss, per-core vs one-by-one at {threads} thread(s): "
          f"{_max_loss_gap(results['per-core'], results[base]):.1e}")
    if "stacked" in results:
        print(f"stacked bit-identical to one-by-one: {all(map(_same, results['stacked'], results[base]))}")
    n = len(data.train)
    hardware_limit(_ints(args.latent_sizes), len(_ints(args.seeds)), args.epochs, n, args.image_size,
                   args.batch_size, _peaks(args.peak_tflops))


# ------------------------------------------------------------------------------------------- GPU


class _UtilisationSampler:
    """Mean GPU utilisation (%) from ``nvidia-smi`` (or ``torch.cuda.utilization``) sampled in a thread."""

    def __init__(self, device: torch.device, interval: float = 0.5):
        self.device, self.interval, self.samples = device, interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> float | None:
        if self.device.type != "cuda":
            return None
        index = self.device.index or 0
        try:
            return float(torch.cuda.utilization(index))
        except Exception:  # needs pynvml; fall back to nvidia-smi
            pass
        if shutil.which("nvidia-smi") is None:
            return None
        out = subprocess.run(["nvidia-smi", "-i", str(index), "--query-gpu=utilization.gpu",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
        try:
            return float(out.stdout.strip().splitlines()[0])
        except (ValueError, IndexError):
            return None

    def _run(self):
        while not self._stop.wait(self.interval):
            value = self._sample()
            if value is not None:
                self.samples.append(value)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


#: ``--variants`` names and the BatchedOptions switches each turns on ("+" combines them).
VARIANTS = {
    "fp32": {},
    "bf16": {"autocast_bf16": True},
    "channels-last": {"channels_last": True},
    "compile": {"compile": True},
    "cuda-graphs": {"cuda_graphs": True},
    "fused-adam": {"fused_adam": True},
}


def variant_options(name: str) -> BatchedOptions:
    """``BatchedOptions`` of a ``--variants`` entry such as ``"bf16+channels-last"`` (stacked strategy)."""
    switches = {"strategy": "stacked", "channels_last": False}
    for part in name.split("+"):
        if part not in VARIANTS:
            raise SystemExit(f"unknown variant {part!r} in {name!r}; choose from {', '.join(VARIANTS)} "
                             f"(combine with '+', e.g. bf16+channels-last)")
        switches.update(VARIANTS[part])
    return BatchedOptions(**switches)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else "n/a (CPU)"


def _timed_sweep(data, configs, device, options, max_models_per_group):
    """Wall time, mean GPU utilisation, peak memory and results of one batched sweep (after a sync)."""
    _sync(device)
    _reset_peak(device)
    with _UtilisationSampler(device) as util:
        start = time.perf_counter()
        results = train_models_batched(data, configs, max_models_per_group=max_models_per_group, progress=False,
                                       options=options)
        _sync(device)
        seconds = time.perf_counter() - start
    return seconds, util.mean, _peak_gib(device), results


def _fmt_util(value) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def _gpu_device(args) -> torch.device:
    device = resolve_device(args.device)
    if device.type == "cuda":
        return device
    if device.type == "cpu" and args.rehearse:
        print("REHEARSAL on the CPU (--rehearse): checks the GPU code path end to end; "
              "times, utilisation and memory here say nothing about a GPU")
        return device
    raise SystemExit(f"--gpu needs a CUDA device (got {args.device!r}, CUDA available: "
                     f"{torch.cuda.is_available()}); --device cpu --rehearse runs the same code on the CPU")


def variant_table(args) -> None:
    """Time each ``--variants`` entry for ``--variant-epochs`` epochs of the whole sweep (after a
    1-epoch warm-up that also compiles), and compare its final losses with plain float32.

    The float32 sweep runs twice: the gap between its two runs is the noise floor (cuDNN picks
    algorithms per run), against which the other variants' loss gaps are judged.
    """
    device = _gpu_device(args)
    data = load_data(args.data, image_size=args.image_size)
    latent_sizes, seeds = _ints(args.latent_sizes), _ints(args.seeds)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    if "fp32" not in names:
        names.insert(0, "fp32")
    print(f"{_device_line(device)}; {len(data.train)} train images {data.image_size}x{data.image_size}; "
          f"{len(latent_sizes) * len(seeds)} models; {args.variant_epochs} timed epoch(s) per variant")
    print("| variant | s per epoch | projected sweep of " f"{args.epochs} epochs (s) | GPU util | peak memory "
          "| max rel. final-loss gap to fp32 |")
    print("|---|---|---|---|---|---|")
    reference = None
    for name in names + (["fp32"] if device.type == "cuda" else []):
        options = variant_options(name)
        if options.cuda_graphs and device.type != "cuda":
            print(f"| {name} | skipped: CUDA graphs need CUDA | | | | |")
            continue

        def configs(epochs):
            return [TrainConfig(latent_size=d, seed=s, epochs=epochs, batch_size=args.batch_size,
                                device=str(device)) for d in latent_sizes for s in seeds]

        _timed_sweep(data, configs(1), device, options, args.max_models_per_group)  # warm-up, compiles
        seconds, util, peak, results = _timed_sweep(data, configs(args.variant_epochs), device, options,
                                                    args.max_models_per_group)
        final = [history[-1] for _model, history in results]
        if reference is None:
            reference, gap = final, "reference"
        else:
            gap = f"{max(abs(a - b) / abs(b) for a, b in zip(final, reference)):.1e}"
        per_epoch = seconds / args.variant_epochs
        print(f"| {name} | {per_epoch:.3f} | {per_epoch * args.epochs:.1f} | {_fmt_util(util)} | {peak} | {gap} |",
              flush=True)
    print("the last fp32 row is a second float32 run: its gap is the noise floor" if device.type == "cuda"
          else "(CPU: float32 is deterministic, so the noise floor is 0)")


def _device_line(device: torch.device) -> str:
    env = environment_info(device)
    return f"device {env['device']} ({env['device_name']}), torch {env['versions']['torch']}"


def gpu_benchmark(args) -> None:
    device = _gpu_device(args)
    data = load_data(args.data, image_size=args.image_size)
    latent_sizes, seeds = _ints(args.latent_sizes), _ints(args.seeds)
    configs = [TrainConfig(latent_size=d, seed=s, epochs=args.epochs, batch_size=args.batch_size, device=str(device))
               for d in latent_sizes for s in seeds]
    options = BatchedOptions(strategy="stacked", autocast_bf16=args.bf16, compile=args.compile,
                             cuda_graphs=args.cuda_graphs, channels_last=args.channels_last,
                             fused_adam=args.fused_adam)
    print(_device_line(device))
    print(f"data {data.name}: {len(data.train)} train images {data.image_size}x{data.image_size}; {len(configs)} "
          f"models, {args.epochs} epochs, batch {args.batch_size}; options {options}")
    per_model = estimate_group_bytes(1, args.batch_size, args.image_size, max(latent_sizes))
    print(f"estimated memory per model {per_model / 2**20:.0f} MiB; all {len(configs)}: "
          f"{len(configs) * per_model / 2**30:.2f} GiB")

    # Warm-up with the timed group shapes (one epoch): cuDNN autotuning and compilation happen here.
    warm = [dataclasses.replace(c, epochs=1) for c in configs]
    _timed_sweep(data, warm, device, options, args.max_models_per_group)
    t_batched, util, peak, _results = _timed_sweep(data, configs, device, options, args.max_models_per_group)
    print(f"batched sweep: {t_batched:.1f} s, mean GPU utilisation {_fmt_util(util)}, peak memory {peak}")

    paper_style_training = _paper_style_training()
    paper_configs = configs[: args.paper_runs] if args.paper_runs else configs
    with _UtilisationSampler(device) as util_paper:
        start = time.perf_counter()
        for c in paper_configs:
            short = TrainConfig(latent_size=c.latent_size, seed=c.seed, epochs=args.paper_epochs,
                                batch_size=c.batch_size, device=c.device)
            paper_style_training(data.train, short, args.num_workers)
        _sync(device)
        t_measured = time.perf_counter() - start
    t_paper = t_measured * (len(configs) / len(paper_configs)) * (args.epochs / args.paper_epochs)
    print(f"paper-style loop: {t_measured:.1f} s measured for {len(paper_configs)} model(s) x {args.paper_epochs} "
          f"epoch(s) (GPU utilisation {_fmt_util(util_paper.mean)}); "
          f"scaled to {len(configs)} x {args.epochs} epochs: {t_paper:.1f} s")
    print(f"speed-up batched vs paper-style: {t_paper / t_batched:.1f}x")
    total = hardware_limit(latent_sizes, len(seeds), args.epochs, len(data.train), args.image_size,
                           args.batch_size, _peaks(args.peak_tflops))
    print(f"achieved: {total / t_batched / 1e12:.2f} TFLOP/s")


def _peaks(text: str) -> dict[str, float]:
    out = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        out[name.strip()] = float(value)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", action="store_true", help="the full Table-1 sweep on CUDA vs the paper-style loop")
    parser.add_argument("--flops-only", action="store_true", help="print the FLOPs / hardware-limit table only")
    parser.add_argument("--data", default=None,
                        help="data spec (default: CPU 'synthetic[n_train=192]', GPU 'synthetic[n_train=4000]')")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--latent-sizes", default=None, help="default: CPU 2,8,32,128; GPU 1,2,4,...,128")
    parser.add_argument("--seeds", default=None, help="default: CPU 0,1; GPU 0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="default: CPU 2, GPU 250")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3,
                        help="CPU: alternating repeats; median and min reported (min resists load from others)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--background-load", type=int, default=0,
                        help="CPU: busy processes running during the timed part (a shared machine)")
    parser.add_argument("--skip-stacked", action="store_true", help="CPU: do not time the stacked strategy")
    parser.add_argument("--device", default="cuda", help="GPU mode: cuda or cuda:<i>")
    parser.add_argument("--max-models-per-group", type=int, default=None, help="GPU mode: default automatic")
    parser.add_argument("--paper-epochs", type=int, default=5, help="GPU: epochs timed per paper-style run")
    parser.add_argument("--paper-runs", type=int, default=3, help="GPU: paper-style runs timed (0 = all)")
    parser.add_argument("--num-workers", type=int, default=0, help="GPU: DataLoader workers of the paper-style loop")
    parser.add_argument("--bf16", action="store_true", help="GPU: bf16 autocast")
    parser.add_argument("--compile", action="store_true", help="GPU: torch.compile")
    parser.add_argument("--cuda-graphs", action="store_true", help="GPU: torch.compile(mode='reduce-overhead')")
    parser.add_argument("--channels-last", action="store_true", help="GPU: channels-last memory format")
    parser.add_argument("--fused-adam", action="store_true", help="GPU: torch.optim.Adam(fused=True)")
    parser.add_argument("--variants", default=None,
                        help="GPU: instead of the full comparison, time these BatchedOptions variants for "
                             f"--variant-epochs epochs each, e.g. 'fp32,bf16,channels-last,bf16+channels-last,"
                             f"compile,cuda-graphs' (names: {', '.join(VARIANTS)})")
    parser.add_argument("--variant-epochs", type=int, default=3, help="GPU --variants: timed epochs per variant")
    parser.add_argument("--rehearse", action="store_true",
                        help="allow --gpu with --device cpu: run the GPU code path on the CPU to check it "
                             "(use tiny --data/--epochs; no GPU figures)")
    parser.add_argument("--peak-tflops", default=DEFAULT_PEAKS, help=f"name=TFLOP/s,... (default {DEFAULT_PEAKS})")
    args = parser.parse_args(argv)

    gpu = args.gpu
    args.data = args.data or ("synthetic[n_train=4000]" if gpu else "synthetic[n_train=192]")
    args.latent_sizes = args.latent_sizes or (",".join(map(str, TABLE1_LATENT_SIZES)) if gpu else "2,8,32,128")
    args.seeds = args.seeds or ("0,1,2" if gpu else "0,1")
    args.epochs = args.epochs or (250 if gpu else 2)
    torch.set_num_threads(args.threads)
    if args.flops_only:
        n = 4000 if gpu else int(load_data(args.data, image_size=args.image_size).train.shape[0])
        hardware_limit(_ints(args.latent_sizes), len(_ints(args.seeds)), args.epochs, n, args.image_size,
                       args.batch_size, _peaks(args.peak_tflops))
    elif gpu and args.variants:
        variant_table(args)
    elif gpu:
        gpu_benchmark(args)
    else:
        cpu_benchmark(args)


if __name__ == "__main__":
    main()
