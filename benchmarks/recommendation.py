"""How good is the latent-size recommendation? Regret against the oracle, d=16 and an ID rule.

For each dataset it sweeps every latent size (resumable, through ``analysis.sweep.run_sweep``),
measures the test AUROC at every size, and reports

* the oracle-best latent size (highest mean AUROC over seeds: uses test labels, so it is only a
  yardstick),
* the recommended latent size (``analysis.recommend.recommend``, normal data only) and its
  regret, the AUROC points (x100) lost against the oracle,
* the regret of the fixed default d=16 and of the cheap intrinsic-dimension rule (smallest swept
  size >= round(ID_MLE(X_n)), from the normal training images alone, before any sweep),
* the regret of the other sweep-based rules (information saturation, reconstruction elbow).

Datasets: the built-in synthetic data at several known factor counts k, and scikit-learn's
digits with several classes as normal. Defaults are chosen to finish in about 10-15 minutes on 2
CPU cores (32x32 images, one seed, 15 epochs on synthetic / 60 on the ~120-image digits sets);
``--quick`` shrinks everything for a smoke test.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/recommendation.py --out runs/bench-recommendation
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.recommend import RULES, from_intrinsic_dimension, recommend  # noqa: E402
from analysis.sweep import run_sweep  # noqa: E402
from entropy_ae.data import load_data  # noqa: E402
from entropy_ae.io import atomic_write_json, atomic_write_text  # noqa: E402
from entropy_ae.reproducibility import environment_info  # noqa: E402

# Lesions larger and stronger than the synthetic defaults, and fine tissue detail (many small
# factors beyond the k large ones): with the defaults' 1-3 pixel lesions at 32x32 and 15 epochs the
# AUROC is about 0.5 at every latent size (measured), which cannot rank anything.
SYNTHETIC = ("synthetic[k={k},n_train=600,n_val=100,n_test=300,lesion_radius_min=0.1,lesion_radius_max=0.25,"
             "lesion_contrast_min=0.3,lesion_contrast_max=0.8,detail=0.15]")
DEFAULT_DATASETS = [(SYNTHETIC.format(k=k), 15) for k in (2, 4, 8)] + [(f"digits:{c}", 60) for c in (0, 1, 7)]
QUICK_DATASETS = [("synthetic[k=2,n_train=64,n_val=16,n_test=32]", 1), ("digits:0", 2)]
DEFAULT_LATENT_SIZES = "1,2,4,8,16,32,64"
DEFAULT_SIZE = 16


def evaluate_dataset(spec: str, epochs: int, args) -> dict:
    """Sweep one dataset and score every rule against the oracle."""
    data = load_data(spec, image_size=args.image_size)
    start = time.perf_counter()
    table = run_sweep(data, args.latent_sizes, args.seeds, epochs, args.out, executor=args.executor,
                      workers=args.workers, batched=args.batched, progress=not args.quiet)
    table = table[table["dataset"] == data.name]
    seconds = time.perf_counter() - start
    auroc = table.groupby("latent_size")["auroc"].mean() * 100
    oracle = int(auroc.idxmax())

    def regret(d):
        return float(auroc[oracle] - auroc[d]) if d in auroc.index else float("nan")

    sizes = sorted(int(d) for d in auroc.index)
    rec = recommend(table)
    row = {
        "dataset": data.name,
        "spec": spec,
        "k": data.spec.get("k"),
        "epochs": epochs,
        "n_train": int(len(data.train)),
        "id_x": float(table["id_levina_bickel_x"].iloc[0]),
        "oracle_d": oracle,
        "oracle_auroc": float(auroc[oracle]),
        "auroc_by_d": {int(d): round(float(v), 2) for d, v in auroc.items()},
        "recommended_d": rec["latent_size"],
        "recommended_regret": regret(rec["latent_size"]),
        "default_regret": regret(DEFAULT_SIZE),
        "sweep_seconds": seconds,
    }
    id_rule = from_intrinsic_dimension(row["id_x"], sizes)["latent_size"]
    row.update(id_rule_d=id_rule, id_rule_regret=regret(id_rule))
    for name in RULES:
        if name != rec["criterion"]:
            d = recommend(table, name)["latent_size"]
            row[f"{name}_d"], row[f"{name}_regret"] = d, regret(d)
    return row


def id_validation(image_size: int, ks=range(1, 9)) -> str:
    """ID(X_n) of the synthetic normal images against their known factor count k (no training)."""
    from analysis.measures import levina_bickel, twonn

    lines = ["| k (known) | ID TwoNN | ID MLE |", "|---|---|---|"]
    for k in ks:
        # The plain synthetic images (no fine detail): exactly k factors.
        images = load_data(f"synthetic[k={k},n_train=600]", image_size=image_size).train
        two, mle = twonn(images), levina_bickel(images)
        lines.append(f"| {k} | {two.value:.2f} ± {two.stderr:.2f} | {mle.value:.2f} ± {mle.stderr:.2f} |")
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    header = ("| dataset | k | ID(X_n) | oracle d | AUROC at oracle | recommended d (id_match) | regret | "
              "ID rule d | regret | d=16 regret | info_saturation d / regret | rec_elbow d / regret |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['k'] if r['k'] is not None else '-'} | {r['id_x']:.1f} | {r['oracle_d']} | "
            f"{r['oracle_auroc']:.1f} | {r['recommended_d']} | {r['recommended_regret']:.1f} | {r['id_rule_d']} | "
            f"{r['id_rule_regret']:.1f} | {r['default_regret']:.1f} | "
            f"{r.get('info_saturation_d', '-')} / {r.get('info_saturation_regret', float('nan')):.1f} | "
            f"{r.get('rec_elbow_d', '-')} / {r.get('rec_elbow_regret', float('nan')):.1f} |")
    means = {key: np.nanmean([r[key] for r in rows]) for key in
             ("recommended_regret", "id_rule_regret", "default_regret", "info_saturation_regret", "rec_elbow_regret")}
    lines.append(f"| **mean regret** | | | | | | {means['recommended_regret']:.1f} | | {means['id_rule_regret']:.1f} | "
                 f"{means['default_regret']:.1f} | {means['info_saturation_regret']:.1f} | "
                 f"{means['rec_elbow_regret']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench-recommendation", help="sweep directory (resumable)")
    parser.add_argument("--latent-sizes", default=DEFAULT_LATENT_SIZES)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--datasets", default=None,
                        help="semicolon-separated SPEC@EPOCHS entries (default: synthetic k=2,4,8 and digits 0,1,7)")
    parser.add_argument("--executor", default=None, help="sweep executor (default: local pool when available)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batched", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test settings (16x16, 1-2 epochs)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    datasets = DEFAULT_DATASETS
    if args.quick:
        datasets, args.image_size, args.latent_sizes = QUICK_DATASETS, 16, "1,2,4,16"
    if args.datasets:
        datasets = [(s.rsplit("@", 1)[0], int(s.rsplit("@", 1)[1])) for s in args.datasets.split(";")]
    args.out = Path(args.out)
    start = time.perf_counter()
    validation = id_validation(args.image_size, range(1, 3) if args.quick else range(1, 9))
    print("Intrinsic dimension of the synthetic normal images (600 training images) against the known k:")
    print(validation + "\n")
    rows = [evaluate_dataset(spec, epochs, args) for spec, epochs in datasets]
    table = markdown(rows)
    total = time.perf_counter() - start
    settings = (f"image_size={args.image_size}, latent sizes {args.latent_sizes}, seeds {args.seeds}, "
                f"epochs per dataset {[e for _, e in datasets]}, total {total:.0f} s")
    print(table)
    print(f"\n{settings}")
    atomic_write_text(args.out / "benchmark.md", validation + "\n\n" + table + f"\n\n{settings}\n")
    atomic_write_json(args.out / "benchmark.json", {"rows": rows, "settings": settings,
                                                    "environment": environment_info("cpu")})
    pd.DataFrame(rows).drop(columns=["auroc_by_d"]).to_csv(args.out / "benchmark.csv", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
