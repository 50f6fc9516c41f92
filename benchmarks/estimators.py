"""Bias and run time of entropy_ae.estimators against npeet-plus (NPEET's code), in one run.

Usage (from the repository root):
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/estimators.py            # goal cases, about 4 minutes
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/estimators.py --only 'MI Gaussian I=1'  # KSG speed goals, 3 min
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/estimators.py --full     # + more seeds and N=1e5 at d=16
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/estimators.py --full --only 'd=16 N=1e+05'  # one heavy row
    .venv/bin/python benchmarks/estimators.py --seeds 1 --skip-npeet       # ours only, quickest
    .venv/bin/python benchmarks/estimators.py --gpu                        # the torch path on CUDA at N=1e6
    .venv/bin/python benchmarks/estimators.py --gpu --rehearse --gpu-n 30000   # the same code on the CPU
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/estimators.py --speed --threads 1,2   # MI speed grid, ~18 min
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/estimators.py --speed --quick        # its small cells, ~1 min
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/estimators.py --speed --only 'd=64 N=3e+04'   # one cell, 14 min

Truths: Gaussian entropy 0.5 d log(2 pi e); correlated Gaussians X ~ N(0, I_d),
Y = rho X + sqrt(1 - rho^2) E with I = 1 nat spread over d pairs; multivariate
Student-t (nu = 2, identity scale) with the closed-form MI. Times are wall
seconds of one call, both libraries on the same data on the same machine.
"classic" is KSG as in NPEET (``correction=None, norm="max"``); "default" is
``mutual_information(x, y)`` (Gaussian-copula correction; Euclidean balls on
radially Gaussianised variables up to a joint dimension of 12, max-norm above).
The last column is the speed ratio within this run: on a shared machine only
ratios from one run compare. npeet is single-threaded and ours uses both cores,
so a busy machine inflates our ratio.

``--speed`` times the default call ``mutual_information(x, y)`` against
``npeet_plus.mi`` on the grid d = 1, 4, 16, 64 per variable by N = 1e3 ... 1e5
(``SPEED_GRID``; Gaussian pairs with I = 1 nat), at each thread count of
``--threads``, interleaved: for every repeat npeet, then ours at each thread
count, on the same data. The per-shape caches (normal, radial and 1 vs 1 scores) are
cleared before every timed call, so each is a cold call. The ratio is npeet's median
time over ours (above 1: ours faster).

``--gpu`` times the torch (brute-force) path on CUDA at N = 1e6 instead (entropy
d = 4 and 16; MI 4 vs 4 and 16 vs 16, classic and default), with the bias,
and checks on 19,999 points (below the automatic GPU threshold, so ``device=None``
takes the CPU paths) that the CUDA path gives the CPU path's numbers, up to the float32
rounding of the CPU's MI brute force (about one count in 10^4 differs by one). Where
``--gpu-cpu-times`` is given, the CPU path is also timed at the full N (minutes).
"""

from __future__ import annotations

import argparse
import math
import platform
import time
import warnings

import numpy as np
import torch
from scipy.special import digamma, gammaln

from entropy_ae.estimators import entropy, mutual_information


def gaussian_pair(n, d, mi, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    rho = math.sqrt(1 - math.exp(-2 * mi / d))
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))


def t_entropy(p, nu):
    return (p / 2 * math.log(nu * math.pi) + gammaln(nu / 2) - gammaln((nu + p) / 2)
            + (nu + p) / 2 * (digamma((nu + p) / 2) - digamma(nu / 2)))


def t_pair(n, d, nu, seed):
    rng = np.random.default_rng(seed)
    scale = np.sqrt(nu / rng.chisquare(nu, n))[:, None]
    return scale * rng.standard_normal((n, d)), scale * rng.standard_normal((n, d))


def timed(fn):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = fn()
    return value, time.perf_counter() - start


def ratio(times, key):
    """Mean time of ours over npeet's, both measured in this run ('-' where either is missing)."""
    if not times[key] or not times["npeet"]:
        return "-"
    return f"{np.mean(times[key]) / np.mean(times['npeet']):.2f}"


def cases(full):
    seeds_extra = 2 if full else 0
    yield "entropy Gaussian", 4, 10_000, 10 + seeds_extra, "H"
    yield "entropy Gaussian", 16, 10_000, 1 + seeds_extra, "H"
    yield "entropy Gaussian", 64, 10_000, 1, "H"
    yield "entropy Gaussian", 4, 100_000, 1, "H"
    if full:  # ours alone: 31 s on 2 idle cores (57 s with one taken); npeet is not run (n*d too large)
        yield "entropy Gaussian", 16, 100_000, 1, "H"
    yield "MI Gaussian I=1", 4, 10_000, 3 + seeds_extra, "G"
    yield "MI Student-t nu=2", 4, 10_000, 3 + seeds_extra, "T"
    yield "MI Gaussian I=1", 16, 10_000, 1 + seeds_extra, "G"
    yield "MI Gaussian I=1", 64, 10_000, 1, "G"
    yield "MI Gaussian I=1", 4, 100_000, 1, "G"
    if full:
        yield "MI Gaussian I=1", 16, 100_000, 1, "G"


GPU_CASES = (("entropy Gaussian", 4, "H"), ("entropy Gaussian", 16, "H"),
             ("MI Gaussian I=1", 4, "G"), ("MI Gaussian I=1", 16, "G"))
#: Below the automatic GPU threshold (entropy_ae.estimators._neighbors.GPU_MIN_SAMPLES): device=None
#: takes the CPU trees / CPU torch path there, so the two paths can be compared on one sample.
CHECK_N = 19_999


def _calls(kind, d, n, seed):
    """Truth and {variant: fn(device)} of a case on fresh data."""
    if kind == "H":
        x = np.random.default_rng(seed).standard_normal((n, d))
        return 0.5 * d * math.log(2 * math.pi * math.e), {"default": lambda dev: entropy(x, device=dev)}
    x, y = gaussian_pair(n, d, 1.0, seed)
    return 1.0, {"classic": lambda dev: mutual_information(x, y, correction=None, norm="max", device=dev),
                 "default": lambda dev: mutual_information(x, y, device=dev)}


def gpu_main(args) -> None:
    """The torch path at large N on CUDA (or, with --rehearse, on the CPU), checked against the CPU path."""
    if torch.cuda.is_available():
        device = "cuda"
    elif args.rehearse:
        device = "cpu"
        print("REHEARSAL on the CPU (--rehearse): the torch path forced on the CPU; no GPU figures")
    else:
        raise SystemExit("--gpu needs CUDA; add --rehearse (and a small --gpu-n) to run the same code on the CPU")
    name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor()
    print(f"# torch path on {device} ({name}), torch {torch.__version__}; k=3, nats")
    print("| case | d | N | variant | truth | bias | torch-path time s | CPU-path time s | "
          f"CPU-path minus torch-path at N=min({CHECK_N}, N) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, d, kind in GPU_CASES:
        truth, calls = _calls(kind, d, args.gpu_n, seed=0)
        check_n = min(CHECK_N, args.gpu_n)
        _truth, checks = _calls(kind, d, check_n, seed=1)
        for variant, fn in calls.items():
            value, sec = timed(lambda: fn(device))
            if device == "cuda":
                torch.cuda.synchronize()
            cpu_sec = f"{timed(lambda: fn(None if device == 'cpu' else 'cpu'))[1]:.2f}" if args.gpu_cpu_times else "-"
            gap = timed(lambda: checks[variant](None))[0] - timed(lambda: checks[variant](device))[0]
            print(f"| {label} | {d}{' vs ' + str(d) if kind != 'H' else ''} | {args.gpu_n:.0e} | {variant} "
                  f"| {truth:.3f} | {value - truth:+.3f} | {sec:.2f} | {cpu_sec} | {gap:+.1e} |", flush=True)


#: (d per variable, N values) of ``--speed``. Left out, because npeet alone would take about 13 minutes and
#: over 2 hours (its time grows at least as N^2 there; 64 vs 64 at N = 3e4 alone takes it 12 minutes):
#: 16 vs 16 and 64 vs 64 at N = 1e5.
SPEED_GRID = ((1, (1e3, 3e3, 1e4, 3e4, 1e5)), (4, (1e3, 3e3, 1e4, 3e4, 1e5)), (16, (1e3, 3e3, 1e4, 3e4)),
              (64, (1e3, 3e3, 1e4, 3e4)))
#: Repeats per cell (median time): many where a call takes milliseconds (its time varies most), fewer where
#: one npeet call takes long.
SPEED_REPEATS = ((0.05, 21), (0.5, 5), (5.0, 3), (math.inf, 1))


def _cold(fn):
    """fn with the per-shape caches of entropy_ae.estimators cleared first (a cold call)."""
    from entropy_ae.estimators import _one_vs_one, _validation

    def call():
        _validation._chi_scores.cache_clear()
        _validation._normal_scores.cache_clear()
        _one_vs_one._form.cache_clear()
        return fn()
    return call


def speed_main(args) -> None:
    """The default MI call against npeet on SPEED_GRID, at each of --threads, interleaved per repeat."""
    import npeet_plus
    from threadpoolctl import threadpool_limits

    threads = [int(t) for t in args.threads.split(",")]
    print(f"# compiling (or loading the cache of) the numba kernels, untimed: {warm_up():.1f} s")
    print(f"# {platform.node()} {platform.processor()} torch {torch.__version__} numpy {np.__version__}; "
          f"default call mutual_information(x, y), k=3, Gaussian pairs with I = 1 nat; median of the repeats")
    head = " | ".join(f"ours {t} thr s | npeet/ours {t} thr" for t in threads)
    print(f"| d | N | repeats | truth | npeet bias | ours bias | npeet s | {head} |")
    print("|---|---|---|---|---|---|---|" + "---|---|" * len(threads))
    for d, sizes in SPEED_GRID:
        for n in sizes:
            n = int(n)
            if (args.quick and (n > 10_000 or d > 16)) or (args.only and args.only not in f"d={d} N={n:.0e}"):
                continue
            x, y = gaussian_pair(n, d, 1.0, 0)
            npeet_times, ours = [], {t: [] for t in threads}
            repeats = 1
            while len(npeet_times) < repeats:
                npeet_value, sec = timed(lambda: npeet_plus.mi(x, y, k=3, base=math.e))
                npeet_times.append(sec)
                if len(npeet_times) == 1 and not args.quick:
                    repeats = next(r for limit, r in SPEED_REPEATS if sec < limit)
                for t in threads:
                    torch.set_num_threads(t)
                    with threadpool_limits(t):
                        value, sec = timed(_cold(lambda: mutual_information(x, y)))
                    ours[t].append(sec)
            cells = " | ".join(f"{np.median(ours[t]):.3f} | {np.median(npeet_times) / np.median(ours[t]):.2f}"
                               for t in threads)
            print(f"| {d} vs {d} | {n:.0e} | {repeats} | 1.000 | {npeet_value - 1:+.3f} | {value - 1:+.3f} "
                  f"| {np.median(npeet_times):.3f} | {cells} |", flush=True)


def warm_up() -> float:
    """Seconds to compile (first run) or load the compiled kernels, on small inputs of every path."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # 1 vs 1 (sweep, then grid k-NN), kd-tree and grid counts (joint 4-D, 6-D), compiled brute force
        # (4-D, 10-D Euclidean, 16-D max-norm), and the entropy's kd-tree.
        for d, n in ((1, 300), (1, 6000), (2, 2000), (3, 4000), (2, 300), (5, 300), (8, 300)):
            x, y = gaussian_pair(n, d, 1.0, 0)
            mutual_information(x, y)
            mutual_information(x, y, correction=None, norm="max")
        entropy(gaussian_pair(2000, 4, 1.0, 0)[0])
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="more seeds and the N=1e5, d=16 rows (entropy, MI)")
    parser.add_argument("--seeds", type=int, default=None, help="override the number of seeds per case")
    parser.add_argument("--only", default=None, help="run only cases whose label contains this, e.g. 'MI' or 'N=1e+05'")
    parser.add_argument("--skip-npeet", action="store_true", help="time only entropy_ae")
    parser.add_argument("--npeet-max-n-d", type=float, default=1.4e6,
                        help="skip npeet where n times the (joint) dimension exceeds this: the d=16, N=1e5 rows, "
                             "where it does not finish in 40 s")
    parser.add_argument("--speed", action="store_true", help="the default MI against npeet on SPEED_GRID (above)")
    parser.add_argument("--threads", default="1,2", help="--speed: thread counts to time ours at, e.g. '1,2'")
    parser.add_argument("--quick", action="store_true", help="--speed: only N <= 1e4 and d <= 16, one repeat")
    parser.add_argument("--gpu", action="store_true", help="time the torch path on CUDA at --gpu-n (see above)")
    parser.add_argument("--gpu-n", type=float, default=1e6, help="--gpu: sample size (default 1e6)")
    parser.add_argument("--gpu-cpu-times", action="store_true", help="--gpu: also time the CPU path at --gpu-n")
    parser.add_argument("--rehearse", action="store_true", help="--gpu without CUDA: run the torch path on the CPU")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "2")))
    if args.gpu:
        args.gpu_n = int(args.gpu_n)
        return gpu_main(args)
    if args.speed:
        return speed_main(args)
    import npeet_plus

    print(f"# compiling (or loading the cache of) the numba kernels, untimed: {warm_up():.1f} s")
    print(f"# {platform.node()} {platform.processor()} torch threads={torch.get_num_threads()} "
          f"torch {torch.__version__} numpy {np.__version__}; k=3, nats")
    print("| case | d | N | truth | ours bias (classic) | ours bias (default) | npeet bias | ours time s "
          "(classic / default) | npeet time s | time ours/npeet (classic / default) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, d, n, seeds, kind in cases(args.full):
        if args.only and args.only not in f"{name} d={d} N={n:.0e}":
            continue
        seeds = args.seeds or seeds
        rows = {"classic": [], "default": [], "npeet": []}
        times = {"classic": [], "default": [], "npeet": []}
        for seed in range(seeds):
            if kind == "H":
                x = np.random.default_rng(seed).standard_normal((n, d))
                truth = 0.5 * d * math.log(2 * math.pi * math.e)
                ours = {"default": lambda: entropy(x)}
                npeet = lambda: npeet_plus.entropy(x, k=3, base=math.e)  # noqa: E731
                work = n * d
            else:
                x, y = gaussian_pair(n, d, 1.0, seed) if kind == "G" else t_pair(n, d, 2, seed)
                truth = 1.0 if kind == "G" else 2 * t_entropy(d, 2) - t_entropy(2 * d, 2)
                ours = {"classic": lambda: mutual_information(x, y, correction=None, norm="max"),
                        "default": lambda: mutual_information(x, y)}
                npeet = lambda: npeet_plus.mi(x, y, k=3, base=math.e)  # noqa: E731
                work = n * 2 * d
            for key, fn in ours.items():
                value, sec = timed(fn)
                rows[key].append(value - truth)
                times[key].append(sec)
            if not args.skip_npeet and work <= args.npeet_max_n_d:
                value, sec = timed(npeet)
                rows["npeet"].append(value - truth)
                times["npeet"].append(sec)

        def fmt(key, what):
            vals = (rows if what == "bias" else times)[key]
            if not vals:
                return "-"
            return f"{np.mean(vals):+.3f}" if what == "bias" else f"{np.mean(vals):.2f}"

        print(f"| {name} ({seeds} seed{'s' if seeds > 1 else ''}) | {d}{' vs ' + str(d) if kind != 'H' else ''} "
              f"| {n:.0e} | {truth:.3f} | {fmt('classic', 'bias')} | {fmt('default', 'bias')} "
              f"| {fmt('npeet', 'bias')} | {fmt('classic', 'time')} / {fmt('default', 'time')} "
              f"| {fmt('npeet', 'time')} | {ratio(times, 'classic')} / {ratio(times, 'default')} |", flush=True)


if __name__ == "__main__":
    main()
