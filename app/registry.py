"""The model registry: every checkpoint under the weights directory, loaded and warmed."""

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.errors import NotFound
from models.checkpoint import CARD_FILE, Checkpoint, CheckpointError, load_checkpoint

logger = logging.getLogger("app.registry")


@dataclass
class ModelRegistry:
    """Loaded checkpoints by name, and the device they run on."""

    device: torch.device
    models: dict[str, Checkpoint] = field(default_factory=dict)
    load_seconds: dict[str, float] = field(default_factory=dict)
    serving: dict[str, dict[str, Any]] = field(default_factory=dict)
    """How the server computes each model, where it departs from the layers as written (the
    digit nets: folded, NNPACK kernels), merged into its card."""

    @classmethod
    def load(cls, weights_dir: Path, device: torch.device) -> "ModelRegistry":
        """Load every ``weights_dir/*/card.json`` checkpoint; any failure stops startup."""
        registry = cls(device=device)
        if not weights_dir.is_dir():
            raise CheckpointError(weights_dir, "weights directory not found")
        for card in sorted(weights_dir.glob(f"*/{CARD_FILE}")):
            started = time.perf_counter()
            checkpoint = load_checkpoint(card.parent, device)
            registry.models[checkpoint.name] = checkpoint
            registry.load_seconds[checkpoint.name] = time.perf_counter() - started
            logger.info("loaded %s on %s", checkpoint.name, device)
        if not registry.models:
            raise CheckpointError(weights_dir, "no checkpoints (*/card.json) found")
        return registry

    def card(self, name: str) -> dict[str, Any]:
        """A model's card plus where it runs; 404 for an unknown name."""
        if name not in self.models:
            raise NotFound(f"no model named {name!r}; served: {', '.join(sorted(self.models))}")
        checkpoint = self.models[name]
        return {
            **checkpoint.card,
            "device": str(self.device),
            **self.serving.get(name, {}),
        }
