"""The calibration candidates, each fitted on held-out N x C logits and N targets (-1: an
example of none of the classes, to which every answer is wrong), as a ``models.calibration``
``Calibration``; ``training.calibration_choice`` picks one."""

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from models.calibration import Calibration, interp, top_log_odds

Fit = Callable[[torch.Tensor, torch.Tensor], Calibration]

TEMPERATURES = (0.01, 100.0)
"""The range a fitted temperature is held to. The held-out likelihood has one optimum in log T;
past 100 the probabilities of a net that has learnt little become equal in float32 and their
ranking would be lost."""
BIAS_PENALTY = 1e-4
"""Weight of the biases' sum of squares beside the mean log loss: keeps the bias of a class
the held-out examples hardly hold (or lack) from running off to minus infinity. It cost
name-gru's held-out names 0.0002 of cross-fitted log loss."""
KNOTS = 8
"""Segments of the top log-odds map, between quantiles of the held-out top log-odds. 4, 8, 12
and 16 gave cross-fitted held-out log losses within 0.0015 of each other for each of the three
classifiers; 8 leaves name-gru about 330 held-out names a segment."""
MIN_SLOPE = 0.05
"""The least slope of the top log-odds map: log-odds that differ by d stay at least d / 20
apart, so that no stretch of answers shares one probability."""
SMOOTHING = 1.0
"""Weight of the squared steps between neighbouring segments' log-slopes, counted as that many
examples' log loss: the map bends where the held-out examples say so, not at every knot."""


def _classes_only(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The examples of one of the classes (a multiclass log loss needs a class to be right)."""
    known = targets >= 0
    return logits[known].detach().float().double(), targets[known]


def _log_loss_fit(
    logits: torch.Tensor, targets: torch.Tensor, biases: bool
) -> tuple[float, list[float]]:
    """The temperature (and per-class biases, summing to 0) minimising the held-out multiclass
    log loss of softmax(logits / T + b), by L-BFGS on log T (and b)."""
    logits, targets = _classes_only(logits, targets)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(logits.shape[1], dtype=torch.float64, requires_grad=biases)
    optimizer = torch.optim.LBFGS(
        [log_t, b] if biases else [log_t], lr=0.5, max_iter=500, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp() + b, targets) + BIAS_PENALTY * b.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    low, high = TEMPERATURES
    temperature = min(max(float(log_t.detach().exp()), low), high)
    return temperature, (b.detach() - b.detach().mean()).tolist() if biases else []


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> Calibration:
    """softmax(logits / T), T minimising the held-out log loss, held to ``TEMPERATURES``."""
    temperature, _ = _log_loss_fit(logits, targets, biases=False)
    return Calibration.with_temperature(temperature)


def fit_class_biases(logits: torch.Tensor, targets: torch.Tensor) -> Calibration:
    """softmax(logits / T + b) for the first label, T and b minimising the held-out log loss."""
    return Calibration.with_biases(*_log_loss_fit(logits, targets, biases=True))


def fit_top_log_odds_map(logits: torch.Tensor, targets: torch.Tensor, biases: bool) -> Calibration:
    """A temperature (with ``biases``, class biases) fitted by log loss, then a strictly
    increasing piecewise-linear map of the first label's log-odds fitted to whether it is right
    (every held-out example, those of no class included)."""
    temperature, b = _log_loss_fit(logits, targets, biases)
    logits = logits.detach().float()
    first = logits.argmax(dim=1)  # N
    scaled = logits.double() / temperature + torch.tensor(b or 0.0, dtype=torch.float64)
    x, y = fit_monotone_map(top_log_odds(scaled, first), first == targets)
    return Calibration.top_log_odds_map(temperature, b, x, y)


def fit_monotone_map(
    scores: torch.Tensor, correct: torch.Tensor
) -> tuple[list[float], list[float]]:
    """Breakpoints ``x -> y`` of the piecewise-linear map from N scores (log-odds) to the
    log-odds that each answer is right, minimising the log loss: knots at ``KNOTS`` + 1
    quantiles of the scores, slopes at least ``MIN_SLOPE``, ``SMOOTHING`` on their changes,
    starting from the identity."""
    scores = scores.double()
    knots = torch.quantile(scores, torch.linspace(0, 1, KNOTS + 1, dtype=torch.float64))
    knots = knots[torch.cat([torch.tensor([True]), knots.diff() > 1e-6])]  # distinct
    if len(knots) < 2:  # every score alike: a line through it
        knots = torch.cat([knots - 1, knots + 1])
    gaps = knots.diff()  # K
    theta = torch.full_like(gaps, math.log(1 - MIN_SLOPE)).requires_grad_()  # slopes 1
    start = knots[0].clone().requires_grad_()
    optimizer = torch.optim.LBFGS([theta, start], max_iter=500, line_search_fn="strong_wolfe")

    def values() -> torch.Tensor:
        slopes = MIN_SLOPE + theta.exp()  # K
        return torch.cat([start[None], start + torch.cumsum(slopes * gaps, 0)])  # K + 1

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        mapped = interp(scores, knots, values(), extrapolate=True)  # N
        loss = F.binary_cross_entropy_with_logits(mapped, correct.double())
        loss = loss + SMOOTHING / len(scores) * theta.diff().square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return knots.tolist(), values().detach().tolist()


def fit_top_label_isotonic(logits: torch.Tensor, targets: torch.Tensor) -> Calibration:
    """The monotone map from the top softmax probability to the chance that the top label is
    right (isotonic regression, scikit-learn's), as breakpoints."""
    from sklearn.isotonic import IsotonicRegression

    probs = F.softmax(logits.detach().float(), dim=1)
    top, predicted = probs.double().max(dim=1)
    correct = (predicted == targets).double()
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(top.numpy(), correct.numpy())
    x, y = iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist()
    if len(x) == 1:  # every held-out example had the same top probability: a constant map
        x, y = [0.0, 1.0], [y[0], y[0]]
    return Calibration.top_label_isotonic(x, y)


CANDIDATES: dict[str, Fit] = {
    "temperature": fit_temperature,
    "top-label isotonic": fit_top_label_isotonic,
    "class biases": fit_class_biases,
    "temperature, top log-odds map": partial(fit_top_log_odds_map, biases=False),
    "class biases, top log-odds map": partial(fit_top_log_odds_map, biases=True),
}
"""What ``python -m training calibrate`` fits and chooses from, by name."""
