"""The grid of a sweep: one :class:`RunItem` per (latent size, seed) of one model kind, each with its run directory."""

from __future__ import annotations

from dataclasses import dataclass, field

from entropy_ae.model import MAX_LATENT_SIZE, check_sizes
from entropy_ae.training import TrainConfig

from analysis.sweep.layout import run_dir_for


@dataclass(frozen=True)
class RunItem:
    """One run of the grid: everything a worker process needs, picklable and JSON-friendly."""

    data_spec: dict
    image_size: int
    latent_size: int
    seed: int
    epochs: int
    batch_size: int
    lr: float
    device: str
    run_dir: str
    sigma: float
    method: str = "knn"
    overwrite: bool = False  # retrain the run even when complete (its settings differ from these)
    model: str = "ae"
    model_options: dict = field(default_factory=dict)

    def train_config(self) -> TrainConfig:
        """The training configuration of this run (TrainConfig checks epochs, batch size, lr and the model)."""
        return TrainConfig(latent_size=self.latent_size, epochs=self.epochs, batch_size=self.batch_size,
                           lr=self.lr, seed=self.seed, device=self.device, model=self.model,
                           model_options=dict(self.model_options))


def check_grid(latent_sizes, image_size: int) -> None:
    """Refuse a latent size or image size the model cannot take, in one line, before anything runs."""
    bad = [d for d in latent_sizes if not 1 <= d <= MAX_LATENT_SIZE]
    if bad:
        raise ValueError(f"latent sizes must be from 1 to {MAX_LATENT_SIZE}, got {', '.join(map(str, bad))}")
    for d in latent_sizes:
        check_sizes(int(d), int(image_size))


def plan_sweep(data, latent_sizes, seeds, epochs: int, out, batch_size: int = 64, lr: float = 1e-3,
               device: str = "auto", sigma: float = float("nan"), method: str = "knn", model: str = "ae",
               model_options: dict | None = None) -> list[RunItem]:
    """Every grid point of a sweep of ``model`` on ``data`` (an AnomalyData), in order (latent size, then seed)."""
    return [
        RunItem(data_spec=data.spec, image_size=data.image_size, latent_size=d, seed=s, epochs=epochs,
                batch_size=batch_size, lr=lr, device=device,
                run_dir=str(run_dir_for(out, data.name, d, s, model)), sigma=float(sigma), method=method,
                model=model, model_options=dict(model_options or {}))
        for d in latent_sizes
        for s in seeds
    ]


def deal_into_groups(items: list, n_groups: int) -> list[list]:
    """Deal the items round-robin into at most ``n_groups`` non-empty groups (similar sizes and costs)."""
    n_groups = max(1, min(n_groups, len(items)))
    return [items[g::n_groups] for g in range(n_groups)]
