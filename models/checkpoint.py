"""Checkpoints: ``model.safetensors`` (tensors only, never a pickle) plus ``card.json``.

The card is the source of truth for a model: architecture and config to rebuild it, labels or
vocabulary, preprocessing, held-out metrics, data checksums and provenance. Loading verifies the
weights' sha256 against the card, rebuilds the module from the registry, loads strictly and
returns it in eval mode. A card may carry a ``calibration`` entry (``models.calibration``):
how the logits become the probabilities served; loading checks it too.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from models.calibration import Calibration
from models.registry import ARCHITECTURES, build_model, count_parameters

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
REQUIRED_CARD_KEYS = ("name", "task", "architecture", "config", "weights_sha256")


class CheckpointError(Exception):
    """A checkpoint that cannot be loaded; the message names the file and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class Checkpoint:
    """A loaded model (in eval mode) and its card."""

    model: nn.Module
    card: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def calibration(self) -> Calibration:
        """How this model's logits become the probabilities it answers with."""
        return Calibration.from_card(self.card)


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(directory: Path, model: nn.Module, card: dict[str, Any]) -> dict[str, Any]:
    """Write ``model.safetensors`` and ``card.json`` into ``directory``; return the final card.

    The card gains ``weights_sha256`` and ``num_parameters``; tensors are saved contiguous and on
    the CPU so the file loads on any device.
    """
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card and k != "weights_sha256"]
    if missing:
        raise ValueError(f"card is missing {missing}")
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / WEIGHTS_FILE
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(weights_path), metadata={"name": str(card["name"])})
    final = {
        **card,
        "num_parameters": count_parameters(model),
        "weights_sha256": sha256_file(weights_path),
    }
    write_card(directory, final)
    return final


def write_card(directory: Path, card: dict[str, Any]) -> None:
    """Write ``card.json`` whole or not at all (a new file renamed over the old one), so that
    a server loading the checkpoint meanwhile reads the old card or the new one."""
    path = directory / CARD_FILE
    partial = path.with_name(f".{CARD_FILE}.partial")
    partial.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    partial.replace(path)


def read_card(directory: Path) -> dict[str, Any]:
    """Read and check a checkpoint's card (without touching the weights)."""
    card_path = directory / CARD_FILE
    if not card_path.is_file():
        raise CheckpointError(card_path, "card.json is missing")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(card_path, f"not valid JSON ({exc})") from exc
    if not isinstance(card, dict):
        raise CheckpointError(card_path, "expected a JSON object")
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise CheckpointError(card_path, f"missing required keys {missing}")
    if card["architecture"] not in ARCHITECTURES:
        raise CheckpointError(
            card_path,
            f"unknown architecture {card['architecture']!r}; known: {sorted(ARCHITECTURES)}",
        )
    if not isinstance(card["config"], dict):
        raise CheckpointError(card_path, "config must be a JSON object")
    try:
        Calibration.from_card(card)
    except ValueError as exc:
        raise CheckpointError(card_path, f"calibration: {exc}") from exc
    return card


def load_checkpoint(directory: Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint directory onto ``device``, verified and strict, in eval mode."""
    card = read_card(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(weights_path, "model.safetensors is missing")
    actual = sha256_file(weights_path)
    if actual != card["weights_sha256"]:
        raise CheckpointError(
            weights_path,
            f"sha256 mismatch: file is {actual}, card.json says {card['weights_sha256']}",
        )
    try:
        model = build_model(card["architecture"], card["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(directory / CARD_FILE, f"bad config: {exc}") from exc
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(weights_path, f"not a readable safetensors file ({exc})") from exc
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())
        raise CheckpointError(weights_path, f"does not match the architecture: {reason}") from exc
    model.to(device).eval()
    return Checkpoint(model=model, card=card)
