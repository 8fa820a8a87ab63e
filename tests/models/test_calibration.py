"""A card's calibration entry, applied to logits: what the served probabilities are."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import ResNet, ResNetConfig
from models.calibration import (
    FLOOR_SOFTNESS,
    MAX_TOP,
    ODDS_FLOOR,
    TIE_MARGIN,
    Calibration,
    interp,
)
from models.checkpoint import CARD_FILE, CheckpointError, load_checkpoint, save_checkpoint

ISOTONIC = {
    "method": "top-label isotonic",
    "parameters": {"x": [0.2, 0.5, 0.9], "y": [0.1, 0.3, 0.95]},
}
BIASES = [0.4, -0.3, 0.0, 0.2, -0.1, -0.2]
TOP_MAP = {
    "method": "top log-odds map",
    "parameters": {
        "temperature": 1.3,
        "biases": BIASES,
        "x": [-2.0, 0.0, 1.5, 4.0],
        "y": [-2.5, -0.4, 1.0, 3.0],
    },
}
ENTRIES = [
    {"method": "temperature", "parameters": {"temperature": 0.5}},
    ISOTONIC,
    {"method": "class biases", "parameters": {"temperature": 1.3, "biases": BIASES}},
    TOP_MAP,
]


def served_top(calibrated: Any, classes: int) -> Any:
    """The top probability served for a calibrated one, as the module's docstring states it:
    the odds against plus ``ODDS_FLOOR``, then the soft floor above 1/C (numpy)."""
    calibrated = np.asarray(calibrated, dtype=np.float64)
    log_odds = -np.log((1 - calibrated) / calibrated + ODDS_FLOOR)
    low = 1 / classes + TIE_MARGIN * classes / 2
    floor = np.log(low / (1 - low))
    lifted = floor + FLOOR_SOFTNESS * np.logaddexp(0, (log_odds - floor) / FLOOR_SOFTNESS)
    return 1 / (1 + np.exp(-lifted))


def _logits(rows: int, classes: int = 10, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(rows, classes, generator=torch.Generator().manual_seed(seed)) * scale


def test_a_card_without_calibration_serves_the_plain_softmax() -> None:
    logits = _logits(32)
    calibration = Calibration.from_card({"name": "old"})
    assert calibration.method == "softmax"
    torch.testing.assert_close(calibration.probabilities(logits), F.softmax(logits, dim=1))


def test_temperature_divides_the_logits_and_holds_the_top_below_one() -> None:
    sure = torch.zeros(1, 10)
    sure[0, 3] = 20.0  # softmax(2 x logits) says 1.0 in float32
    logits = torch.cat([_logits(199), sure])
    card = {"calibration": {"method": "temperature", "parameters": {"temperature": 0.5}}}
    probs = Calibration.from_card(card).probabilities(logits)
    expected = F.softmax(logits * 2, dim=1)
    assert torch.equal(probs.argmax(1), logits.argmax(1))
    top = expected.max(1).values
    unsure = (top < 0.999) & (top > 0.5)  # away from the cap and from the floor above 1/10
    assert 20 < int(unsure.sum()) < 200
    torch.testing.assert_close(probs[unsure], expected[unsure], atol=1e-4, rtol=0)
    np.testing.assert_allclose(probs.max(1).values, served_top(top.double(), 10), atol=1e-6)
    assert float(expected[-1, 3]) == 1.0
    assert float(probs[-1, 3]) == pytest.approx(MAX_TOP, abs=1e-7)
    assert float(probs.max()) < 1.0


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
    expected = served_top(expected, 18)
    np.testing.assert_allclose(top.numpy(), expected, atol=1e-6)


def test_isotonic_shares_the_rest_in_proportion_below_the_top() -> None:
    # softmax [0.6, 0.3, 0.1]: the top goes down to about 0.4 (0.42 once served: the cap and
    # the soft floor above 1/3), so 0.58 is left for the others; in proportion the second would
    # get 0.44, more than the top: it is held just below it and the third takes the rest.
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.7, 0.2]]))
    card = {
        "calibration": {
            "method": "top-label isotonic",
            "parameters": {"x": [0, 1], "y": [0, 2 / 3]},
        }
    }
    probs = Calibration.from_card(card).probabilities(logits).double()
    first, second = probs.tolist()
    top = served_top(0.4, 3)
    assert 0.41 < top < 0.43
    assert first == pytest.approx([top, top - TIE_MARGIN, 1 - 2 * top + TIE_MARGIN], abs=1e-6)
    assert second[1] == pytest.approx(served_top(0.7 * 2 / 3, 3), abs=1e-6)  # in proportion
    assert second[2] / second[0] == pytest.approx(2.0, rel=1e-5)
    assert sum(second) == pytest.approx(1.0, abs=1e-6)


def test_the_calibrated_top_is_at_least_one_over_the_classes() -> None:
    logits = torch.zeros(1, 4) + torch.tensor([0.5, 0.0, 0.0, 0.0])
    card = {
        "calibration": {"method": "top-label isotonic", "parameters": {"x": [0, 1], "y": [0, 0]}}
    }
    (row,) = Calibration.from_card(card).probabilities(logits).tolist()
    assert row[0] == pytest.approx(0.25 + 2 * TIE_MARGIN, abs=1e-7)
    assert max(row[1:]) < row[0]
    assert sum(row) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["method"])
def test_a_rows_probabilities_do_not_depend_on_its_batch(entry: dict[str, Any]) -> None:
    calibration = Calibration.from_card({"calibration": entry})
    logits = _logits(64, classes=6 if "biases" in entry["parameters"] else 18, scale=2.0)
    together = calibration.probabilities(logits)
    alone = torch.cat([calibration.probabilities(logits[i : i + 1]) for i in range(8)])
    others = _logits(5, logits.shape[1], seed=1)
    with_others = calibration.probabilities(torch.cat([logits[:8], others]))[:8]
    assert torch.equal(alone, together[:8])
    assert torch.equal(with_others, together[:8])


def test_interp_can_extend_its_end_segments() -> None:
    xp, fp = torch.tensor([0.0, 1.0, 3.0]).double(), torch.tensor([1.0, 3.0, 4.0]).double()
    x = torch.tensor([-2.0, 0.5, 2.0, 5.0]).double()
    assert interp(x, xp, fp, extrapolate=True).tolist() == [-3.0, 2.0, 3.5, 5.0]
    assert interp(x, xp, fp).tolist() == [1.0, 2.0, 3.5, 4.0]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["method"])
@pytest.mark.parametrize("scale", [0.3, 3.0, 30.0, 3000.0])
def test_no_label_is_served_1_or_0_and_the_first_stays_first(
    entry: dict[str, Any], scale: float
) -> None:
    logits = _logits(300, classes=6, scale=scale)
    probs = Calibration.from_card({"calibration": entry}).probabilities(logits)
    assert probs.dtype == torch.float32
    assert float(probs.max()) < 1.0 and max(max(row) for row in probs.tolist()) < 1.0
    assert float(probs.min()) > 0.0, "a label got no share at all"
    torch.testing.assert_close(probs.sum(1), torch.ones(300), atol=1e-6, rtol=0)
    assert torch.equal(probs.argmax(1), logits.argmax(1))
    top = probs.max(1).values
    others = probs.scatter(1, logits.argmax(1, keepdim=True), 0.0)
    assert bool((others.max(1).values < top).all()), "another label ties with or passes the top"


def test_the_top_map_keeps_each_answers_order_of_labels() -> None:
    logits = _logits(300, classes=6, scale=2.0)
    probs = Calibration.from_card({"calibration": TOP_MAP}).probabilities(logits)
    assert torch.equal(probs.argsort(1, descending=True), logits.argsort(1, descending=True))


def test_the_top_map_gives_different_logits_different_probabilities() -> None:
    # The first logit climbs from a tie with the second to 20 above it: every step of 0.05 is
    # served a higher probability, up to where float32 runs out of values below MAX_TOP.
    gaps = torch.arange(0.0, 20.0, 0.05)
    logits = torch.zeros(len(gaps), 6)
    logits[:, 0] = gaps + 1e-3
    probs = Calibration.from_card({"calibration": TOP_MAP}).probabilities(logits)
    top = probs[:, 0]
    assert torch.equal(probs.argmax(1), torch.zeros(len(gaps), dtype=torch.long))
    assert bool((top.diff() > 0).all()), "a plateau: two logit gaps share one probability"
    assert float(top[-1]) <= MAX_TOP
    assert len(set(top.tolist())) == len(gaps)


def test_class_biases_change_the_probability_but_not_the_answer() -> None:
    # Logits that favour class 0 a little over class 1: a bias for class 1 makes it the more
    # likely one under softmax(logits / T + b), but the answer stays class 0, with what that
    # softmax gives class 0.
    logits = torch.tensor([[1.0, 0.8, -1.0, -1.0, -1.0, -1.0]])
    biases = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    entry = {"method": "class biases", "parameters": {"temperature": 1.0, "biases": biases}}
    calibration = Calibration.from_card({"calibration": entry})
    assert calibration.parameters() == entry["parameters"]
    probs = calibration.probabilities(logits)
    assert int(probs.argmax()) == 0
    expected = float(F.softmax(logits + torch.tensor(biases), dim=1)[0, 0])  # 0.27, not 0.42
    assert float(probs[0, 0]) == pytest.approx(served_top(expected, 6), abs=1e-6)
    assert expected < float(F.softmax(logits, dim=1)[0, 0]) - 0.1
    assert float(probs[0, 1]) < float(probs[0, 0])


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
        (
            {
                "method": "top log-odds map",
                "parameters": {"temperature": 1, "x": [0, 1], "y": [1, 1]},
            },
            "y must be strictly increasing",
        ),
        ({"method": "class biases", "parameters": {"temperature": 1, "biases": [1]}}, "biases"),
        (
            {"method": "class biases", "parameters": {"temperature": 1, "biases": [0.0] * 9}},
            "9 biases for 10 labels",
        ),
    ],
)
def test_loading_refuses_a_bad_calibration_and_names_the_card(
    tmp_path: Path, entry: Any, reason: str
) -> None:
    card = {
        "name": "digit-resnet",
        "task": "digits",
        "architecture": "ResNet",
        "config": {},
        "labels": [str(d) for d in range(10)],
    }
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


def test_a_card_with_the_top_map_loads_and_serves_it(tmp_path: Path) -> None:
    card = {"name": "digit-resnet", "task": "digits", "architecture": "ResNet", "config": {}}
    entry = {**TOP_MAP, "parameters": {**TOP_MAP["parameters"], "biases": [0.1] * 10}}
    save_checkpoint(tmp_path, ResNet(ResNetConfig()), {**card, "calibration": entry})
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.calibration.method == "top log-odds map"
    assert checkpoint.calibration.parameters() == entry["parameters"]
    probs = checkpoint.calibration.probabilities(_logits(4, scale=30.0))
    assert float(probs.max()) < 1.0
