"""Which calibration a checkpoint gets: every candidate (``training.calibration_fit``) judged on
the held-out examples by cross-fitting, so that none is judged on the examples it was fitted on,
and one chosen by ``RULE``. The test set never reaches the choice; ``on_test`` only reports."""

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from models.calibration import Calibration
from training.calibration import answer_metrics, top_share
from training.calibration_fit import CANDIDATES, Fit

FOLDS = 5
FOLD_SEED = 0
"""Seeds the split of the held-out examples into ``FOLDS`` parts."""
MAX_TOP_SHARE = 0.25
"""The most a candidate may serve one top probability to: the share of answers on its most
common served value (in each fold, with that fold's map) may not pass it."""
RULE = (
    f"the candidate with the lowest top-label log loss on the held-out examples, cross-fitted "
    f"in {FOLDS} folds (each fold's answers calibrated by the candidate fitted on the other "
    f"{FOLDS - 1}), among those whose most common served top probability is held by at most "
    f"{MAX_TOP_SHARE:.0%} of a fold's answers (by all candidates' lowest log loss if none is); "
    "then fitted again on every held-out example"
)
SOFTMAX = "softmax"
"""The plain softmax's row in the tables, for comparison: not a candidate."""

Table = dict[str, dict[str, float]]
"""Candidate name (and ``SOFTMAX``) -> ``training.calibration.answer_metrics``."""


@dataclass
class Choice:
    """The chosen candidate, every candidate fitted on all held-out examples, and how each did
    on them cross-fitted."""

    name: str
    fitted: dict[str, Calibration]
    held_out: Table

    @property
    def calibration(self) -> Calibration:
        return self.fitted[self.name]


def folds(n: int, k: int = FOLDS, seed: int = FOLD_SEED) -> list[torch.Tensor]:
    """``k`` disjoint index sets covering ``range(n)``, drawn at random from ``seed``."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return [order[i::k] for i in range(k)]


def cross_fitted(
    fit: Fit, logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """The N x C probabilities each fold gets from ``fit`` on the other folds, and the share of
    answers on their own fold's most common top probability."""
    probs = torch.empty(logits.shape, dtype=torch.float32)
    on_one_value = 0.0
    for part in folds(len(targets)):
        rest = torch.ones(len(targets), dtype=torch.bool)
        rest[part] = False
        probs[part] = fit(logits[rest], targets[rest]).probabilities(logits[part])
        on_one_value += top_share(probs[part].max(dim=1).values) * len(part)
    return probs, on_one_value / len(targets)


def choose(
    logits: torch.Tensor, targets: torch.Tensor, candidates: dict[str, Fit] = CANDIDATES
) -> Choice:
    """Every candidate cross-fitted on the held-out N x C logits and N targets, the one ``RULE``
    picks, and all of them fitted on every held-out example."""
    held_out: Table = {SOFTMAX: answer_metrics(F.softmax(logits.float(), dim=1), targets)}
    for name, fit in candidates.items():
        probs, share = cross_fitted(fit, logits, targets)
        held_out[name] = answer_metrics(probs, targets) | {"top_share": round(share, 6)}
    eligible = [n for n in candidates if held_out[n]["top_share"] <= MAX_TOP_SHARE]
    name = min(eligible or list(candidates), key=lambda n: held_out[n]["log_loss"])
    fitted = {n: fit(logits, targets) for n, fit in candidates.items()}
    return Choice(name, fitted, held_out)


def on_test(choice: Choice, logits: torch.Tensor, targets: torch.Tensor) -> Table:
    """How the plain softmax and every fitted candidate do on test logits: a report only."""
    table: Table = {SOFTMAX: answer_metrics(F.softmax(logits.float(), dim=1), targets)}
    for name, calibration in choice.fitted.items():
        table[name] = answer_metrics(calibration.probabilities(logits), targets)
    return table


def card_figures(choice: Choice, tested: Table) -> dict[str, Any]:
    """The card entry's account of the choice: the candidate, the rule, the ECE before and
    after, and every candidate's and the plain softmax's figures, held out and on test."""

    def ece(table: Table) -> dict[str, float]:
        return {"before": table[SOFTMAX]["ece"], "after": table[choice.name]["ece"]}

    return {
        "candidate": choice.name,
        "rule": RULE,
        "cross_fitting": f"{FOLDS} folds, drawn with seed {FOLD_SEED}",
        "ece": {"held_out": ece(choice.held_out), "test": ece(tested)},
        "candidates": {
            name: {"held_out": choice.held_out[name], "test": tested[name]}
            for name in choice.held_out
        },
    }
