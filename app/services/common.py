"""Helpers shared by the classifiers."""

from collections.abc import Sequence
from dataclasses import dataclass

from app.schemas import Prediction


@dataclass(frozen=True, slots=True)
class Answer:
    """One input's class probabilities and the model version that computed them."""

    probs: list[float]
    version: str
    abstain: bool = False
    """The net abstains: its uncalibrated top probability is under its card's threshold."""


def top_predictions(probs: Sequence[float], labels: list[str], k: int) -> list[Prediction]:
    """The ``k`` likeliest labels, best first (ties in label order)."""
    best = sorted(range(len(labels)), key=probs.__getitem__, reverse=True)[:k]
    return [Prediction(label=labels[i], probability=round(probs[i], 6)) for i in best]
