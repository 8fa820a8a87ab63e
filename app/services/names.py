"""Surname -> country: fold any Unicode to the model's alphabet, then a batched GRU."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from app.errors import InvalidInput
from models.checkpoint import Checkpoint
from models.text import NAME_MAX_LENGTH, encode_name, normalize_name


@dataclass(frozen=True)
class NameInput:
    name: str
    normalized: str


def fold_name(name: str) -> NameInput:
    """Normalise one raw name, or raise 422 with the reason."""
    normalized = normalize_name(name)
    if not normalized:
        raise InvalidInput(
            f"name {name[:50]!r} has no letters left after folding to ASCII "
            "(letters, apostrophes and spaces are kept; symbols, emoji and digits are dropped)"
        )
    if len(normalized) > NAME_MAX_LENGTH:
        raise InvalidInput(
            f"name is {len(normalized)} characters after folding; the limit is {NAME_MAX_LENGTH}"
        )
    return NameInput(name=name, normalized=normalized)


class NameClassifier:
    """Batched inference over one name checkpoint; results do not depend on batch-mates."""

    def __init__(self, checkpoint: Checkpoint, device: torch.device) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.labels: list[str] = list(checkpoint.card["labels"])
        self.calibration = checkpoint.calibration

    def predict_batch(self, names: Sequence[str]) -> list[list[float]]:
        """Calibrated class probabilities (the card's calibration) for already-normalised
        names, one list per name."""
        codes = [encode_name(n) for n in names]
        lengths = torch.tensor([len(c) for c in codes])
        padded = torch.zeros(len(codes), int(lengths.max()), dtype=torch.long)  # B x T
        for i, c in enumerate(codes):
            padded[i, : len(c)] = torch.tensor(c)
        with torch.inference_mode():
            logits = self.checkpoint.model(padded.to(self.device), lengths)  # B x 18
            probs: list[list[float]] = self.calibration.probabilities(logits).tolist()
            return probs
