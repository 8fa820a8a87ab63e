"""A digit detector: a small second head that tells digits from everything else.

A digit net answers every upload with one of its ten digits, a letter or a scribble included.
Outlier exposure (training beside generated non-digits, ``training.outliers``) teaches a net to
spread its guess over the ten digits when it sees one, but it retrains the whole net and can
cost the digits accuracy. The detector leaves the net as it is: an MLP on the net's inner
features (frozen) gives the log-odds that the upload is a digit at all, trained on digits
against generated non-digits. The net then answers with the mixture

    p(label) = s * softmax(logits)[label] + (1 - s) / C,    s = sigmoid(detector(features)),

"a digit as the net reads it, with chance s; otherwise no digit, and every label as likely":
the first label stays the net's first label, and a non-digit's answer spreads towards 1/C, as an
outlier-exposed net's does, so the same abstention rule (top probability under a threshold)
refuses it. The net returns the mixture's logarithm as its logits: softmax of it is the mixture
itself, so calibration, export and explanations take it as they take any logits.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class DigitDetector(nn.Module):
    """Standardised features -> ``hidden`` ReLU units -> the log-odds of "this is a digit"."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        self.mlp = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def standardise_on(self, features: torch.Tensor) -> None:
        """Set the standardisation from a sample of N x F features (before training)."""
        self.mean.copy_(features.mean(dim=0))
        self.std.copy_(features.std(dim=0).clamp_min(1e-3))  # a feature that never varies

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """B x F features -> B log-odds that each input is a digit."""
        log_odds: torch.Tensor = self.mlp((features - self.mean) / self.std)
        return log_odds.squeeze(1)


def mixed_log_probs(logits: torch.Tensor, digit_log_odds: torch.Tensor) -> torch.Tensor:
    """log(s * softmax(logits) + (1 - s) / C) for B x C logits and B log-odds (s = sigmoid),
    computed in log space (no underflow for a sure digit or a sure non-digit)."""
    classes = logits.shape[1]
    is_digit = F.logsigmoid(digit_log_odds)[:, None] + F.log_softmax(logits, dim=1)
    is_not = F.logsigmoid(-digit_log_odds)[:, None] - math.log(classes)
    return torch.logaddexp(is_digit, is_not.expand_as(is_digit))


def detected(
    logits: torch.Tensor, features: torch.Tensor, detector: DigitDetector | None
) -> torch.Tensor:
    """What a digit net answers: its logits, or with a detector the mixture's log-probabilities
    (``mixed_log_probs``) at the detector's odds on the same input's features."""
    if detector is None:
        return logits
    return mixed_log_probs(logits, detector(features))
