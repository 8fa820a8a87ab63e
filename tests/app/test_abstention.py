"""A digit net abstains from uploads that do not look like digits: 422, or flagged on request."""

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.app.test_api import assert_problem, digit_png

pytestmark = pytest.mark.anyio


def with_threshold(tiny_weights: Path, tmp_path: Path, threshold: float) -> Path:
    """A copy of the tiny weights whose digit-resnet card abstains under ``threshold``."""
    root = tmp_path / "weights"
    shutil.copytree(tiny_weights, root)
    card_path = root / "digit-resnet" / "card.json"
    card = json.loads(card_path.read_text())
    card["abstention"] = {"score": "top probability", "threshold": threshold}
    card_path.write_text(json.dumps(card))
    return root


async def post(client: httpx.AsyncClient, **params: Any) -> httpx.Response:
    files = {"file": ("one.png", digit_png(), "image/png")}
    return await client.post("/digit", files=files, params=params)


async def test_unsure_answer_is_a_422_with_the_reason(
    tiny_weights: Path, tmp_path: Path, make_client: Any
) -> None:
    # A random-init net spreads its probability thinly: nothing reaches 0.99.
    settings = Settings(weights_dir=with_threshold(tiny_weights, tmp_path, 0.99), max_wait_ms=1.0)
    async with make_client(settings) as client:
        refused = await post(client)
        body = assert_problem(refused, 422)
        assert body["type"].endswith("no-digit-found")
        assert "does not look like a handwritten digit" in body["detail"]
        assert "answer_anyway=true" in body["detail"]

        flagged = await post(client, answer_anyway="true", top_k=10)
        assert flagged.status_code == 200, flagged.text
        answer = flagged.json()
        assert answer["abstained"] is True
        assert "does not look like a handwritten digit" in answer["reason"]
        assert len(answer["predictions"]) == 10
        assert answer["probability"] < 0.99

        other = await post(client, model="digit-inception")  # its card has no threshold
        assert other.status_code == 200 and "abstained" not in other.json()


async def test_sure_answer_is_flagged_only_when_asked(
    tiny_weights: Path, tmp_path: Path, make_client: Any
) -> None:
    settings = Settings(weights_dir=with_threshold(tiny_weights, tmp_path, 0.01), max_wait_ms=1.0)
    async with make_client(settings) as client:
        plain = await post(client)
        assert plain.status_code == 200 and "abstained" not in plain.json()
        asked = await post(client, answer_anyway="true")
        assert asked.status_code == 200
        assert asked.json()["abstained"] is False and "reason" not in asked.json()
