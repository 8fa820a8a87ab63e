"""Calibration error, the fits, and ``python -m training calibrate`` on tiny checkpoints."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from models import NameGRU, NameGRUConfig, ResNet, ResNetConfig
from models.checkpoint import CARD_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint
from tests.app.conftest import COUNTRIES, DIGIT_CARD
from training.__main__ import main
from training.calibration import (
    expected_calibration_error,
    fit_temperature,
    fit_top_label_isotonic,
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


def _synthetic(temperature: float, n: int = 20_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose labels are drawn from softmax(logits / temperature)."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(n, 10, generator=gen, dtype=torch.float64) * 4
    targets = torch.multinomial(F.softmax(logits / temperature, dim=1), 1, generator=gen)[:, 0]
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
    ("name", "hyperparameters", "method"),
    [
        ("digit-resnet", {"val_size": 2000, "outliers": 30000}, "top-label isotonic"),
        ("digit-resnet", {"val_size": 2000}, "temperature"),
        ("name-gru", {"val_fraction": 0.1, "drop_junk": True}, "top-label isotonic"),
    ],
)
def test_calibrate_writes_the_entry_and_leaves_the_weights(
    tmp_path: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    hyperparameters: dict[str, Any],
    method: str,
) -> None:
    directory = _tiny(tmp_path, name, hyperparameters, data_dir)
    weights = (directory / WEIGHTS_FILE).read_bytes()
    before = json.loads((directory / CARD_FILE).read_text())
    argv = ["calibrate", name, "--weights", str(tmp_path), "--data-dir", str(data_dir)]
    assert main([*argv, "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["method"] == method
    assert set(printed["held_out_ece"]) == {"before", "after"}

    assert (directory / WEIGHTS_FILE).read_bytes() == weights
    card = load_checkpoint(directory).card
    entry = card.pop("calibration")
    abstention = card.pop("abstention", None)
    assert card == before, "calibrate changes nothing in the card but calibration and abstention"
    assert entry["method"] == method
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
    assert entry["ece"]["held_out"]["after"] <= entry["ece"]["held_out"]["before"]
    assert set(entry["ece"]["test"]) == {"before", "after"}
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
