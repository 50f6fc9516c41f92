"""The notebooks run top to bottom (on tiny settings), so they can never rot."""

from __future__ import annotations

import os
import re
from pathlib import Path


# Installed by the notebooks extra, which the test command installs: a missing one must fail, not skip.
import nbclient
import nbformat

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "EAE_NB_DATA": "synthetic[k=2,n_train=48,n_val=12,n_test=24]",
    "EAE_NB_IMAGE_SIZE": "16",
    "EAE_NB_EPOCHS": "1",
    "EAE_NB_LATENT_SIZE": "2",
    "EAE_NB_LATENT_SIZES": "1,2",
    "EAE_NB_SEEDS": "0",
    "OMP_NUM_THREADS": "1",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
}


def _execute(name: str, tmp_path: Path, monkeypatch, **env) -> nbformat.NotebookNode:
    for key, value in {**TINY, **env}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    notebook = nbformat.read(REPO / "notebooks" / name, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return notebook


def _outputs(notebook) -> list:
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def test_quickstart_notebook(tmp_path, monkeypatch):
    notebook = _execute("quickstart.ipynb", tmp_path, monkeypatch, EAE_NB_OUT=str(tmp_path / "run"))
    assert (tmp_path / "run" / "metrics.json").is_file()
    outputs = _outputs(notebook)
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", "")) for o in outputs)
    assert "'units': 'nats'" in text and "intrinsic dimension" in text
    detector = re.search(r"detector AUROC on digits: ([0-9.]+), flagged: ([0-9.]+) of normal", text)
    assert detector, text  # the AutoencoderDetector cell ran and printed its scores
    assert float(detector.group(1)) > 0.8 and float(detector.group(2)) < 0.5
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_explore_sweep_notebook(tmp_path, monkeypatch):
    sweep_dir = tmp_path / "sweep"
    notebook = _execute("explore_sweep.ipynb", tmp_path, monkeypatch, EAE_NB_SWEEP_DIR=str(sweep_dir))
    assert (sweep_dir / "results.csv").is_file()
    outputs = _outputs(notebook)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 6  # every curve drawn, pseudo-anomalies too
    text = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "recommended latent size" in text and "intrinsic_dimension" in text
    assert "by two_sided" in text and "d_low:" in text and "predates" not in text


def test_default_paths_are_the_repositorys_when_started_in_notebooks(tmp_path, monkeypatch):
    # Jupyter runs a notebook in its own folder; the default output must still land in <repo>/runs.
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = entropy-ae\n")
    (tmp_path / "entropy_ae").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.delenv("EAE_NB_OUT", raising=False)
    _execute("quickstart.ipynb", tmp_path / "notebooks", monkeypatch)
    assert (tmp_path / "runs" / "quickstart-notebook" / "metrics.json").is_file()
    assert not (tmp_path / "notebooks" / "runs").exists()
