"""Calibration error and the fits behind ``models.calibration``: a temperature (the digit nets)
and a top-label isotonic map (the surname net), each fitted on held-out logits."""

import torch
import torch.nn.functional as F

from models.calibration import TEMPERATURE, TOP_LABEL_ISOTONIC, Calibration

BINS = 15
"""Equal-width bins of the top probability for the expected calibration error (Guo et al.)."""
METHODS = {"InceptionNet": TEMPERATURE, "ResNet": TEMPERATURE, "NameGRU": TOP_LABEL_ISOTONIC}
"""The calibration each architecture gets. The digit nets are uniformly under-confident (label
smoothing), which one temperature fixes. The surname net's class-weighted loss makes its
probabilities speak for a balanced prior, too low for the common countries and too high for
the rare ones, which no single temperature fixes; the isotonic map on the top probability
does, and keeps every answer's first label."""


def expected_calibration_error(
    probs: torch.Tensor, targets: torch.Tensor, bins: int = BINS
) -> float:
    """ECE of N x C probabilities against N class indices, on the top probability."""
    confidence, predicted = probs.double().max(dim=1)  # N
    return top_label_ece(confidence, predicted == targets, bins)


def top_label_ece(confidence: torch.Tensor, correct: torch.Tensor, bins: int = BINS) -> float:
    """ECE: over equal-width bins ``(k/bins, (k+1)/bins]`` of the top probability, the gap
    between mean top probability and accuracy, weighted by the share of examples in the bin.

    ``confidence`` is the N top probabilities, ``correct`` whether each top label is right."""
    confidence = confidence.double()
    which = (confidence * bins).ceil().long().clamp(1, bins) - 1  # N, 0 .. bins-1
    gap = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, confidence - correct.double())
    return float(gap.abs().sum() / len(confidence))


TEMPERATURES = (0.01, 100.0)
"""The range a fitted temperature is held to. The held-out likelihood has one optimum in log T;
past 100 the probabilities of a net that has learnt little become equal in float32 and their
ranking would be lost."""


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> Calibration:
    """The temperature minimising the held-out negative log-likelihood (L-BFGS on log T), held
    to ``TEMPERATURES``."""
    logits = logits.detach().double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    low, high = TEMPERATURES
    return Calibration.with_temperature(min(max(float(log_t.detach().exp()), low), high))


def fit_top_label_isotonic(logits: torch.Tensor, targets: torch.Tensor) -> Calibration:
    """The monotone map from the top softmax probability to the chance that the top label is
    right (isotonic regression, scikit-learn's), as breakpoints."""
    from sklearn.isotonic import IsotonicRegression

    probs = F.softmax(logits.float(), dim=1)
    top, predicted = probs.double().max(dim=1)
    correct = (predicted == targets).double()
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(top.numpy(), correct.numpy())
    x, y = iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist()
    if len(x) == 1:  # every held-out example had the same top probability: a constant map
        x, y = [0.0, 1.0], [y[0], y[0]]
    return Calibration.top_label_isotonic(x, y)


def fit(method: str, logits: torch.Tensor, targets: torch.Tensor) -> Calibration:
    """Fit ``method`` (``models.calibration.METHODS``) on held-out N x C logits and targets."""
    if method == TEMPERATURE:
        return fit_temperature(logits, targets)
    if method == TOP_LABEL_ISOTONIC:
        return fit_top_label_isotonic(logits, targets)
    raise ValueError(f"unknown calibration method {method!r}")
