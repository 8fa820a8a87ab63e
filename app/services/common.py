"""Helpers shared by the classifiers."""

from collections.abc import Sequence

from app.schemas import Prediction


def top_predictions(probs: Sequence[float], labels: list[str], k: int) -> list[Prediction]:
    """The ``k`` likeliest labels, best first (ties in label order)."""
    best = sorted(range(len(labels)), key=probs.__getitem__, reverse=True)[:k]
    return [Prediction(label=labels[i], probability=round(probs[i], 6)) for i in best]
