"""``python -m training calibrate NAME``: fit every calibration candidate on the examples a
checkpoint's training run held out, choose one there (``training.calibration_choice``), and
write it into the checkpoint's card with every candidate's figures. The weights are not touched:
``card.json`` carries the sha256 of ``model.safetensors``, not of itself, so the checkpoint
still loads, now with its ``calibration`` entry (``models.calibration``)."""

import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from models.calibration import CARD_KEY, Calibration
from models.checkpoint import Checkpoint, load_checkpoint, write_card
from training.calibration import (
    BINS,
    DIGITS_REFUSED_AT_MOST,
    OUTLIER_SHARE,
    abstention_threshold,
    is_classifier,
    mixes_non_digits,
)
from training.calibration_choice import card_figures, choose, on_test
from training.data import checksums, load_mnist, mnist_paths, names_paths
from training.digits import digit_logits, held_out_digits
from training.names import held_out_name_rows, name_logits, names_test_set
from training.outliers import outliers

OUTLIER_SEED = 104_729
"""Seeds the calibration's non-digits (plus the card's seed); training draws its own pool from
the run's seed, so none of these trained the weights."""

MNIST_TRAIN = 60_000


class CalibrationRefused(Exception):
    """A checkpoint that cannot be calibrated honestly; the message says why and what to do."""


@dataclass
class Examples:
    """Logits (N x C) of a checkpoint on labelled examples, and what they are, in words."""

    logits: torch.Tensor
    targets: torch.Tensor
    description: str


def held_out(checkpoint: Checkpoint, data_dir: Path, device: torch.device) -> Examples:
    """The checkpoint's logits on the examples its training run kept from the weights; refused
    when it kept none (it would have to be calibrated on the test set)."""
    card, name = checkpoint.card, checkpoint.name
    _check_data(card, data_dir)
    hp, seed = card.get("hyperparameters", {}), card["seed"]
    if card["architecture"] == "NameGRU":
        names, labels = held_out_name_rows(card, data_dir)
        if not names:
            raise CalibrationRefused(
                f"{name}: no held-out slice: its card says val_fraction = "
                f"{hp.get('val_fraction', 0)}, so every training name fitted the weights; "
                "retrain with --set val_fraction=0.1"
            )
        targets = torch.tensor([card["labels"].index(label) for label in labels])
        description = (
            f"the {len(names):,} names of names_train that the training run held out "
            f"(val_fraction {hp['val_fraction']}, seed {seed}: the first {len(names):,} of the "
            "seed's random permutation, after the junk rows are dropped): "
            + (
                "they chose the training epoch but never fitted a weight"
                if hp.get("select_epoch", True)
                else "training kept its last epoch, so they neither fitted a weight nor chose one"
            )
            + "; names_test was not used"
        )
        return Examples(name_logits(checkpoint.model, names, device), targets, description)
    images = held_out_digits(card, load_mnist(data_dir, "train"))
    if not len(images.labels):
        raise CalibrationRefused(
            f"{name}: no held-out slice: its card says val_size = {hp.get('val_size', 0)}, so "
            f"all {MNIST_TRAIN:,} training images fitted the weights; retrain with "
            "--set val_size=5000"
        )
    description = (
        f"the {len(images.labels):,} MNIST training images that the training run held out "
        f"(val_size {hp['val_size']}, seed {seed}: the first {len(images.labels):,} of the "
        "seed's random permutation of the 60,000): they chose the training epoch but never "
        "fitted a weight; the test set was not used"
    )
    logits = digit_logits(checkpoint.model, images.images, device)
    if not mixes_non_digits(card):  # a net never shown non-digits: digits alone
        return Examples(logits, images.labels, description)
    odd = non_digit_logits(checkpoint, len(images.labels), device)
    description += (
        f", mixed with {len(odd):,} generated non-digits (training.outliers, seed "
        f"{OUTLIER_SEED + int(seed)}; {OUTLIER_SHARE:.0%} of the mix), to which every answer "
        "counts as wrong"
    )
    return Examples(
        torch.cat([logits, odd]),
        torch.cat([images.labels, torch.full((len(odd),), -1, dtype=images.labels.dtype)]),
        description,
    )


def non_digit_logits(checkpoint: Checkpoint, digits: int, device: torch.device) -> torch.Tensor:
    """A digit checkpoint's logits on the calibration's generated non-digits: as many as make
    ``OUTLIER_SHARE`` of a mix with ``digits`` digits, seeded apart from training's pool."""
    n = round(digits * OUTLIER_SHARE / (1 - OUTLIER_SHARE))
    odd = outliers(n, seed=OUTLIER_SEED + int(checkpoint.card["seed"]))
    return digit_logits(checkpoint.model, torch.from_numpy(odd), device)


def on_test_set(checkpoint: Checkpoint, data_dir: Path, device: torch.device) -> Examples:
    """The checkpoint's logits on its family's test set (MNIST test, names_test)."""
    if checkpoint.card["architecture"] == "NameGRU":
        names, targets, _ = names_test_set(data_dir, checkpoint.card["labels"])
        logits = name_logits(checkpoint.model, names, device)
        return Examples(logits, targets, f"the {len(names):,} rows of names_test")
    test = load_mnist(data_dir, "test")
    logits = digit_logits(checkpoint.model, test.images, device)
    return Examples(logits, test.labels, f"the {len(test.labels):,} MNIST test images")


def _check_data(card: dict[str, Any], data_dir: Path) -> None:
    paths = names_paths(data_dir) if card["architecture"] == "NameGRU" else mnist_paths(data_dir)
    expected = card.get("data", {}).get("sha256")
    if expected is not None and checksums(paths) != expected:
        raise CalibrationRefused(
            f"{card['name']}: the data in {data_dir} is not what the card was trained on "
            "(sha256 differs), so its held-out split cannot be found again"
        )


def changed_answers(calibration: Calibration, logits: torch.Tensor) -> int:
    """How many first labels the calibration changes (0 by construction)."""
    raw = logits.float().argmax(dim=1)
    return int((calibration.probabilities(logits).argmax(dim=1) != raw).sum())


ABSTENTION_KEY = "abstention"


def abstention(
    calibration: Calibration, fitted: Examples, odd: torch.Tensor, test: Examples
) -> dict[str, Any]:
    """A digit net's abstention rule (read by the service) and what it refuses, measured.

    The net abstains when its softmax (before calibration) gives no digit even the threshold
    (``abstention_threshold``: at most 0.15, low enough for the held-out digits): its guess is
    spread close to even over the ten."""
    digits = fitted.targets >= 0
    threshold = abstention_threshold(torch.softmax(fitted.logits[digits].float(), dim=1).max(1)[0])

    def refused(logits: torch.Tensor) -> float:
        top = torch.softmax(logits.float(), dim=1).max(dim=1).values
        return round(float((top < threshold).double().mean()), 6)

    top, predicted = torch.softmax(test.logits.float(), dim=1).max(dim=1)
    right = (predicted == test.targets) & (top >= threshold)
    return {
        "score": "softmax top probability, before calibration",
        "threshold": threshold,
        "chosen": f"the highest of 0.15, 0.145, ... 0.105 that refuses at most "
        f"{DIGITS_REFUSED_AT_MOST:.2%} of the held-out digits; python -m bench.trust measures "
        "what it refuses of realistic digit uploads and of uploads that are not digits",
        "effect": "below the threshold the service answers 422 no-digit-found, or with "
        "answer_anyway=true flags the answer abstained",
        "refused": {
            "held_out_digits": refused(fitted.logits[digits]),
            "held_out_non_digits": refused(odd),
            "test_digits": refused(test.logits),
        },
        "test_accuracy_refused_counted_wrong": round(float(right.double().mean()), 6),
    }


def calibrate(
    name: str, weights_dir: Path, data_dir: Path, device: torch.device, argv: list[str]
) -> dict[str, Any]:
    """Choose ``weights_dir/name``'s calibration on its held-out examples and write it into its
    card, with every candidate's figures (held-out cross-fitted; test set, reported only);
    return the entry."""
    directory = weights_dir / name
    checkpoint = load_checkpoint(directory, device)
    if not is_classifier(checkpoint.card):
        raise CalibrationRefused(f"{name}: not a classifier; only classifiers are calibrated")
    fitted = held_out(checkpoint, data_dir, device)
    choice = choose(fitted.logits, fitted.targets)
    calibration = choice.calibration
    test = on_test_set(checkpoint, data_dir, device)
    tested = on_test(choice, test.logits, test.targets)
    entry = {
        "method": calibration.method,
        "parameters": calibration.parameters(),
        "fitted_on": fitted.description,
        "examples": len(fitted.targets),
        "bins": BINS,
        **card_figures(choice, tested),
        "test_examples": len(test.targets),
        "test_answers_changed": changed_answers(calibration, test.logits),
        "command": shlex.join(["python", "-m", "training", *argv]),
        "versions": {"torch": version("torch"), "scikit-learn": version("scikit-learn")},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    card = {k: v for k, v in checkpoint.card.items() if k not in (CARD_KEY, ABSTENTION_KEY)}
    if checkpoint.card["architecture"] != "NameGRU":
        digits = fitted.targets >= 0
        odd = (  # the mix's non-digits, or as many made for the measure alone
            fitted.logits[~digits]
            if not digits.all()
            else non_digit_logits(checkpoint, int(digits.sum()), device)
        )
        card[ABSTENTION_KEY] = abstention(calibration, fitted, odd, test)
    write_card(directory, {**card, CARD_KEY: entry})
    load_checkpoint(directory)  # the card as written loads, calibration included
    return entry
