"""A card's calibration entry, applied to logits: what the served probabilities are."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import ResNet, ResNetConfig
from models.calibration import TIE_MARGIN, Calibration, interp
from models.checkpoint import CARD_FILE, CheckpointError, load_checkpoint, save_checkpoint

ISOTONIC = {
    "method": "top-label isotonic",
    "parameters": {"x": [0.2, 0.5, 0.9], "y": [0.1, 0.3, 0.95]},
}


def _logits(rows: int, classes: int = 10, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(rows, classes, generator=torch.Generator().manual_seed(seed)) * scale


def test_a_card_without_calibration_serves_the_plain_softmax() -> None:
    logits = _logits(32)
    calibration = Calibration.from_card({"name": "old"})
    assert calibration.method == "softmax"
    torch.testing.assert_close(calibration.probabilities(logits), F.softmax(logits, dim=1))


def test_temperature_divides_the_logits() -> None:
    logits = _logits(32)
    card = {"calibration": {"method": "temperature", "parameters": {"temperature": 0.5}}}
    probs = Calibration.from_card(card).probabilities(logits)
    torch.testing.assert_close(probs, F.softmax(logits * 2, dim=1))
    assert torch.equal(probs.argmax(1), logits.argmax(1))


def test_interp_is_numpys() -> None:
    xp, fp = [0.1, 0.4, 0.45, 0.8], [0.0, 0.2, 0.6, 0.9]
    x = np.concatenate([np.linspace(-0.5, 1.5, 101), xp])
    ours = interp(torch.tensor(x), torch.tensor(xp, dtype=torch.float64), torch.tensor(fp).double())
    np.testing.assert_allclose(ours.numpy(), np.interp(x, xp, fp), atol=1e-12)


@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0, 30.0])
def test_isotonic_keeps_the_top_label_first_and_sums_to_one(scale: float) -> None:
    logits = _logits(500, classes=18, scale=scale)
    raw = F.softmax(logits, dim=1)
    probs = Calibration.from_card({"calibration": ISOTONIC}).probabilities(logits)
    assert probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(1), torch.ones(500), atol=1e-6, rtol=0)
    assert torch.equal(probs.argmax(1), raw.argmax(1))
    top = probs.max(1).values
    others = probs.scatter(1, raw.argmax(1, keepdim=True), 0.0)
    assert bool((others.max(1).values < top).all()), "another label ties with or passes the top"
    expected = np.interp(raw.max(1).values.double().numpy(), [0.2, 0.5, 0.9], [0.1, 0.3, 0.95])
    expected = np.maximum(expected, 1 / 18 + TIE_MARGIN)
    np.testing.assert_allclose(top.numpy(), expected, atol=1e-6)


def test_isotonic_shares_the_rest_in_proportion_below_the_top() -> None:
    # softmax [0.6, 0.3, 0.1]: the top goes down to 0.4, so 0.6 is left for the others; in
    # proportion the second would get 0.45, more than the top: it is held just below 0.4 and
    # the third takes the rest.
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.7, 0.2]]))
    card = {
        "calibration": {
            "method": "top-label isotonic",
            "parameters": {"x": [0, 1], "y": [0, 2 / 3]},
        }
    }
    probs = Calibration.from_card(card).probabilities(logits).double()
    first, second = probs.tolist()
    assert first == pytest.approx([0.4, 0.4 - TIE_MARGIN, 0.2 + TIE_MARGIN], abs=1e-6)
    assert second[1] == pytest.approx(0.7 * 2 / 3, abs=1e-6)  # no cap: in proportion
    assert second[2] / second[0] == pytest.approx(2.0, rel=1e-5)
    assert sum(second) == pytest.approx(1.0, abs=1e-6)


def test_the_calibrated_top_is_at_least_one_over_the_classes() -> None:
    logits = torch.zeros(1, 4) + torch.tensor([0.5, 0.0, 0.0, 0.0])
    card = {
        "calibration": {"method": "top-label isotonic", "parameters": {"x": [0, 1], "y": [0, 0]}}
    }
    (row,) = Calibration.from_card(card).probabilities(logits).tolist()
    assert row[0] == pytest.approx(0.25 + TIE_MARGIN, abs=1e-7)
    assert max(row[1:]) < row[0]
    assert sum(row) == pytest.approx(1.0, abs=1e-6)


def test_a_rows_probabilities_do_not_depend_on_its_batch() -> None:
    calibration = Calibration.from_card({"calibration": ISOTONIC})
    logits = _logits(64, classes=18, scale=2.0)
    together = calibration.probabilities(logits)
    alone = torch.cat([calibration.probabilities(logits[i : i + 1]) for i in range(8)])
    with_others = calibration.probabilities(torch.cat([logits[:8], _logits(5, 18, seed=1)]))[:8]
    assert torch.equal(alone, together[:8])
    assert torch.equal(with_others, together[:8])


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"method": "platt", "parameters": {}}, "method 'platt' is not one of"),
        ({"method": "temperature", "parameters": {"temperature": 0}}, "temperature must be"),
        ({"method": "temperature", "parameters": {"temperature": "1"}}, "temperature must be"),
        ({"method": "temperature"}, "parameters must be a JSON object"),
        (
            {"method": "top-label isotonic", "parameters": {"x": [0.5, 0.2], "y": [0.1, 0.2]}},
            "x must be strictly increasing",
        ),
        (
            {"method": "top-label isotonic", "parameters": {"x": [0.2, 0.5], "y": [0.3, 0.2]}},
            "y must not decrease",
        ),
        (
            {"method": "top-label isotonic", "parameters": {"x": [0.2, 0.5], "y": [0.3]}},
            "the same length",
        ),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_loading_refuses_a_bad_calibration_and_names_the_card(
    tmp_path: Path, entry: Any, reason: str
) -> None:
    card = {"name": "digit-resnet", "task": "digits", "architecture": "ResNet", "config": {}}
    save_checkpoint(tmp_path, ResNet(ResNetConfig()), card)
    written = json.loads((tmp_path / CARD_FILE).read_text())
    (tmp_path / CARD_FILE).write_text(json.dumps({**written, "calibration": entry}))
    with pytest.raises(CheckpointError, match=reason) as caught:
        load_checkpoint(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / CARD_FILE}: calibration: ")


def test_a_calibrated_card_loads_with_its_calibration(tmp_path: Path) -> None:
    card = {"name": "digit-resnet", "task": "digits", "architecture": "ResNet", "config": {}}
    save_checkpoint(tmp_path, ResNet(ResNetConfig()), {**card, "calibration": ISOTONIC})
    calibration = load_checkpoint(tmp_path).calibration
    assert calibration == Calibration(
        method="top-label isotonic", x=(0.2, 0.5, 0.9), y=(0.1, 0.3, 0.95)
    )
    assert calibration.parameters() == ISOTONIC["parameters"]
