"""Generation goes through admission like the batched models: a bounded number at once, 429
with Retry-After beyond the queue, 504 at the deadline."""

import asyncio
import time
from typing import Any

import pytest

from app.batching import _Item
from app.settings import Settings
from tests.app.test_api import assert_problem

pytestmark = pytest.mark.anyio
BODY = {"prompt": "A", "max_chars": 2000, "seed": 1}


async def test_generations_beyond_the_queue_are_refused_with_retry_after(
    settings: Settings, make_client: Any
) -> None:
    one = settings.model_copy(update={"max_generations": 1, "max_generation_queue": 0})
    async with make_client(one) as client:
        admission = client._transport.app.state.services.generations.admission
        entered = await admission.enter()  # the one slot is taken
        for stream in (False, True):
            response = await client.post("/char-rnn/generate", json={**BODY, "stream": stream})
            assert_problem(response, 429)
            assert int(response.headers["retry-after"]) >= 1
        admission.leave(entered)
        assert (await client.post("/char-rnn/generate", json=BODY)).status_code == 200


async def test_a_generation_waiting_past_the_deadline_is_a_504(
    settings: Settings, make_client: Any
) -> None:
    short = settings.model_copy(
        update={"max_generations": 1, "max_generation_queue": 4, "request_timeout_s": 0.2}
    )
    async with make_client(short) as client:
        admission = client._transport.app.state.services.generations.admission
        entered = await admission.enter()
        assert_problem(await client.post("/char-rnn/generate", json=BODY), 504)
        assert admission.waiting == 0
        admission.leave(entered)
        assert admission.running == 0


V2_FOUR_PROMPTS = {
    "inputs": [{"name": "prompt", "shape": [4], "datatype": "BYTES", "data": ["A"] * 4}],
    "parameters": {"max_chars": 2000},
}


@pytest.mark.parametrize("door", ["typed", "v2"])
async def test_a_plain_generation_past_the_deadline_is_a_504_and_stops(
    settings: Settings, make_client: Any, door: str
) -> None:
    """Through either door: one deadline for the whole request (on /v2, four prompts)."""
    short = settings.model_copy(update={"request_timeout_s": 0.3})
    async with make_client(short) as client:
        services = client._transport.app.state.services
        char = services.registry.served["char-rnn-shakespeare"].runner
        model, steps = char.model, []

        def slow(*args: object) -> object:
            steps.append(1)
            time.sleep(0.005)
            return model(*args)

        char.model = slow
        if door == "typed":
            response = await client.post("/char-rnn/generate", json=BODY)
            assert "deadline" in assert_problem(response, 504)["detail"]
        else:
            url = "/v2/models/char-rnn-shakespeare/infer"
            response = await client.post(url, json=V2_FOUR_PROMPTS)
            assert response.status_code == 504
            assert "deadline" in response.json()["error"]
        deadline = time.monotonic() + 5
        while services.generations.admission.running and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert services.generations.admission.running == 0
        assert len(steps) < 1000


async def test_a_full_queue_answers_429_with_retry_after_on_every_route(
    settings: Settings, make_client: Any
) -> None:
    one = settings.model_copy(
        update={"max_queue": 1, "max_generations": 1, "max_generation_queue": 0}
    )
    async with make_client(one) as client:
        services = client._transport.app.state.services
        batcher = services.registry.served["name-gru"].runner.batcher
        worker = batcher._worker
        worker.cancel()  # nothing takes from the queue now
        stuck = _Item("Smith", asyncio.get_running_loop().create_future())
        batcher.queue.put_nowait(stuck)
        admission = services.generations.admission
        entered = await admission.enter()
        bodies = {
            "/classify-name": {"name": "Smith"},
            "/classify-name/batch": {"names": ["Smith"]},
            "/char-rnn/generate": BODY,
        }
        for path, body in bodies.items():
            for _ in range(3):
                refused = await client.post(path, json=body)
                assert_problem(refused, 429)
                assert int(refused.headers["retry-after"]) >= 1
        metrics = (await client.get("/metrics")).text
        assert 'route="/classify-name",status="429"} 3.0' in metrics
        admission.leave(entered)
        batcher.queue.get_nowait()  # what was stuck leaves, answered by nobody
        stuck.future.cancel()
        assert (await client.post("/char-rnn/generate", json=BODY)).status_code == 200
