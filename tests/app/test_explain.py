"""The explanation routes on tiny random checkpoints: shapes, completeness of the integrals
(checked against the checkpoint's own net, computed here), the overlay, their own admission
(429 apart from the plain routes), the API key and the OpenAPI document."""

import asyncio
import base64
import io
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from app.services.names import NameNet
from app.settings import Settings
from models.checkpoint import load_checkpoint
from models.text import encode_name
from tests.app.conftest import COUNTRIES
from tests.app.test_api import assert_problem, digit_png

pytestmark = pytest.mark.anyio
MEAN, STD = 0.1307, 0.3081  # the tiny digit cards' normalisation


def _logits(weights: Path, model: str, *inputs: Any) -> torch.Tensor:
    net = load_checkpoint(weights / model).model
    with torch.no_grad():
        return net(*inputs)[0]


@pytest.mark.parametrize("model", ["digit-resnet", "digit-inception"])
async def test_digit_explanation_accounts_for_the_served_logit(
    client: httpx.AsyncClient, tiny_weights: Path, model: str
) -> None:
    files = {"file": ("one.png", digit_png(64, dark_on_light=True), "image/png")}
    plain = await client.post("/digit", params={"model": model, "top_k": 3}, files=files)
    response = await client.post("/digit/explain", params={"model": model}, files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    answer = {k: body[k] for k in ("digit", "probability", "model", "version", "predictions")}
    assert answer == plain.json()
    image, attributions = np.array(body["input"]), np.array(body["attributions"])
    assert image.shape == attributions.shape == (28, 28)
    assert attributions[image == 0].tolist() == [0.0] * int((image == 0).sum())  # blank paper
    assert np.abs(attributions[image > 0]).sum() > 0

    x = torch.tensor((image - MEAN) / STD, dtype=torch.float32)[None, None]
    blank = torch.full_like(x, -MEAN / STD)
    logit, baseline = _logits(tiny_weights, model, x), _logits(tiny_weights, model, blank)
    assert body["logit"] == pytest.approx(float(logit[body["digit"]]), abs=1e-4)
    assert body["baseline_logit"] == pytest.approx(float(baseline[body["digit"]]), abs=1e-4)
    gap = attributions.sum() - (body["logit"] - body["baseline_logit"])
    assert gap == pytest.approx(body["delta"], abs=1e-3)
    assert abs(body["delta"]) <= 0.05 * abs(body["logit"] - body["baseline_logit"]) + 1e-3


async def test_digit_overlay_is_the_input_in_colour(client: httpx.AsyncClient) -> None:
    files = {"file": ("one.png", digit_png(64, dark_on_light=True), "image/png")}
    body = (await client.post("/digit/explain", files=files)).json()
    prefix, _, data = body["overlay"].partition(",")
    assert prefix == "data:image/png;base64"
    picture = Image.open(io.BytesIO(base64.b64decode(data)))
    assert picture.size == (280, 280) and picture.mode == "RGB"
    pixels = np.asarray(picture).reshape(28, 10, 28, 10, 3)[:, 0, :, 0]  # 28 x 28 x 3
    image, attributions = np.array(body["input"]), np.array(body["attributions"])
    assert (pixels[image == 0] == 255).all(), "blank paper stays white"
    red, blue = pixels[..., 0].astype(int), pixels[..., 2].astype(int)
    strong = np.abs(attributions) >= np.percentile(np.abs(attributions[attributions != 0]), 90)
    assert (red[strong & (attributions > 0)] > blue[strong & (attributions > 0)]).all()
    assert (blue[strong & (attributions < 0)] > red[strong & (attributions < 0)]).all()

    png = await client.post("/digit/explain", params={"format": "png"}, files=files)
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content == base64.b64decode(data)


async def test_name_explanation_has_one_value_per_normalised_character(
    client: httpx.AsyncClient, tiny_weights: Path
) -> None:
    plain = await client.post("/classify-name", json={"name": "  Nguyễn-Văn ", "top_k": 2})
    response = await client.post(
        "/classify-name/explain", json={"name": "  Nguyễn-Văn ", "top_k": 2}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in plain.json()} == plain.json()
    assert body["normalized"] == "Nguyen Van"
    assert body["label"] == body["predictions"][0]["label"]
    assert [c["char"] for c in body["characters"]] == list("Nguyen Van")

    codes = torch.tensor([encode_name("Nguyen Van")])
    lengths = torch.tensor([codes.shape[1]])
    logit = _logits(tiny_weights, "name-gru", codes, lengths)
    baseline = _logits(tiny_weights, "name-gru", torch.full_like(codes, ord(" ")), lengths)
    target = COUNTRIES.index(body["label"])
    assert body["logit"] == pytest.approx(float(logit[target]), abs=1e-4)
    assert body["baseline_logit"] == pytest.approx(float(baseline[target]), abs=1e-4)
    total = sum(c["attribution"] for c in body["characters"])
    assert total - (body["logit"] - body["baseline_logit"]) == pytest.approx(
        body["delta"], abs=1e-4
    )
    assert abs(body["delta"]) <= 0.05 * abs(body["logit"] - body["baseline_logit"]) + 1e-3


async def test_name_explanation_refuses_what_the_plain_route_refuses(
    client: httpx.AsyncClient,
) -> None:
    body = assert_problem(await client.post("/classify-name/explain", json={"name": "1234"}), 422)
    assert "no letters left" in body["detail"]
    assert_problem(await client.post("/classify-name/explain", json={"name": "a", "x": 1}), 422)
    blank = Image.new("L", (40, 40), 255)
    buf = io.BytesIO()
    blank.save(buf, format="PNG")
    files = {"file": ("blank.png", buf.getvalue(), "image/png")}
    assert_problem(await client.post("/digit/explain", files=files), 422)
    assert_problem(await client.post("/digit/explain", content=b"x"), 415)


async def test_explanations_beyond_their_queue_are_refused_but_answers_are_not(
    settings: Settings, make_client: Any
) -> None:
    one = settings.model_copy(update={"max_explanations": 1, "max_explanation_queue": 0})
    files = {"file": ("one.png", digit_png(), "image/png")}
    async with make_client(one) as client:
        admission = client._transport.app.state.services.explanations.admission
        entered = await admission.enter()  # the one slot is taken
        for response in (
            await client.post("/digit/explain", files=files),
            await client.post("/classify-name/explain", json={"name": "Smith"}),
        ):
            assert_problem(response, 429)
            assert int(response.headers["retry-after"]) >= 1
        assert (await client.post("/digit", files=files)).status_code == 200
        assert (await client.post("/classify-name", json={"name": "Smith"})).status_code == 200
        admission.leave(entered)
        assert (await client.post("/digit/explain", files=files)).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert 'route="/digit/explain",status="429"} 1.0' in metrics


async def test_a_waiting_explanation_is_answered_when_a_slot_frees(
    settings: Settings, make_client: Any
) -> None:
    one = settings.model_copy(update={"max_explanations": 1, "max_explanation_queue": 1})
    async with make_client(one) as client:
        admission = client._transport.app.state.services.explanations.admission
        entered = await admission.enter()
        task = asyncio.ensure_future(client.post("/classify-name/explain", json={"name": "Smith"}))
        while admission.waiting == 0:
            await asyncio.sleep(0.01)
        assert_problem(await client.post("/classify-name/explain", json={"name": "Li"}), 429)
        admission.leave(entered)
        assert (await task).status_code == 200
        assert admission.running == 0


async def test_explanations_need_the_api_key(settings: Settings, make_client: Any) -> None:
    async with make_client(settings.model_copy(update={"api_key": "s3cret"})) as c:
        files = {"file": ("one.png", digit_png(), "image/png")}
        assert_problem(await c.post("/digit/explain", files=files), 401)
        assert_problem(await c.post("/classify-name/explain", json={"name": "Smith"}), 401)
        right = {"Authorization": "Bearer s3cret"}
        ok = await c.post("/classify-name/explain", json={"name": "Smith"}, headers=right)
        assert ok.status_code == 200


async def test_openapi_documents_the_explanation_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    digit, name = paths["/digit/explain"]["post"], paths["/classify-name/explain"]["post"]
    for operation in (digit, name):
        assert {"200", "401", "422", "429", "503", "504"} <= set(operation["responses"])
        assert operation["summary"] and operation["description"]
    content = digit["responses"]["200"]["content"]
    assert {"application/json", "image/png"} <= set(content)
    assert {p["name"] for p in digit["parameters"]} == {"model", "top_k", "format"}
    assert "multipart/form-data" in digit["requestBody"]["content"]


def test_answers_stay_right_while_a_name_is_explained(tiny_weights: Path) -> None:
    """Captum hooks the embedding of the net it explains for as long as it integrates: the
    batcher's net, running in another thread meanwhile, must not go through that hook."""
    classifier = NameNet(load_checkpoint(tiny_weights / "name-gru"), torch.device("cpu"))
    names = ["Smith", "Nakamura", "O'Neal"]
    expected = classifier.predict_batch(names)
    done = threading.Event()

    def explain() -> None:
        try:
            classifier.attribute("Kowalski", 0, steps=400, batch_size=1)
        finally:
            done.set()

    worker = threading.Thread(target=explain)
    worker.start()
    rounds = 0
    while not done.is_set() or rounds == 0:
        assert classifier.predict_batch(names) == expected
        rounds += 1
    worker.join()
    assert rounds > 10
