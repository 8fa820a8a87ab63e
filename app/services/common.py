"""Helpers shared by the classifiers."""

import torch

from app.schemas import Prediction


def top_predictions(probs: torch.Tensor, labels: list[str], k: int) -> list[Prediction]:
    """The ``k`` likeliest labels, best first."""
    values, indices = probs.topk(min(k, len(labels)))
    return [
        Prediction(label=labels[i], probability=round(float(v), 6))
        for v, i in zip(values.tolist(), indices.tolist(), strict=True)
    ]
