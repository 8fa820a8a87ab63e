"""Calibration error, the fits, and ``python -m training calibrate`` on tiny checkpoints."""

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from models import NameGRU, NameGRUConfig, ResNet, ResNetConfig
from models.calibration import METHODS, Calibration
from models.checkpoint import CARD_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint
from tests.app.conftest import COUNTRIES, DIGIT_CARD
from training.__main__ import main
from training.calibration import answer_metrics, auroc, expected_calibration_error, top_log_loss
from training.calibration_choice import MAX_TOP_SHARE, SOFTMAX, choose, cross_fitted, folds
from training.calibration_fit import (
    CANDIDATES,
    fit_class_biases,
    fit_temperature,
    fit_top_label_isotonic,
    fit_top_log_odds_map,
)
from training.data import checksums, mnist_paths, names_paths


def _rows(tops: list[float], classes: int = 4) -> torch.Tensor:
    """Probability rows whose first class has the given top probability."""
    rows = [[top, *[(1 - top) / (classes - 1)] * (classes - 1)] for top in tops]
    return torch.tensor(rows, dtype=torch.float64)


def test_ece_on_a_hand_made_case() -> None:
    # Bins of width 1/15: 0.9 and 0.9 share (0.867, 0.933], one right and one wrong: gap 0.4
    # over 2 of 5 examples; 0.7 right: gap 0.3 over 1 of 5; 0.3 right: gap 0.7 over 1 of 5
    # (its other classes hold 0.233 each, less than 0.3); 1.0 right: no gap.
    probs = _rows([0.9, 0.9, 0.7, 0.3, 1.0])
    targets = torch.tensor([0, 1, 0, 0, 0])
    ece = expected_calibration_error(probs, targets)
    assert ece == pytest.approx(0.4 * 2 / 5 + 0.3 / 5 + 0.7 / 5)


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    probs = _rows([0.75] * 4)
    assert expected_calibration_error(probs, torch.tensor([0, 0, 0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, torch.tensor([0, 1, 1, 1])) == pytest.approx(0.5)


def test_log_loss_and_auroc_on_hand_made_cases() -> None:
    right = torch.tensor([True, False, True, False])
    # right answers at 0.9 and 0.7, wrong ones at 0.8 and 0.6: 3 of the 4 pairs in order
    assert auroc(torch.tensor([0.9, 0.8, 0.7, 0.6]), right) == pytest.approx(0.75)
    assert auroc(torch.tensor([0.9, 0.1, 0.7, 0.6]), right) == pytest.approx(1.0)
    assert auroc(torch.tensor([0.5, 0.5, 0.5, 0.5]), right) == pytest.approx(0.5)  # ties: half
    assert auroc(torch.tensor([0.9, 0.8]), torch.tensor([True, True])) == 0.5
    expected = -(math.log(0.8) + math.log(0.2)) / 2
    assert top_log_loss(torch.tensor([0.8, 0.8]), torch.tensor([True, False])) == pytest.approx(
        expected
    )
    # a plain softmax's 1.0 on a wrong answer is a large loss, not an infinite one
    assert 15 < top_log_loss(torch.tensor([1.0]), torch.tensor([False])) < 17


def test_auroc_is_scikit_learns() -> None:
    from sklearn.metrics import roc_auc_score

    gen = torch.Generator().manual_seed(3)
    score = (torch.rand(500, generator=gen) * 20).round() / 20  # many ties
    right = torch.rand(500, generator=gen) < score
    assert auroc(score, right) == pytest.approx(roc_auc_score(right.numpy(), score.numpy()))


def test_answer_metrics_counts_the_answers_on_one_value() -> None:
    probs = _rows([0.9, 0.9, 0.9, 0.6])
    metrics = answer_metrics(probs, torch.tensor([0, 0, 1, -1]))  # -1: no class, always wrong
    assert metrics["top_share"] == 0.75
    assert metrics["auroc"] == pytest.approx(0.75)  # the right 0.9s tie with a wrong 0.9
    assert set(metrics) == {"ece", "log_loss", "auroc", "top_share"}


def _synthetic(
    temperature: float, n: int = 20_000, biases: list[float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose labels are drawn from softmax(logits / temperature + biases)."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(n, 10, generator=gen, dtype=torch.float64) * 4
    shift = torch.tensor(biases or [0.0] * 10, dtype=torch.float64)
    truth = F.softmax(logits / temperature + shift, dim=1)
    targets = torch.multinomial(truth, 1, generator=gen)[:, 0]
    return logits, targets


@pytest.mark.parametrize("temperature", [0.5, 2.5])
def test_temperature_fit_recovers_a_known_temperature(temperature: float) -> None:
    logits, targets = _synthetic(temperature)
    fitted = fit_temperature(logits, targets)
    assert fitted.method == "temperature"
    assert fitted.temperature == pytest.approx(temperature, rel=0.05)
    before = expected_calibration_error(F.softmax(logits, dim=1), targets)
    after = expected_calibration_error(fitted.probabilities(logits), targets)
    assert after < 0.02 < before


def test_isotonic_fit_calibrates_the_top_label_on_new_examples() -> None:
    logits, targets = _synthetic(2.0, n=40_000)
    fitted = fit_top_label_isotonic(logits[:20_000], targets[:20_000])
    assert fitted.method == "top-label isotonic"
    assert list(fitted.x) == sorted(set(fitted.x)) and list(fitted.y) == sorted(fitted.y)
    new_logits, new_targets = logits[20_000:], targets[20_000:]
    probs = fitted.probabilities(new_logits)
    assert torch.equal(probs.argmax(1), new_logits.argmax(1))
    before = expected_calibration_error(F.softmax(new_logits, dim=1), new_targets)
    assert expected_calibration_error(probs, new_targets) < 0.02 < before


BIASES = [1.0, -1.0, 0.5, -0.5, 0.0, 0.0, 0.8, -0.8, 0.3, -0.3]


def test_class_biases_fit_recovers_known_biases() -> None:
    logits, targets = _synthetic(1.5, n=40_000, biases=BIASES)
    fitted = fit_class_biases(logits, targets)
    assert fitted.method == "class biases"
    assert fitted.temperature == pytest.approx(1.5, rel=0.05)
    assert list(fitted.biases) == pytest.approx(BIASES, abs=0.1)
    assert sum(fitted.biases) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("biases", [False, True])
def test_top_map_fit_calibrates_new_examples_and_keeps_them_apart(biases: bool) -> None:
    logits, targets = _synthetic(2.0, n=40_000, biases=BIASES)
    fitted = fit_top_log_odds_map(logits[:20_000], targets[:20_000], biases=biases)
    assert fitted.method == "top log-odds map"
    assert bool(fitted.biases) == biases
    assert all(b > a for a, b in zip(fitted.y, fitted.y[1:], strict=False))
    new_logits, new_targets = logits[20_000:], targets[20_000:]
    probs = fitted.probabilities(new_logits)
    assert torch.equal(probs.argmax(1), new_logits.argmax(1))
    before = expected_calibration_error(F.softmax(new_logits, dim=1), new_targets)
    assert expected_calibration_error(probs, new_targets) < 0.015 < before
    assert answer_metrics(probs, new_targets)["top_share"] < 0.01


def test_cross_fitting_never_judges_an_example_by_a_fit_it_was_in() -> None:
    seen: list[set[int]] = []

    def fit(logits: torch.Tensor, targets: torch.Tensor) -> Calibration:
        seen.append({int(i) for i in logits[:, 0]})
        return Calibration.with_temperature(1.0)

    logits = torch.stack([torch.arange(50.0), torch.zeros(50)], dim=1)
    parts = folds(50)
    assert sorted(int(i) for part in parts for i in part) == list(range(50))
    cross_fitted(fit, logits, torch.zeros(50, dtype=torch.long))
    assert all(not {int(i) for i in part} & used for part, used in zip(parts, seen, strict=True))


def test_choose_takes_the_lowest_log_loss_among_maps_without_a_plateau() -> None:
    logits, targets = _synthetic(2.0, n=6_000)
    accuracy = float((logits.argmax(1) == targets).double().mean())

    def flat(*_: torch.Tensor) -> Calibration:  # one probability for every answer
        return Calibration.top_label_isotonic([0.0, 1.0], [accuracy, accuracy])

    def cold(*_: torch.Tensor) -> Calibration:  # far too sure: a large log loss
        return Calibration.with_temperature(0.2)

    candidates = {"flat": flat, "cold": cold, "fitted": fit_temperature}
    choice = choose(logits, targets, candidates)
    held_out = choice.held_out
    assert set(held_out) == {SOFTMAX, "flat", "cold", "fitted"}
    assert held_out["flat"]["top_share"] > MAX_TOP_SHARE >= held_out["fitted"]["top_share"]
    assert held_out["flat"]["log_loss"] < held_out["cold"]["log_loss"]
    assert choice.name == "fitted"
    assert choice.calibration.temperature == pytest.approx(2.0, rel=0.05)
    # without the fitted temperature the plateau is still refused, for a worse log loss
    assert choose(logits, targets, {"flat": flat, "cold": cold}).name == "cold"
    assert choose(logits, targets, {"flat": flat}).name == "flat"  # nothing else to serve


def _tiny(root: Path, name: str, hyperparameters: dict[str, Any], data_dir: Path) -> Path:
    """A random-init checkpoint with the card fields calibration reads, on the real data."""
    torch.manual_seed(0)
    if name == "name-gru":
        config = {"embedding_dim": 8, "hidden_size": 8, "num_layers": 1}
        net: torch.nn.Module = NameGRU(NameGRUConfig(**config))  # type: ignore[arg-type]
        card = {"task": "names", "architecture": "NameGRU", "config": config, "labels": COUNTRIES}
        files = names_paths(data_dir)
    else:
        net, card = ResNet(ResNetConfig()), {"architecture": "ResNet", "config": {}, **DIGIT_CARD}
        files = mnist_paths(data_dir)
    card |= {
        "name": name,
        "seed": 0,
        "hyperparameters": hyperparameters,
        "data": {"sha256": checksums(files)},
    }
    save_checkpoint(root / name, net, card)
    return root / name


@pytest.mark.parametrize(
    ("name", "hyperparameters"),
    [
        ("digit-resnet", {"val_size": 2000, "outliers": 30000}),
        ("digit-resnet", {"val_size": 2000}),
        ("name-gru", {"val_fraction": 0.1, "drop_junk": True}),
    ],
)
def test_calibrate_writes_the_entry_and_leaves_the_weights(
    tmp_path: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    hyperparameters: dict[str, Any],
) -> None:
    directory = _tiny(tmp_path, name, hyperparameters, data_dir)
    weights = (directory / WEIGHTS_FILE).read_bytes()
    before = json.loads((directory / CARD_FILE).read_text())
    argv = ["calibrate", name, "--weights", str(tmp_path), "--data-dir", str(data_dir)]
    assert main([*argv, "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["chosen"] in CANDIDATES
    assert set(printed["held_out_ece"]) == {"before", "after"}

    assert (directory / WEIGHTS_FILE).read_bytes() == weights
    checkpoint = load_checkpoint(directory)
    calibration, card = checkpoint.calibration, checkpoint.card
    entry = card.pop("calibration")
    abstention = card.pop("abstention", None)
    assert card == before, "calibrate changes nothing in the card but calibration and abstention"
    assert entry["method"] in METHODS and entry["method"] == calibration.method
    assert entry["parameters"] == calibration.parameters()
    mixed = "outliers" in hyperparameters  # trained beside non-digits: calibrated on a mix
    assert (
        entry["examples"] == {True: 2000 + 222, False: 2000}[mixed]
        if name == "digit-resnet"
        else 1335
    )
    assert ("non-digits" in entry["fitted_on"]) == mixed
    if name == "digit-resnet":
        assert abstention is not None and 0 <= abstention["threshold"] < 1
        assert set(abstention["refused"]) == {
            "held_out_digits",
            "held_out_non_digits",
            "test_digits",
        }
    else:
        assert abstention is None
    assert "held out" in entry["fitted_on"] and "was not used" in entry["fitted_on"]
    assert entry["bins"] == 15
    assert "cross-fitted" in entry["rule"]

    # every candidate and the plain softmax, on the held-out examples and on the test set
    table = entry["candidates"]
    assert set(table) == {"softmax", *CANDIDATES}
    metrics = {"ece", "log_loss", "auroc", "top_share"}
    assert all(set(row) == {"held_out", "test"} for row in table.values())
    assert all(set(row[part]) == metrics for row in table.values() for part in row)
    held_out = {n: row["held_out"] for n, row in table.items()}
    eligible = [n for n in CANDIDATES if held_out[n]["top_share"] <= 0.25] or list(CANDIDATES)
    assert entry["candidate"] == min(eligible, key=lambda n: held_out[n]["log_loss"])
    chosen = table[entry["candidate"]]
    assert entry["ece"] == {
        part: {"before": table["softmax"][part]["ece"], "after": chosen[part]["ece"]}
        for part in ("held_out", "test")
    }
    assert entry["test_answers_changed"] == 0
    assert entry["command"].startswith(f"python -m training calibrate {name}")


def test_calibrate_refuses_a_checkpoint_that_held_nothing_out(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _tiny(tmp_path, "digit-resnet", {"val_size": 0}, data_dir)
    card = (directory / CARD_FILE).read_text()
    argv = ["calibrate", "digit-resnet", "--weights", str(tmp_path), "--data-dir", str(data_dir)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "no held-out slice" in error
    assert "retrain with --set val_size=5000" in error
    assert (directory / CARD_FILE).read_text() == card


def test_calibrate_refuses_other_data_than_the_cards(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _tiny(tmp_path, "digit-resnet", {"val_size": 100}, data_dir)
    card = json.loads((directory / CARD_FILE).read_text())
    card["data"]["sha256"]["t10k-labels-idx1-ubyte.gz"] = "0" * 64
    (directory / CARD_FILE).write_text(json.dumps(card))
    argv = ["calibrate", "digit-resnet", "--weights", str(tmp_path), "--data-dir", str(data_dir)]
    assert main(argv) == 2
    assert "is not what the card was trained on" in capsys.readouterr().err
    assert "calibration" not in json.loads((directory / CARD_FILE).read_text())
