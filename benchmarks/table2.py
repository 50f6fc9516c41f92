"""The paper's Table 2 from a study with several model kinds, beside the paper's own Table 2.

Run the comparison first (resumable; the AE runs of ``./run-study`` are reused when ``--out`` holds them)::

    entropy-ae study --out runs/table2 --models ae,vae,memae,ceae,dae [--seeds 0,1,2]

then print both tables as Markdown, with the regret of each row against the oracle AE::

    .venv/bin/python benchmarks/table2.py runs/table2 [--paper ../shared/paper/table2_methods.csv]

Ours: ``analysis.tables.table2`` of ``DIR/results.csv`` with the recommendation of
``DIR/recommendation.json`` (normal data only). The paper's: its published numbers, labelled as such.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from analysis.sweep.layout import RECOMMENDATION
from analysis.sweep.results import load_results, model_runs
from analysis.tables import table2, table2_rows

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "paper" / "table2_methods.csv"


def markdown(table: pd.DataFrame) -> str:
    frame = table.reset_index()
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join("n/a" if pd.isna(v) else str(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def ours(out: Path) -> str:
    results = load_results(out)
    rec = json.loads((out / RECOMMENDATION).read_text())
    parts = []
    for name, group in results.groupby("dataset"):
        per = rec.get(name, rec) if "latent_size" not in rec else rec
        table = table2(group, per.get("latent_size"))
        rows = table2_rows(group, per.get("latent_size"))
        oracle = max(g["auroc"].mean() for label, g in rows.items() if label.startswith("AE (oracle"))
        table["AUROC regret vs oracle AE"] = [round(100 * (oracle - g["auroc"].mean()), 1) for g in rows.values()]
        ae = model_runs(group, "ae")
        parts.append(f"Dataset {name}: {int(group['epochs'].iloc[0])} epochs, seeds "
                     f"{sorted(int(s) for s in ae['seed'].unique())}, AE latent sizes "
                     f"{sorted(int(d) for d in ae['latent_size'].unique())}\n\n" + markdown(table))
    return "\n\n".join(parts)


def paper(path: Path) -> str:
    if not path.is_file():
        return f"(the paper's table is not at {path}; pass --paper PATH)"
    table = pd.read_csv(path)
    cells = {}
    for column, label in (("auc", "AUROC"), ("ap", "AP"), ("ap_pix", "pixel AP"), ("dice", "best Dice")):
        mean, std = table[f"{column}_mean"], table[f"{column}_std"]
        cells[label] = [f"{m:.1f} ± {s:.1f}" if pd.notna(m) else "n/a" for m, s in zip(mean, std)]
    frame = pd.DataFrame({"dataset": table["dataset"], "method": table["method"], **cells})
    return markdown(frame.set_index("dataset"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="study directory with several model kinds")
    parser.add_argument("--paper", type=Path, default=PAPER, help=f"the paper's Table 2 as CSV (default: {PAPER})")
    args = parser.parse_args()
    print("## Ours\n")
    print(ours(args.out))
    print("\n## The paper's Table 2 (its published numbers; AE(d_opt) is its best latent size by test AUROC)\n")
    print(paper(args.paper))


if __name__ == "__main__":
    main()
