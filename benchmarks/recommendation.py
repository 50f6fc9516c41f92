"""How good is the latent-size recommendation? Regret against the oracle, fixed sizes and other rules.

For each dataset it sweeps every latent size over several seeds (resumable, through
``analysis.sweep.run_sweep``) and compares the latent size each choice makes:

* every rule of ``analysis.recommend.RULES`` (normal data only; the default first),
* the fixed d = 16 (the usual default),
* the best fixed d on the development datasets (the d with the least mean regret there),

by its **regret**: the AUROC points (x100) lost against the oracle, the size with the highest
seed-mean test AUROC. Test labels judge; they never choose. The regret's 90 % interval comes from a
bootstrap over seeds: each replicate resamples the seeds with replacement and recomputes both
the rule's choice (from the resampled normal-only columns) and the oracle (from the resampled
AUROC), so the rule's own noise and the oracle's are both in the interval.

Datasets have a role:

``dev``
    where the rules' thresholds were chosen (``--tune`` searches them there), and where the best
    fixed d is picked;
``judge``
    never used to choose anything: the headline table.

Datasets whose AUROC is >= 97 % at most latent sizes are "saturated": they rank nothing and are
reported apart. The synthetic sets' lesions (a block of detail bumps set to one sign, every value
within the normal range) differ in kind from every pseudo-anomaly family the rule scores with.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/recommendation.py --out runs/bench-recommendation
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/recommendation.py --out runs/bench-recommendation --tune
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import recommend as rec  # noqa: E402
from analysis.sweep import run_sweep  # noqa: E402
from entropy_ae.data import load_data  # noqa: E402
from entropy_ae.io import atomic_write_json, atomic_write_text  # noqa: E402
from entropy_ae.options import parse_int_list  # noqa: E402
from entropy_ae.reproducibility import environment_info  # noqa: E402

# (spec, epochs, role). 1000 normal training images at 32x32 for the synthetic sets.
DATASETS = [
    ("synthetic:shortcut", 60, "dev"),
    ("synthetic:shortcut[k=3,detail=0.35]", 60, "dev"),
    ("synthetic:shortcut[detail_grid=5,detail_width=0.15]", 60, "judge"),
    ("synthetic:shortcut[k=4,lesion_level=0.8]", 60, "judge"),
    ("digits:0", 60, "judge"),
]
QUICK_DATASETS = [("synthetic:shortcut[n_train=64,n_val=24,n_test=32]", 1, "dev"),
                  ("synthetic:shortcut[n_train=64,n_val=24,n_test=32,k=3]", 1, "judge")]
FIXED_D = 16
SATURATED_AUROC = 0.97
BOOTSTRAP = 200


def sweep(spec: str, epochs: int, args) -> pd.DataFrame:
    data = load_data(spec, image_size=args.image_size)
    table = run_sweep(data, args.latent_sizes, args.seeds, epochs, args.out, image_size=args.image_size,
                      progress=not args.quiet)
    return table[table["dataset"] == data.name].reset_index(drop=True)


def choose(table: pd.DataFrame, rule: str) -> int | None:
    """The latent size ``rule`` picks on ``table`` (it reads normal-only columns); None when it cannot."""
    try:
        return int(rec.recommend(table, rule)["latent_size"])
    except ValueError:
        return None


def regret(table: pd.DataFrame, d) -> float:
    auroc = table.groupby("latent_size")["auroc"].mean() * 100
    return float(auroc.max() - auroc[d]) if d in auroc.index else float("nan")


def bootstrap(table: pd.DataFrame, pick, rng: np.random.Generator, n: int = BOOTSTRAP) -> tuple[float, float]:
    """90 % interval of the regret of ``pick(table) -> d`` over seeds resampled with replacement."""
    seeds = sorted(table["seed"].unique())
    values = []
    for _ in range(n):
        drawn = rng.choice(seeds, size=len(seeds), replace=True)
        # relabel the draws so a seed drawn twice counts twice in every seed mean and standard error
        sample = pd.concat([table[table["seed"] == s].assign(seed=i) for i, s in enumerate(drawn)], ignore_index=True)
        d = pick(sample)
        values.append(regret(sample, d) if d is not None else np.nan)
    low, high = np.nanpercentile(values, [5, 95])
    return float(low), float(high)


def evaluate(tables: dict, roles: dict, n_bootstrap: int = BOOTSTRAP, seed: int = 0) -> list[dict]:
    """One row per (dataset, choice): the chosen d, its regret and the regret's bootstrap interval."""
    rng = np.random.default_rng(seed)
    dev = [name for name in tables if roles[name] == "dev" and not saturated(tables[name])]
    sizes = sorted(int(d) for d in next(iter(tables.values()))["latent_size"].unique())
    best_fixed = min(sizes, key=lambda d: np.nanmean([regret(tables[n], d) for n in dev])) if dev else FIXED_D
    rows = []
    for name, table in tables.items():
        picks = {rule: (lambda t, rule=rule: choose(t, rule)) for rule in
                 sorted(rec.RULES, key=lambda r: r != rec.DEFAULT_CRITERION)}
        picks[f"fixed d={FIXED_D}"] = lambda t: FIXED_D
        picks[f"best fixed on dev (d={best_fixed})"] = lambda t: best_fixed
        auroc = table.groupby("latent_size")["auroc"].mean() * 100
        for choice, pick in picks.items():
            d = pick(table)
            low, high = bootstrap(table, pick, rng, n_bootstrap)
            rows.append({"dataset": name, "role": roles[name], "saturated": saturated(table), "choice": choice,
                         "d": d, "regret": regret(table, d) if d is not None else float("nan"),
                         "regret_low": low, "regret_high": high, "oracle_d": int(auroc.idxmax()),
                         "oracle_auroc": float(auroc.max())})
    return rows


def saturated(table: pd.DataFrame) -> bool:
    auroc = table.groupby("latent_size")["auroc"].mean()
    return bool((auroc >= SATURATED_AUROC).mean() > 0.5)


def tune(tables: dict, roles: dict) -> dict:
    """Grid-search the two_sided rule's three settings on the dev datasets (mean regret)."""
    dev = {n: t for n, t in tables.items() if roles[n] == "dev" and not saturated(t)}
    grid = {"leak_weight": (0.25, 0.5, 1.0, 2.0, 4.0), "se_factor": (0.0, 0.5, 1.0, 2.0),
            "held_min": (0.25, 0.5, 0.75)}
    scores = []
    for weight, se, held in itertools.product(*grid.values()):
        options = {"leak_weight": weight, "se_factor": se, "held_min": held}
        values = []
        for table in dev.values():
            try:
                values.append(regret(table, rec.recommend(table, "two_sided", **options)["latent_size"]))
            except ValueError:
                values.append(np.nan)
        scores.append((float(np.nanmean(values)), options))
    scores.sort(key=lambda s: s[0])
    return {"best": scores[0][1], "mean_dev_regret": scores[0][0], "all": scores}


def markdown(rows: list[dict], tables: dict) -> str:
    lines = []
    for block, keep in (("Judge datasets (nothing was chosen on them)", lambda r: r["role"] == "judge" and not r["saturated"]),
                        ("Development datasets (thresholds and the best fixed d chosen here)",
                         lambda r: r["role"] == "dev" and not r["saturated"]),
                        ("Saturated datasets (AUROC >= 97 % at most d: they rank nothing)", lambda r: r["saturated"])):
        chosen = [r for r in rows if keep(r)]
        if not chosen:
            continue
        lines += [f"\n**{block}**\n", "| dataset | oracle d (AUROC) | choice | d | regret [90 % bootstrap] |",
                  "|---|---|---|---:|---|"]
        for r in chosen:
            lines.append(f"| {r['dataset']} | {r['oracle_d']} ({r['oracle_auroc']:.1f}) | {r['choice']} | "
                         f"{r['d'] if r['d'] is not None else '-'} | {r['regret']:.1f} "
                         f"[{r['regret_low']:.1f}, {r['regret_high']:.1f}] |")
        means = pd.DataFrame(chosen).groupby("choice", sort=False)["regret"].mean()
        lines.append("| **mean regret** | | | | " + "; ".join(f"{c}: {v:.1f}" for c, v in means.items()) + " |")
    lines += ["\nTest AUROC (%, seed mean) per latent size:\n", "| dataset | " + " | ".join(
        f"d={d}" for d in sorted(next(iter(tables.values()))["latent_size"].unique())) + " |",
        "|---|" + "---:|" * next(iter(tables.values()))["latent_size"].nunique()]
    for name, table in tables.items():
        auroc = table.groupby("latent_size")["auroc"].agg(["mean", "std"]) * 100
        lines.append(f"| {name} | " + " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in auroc.itertuples(index=False)) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-recommendation"), help="sweep directory (resumable)")
    parser.add_argument("--latent-sizes", default="1,2,4,8,16,32,64")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--datasets", default=None, help="semicolon-separated SPEC@EPOCHS@ROLE entries")
    parser.add_argument("--tune", action="store_true", help="also grid-search the two_sided settings on the dev sets")
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test settings (16x16, 1 epoch)")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP, help=f"bootstrap replicates (default {BOOTSTRAP})")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    datasets = DATASETS
    if args.quick:
        datasets, args.image_size, args.latent_sizes, args.seeds = QUICK_DATASETS, 16, "1,4,16", "0,1"
        args.bootstrap = min(args.bootstrap, 10)
    if args.datasets:
        datasets = [tuple(s.split("@")) for s in args.datasets.split(";")]
        datasets = [(spec, int(epochs), role) for spec, epochs, role in datasets]
    args.latent_sizes, args.seeds = parse_int_list(args.latent_sizes), parse_int_list(args.seeds)
    start = time.perf_counter()
    tables, roles = {}, {}
    for spec, epochs, role in datasets:
        tables[spec], roles[spec] = sweep(spec, epochs, args), role
    tuned = tune(tables, roles) if args.tune else None
    rows = evaluate(tables, roles, args.bootstrap)
    text = markdown(rows, tables)
    settings = (f"image_size={args.image_size}, latent sizes {args.latent_sizes}, seeds {args.seeds}, "
                f"datasets {datasets}, total {time.perf_counter() - start:.0f} s")
    print(text + f"\n\n{settings}")
    if tuned is not None:
        print(f"\ntwo_sided settings on the dev sets: best {tuned['best']} (mean dev regret "
              f"{tuned['mean_dev_regret']:.2f}); all: " + "; ".join(f"{o} {s:.2f}" for s, o in tuned["all"]))
    atomic_write_text(args.out / "benchmark.md", text + f"\n\n{settings}\n")
    atomic_write_json(args.out / "benchmark.json", {"rows": rows, "settings": settings, "tuned": tuned,
                                                    "environment": environment_info("cpu")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
