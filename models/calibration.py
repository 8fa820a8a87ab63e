"""Calibrated probabilities: a card's optional ``calibration`` entry, applied to a net's logits.

A classifier's softmax is a ranking, not a measured chance of being right: the digit nets,
trained with label smoothing and augmentation, say 0.95 where they are right 99.5 % of the
time, and the surname net, trained with class weights, speaks for a balanced prior. A
calibration maps the logits to probabilities whose top value matches the accuracy measured on
data the weights never saw. ``training.calibration_fit`` fits the maps and
``training.calibration_choice`` picks one; this module only applies it, with torch alone, so that
serving needs nothing more.

The card entry (``"calibration"``) holds ``method`` and ``parameters``, plus how it was chosen
and what it was measured at, which are for people and not read here. Every method keeps the
net's first label first (it is the largest logit, whatever the map) and gives it a probability:

- ``temperature`` ``{"temperature": T}``: softmax(logits / T) (Guo et al. 2017).
- ``top-label isotonic`` ``{"x": [...], "y": [...]}``: the top softmax probability through the
  monotone map the breakpoints draw (linear between them, flat beyond them, as
  ``numpy.interp``). Flat steps serve many answers one value.
- ``class biases`` ``{"temperature": T, "biases": [b_1, ... b_C]}``: the first label's
  probability under softmax(logits / T + b), the biases undoing a prior the training set or
  its class weights gave the net.
- ``top log-odds map`` ``{"temperature": T, "biases": [...] (optional), "x": [...], "y":
  [...]}``: the first label's log-odds log(p / (1 - p)) under softmax(logits / T + b) through
  a strictly increasing piecewise-linear map (breakpoints ``x -> y`` in log-odds, the end
  segments extended), so that different log-odds keep different probabilities.

Then, for every method, the odds against the first label get ``ODDS_FLOOR`` added, which holds
the top at most ``MAX_TOP`` (never 1, even in float32) and moves no probability by more than
1e-4, and a soft floor keeps the top above 1/C (``soft_floor``). The rest of the mass goes to
the other labels in proportion to softmax(logits / T) (the net's own order), a ``SPREAD`` of it
evenly so that none gets 0, each below the first and below the labels before it (water
filling). A card without the entry is served with the plain softmax.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Final, Literal, TypeGuard

import torch
import torch.nn.functional as F

CARD_KEY: Final = "calibration"
TEMPERATURE: Final = "temperature"
TOP_LABEL_ISOTONIC: Final = "top-label isotonic"
CLASS_BIASES: Final = "class biases"
TOP_LOG_ODDS_MAP: Final = "top log-odds map"
METHODS: Final = (TEMPERATURE, TOP_LABEL_ISOTONIC, CLASS_BIASES, TOP_LOG_ODDS_MAP)
Method = Literal["softmax", "temperature", "top-label isotonic", "class biases", "top log-odds map"]
TIE_MARGIN: Final = 1e-6
"""How far below the label before it each other label stays after water filling (the k-th
after the first at least k margins below it), so that no label ties with the first one (ties
are listed in label order, which could put another label first) or passes a larger one.
Larger than float32's spacing near 1 (6e-8), so it survives the conversion to float32."""
MAX_TOP: Final = 1 - 1e-4
"""The most a calibrated answer's first label gets. A held-out set of a few thousand examples
cannot tell 0.9999 from 1, so nothing is served as certain; float32 rounds 0.9999 to
0.99989998, never to 1."""
ODDS_FLOOR: Final = (1 - MAX_TOP) / MAX_TOP
"""Added to the calibrated odds against the first label: 1 / (1 + odds + ODDS_FLOOR) is at most
``MAX_TOP`` and still strictly increasing in the calibrated probability."""
FLOOR_SOFTNESS: Final = 0.25
"""How soft the floor of the first label's log-odds is (``soft_floor``): it lifts log-odds 1
above the floor by 0.005 and 0.5 above it by 0.03, and keeps first labels apart in float32
down to about 3.5 below it (a probability of about 1/(33 C))."""
SPREAD: Final = 1e-6
"""The share of the rest that the other labels split evenly (the remainder in proportion to the
softmax): every label keeps a share of at least 1e-4 x 1e-6 / (C - 1), about 6e-12 for 18
labels, which float32 holds, where a softmax that far down would be 0."""


@dataclass(frozen=True)
class Calibration:
    """How a checkpoint turns logits into the probabilities it answers with."""

    method: Method = "softmax"
    temperature: float = 1.0
    biases: tuple[float, ...] = ()
    """Per-class offsets added to logits / temperature (empty: none)."""
    x: tuple[float, ...] = ()
    """Breakpoints, strictly increasing: top softmax probabilities (isotonic) or log-odds of
    the first label (top log-odds map)."""
    y: tuple[float, ...] = ()
    """The map's value at each ``x``: non-decreasing probabilities (isotonic) or strictly
    increasing log-odds (top log-odds map)."""

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> "Calibration":
        """The card's calibration (plain softmax without one); ValueError says what is wrong."""
        entry = card.get(CARD_KEY)
        if entry is None:
            return cls()
        if not isinstance(entry, Mapping):
            raise ValueError("must be a JSON object")
        method, parameters = entry.get("method"), entry.get("parameters")
        if method not in METHODS:
            raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
        if not isinstance(parameters, Mapping):
            raise ValueError("parameters must be a JSON object")
        if method == TEMPERATURE:
            return cls.with_temperature(parameters.get("temperature"))
        if method == TOP_LABEL_ISOTONIC:
            return cls.top_label_isotonic(parameters.get("x"), parameters.get("y"))
        temperature, biases = parameters.get("temperature"), parameters.get("biases", [])
        labels = card.get("labels")
        if isinstance(labels, list) and biases and len(biases) != len(labels):
            raise ValueError(f"{len(biases)} biases for {len(labels)} labels")
        if method == CLASS_BIASES:
            return cls.with_biases(temperature, biases)
        return cls.top_log_odds_map(temperature, biases, parameters.get("x"), parameters.get("y"))

    @classmethod
    def with_temperature(cls, temperature: object) -> "Calibration":
        """softmax(logits / temperature), for a finite temperature above 0."""
        return cls(method=TEMPERATURE, temperature=_temperature(temperature))

    @classmethod
    def with_biases(cls, temperature: object, biases: object) -> "Calibration":
        """The first label's probability under softmax(logits / temperature + biases)."""
        if not _numbers(biases) or len(biases) < 2:
            raise ValueError("biases must be a list of numbers, one per class")
        return cls(CLASS_BIASES, _temperature(temperature), tuple(map(float, biases)))

    @classmethod
    def top_log_odds_map(
        cls, temperature: object, biases: object, x: object, y: object
    ) -> "Calibration":
        """The first label's log-odds (under softmax(logits / temperature + biases), no biases
        when ``biases`` is empty) through the strictly increasing map ``x -> y``."""
        if not _numbers(biases) or len(biases) == 1:
            raise ValueError("biases must be a list of numbers, one per class, or empty")
        x, y = _breakpoints(x, y)
        if any(b <= a for a, b in pairwise(y)):
            raise ValueError("y must be strictly increasing (different log-odds stay apart)")
        return cls(TOP_LOG_ODDS_MAP, _temperature(temperature), tuple(map(float, biases)), x, y)

    @classmethod
    def top_label_isotonic(cls, x: object, y: object) -> "Calibration":
        """The isotonic map through breakpoints ``x -> y`` applied to the top probability."""
        x, y = _breakpoints(x, y)
        if not all(0 <= v <= 1 for v in (*x, *y)):
            raise ValueError("breakpoints are probabilities, in [0, 1]")
        if any(b < a for a, b in pairwise(y)):
            raise ValueError("y must not decrease (the map is monotone)")
        return cls(method=TOP_LABEL_ISOTONIC, x=x, y=y)

    def parameters(self) -> dict[str, Any]:
        """The card's ``parameters`` for this calibration."""
        if self.method == TEMPERATURE:
            return {"temperature": self.temperature}
        if self.method == TOP_LABEL_ISOTONIC:
            return {"x": list(self.x), "y": list(self.y)}
        if self.method == CLASS_BIASES:
            return {"temperature": self.temperature, "biases": list(self.biases)}
        if self.method == TOP_LOG_ODDS_MAP:
            biases = {"biases": list(self.biases)} if self.biases else {}
            return {"temperature": self.temperature, **biases, "x": list(self.x), "y": list(self.y)}
        return {}

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """B x C logits -> B x C calibrated probabilities (float32, rows sum to 1); each row
        depends on its own logits only, and its first label is the largest logit's."""
        logits = logits.float()
        if self.method == "softmax":
            return F.softmax(logits, dim=1)
        first = logits.argmax(dim=1)  # B
        scaled = logits.double() / self.temperature  # B x C
        if self.method == TOP_LABEL_ISOTONIC:
            top = F.softmax(logits, dim=1).double().gather(1, first[:, None])[:, 0]  # B
            calibrated = interp(top, _table(self.x, scaled), _table(self.y, scaled))
            odds_against = (1 - calibrated) / calibrated  # inf where the map says 0
        else:
            log_odds = top_log_odds(scaled + _table(self.biases, scaled), first)  # B
            if self.method == TOP_LOG_ODDS_MAP:
                xp, fp = _table(self.x, scaled), _table(self.y, scaled)
                log_odds = interp(log_odds, xp, fp, extrapolate=True)
            odds_against = torch.exp(-log_odds)
        log_odds = -torch.log(odds_against + ODDS_FLOOR)  # at most log(1 / ODDS_FLOOR)
        top = torch.sigmoid(soft_floor(log_odds, logits.shape[1])).clamp(max=MAX_TOP)
        return share_the_rest(top, first, F.softmax(scaled, dim=1)).float()


def soft_floor(log_odds: torch.Tensor, classes: int) -> torch.Tensor:
    """The first label's log-odds held above those of ``1/classes`` plus the margins the others
    need below it (``share_the_rest``), smoothly: ``floor + s softplus((log_odds - floor) / s)``
    with s = ``FLOOR_SOFTNESS``, strictly increasing, so that first labels whose calibrated
    probability is under 1/C keep their order instead of sharing the floor."""
    low = 1 / classes + TIE_MARGIN * classes / 2
    floor = math.log(low / (1 - low))
    above = (log_odds - floor) / FLOOR_SOFTNESS
    return floor + FLOOR_SOFTNESS * torch.logaddexp(above, torch.zeros_like(above))  # softplus


def top_log_odds(logits: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) of class ``first`` (B) under softmax(logits) (B x C), from the logits
    (the first logit minus the log-sum-exp of the others): exact where p rounds to 1."""
    own = logits.gather(1, first[:, None])[:, 0]  # B
    others = logits.scatter(1, first[:, None], -math.inf)  # B x C
    return own - others.logsumexp(dim=1)


def share_the_rest(top: torch.Tensor, first: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """B x C probabilities: ``top`` (B) for column ``first``, the rest shared among the others
    in proportion to ``weights`` with ``SPREAD`` of it evenly, the k-th largest other at most
    the top less k x ``TIE_MARGIN``, so that none ties with the top or passes a larger one.
    The top is held to at least 1/C plus C/2 margins, which leaves the others room below it."""
    classes = weights.shape[1]
    top = top.clamp(min=1 / classes + TIE_MARGIN * classes / 2)[:, None]  # B x 1
    is_top = F.one_hot(first, classes).bool()  # B x C
    others = torch.where(is_top, 0.0, weights)
    others = others / others.sum(dim=1, keepdim=True).clamp_min(torch.finfo(others.dtype).tiny)
    others = (1 - SPREAD) * others + SPREAD / (classes - 1)
    order = torch.where(is_top, -1.0, others).argsort(dim=1, descending=True)  # the top last
    rank = order.argsort(dim=1) + 1  # B x C: 1 for the largest other
    shares = water_fill(others, mass=1 - top, cap=top - TIE_MARGIN * rank, free=~is_top)
    return torch.where(is_top, top, shares)


def interp(
    x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor, extrapolate: bool = False
) -> torch.Tensor:
    """``numpy.interp`` in torch: piecewise linear through (xp, fp), flat beyond the ends, or
    with ``extrapolate`` the end segments extended."""
    right = torch.searchsorted(xp, x, right=True).clamp(1, len(xp) - 1)  # like x
    x0, x1, y0, y1 = xp[right - 1], xp[right], fp[right - 1], fp[right]
    t = (x - x0) / (x1 - x0)
    return y0 + (t if extrapolate else t.clamp(0.0, 1.0)) * (y1 - y0)


def water_fill(
    weights: torch.Tensor, mass: torch.Tensor, cap: torch.Tensor, free: torch.Tensor
) -> torch.Tensor:
    """Share ``mass`` (B x 1) among the ``free`` columns of each row (B x C) in proportion to
    ``weights``, none above its ``cap`` (B x 1, or B x C for a cap per column): a share over its
    cap is held at it and the excess goes to the rest, in proportion again. Needs ``mass`` to
    fit under the free columns' caps; rows whose weights are all 0 share equally."""
    weights = torch.where(free, weights, 0.0)
    empty = weights.sum(dim=1, keepdim=True) == 0  # B x 1
    weights = torch.where(empty & free, 1.0, weights)
    cap = cap.expand_as(weights)
    capped = torch.zeros_like(free)
    share = weights
    for _ in range(free.shape[1]):
        left = mass - torch.where(capped, cap, 0.0).sum(dim=1, keepdim=True)  # B x 1
        open_weights = torch.where(capped, 0.0, weights)
        total = open_weights.sum(dim=1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
        share = left * open_weights / total
        over = (share > cap) & ~capped & free
        if not bool(over.any()):
            break
        capped |= over
    return torch.where(capped, cap, share)


def _table(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    """``values`` as a float64 tensor on ``like``'s device; 0 when empty (no biases)."""
    return torch.tensor(values or 0.0, dtype=like.dtype, device=like.device)


def _temperature(value: object) -> float:
    if not _number(value) or value <= 0:
        raise ValueError(f"temperature must be a number above 0, not {value!r}")
    return float(value)


def _breakpoints(x: object, y: object) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if not _numbers(x) or not _numbers(y):
        raise ValueError("x and y must be lists of numbers")
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"x and y need the same length, at least 2 (got {len(x)}, {len(y)})")
    if any(b <= a for a, b in pairwise(x)):
        raise ValueError("x must be strictly increasing")
    return tuple(map(float, x)), tuple(map(float, y))


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(values: object) -> TypeGuard[Sequence[float]]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        return False
    return all(_number(v) for v in values)
