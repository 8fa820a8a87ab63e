"""One door per model: every route to a model (typed, ``/v2``, explanation, batch, stream) meets
the same limits and refusals, and a model swapped or unloaded under traffic answers each request
from the version that admitted it, or with a 503 problem."""

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.services import limits
from app.settings import Settings
from tests.app.test_api import assert_problem, digit_png

pytestmark = pytest.mark.anyio
ADMIN = {"Authorization": "Bearer admin-secret"}
GENERATE = {"prompt": "ROMEO:", "max_chars": 40, "seed": 1}


def v2_bytes(name: str, values: list[str], **parameters: Any) -> dict[str, Any]:
    """A JSON ``/v2`` request with one BYTES input."""
    tensor = {"name": name, "shape": [len(values)], "datatype": "BYTES", "data": values}
    return {"inputs": [tensor], "parameters": parameters}


async def infer(client: httpx.AsyncClient, model: str, body: Any) -> httpx.Response:
    return await client.post(f"/v2/models/{model}/infer", json=body)


def v2_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    detail: str = response.json()["error"]
    assert "Traceback" not in detail
    return detail


# --- limits: the same at every door ---------------------------------------------------------


async def test_text_length_is_limited_at_both_doors(client: httpx.AsyncClient) -> None:
    long = "hello" * (limits.MAX_TEXT_CHARS // 5) + "h"
    typed = await client.post("/char-rnn/transduce", json={"text": long})
    assert_problem(typed, 422)
    v2 = await infer(client, "char-rnn-hello", v2_bytes("text", [long]))
    assert str(limits.MAX_TEXT_CHARS) in v2_error(v2, 422)
    empty = await infer(client, "char-rnn-hello", v2_bytes("text", [""]))
    v2_error(empty, 422)  # was a 500
    assert_problem(await client.post("/char-rnn/transduce", json={"text": ""}), 422)
    ok = await infer(client, "char-rnn-hello", v2_bytes("text", ["hello"]))
    assert ok.status_code == 200


async def test_names_per_request_are_limited_at_both_doors(client: httpx.AsyncClient) -> None:
    many = ["Smith"] * (limits.MAX_NAMES + 1)
    assert_problem(await client.post("/classify-name/batch", json={"names": many}), 422)
    detail = v2_error(await infer(client, "name-gru", v2_bytes("name", many)), 422)
    assert str(limits.MAX_NAMES) in detail


async def test_a_name_too_long_is_refused_before_any_folding(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.services.names as names

    folded: list[str] = []
    real = names.normalize_name

    def counting(text: str) -> str:
        folded.append(text)
        return real(text)

    monkeypatch.setattr(names, "normalize_name", counting)
    huge = "Ж" * 19_200
    batch = {"names": ["Smith"] * 255 + [huge]}
    assert_problem(await client.post("/classify-name/batch", json=batch), 422)
    v2 = await infer(client, "name-gru", v2_bytes("name", ["Smith"] * 255 + [huge]))
    assert str(limits.MAX_NAME_CHARS) in v2_error(v2, 422)
    assert_problem(await client.post("/classify-name", json={"name": huge}), 422)
    assert folded == []  # nothing was folded: the length was checked first


async def test_generation_length_and_count_are_limited_at_both_doors(
    client: httpx.AsyncClient,
) -> None:
    too_long = {**GENERATE, "max_chars": 2001}
    assert_problem(await client.post("/char-rnn/generate", json=too_long), 422)
    v2 = v2_bytes("prompt", ["ROMEO:"], max_chars=2001)
    assert "max_chars" in v2_error(await infer(client, "char-rnn-shakespeare", v2), 422)
    many = v2_bytes("prompt", ["A"] * (limits.MAX_PROMPTS + 1), max_chars=5)
    assert "prompt" in v2_error(await infer(client, "char-rnn-shakespeare", many), 422)
    two = v2_bytes("prompt", ["A", "B"], max_chars=5, seed=1)
    answer = await infer(client, "char-rnn-shakespeare", two)
    assert answer.status_code == 200
    assert [len(t) for t in answer.json()["outputs"][0]["data"]] == [5, 5]


async def test_images_per_request_are_limited_on_v2(client: httpx.AsyncClient) -> None:
    count = limits.MAX_IMAGES + 1
    pixels = {
        "inputs": [
            {
                "name": "pixels",
                "shape": [count, 28, 28],
                "datatype": "FP32",
                "data": [0.0] * (count * 28 * 28),
            }
        ]
    }
    assert str(limits.MAX_IMAGES) in v2_error(await infer(client, "digit-resnet", pixels), 422)
    png = base64.b64encode(digit_png()).decode()
    images = v2_bytes("image", [png] * count)
    assert str(limits.MAX_IMAGES) in v2_error(await infer(client, "digit-resnet", images), 422)


async def test_numbers_beyond_any_range_are_a_400_not_a_500(client: httpx.AsyncClient) -> None:
    huge = int("9" * 401)
    pixels = {"inputs": [{"name": "pixels", "shape": [1, 28, 28], "datatype": "FP32"}]}
    pixels["inputs"][0]["data"] = [huge] + [0.0] * (28 * 28 - 1)
    v2_error(await infer(client, "digit-resnet", pixels), 400)
    dims = {"inputs": [{"name": "name", "shape": [int("7" * 4000)], "datatype": "BYTES"}]}
    dims["inputs"][0]["data"] = ["Smith"]
    response = await client.post(
        "/v2/models/name-gru/infer",
        content=str(dims).replace("'", '"').encode(),
        headers={"Content-Type": "application/json"},
    )
    v2_error(response, 400)


# --- refusals and deadlines: the same at every door -----------------------------------------


async def test_v2_generations_go_through_the_gate(settings: Settings, make_client: Any) -> None:
    one = settings.model_copy(update={"max_generations": 1, "max_generation_queue": 0})
    async with make_client(one) as client:
        admission = client._transport.app.state.services.generations.admission
        entered = await admission.enter()  # the one slot is taken
        refused = await infer(client, "char-rnn-shakespeare", v2_bytes("prompt", ["A"]))
        v2_error(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1
        admission.leave(entered)
        answer = await infer(client, "char-rnn-shakespeare", v2_bytes("prompt", ["A"]))
        assert answer.status_code == 200
        assert admission.running == 0


# --- lifecycle: swaps and unloads under traffic ---------------------------------------------


async def _traffic(client: httpx.AsyncClient, calls: list[Any], until: float) -> list[int]:
    statuses = []
    while time.monotonic() < until:
        for method, url, kwargs in calls:
            response = await client.request(method, url, **kwargs)
            statuses.append(response.status_code)
            # in process a quick 503 never suspends: let the others (and the swaps) run, as a
            # network round trip would
            await asyncio.sleep(0.001)
            if response.status_code == 503:
                body = response.json()
                assert "error" in body or body["status"] == 503
    return statuses


@pytest.mark.parametrize("model", ["name-gru", "digit-resnet"])
async def test_unload_and_load_under_traffic_answer_200_or_503(
    tiny_weights: Path, make_client: Any, model: str
) -> None:
    settings = Settings(weights_dir=tiny_weights, max_wait_ms=1.0, admin_key="admin-secret")
    png = digit_png()
    if model == "name-gru":
        calls = [
            ("POST", "/classify-name", {"json": {"name": "Smith"}}),
            ("POST", "/classify-name/batch", {"json": {"names": ["Li", "Nguyen"]}}),
            ("POST", "/v2/models/name-gru/infer", {"json": v2_bytes("name", ["Kowalski"])}),
        ]
    else:
        image = v2_bytes("image", [base64.b64encode(png).decode()])
        calls = [
            ("POST", "/digit", {"files": {"file": ("d.png", png, "image/png")}}),
            ("POST", "/v2/models/digit-resnet/infer", {"json": image}),
        ]
    async with make_client(settings) as client:
        until = time.monotonic() + 2.0
        clients = [asyncio.ensure_future(_traffic(client, calls, until)) for _ in range(6)]
        swaps = 0
        while time.monotonic() < until:
            unloaded = await client.post(f"/v2/repository/models/{model}/unload", headers=ADMIN)
            assert unloaded.status_code == 200, unloaded.text
            await asyncio.sleep(0.02)
            loaded = await client.post(f"/v2/repository/models/{model}/load", headers=ADMIN)
            assert loaded.status_code == 200, loaded.text
            swaps += 1
            await asyncio.sleep(0.05)
        statuses = [s for c in clients for s in await c]
    assert swaps >= 3
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses.count(200) > 0 and statuses.count(503) > 0


async def test_waiting_explanations_do_not_hang_when_their_model_is_unloaded(
    tiny_weights: Path, make_client: Any
) -> None:
    settings = Settings(
        weights_dir=tiny_weights,
        admin_key="admin-secret",
        max_explanations=1,
        max_explanation_queue=8,
        explain_name_steps=8,
        explain_digit_steps=8,
    )
    async with make_client(settings) as client:
        admission = client._transport.app.state.services.explanations.admission
        entered = await admission.enter()  # every explanation waits
        waiting = [
            asyncio.ensure_future(client.post("/classify-name/explain", json={"name": n}))
            for n in ["Smith", "Li", "Nguyen", "Kowalski"]
        ]
        while admission.waiting < len(waiting):
            await asyncio.sleep(0.01)
        for action in ("unload", "load"):
            url = f"/v2/repository/models/name-gru/{action}"
            assert (await client.post(url, headers=ADMIN)).status_code == 200
        admission.leave(entered)
        started = time.monotonic()
        done = await asyncio.gather(*waiting)
        assert time.monotonic() - started < 5  # none waits for the 30 s deadline
        assert {r.status_code for r in done} <= {200, 503}
        files = {"file": ("d.png", digit_png(), "image/png")}
        assert (await client.post("/digit/explain", files=files)).status_code == 200
        assert admission.running == 0


async def test_a_queued_input_of_a_replaced_version_gets_its_answer_or_a_503() -> None:
    from app.batching import Batcher, _Item
    from app.errors import ModelUnavailable

    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def predict(items: Any) -> list[int]:
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(5)
        return [1 for _ in items]

    batcher: Batcher[int, int] = Batcher(
        "m", predict, max_batch_size=1, max_wait_ms=0, max_queue=8, timeout_s=5
    )
    batcher.start()
    running = asyncio.ensure_future(batcher.submit(1))
    queued = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0.05)
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0.05)
    with pytest.raises(ModelUnavailable):
        await batcher.submit(3)  # a closing version takes nothing new
    release.set()
    assert await running == 1 and await queued == 1  # what it admitted is answered
    await closing
    stopped: Batcher[int, int] = Batcher(
        "m", predict, max_batch_size=1, max_wait_ms=0, max_queue=8, timeout_s=5
    )
    left: asyncio.Future[int] = loop.create_future()
    stopped.queue.put_nowait(_Item(0, left))
    await stopped.stop()
    assert isinstance(left.exception(), ModelUnavailable)  # nothing left waiting on it


def test_pixels_out_of_range_are_refused_by_the_service() -> None:
    from app.errors import InvalidInput
    from app.services.digits import DigitService

    with pytest.raises(InvalidInput):
        DigitService.check_pixels(np.full((1, 28, 28), 2.0, np.float32))


async def test_the_inputs_of_one_request_are_queued_on_one_version_at_once(
    client: httpx.AsyncClient,
) -> None:
    """A request of several images looks its version up and queues them all in one step: a
    model unloaded (or swapped) right after answers them all, it never 503s some of them."""
    services = client._transport.app.state.services  # type: ignore[attr-defined]
    images = [np.zeros((28, 28), np.float32)] * 3
    answering = asyncio.ensure_future(services.digits.answers("digit-resnet", images))
    await asyncio.sleep(0)  # the request runs until it waits for its answers
    await services.registry.unload("digit-resnet")  # drains what was queued, then stops
    answers = await answering
    assert [a.version for a in answers] == ["1", "1", "1"]
