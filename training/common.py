"""What every recipe shares: seeding, device choice, progress, curves and the card."""

import dataclasses
import platform
import random
import shlex
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from models.checkpoint import save_checkpoint
from training.distributed import Dist


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return ``data_generator(seed)``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return data_generator(seed)


def data_generator(seed: int) -> torch.Generator:
    """The generator of a run's data: its first draw is the held-out split (``holdout_split``),
    the later ones the order of the training examples."""
    return torch.Generator().manual_seed(seed)


def holdout_split(n: int, held_out: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``n`` examples in a random order drawn from ``gen``: the first ``held_out``
    (kept from the weights: model selection, then calibration) and the rest (training).

    Training and ``training.calibration`` both call this on a fresh ``data_generator(seed)``,
    so calibration finds exactly the examples the weights never saw."""
    order = torch.randperm(n, generator=gen)
    return order[:held_out], order[held_out:]


R = TypeVar("R")


def apply_overrides(recipe: R, overrides: dict[str, str]) -> R:
    """A copy of a recipe dataclass with ``--set key=value`` overrides, typed like the field."""
    fields = {f.name: f for f in dataclasses.fields(recipe)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in fields:
            raise SystemExit(f"--set {key}: unknown setting; known: {', '.join(sorted(fields))}")
        current = getattr(recipe, key)
        if isinstance(current, bool):
            changes[key] = raw.lower() in ("1", "true", "yes", "on")
        elif isinstance(current, int | float | str):
            try:
                changes[key] = type(current)(raw)
            except ValueError:
                raise SystemExit(f"--set {key}={raw}: expected {type(current).__name__}") from None
        else:
            changes[key] = raw
    return dataclasses.replace(recipe, **changes)  # type: ignore[type-var]


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape a checkpoint."""
    out = {"python": platform.python_version()}
    for pkg in ("torch", "numpy", "safetensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@dataclass
class History:
    """Per-epoch learning curves: any named series (``train_loss``, ``val_accuracy``, ...)."""

    series: dict[str, list[float]] = field(default_factory=dict)

    def log(self, **values: float) -> None:
        for key, value in values.items():
            self.series.setdefault(key, []).append(float(value))

    def plot(self, path: Path, title: str) -> None:
        """Write ``curves.png``: losses on the left, accuracies (or other metrics) on the right."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
        for key, values in self.series.items():
            epochs = range(1, len(values) + 1)
            ax = ax_loss if "loss" in key else ax_acc
            ax.plot(epochs, values, marker="o", markersize=3, label=key)
        ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{title}: loss")
        ax_acc.set(xlabel="epoch", ylabel="metric", title=f"{title}: held-out metric")
        for ax in (ax_loss, ax_acc):
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


@dataclass
class Run:
    """One training run: its options, clock and the card fields common to every model."""

    name: str
    out_dir: Path
    data_dir: Path
    seed: int
    device: torch.device
    recipe: str
    dry_run: bool
    argv: list[str]
    overrides: dict[str, str] = field(default_factory=dict)
    dist: Dist = field(default_factory=Dist)
    started: float = field(default_factory=time.perf_counter)

    @property
    def model_dir(self) -> Path:
        return self.out_dir / self.name

    def command(self) -> str:
        return shlex.join(["python", "-m", "training", *self.argv])

    def finish(
        self,
        model: nn.Module,
        card: dict[str, Any],
        history: History,
    ) -> dict[str, Any]:
        """Save weights, card and ``curves.png`` (on rank 0 only); return the card."""
        full = {
            "name": self.name,
            **card,
            "recipe": self.recipe,
            "seed": self.seed,
            "command": self.command(),
            "device": str(self.device),
            "wall_time_s": round(time.perf_counter() - self.started, 1),
            "versions": library_versions(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "history": {k: [round(v, 5) for v in vals] for k, vals in history.series.items()},
            "dry_run": self.dry_run,
        }
        if self.dist.world > 1:
            full["distributed"] = {"world_size": self.dist.world, **card.get("distributed", {})}
        if not self.dist.main:
            return full
        saved = save_checkpoint(self.model_dir, model, full)
        history.plot(self.model_dir / "curves.png", self.name)
        return saved
