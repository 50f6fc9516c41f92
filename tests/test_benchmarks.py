"""The GPU parts of benchmarks/sweep.py and benchmarks/estimators.py, rehearsed on the CPU.

No GPU has been lent to this project yet, and device time is short when one is:
these tests run the scripts' GPU code paths end to end on tiny settings, so a
bug in them shows up here and not on the GPU.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = ["--gpu", "--device", "cpu", "--rehearse", "--data", "synthetic[n_train=64]", "--image-size", "16",
        "--latent-sizes", "2,4", "--seeds", "0", "--threads", "1"]


def _script(name):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sweep():
    return _script("sweep")


def test_gpu_comparison_runs_on_the_cpu(sweep, capsys):
    sweep.main(TINY + ["--epochs", "2", "--paper-epochs", "1", "--paper-runs", "1"])
    out = capsys.readouterr().out
    assert "REHEARSAL" in out
    batched = float(re.search(r"batched sweep: ([\d.]+) s", out).group(1))
    paper = float(re.search(r"scaled to 2 x 2 epochs: ([\d.]+) s", out).group(1))
    assert batched > 0 and paper > 0
    assert re.search(r"speed-up batched vs paper-style: [\d.]+x", out)


def test_variant_table_compares_losses_with_float32(sweep, capsys):
    sweep.main(TINY + ["--epochs", "250", "--variants", "bf16,channels-last,fused-adam,cuda-graphs", "--variant-epochs", "1"])
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line}
    assert rows["fp32"][-1] == "reference"
    per_epoch, projected = float(rows["fp32"][0]), float(rows["fp32"][1])
    # Both are printed rounded (3 and 1 decimals): equal up to that rounding, whatever the machine's speed.
    assert projected == pytest.approx(250 * per_epoch, abs=250 * 0.0005 + 0.05)
    # bf16 keeps 8 significant bits: its losses differ from float32's, but by well under 10 %.
    assert 0 < float(rows["bf16"][-1]) < 0.1
    # Channels-last is the same maths in another order: float32 rounding only.
    assert float(rows["channels-last"][-1]) < 1e-3
    assert float(rows["fused-adam"][-1]) < 1e-3
    assert rows["cuda-graphs"][0].startswith("skipped")


def test_unknown_variant_is_refused(sweep):
    with pytest.raises(SystemExit, match="unknown variant 'fp16'"):
        sweep.variant_options("bf16+fp16")


def test_gpu_mode_without_cuda_says_how_to_rehearse(sweep):
    with pytest.raises(SystemExit, match="--rehearse"):
        sweep.main(["--gpu", "--device", "cpu"])


def test_estimator_gpu_rows_agree_with_the_cpu_path(capsys):
    _script("estimators").main(["--gpu", "--rehearse", "--gpu-n", "1500"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "---" not in line and not line.startswith("| case")]
    assert len(rows) == 6  # entropy d=4, 16; MI 4v4, 16v16, each classic and default
    for case, d, n, variant, truth, bias, seconds, cpu_seconds, gap in rows:
        # The torch path and the CPU paths see the same distances up to rounding: entropies agree to the last
        # digits. The CPU's MI brute force rounds distances to float32, where about one count in 10^4
        # differs by one; each such count moves a KSG estimate by at most 1 nat / n.
        bound = 5 / float(n) if "MI" in case else 1e-9
        assert abs(float(gap)) < bound, (case, d, variant)
        assert float(seconds) > 0


def test_recommendation_benchmark_runs_end_to_end_on_tiny_settings(tmp_path, capsys):
    """The rebuilt recommendation benchmark: sweeps, choices, bootstrap intervals, dev/judge blocks, tuning."""
    bench = _script("recommendation")
    assert bench.main(["--quick", "--tune", "--quiet", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "benchmark.md").read_text()
    assert "**Judge datasets (nothing was chosen on them)**" in text and "Development datasets" in text
    for choice in ("two_sided", "id_match", "fixed d=16", "best fixed on dev"):
        assert choice in text
    assert re.search(r"\| two_sided \| \d+ \| [\d.]+ \[[\d.-]+, [\d.-]+\] \|", text)  # regret with its interval
    assert "two_sided settings on the dev sets: best {'leak_weight'" in capsys.readouterr().out
