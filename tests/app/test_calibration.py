"""The service answers with the probabilities its cards' calibration gives, on every route, and
a reload picks up a card's new calibration."""

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from app.services.digits import Limits, Pipeline
from app.settings import Settings
from models.calibration import Calibration
from models.checkpoint import CARD_FILE, load_checkpoint, write_card
from models.text import encode_name
from tests.app.conftest import write_tiny_weights

pytestmark = pytest.mark.anyio
TEMPERATURE = {"method": "temperature", "parameters": {"temperature": 0.05}}
ISOTONIC = {
    "method": "top-label isotonic",
    "parameters": {"x": [0.05, 0.1, 0.2], "y": [0.3, 0.6, 0.9]},
}
NAME = "Kowalski"


def calibrate(weights: Path, model: str, entry: dict[str, Any]) -> None:
    card = json.loads((weights / model / CARD_FILE).read_text())
    write_card(weights / model, {**card, "calibration": entry})


@pytest.fixture
def calibrated(tmp_path: Path) -> Path:
    weights = write_tiny_weights(tmp_path / "weights")
    calibrate(weights, "digit-resnet", TEMPERATURE)
    calibrate(weights, "name-gru", ISOTONIC)
    return weights


def digit_png() -> bytes:
    pixels = np.zeros((40, 30), np.uint8)
    pixels[8:32, 12:18] = 255
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def expected_digit(weights: Path, blob: bytes) -> tuple[list[float], list[float]]:
    """Calibrated and plain probabilities of digit-resnet for an upload, computed directly."""
    checkpoint = load_checkpoint(weights / "digit-resnet")
    pipeline = Pipeline(Limits(10**8, 10**9))
    image = pipeline.prepare(pipeline.open(blob))
    x = (torch.from_numpy(image)[None, None] - 0.1307) / 0.3081  # 1 x 1 x 28 x 28
    with torch.inference_mode():
        logits = checkpoint.model(x)
    plain = F.softmax(logits, dim=1)[0].tolist()
    return Calibration.from_card(checkpoint.card).probabilities(logits)[0].tolist(), plain


def expected_name(weights: Path) -> tuple[list[float], list[float]]:
    """Calibrated and plain probabilities of name-gru for ``NAME``, computed directly."""
    checkpoint = load_checkpoint(weights / "name-gru")
    codes = torch.tensor([encode_name(NAME)])  # 1 x T
    with torch.inference_mode():
        logits = checkpoint.model(codes, torch.tensor([codes.shape[1]]))
    plain = F.softmax(logits, dim=1)[0].tolist()
    return Calibration.from_card(checkpoint.card).probabilities(logits)[0].tolist(), plain


def by_label(predictions: list[dict[str, Any]], labels: list[str]) -> list[float]:
    found = {p["label"]: p["probability"] for p in predictions}
    return [found[label] for label in labels]


async def test_typed_routes_answer_with_the_calibrated_probabilities(
    make_client: Callable[..., Any], calibrated: Path
) -> None:
    blob = digit_png()
    digit, digit_plain = expected_digit(calibrated, blob)
    name, name_plain = expected_name(calibrated)
    assert max(digit) > max(digit_plain) + 0.05, "the temperature sharpens the answer"
    assert abs(max(name) - max(name_plain)) > 0.05, "the isotonic map moves the top"
    async with make_client(Settings(weights_dir=calibrated, max_wait_ms=1.0)) as client:
        response = await client.post(
            "/digit", params={"top_k": 10}, files={"file": ("d.png", blob, "image/png")}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        labels = [str(d) for d in range(10)]
        assert by_label(body["predictions"], labels) == pytest.approx(digit, abs=2e-6)
        assert body["probability"] == pytest.approx(max(digit), abs=2e-6)
        assert body["digit"] == int(np.argmax(digit_plain))

        response = await client.post("/classify-name", json={"name": NAME, "top_k": 18})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        labels = load_checkpoint(calibrated / "name-gru").card["labels"]
        assert by_label(predictions, labels) == pytest.approx(name, abs=2e-6)
        assert predictions[0]["label"] == labels[int(np.argmax(name_plain))]
        assert sum(p["probability"] for p in predictions) == pytest.approx(1.0, abs=1e-5)

        batch = await client.post("/classify-name/batch", json={"names": [NAME], "top_k": 18})
        assert batch.json()["results"][0]["predictions"] == predictions

        card = (await client.get("/models/name-gru")).json()
        assert card["calibration"] == ISOTONIC
        assert (await client.get("/models/digit-inception")).json()["calibration"] is None


async def test_v2_answers_with_the_calibrated_probabilities(
    make_client: Callable[..., Any], calibrated: Path
) -> None:
    name, _ = expected_name(calibrated)
    pixels = np.zeros((1, 28, 28), np.float32)
    pixels[0, 4:24, 12:16] = 1.0
    checkpoint = load_checkpoint(calibrated / "digit-resnet")
    with torch.inference_mode():
        logits = checkpoint.model((torch.from_numpy(pixels)[:, None] - 0.1307) / 0.3081)
    digit = checkpoint.calibration.probabilities(logits)[0].tolist()
    async with make_client(Settings(weights_dir=calibrated, max_wait_ms=1.0)) as client:
        request = {"inputs": [{"name": "name", "shape": [1], "datatype": "BYTES", "data": [NAME]}]}
        response = await client.post("/v2/models/name-gru/infer", json=request)
        assert response.status_code == 200, response.text
        (output,) = response.json()["outputs"]
        assert output["data"] == pytest.approx(name, abs=1e-6)

        request = {
            "inputs": [
                {
                    "name": "pixels",
                    "shape": [1, 28, 28],
                    "datatype": "FP32",
                    "data": pixels.ravel().tolist(),
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}],
        }
        response = await client.post("/v2/models/digit-resnet/infer", json=request)
        assert response.status_code == 200, response.text
        score, index, _ = response.json()["outputs"][0]["data"][0].split(":")
        assert int(index) == int(np.argmax(digit))
        assert float(score) == pytest.approx(max(digit), abs=1e-5)


async def test_a_reload_serves_the_cards_new_calibration(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    weights = write_tiny_weights(tmp_path / "weights")
    admin = {"Authorization": "Bearer admin"}
    settings = Settings(weights_dir=weights, max_wait_ms=1.0, admin_key="admin")
    async with make_client(settings) as client:

        async def answer() -> list[float]:
            response = await client.post("/classify-name", json={"name": NAME, "top_k": 18})
            return by_label(response.json()["predictions"], labels)

        labels = load_checkpoint(weights / "name-gru").card["labels"]
        _, plain = expected_name(weights)
        assert await answer() == pytest.approx(plain, abs=2e-6)

        calibrate(weights, "name-gru", ISOTONIC)
        response = await client.post("/v2/repository/models/name-gru/load", headers=admin)
        assert response.status_code == 200, response.text
        name, _ = expected_name(weights)
        assert await answer() == pytest.approx(name, abs=2e-6)
        assert (await client.get("/models/name-gru")).json()["calibration"] == ISOTONIC


async def test_no_label_is_answered_with_1_or_0(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    weights = write_tiny_weights(tmp_path / "weights")
    # a temperature that makes the plain softmax say 1.0, and the top log-odds map
    calibrate(
        weights, "digit-resnet", {"method": "temperature", "parameters": {"temperature": 1e-3}}
    )
    labels = load_checkpoint(weights / "name-gru").card["labels"]
    top_map = {
        "method": "top log-odds map",
        "parameters": {
            "temperature": 1e-3,
            "biases": [0.5 - i / len(labels) for i in range(len(labels))],
            "x": [-1.0, 0.0, 2.0],
            "y": [-1.5, 0.5, 3.0],
        },
    }
    calibrate(weights, "name-gru", top_map)
    blob = digit_png()
    digit, digit_plain = expected_digit(weights, blob)
    name, name_plain = expected_name(weights)
    for plain in (digit_plain, name_plain):  # softmax(logits / 1e-3) says 1.0
        assert float(F.softmax(torch.tensor(plain).log() / 1e-3, dim=0).max()) == 1.0
    async with make_client(Settings(weights_dir=weights, max_wait_ms=1.0)) as client:
        response = await client.post(
            "/digit", params={"top_k": 10}, files={"file": ("d.png", blob, "image/png")}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["digit"] == int(np.argmax(digit_plain))
        served = [p["probability"] for p in body["predictions"]]
        assert served == pytest.approx(sorted(digit, reverse=True), abs=2e-6)

        response = await client.post("/classify-name", json={"name": NAME, "top_k": 18})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert predictions[0]["label"] == labels[int(np.argmax(name_plain))]
        assert by_label(predictions, labels) == pytest.approx(name, abs=2e-6)
        served += [p["probability"] for p in predictions]
    assert all(0 < p < 1 for p in served), served
    assert max(served) <= 0.9999
