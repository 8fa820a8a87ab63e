"""Calibrated probabilities: a card's optional ``calibration`` entry, applied to a net's logits.

A classifier's softmax is a ranking, not a measured chance of being right: the digit nets,
trained with label smoothing and augmentation, say 0.95 where they are right 99.5 % of the
time, and the surname net, trained with class weights, speaks for a balanced prior. A
calibration maps the logits to probabilities whose top value matches the accuracy measured on
data the weights never saw. ``training.calibration`` fits it; this module only applies it, with
torch alone, so that serving needs nothing more.

The card entry (``"calibration"``) holds ``method`` and ``parameters``, plus what it was fitted
on and the calibration error before and after, which are for people and not read here:

- ``{"method": "temperature", "parameters": {"temperature": T}}``: softmax(logits / T)
  (Guo et al. 2017); every answer keeps its rank.
- ``{"method": "top-label isotonic", "parameters": {"x": [...], "y": [...]}}``: the top softmax
  probability goes through the monotone map the breakpoints draw (linear between them, flat
  beyond them, as ``numpy.interp``); the rest of the mass is shared among the other classes in
  proportion to their softmax, none above the top (water filling), so the first label stays
  first.

A card without the entry is served with the plain softmax.
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
METHODS: Final = (TEMPERATURE, TOP_LABEL_ISOTONIC)
Method = Literal["softmax", "temperature", "top-label isotonic"]
TIE_MARGIN: Final = 1e-6
"""How far below the top every other class stays after water filling, so that no other label
ties with the first one (ties are listed in label order, which could put another label first).
Larger than float32's spacing near 1 (6e-8), so it survives the conversion to float32."""


@dataclass(frozen=True)
class Calibration:
    """How a checkpoint turns logits into the probabilities it answers with."""

    method: Method = "softmax"
    temperature: float = 1.0
    x: tuple[float, ...] = ()
    """Isotonic breakpoints: top softmax probabilities, strictly increasing."""
    y: tuple[float, ...] = ()
    """Isotonic breakpoints: the calibrated top probability at each ``x``, non-decreasing."""

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
        return cls.top_label_isotonic(parameters.get("x"), parameters.get("y"))

    @classmethod
    def with_temperature(cls, temperature: object) -> "Calibration":
        """softmax(logits / temperature), for a finite temperature above 0."""
        if not _number(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a number above 0, not {temperature!r}")
        return cls(method=TEMPERATURE, temperature=float(temperature))

    @classmethod
    def top_label_isotonic(cls, x: object, y: object) -> "Calibration":
        """The isotonic map through breakpoints ``x -> y`` applied to the top probability."""
        if not _numbers(x) or not _numbers(y):
            raise ValueError("x and y must be lists of numbers")
        if len(x) != len(y) or len(x) < 2:
            raise ValueError(f"x and y need the same length, at least 2 (got {len(x)}, {len(y)})")
        if not all(0 <= v <= 1 for v in (*x, *y)):
            raise ValueError("breakpoints are probabilities, in [0, 1]")
        if any(b <= a for a, b in pairwise(x)):
            raise ValueError("x must be strictly increasing")
        if any(b < a for a, b in pairwise(y)):
            raise ValueError("y must not decrease (the map is monotone)")
        return cls(method=TOP_LABEL_ISOTONIC, x=tuple(map(float, x)), y=tuple(map(float, y)))

    def parameters(self) -> dict[str, Any]:
        """The card's ``parameters`` for this calibration."""
        if self.method == TEMPERATURE:
            return {"temperature": self.temperature}
        if self.method == TOP_LABEL_ISOTONIC:
            return {"x": list(self.x), "y": list(self.y)}
        return {}

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """B x C logits -> B x C calibrated probabilities (float32, rows sum to 1); each row
        depends on its own logits only."""
        logits = logits.float()
        if self.method == TEMPERATURE:
            return F.softmax(logits / self.temperature, dim=1)
        probs = F.softmax(logits, dim=1)
        if self.method == TOP_LABEL_ISOTONIC:
            return self._top_label(probs.double()).float()
        return probs

    def _top_label(self, probs: torch.Tensor) -> torch.Tensor:
        """Isotonic top probability, the rest water-filled below it (B x C, float64)."""
        classes = probs.shape[1]
        top, index = probs.max(dim=1)  # B
        xp = torch.tensor(self.x, dtype=probs.dtype, device=probs.device)
        fp = torch.tensor(self.y, dtype=probs.dtype, device=probs.device)
        # At least 1/C (plus the margin): the others then fit below it.
        calibrated = interp(top, xp, fp).clamp(min=1 / classes + TIE_MARGIN, max=1.0)  # B
        is_top = F.one_hot(index, classes).bool()  # B x C
        others = water_fill(
            torch.where(is_top, 0.0, probs),
            mass=(1 - calibrated)[:, None],
            cap=(calibrated - TIE_MARGIN)[:, None],
            free=~is_top,
        )
        return torch.where(is_top, calibrated[:, None], others)


def interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``numpy.interp`` in torch: piecewise linear through (xp, fp), flat beyond the ends."""
    right = torch.searchsorted(xp, x, right=True).clamp(1, len(xp) - 1)  # like x
    x0, x1, y0, y1 = xp[right - 1], xp[right], fp[right - 1], fp[right]
    t = ((x - x0) / (x1 - x0)).clamp(0.0, 1.0)
    return y0 + t * (y1 - y0)


def water_fill(
    weights: torch.Tensor, mass: torch.Tensor, cap: torch.Tensor, free: torch.Tensor
) -> torch.Tensor:
    """Share ``mass`` (B x 1) among the ``free`` columns of each row (B x C) in proportion to
    ``weights``, none above ``cap`` (B x 1): a share over the cap is held at it and the excess
    goes to the rest, in proportion again. Needs ``mass <= cap x free columns``; rows whose
    weights are all 0 share equally."""
    weights = torch.where(free, weights, 0.0)
    empty = weights.sum(dim=1, keepdim=True) == 0  # B x 1
    weights = torch.where(empty & free, 1.0, weights)
    capped = torch.zeros_like(free)
    share = weights
    for _ in range(free.shape[1]):
        left = mass - cap * capped.sum(dim=1, keepdim=True)  # B x 1
        open_weights = torch.where(capped, 0.0, weights)
        total = open_weights.sum(dim=1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
        share = left * open_weights / total
        over = (share > cap) & ~capped
        if not bool(over.any()):
            break
        capped |= over
    return torch.where(capped, cap.expand_as(share), share)


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(values: object) -> TypeGuard[Sequence[float]]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        return False
    return all(_number(v) for v in values)
