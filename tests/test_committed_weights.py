"""The committed checkpoints load, and reproduce their cards' metrics on the real held-out data."""

from pathlib import Path

import pytest
import torch

from tests.conftest import WEIGHTS
from training.evaluate import evaluate

# Floors the committed weights must keep; the cards hold the exact figures.
FLOORS = {
    "digit-resnet": ("test_accuracy", 0.995),
    "digit-inception": ("test_accuracy", 0.993),
    "name-gru": ("test_accuracy", 0.83),
}


@pytest.mark.parametrize("name", ["digit-resnet", "digit-inception", "name-gru"])
def test_classifier_reproduces_its_card(name: str, data_dir: Path) -> None:
    result = evaluate(name, WEIGHTS, data_dir, torch.device("cpu"))
    assert result["data_matches_card"], "held-out data differs from what the card was measured on"
    key, floor = FLOORS[name]
    assert result[key] == pytest.approx(result["card_metrics"][key], abs=2e-4)
    assert result[key] >= floor


def test_name_gru_reports_the_secondary_metrics(data_dir: Path) -> None:
    result = evaluate("name-gru", WEIGHTS, data_dir, torch.device("cpu"))
    assert result["test_top3_accuracy"] > result["test_accuracy"]
    assert 0 < result["test_macro_f1"] < 1
    assert result["test_unseen_names"] > 5000


def test_shakespeare_model_reproduces_its_held_out_loss(data_dir: Path) -> None:
    result = evaluate("char-rnn-shakespeare", WEIGHTS, data_dir, torch.device("cpu"))
    assert result["data_matches_card"]
    card = result["card_metrics"]["test_nats_per_char"]
    assert result["test_nats_per_char"] == pytest.approx(card, abs=2e-3)
    assert result["test_nats_per_char"] <= 1.45


def test_hello_model_maps_hello_to_ohlol(data_dir: Path) -> None:
    result = evaluate("char-rnn-hello", WEIGHTS, data_dir, torch.device("cpu"))
    assert result["predicted"] == "ohlol"
