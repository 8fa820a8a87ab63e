"""Every route through the ASGI app with its lifespan, on tiny random-init checkpoints."""

import asyncio
import io
import json
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"


def digit_png(size: int = 28, dark_on_light: bool = False) -> bytes:
    """A drawn "1": a vertical bar."""
    canvas = np.zeros((size, size), dtype=np.uint8)
    canvas[size // 5 : size - size // 5, size // 2 - size // 14 : size // 2 + size // 14 + 1] = 255
    if dark_on_light:
        canvas = 255 - canvas
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    return buf.getvalue()


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"] and body["title"] and body["type"].startswith("https://")
    assert body["instance"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


async def test_health_ready_and_request_id(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz", headers={"X-Request-ID": "abc-123"})
    assert ready.status_code == 200
    assert ready.headers["x-request-id"] == "abc-123"
    assert ready.json()["models"] == sorted(
        ["char-rnn-hello", "char-rnn-shakespeare", "digit-inception", "digit-resnet", "name-gru"]
    )
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32


async def test_classify_name_folds_unicode(client: httpx.AsyncClient) -> None:
    response = await client.post("/classify-name", json={"name": "  Müller ", "top_k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["normalized"] == "Muller"
    assert body["name"] == "  Müller "
    assert body["model"] == "name-gru"
    probs = [p["probability"] for p in body["predictions"]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True)
    cyrillic = await client.post("/classify-name", json={"name": "Иванов"})
    assert cyrillic.json()["normalized"] == "Ivanov"
    assert len(cyrillic.json()["predictions"]) == 3


@pytest.mark.parametrize("name", ["😀😀", "1234", "   ", "\u200f", "!!"])
async def test_name_with_nothing_left_is_422(client: httpx.AsyncClient, name: str) -> None:
    body = assert_problem(await client.post("/classify-name", json={"name": name}), 422)
    assert "no letters left" in body["detail"]


async def test_name_validation_errors_keep_fastapi_details(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/classify-name", json={"top_k": 99}), 422)
    locs = {tuple(e["loc"]) for e in body["errors"]}
    assert ("body", "name") in locs and ("body", "top_k") in locs
    long = await client.post("/classify-name", json={"name": "a" * 100_000})
    assert "at most 1000" in assert_problem(long, 422)["detail"]
    assert_problem(
        await client.post(
            "/classify-name", content=b"{not json", headers={"content-type": "application/json"}
        ),
        422,
    )


async def test_batch_keeps_order_and_matches_single_requests(client: httpx.AsyncClient) -> None:
    names = ["Nguyen", "Schmidt", "O'Brien", "Nakamura", "Ivanov"]
    batch = await client.post("/classify-name/batch", json={"names": names, "top_k": 2})
    assert batch.status_code == 200
    results = batch.json()["results"]
    assert [r["normalized"] for r in results] == names
    singles = [
        (await client.post("/classify-name", json={"name": n, "top_k": 2})).json() for n in names
    ]
    for single, in_batch in zip(singles, results, strict=True):
        for a, b in zip(single["predictions"], in_batch["predictions"], strict=True):
            assert a["label"] == b["label"]
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)


async def test_batch_limits_and_bad_items(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/classify-name/batch", json={"names": []}), 422)
    assert_problem(await client.post("/classify-name/batch", json={"names": ["a"] * 257}), 422)
    bad = assert_problem(
        await client.post("/classify-name/batch", json={"names": ["Smith", "🙂"]}), 422
    )
    assert bad["errors"][0]["loc"] == ["body", "names", 1]


async def test_digit_upload(client: httpx.AsyncClient) -> None:
    files = {"file": ("one.png", digit_png(), "image/png")}
    response = await client.post("/digit", files=files, params={"top_k": 10, "debug": "true"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "digit-resnet"
    assert len(body["predictions"]) == 10
    assert body["digit"] == int(body["predictions"][0]["label"])
    assert body["image"].startswith("data:image/png;base64,")
    other = await client.post("/digit", files=files, params={"model": "digit-inception"})
    assert other.json()["model"] == "digit-inception" and "image" not in other.json()


async def test_digit_errors(client: httpx.AsyncClient) -> None:
    png = digit_png()
    assert_problem(
        await client.post("/digit", content=png, headers={"content-type": "text/plain"}), 415
    )
    assert_problem(await client.post("/digit", json={"file": "x"}), 415)
    assert_problem(await client.post("/digit", files={"file": ("x.png", b"", "image/png")}), 400)
    assert_problem(
        await client.post("/digit", files={"file": ("x.png", png[:40], "image/png")}), 400
    )
    assert_problem(
        await client.post("/digit", files={"file": ("x.svg", b"<svg></svg>", "image/svg+xml")}), 415
    )
    assert_problem(await client.post("/digit", files={"other": ("x.png", png, "image/png")}), 422)
    unknown = await client.post(
        "/digit", files={"file": ("x.png", png, "image/png")}, params={"model": "digit-vgg"}
    )
    assert "digit-resnet" in json.dumps(assert_problem(unknown, 422)["errors"])
    blank = Image.new("RGB", (200, 200), "white")
    buf = io.BytesIO()
    blank.save(buf, format="JPEG")
    empty = await client.post("/digit", files={"file": ("b.jpg", buf.getvalue(), "image/jpeg")})
    assert "no digit found" in assert_problem(empty, 422)["detail"]


async def test_body_over_the_limit_is_413_with_or_without_length(
    client: httpx.AsyncClient,
) -> None:
    big = b"\x00" * (5 * 1024 * 1024 + 1)
    declared = await client.post("/digit", files={"file": ("x.png", big, "image/png")})
    assert "over the limit" in assert_problem(declared, 413)["detail"]

    async def chunks() -> Any:
        for _ in range(6):
            yield b"\x00" * (1024 * 1024)

    streamed = await client.post(
        "/classify-name", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(streamed, 413)
    assert (await client.post("/classify-name", json={"name": "Smith"})).status_code == 200


async def test_transduce(client: httpx.AsyncClient) -> None:
    response = await client.post("/char-rnn/transduce", json={"text": "hello"})
    assert response.status_code == 200
    body = response.json()
    assert len(body["output"]) == 5 and [s["input"] for s in body["steps"]] == list("hello")
    assert all(set(s["output"]) <= set("helo") for s in body["steps"])
    bad = assert_problem(await client.post("/char-rnn/transduce", json={"text": "help!"}), 422)
    assert "'!'" in bad["detail"] and "'p'" in bad["detail"]


async def test_generate_is_reproducible_with_a_seed(client: httpx.AsyncClient) -> None:
    req = {"prompt": "ROMEO:", "max_chars": 50, "temperature": 0.9, "seed": 7}
    first = await client.post("/char-rnn/generate", json=req)
    second = await client.post("/char-rnn/generate", json=req)
    assert first.status_code == 200
    assert first.json()["text"] == second.json()["text"]
    assert len(first.json()["text"]) == 50
    other = await client.post("/char-rnn/generate", json={**req, "seed": 8})
    assert other.json()["text"] != first.json()["text"]
    greedy = await client.post("/char-rnn/generate", json={**req, "top_k": 1, "seed": 1})
    greedy2 = await client.post("/char-rnn/generate", json={**req, "top_k": 1, "seed": 2})
    assert greedy.json()["text"] == greedy2.json()["text"]


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0},
        {"temperature": -1},
        {"temperature": 1e9},
        {"max_chars": 2001},
        {"max_chars": 0},
        {"prompt": "naïve"},
        {"model": "gpt-4"},
        {"top_k": 0},
    ],
)
async def test_generate_rejects_bad_fields(
    client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    assert_problem(await client.post("/char-rnn/generate", json={"prompt": "A", **change}), 422)


async def test_generate_rejects_nan_temperature(client: httpx.AsyncClient) -> None:
    raw = b'{"prompt": "A", "temperature": NaN}'
    response = await client.post(
        "/char-rnn/generate", content=raw, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


async def test_generate_streams_server_sent_events(client: httpx.AsyncClient) -> None:
    req = {"prompt": "KING:", "max_chars": 40, "seed": 3, "stream": True}
    async with client.stream("POST", "/char-rnn/generate", json=req) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = "".join([part async for part in response.aiter_text()])
    events = [e for e in raw.split("\n\n") if e]
    chunks = [json.loads(e.split("data: ", 1)[1])["text"] for e in events[:-1]]
    assert len(chunks) >= 2 and events[-1].startswith("event: done")
    plain = await client.post("/char-rnn/generate", json={**req, "stream": False})
    assert "".join(chunks) == plain.json()["text"]


async def test_models_cards_without_tensors(client: httpx.AsyncClient) -> None:
    response = await client.get("/models")
    assert response.status_code == 200
    cards = {m["name"]: m for m in response.json()["models"]}
    assert cards["digit-resnet"]["num_parameters"] == 41_514
    services = client._transport.app.state.services  # type: ignore[attr-defined]
    assert cards["digit-resnet"]["device"] == str(services.registry.device)
    for name in ("digit-resnet", "digit-inception"):  # how each digit net is computed, as chosen
        digit = services.registry.served[name].runner
        assert cards[name]["folded"] is digit.folded is (name == "digit-inception")
    assert len(response.content) < 200_000
    one = await client.get("/models/name-gru")
    assert one.json()["labels"][0] == "Arabic"
    for name in ["gpt", "..%2F..%2Fetc%2Fpasswd", "digit-resnet%00"]:
        assert_problem(await client.get(f"/models/{name}"), 404)


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nope"), 404)
    assert_problem(await client.get("/classify-name"), 405)


async def test_concurrent_requests_are_batched(client: httpx.AsyncClient) -> None:
    services = client._transport.app.state.services  # type: ignore[attr-defined]
    names = [f"Name{'a' * (i % 7)}" for i in range(48)]
    responses = await asyncio.gather(
        *(client.post("/classify-name", json={"name": n}) for n in names)
    )
    assert all(r.status_code == 200 for r in responses)
    assert services.registry.served["name-gru"].runner.batcher.stats.largest_batch > 1


async def test_openapi_documents_routes_errors_and_allowed_models(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in [
        "/classify-name",
        "/classify-name/batch",
        "/digit",
        "/char-rnn/transduce",
        "/char-rnn/generate",
        "/models",
        "/models/{name}",
        "/healthz",
        "/readyz",
    ]:
        assert path in paths
    digit = paths["/digit"]["post"]
    assert {"400", "413", "415", "422"} <= set(digit["responses"])
    model_param = next(p for p in digit["parameters"] if p["name"] == "model")
    assert model_param["schema"]["enum"] == ["digit-resnet", "digit-inception"]
    assert (await client.get("/docs")).status_code == 200


async def test_metrics_count_requests_batches_and_models(client: httpx.AsyncClient) -> None:
    await client.post("/classify-name", json={"name": "Smith"})
    await client.post("/classify-name", json={"name": "🙂"})
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'tinyzoo_http_requests_total{method="POST",route="/classify-name",status="200"}' in text
    assert 'route="/classify-name",status="422"' in text
    assert 'tinyzoo_batch_size_count{model="name-gru"}' in text
    assert 'tinyzoo_queue_depth{model="digit-resnet"}' in text
    assert 'tinyzoo_model_info{architecture="ResNet"' in text


async def test_api_key_guards_predictions_but_not_health(settings: Any, make_client: Any) -> None:
    async with make_client(settings.model_copy(update={"api_key": "s3cret"})) as c:
        assert_problem(await c.post("/classify-name", json={"name": "Smith"}), 401)
        wrong = {"Authorization": "Bearer nope"}
        assert_problem(await c.post("/classify-name", json={"name": "Smith"}, headers=wrong), 401)
        right = {"Authorization": "Bearer s3cret"}
        ok = await c.post("/classify-name", json={"name": "Smith"}, headers=right)
        assert ok.status_code == 200
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/readyz")).status_code == 200
        assert (await c.get("/metrics")).status_code == 200


async def test_tiny_temperature_is_greedy_not_a_crash(client: httpx.AsyncClient) -> None:
    req = {"prompt": "A", "max_chars": 30, "temperature": 5e-324, "seed": 1}
    tiny = await client.post("/char-rnn/generate", json=req)
    greedy = await client.post("/char-rnn/generate", json={**req, "temperature": 1, "top_k": 1})
    assert tiny.status_code == 200
    assert tiny.json()["text"] == greedy.json()["text"]


async def test_a_failing_model_fails_only_its_batch_with_a_500_problem(
    client: httpx.AsyncClient,
) -> None:
    services = client._transport.app.state.services  # type: ignore[attr-defined]
    batcher = services.registry.served["name-gru"].runner.batcher
    working = batcher.predict_batch

    def explode(items: Any) -> Any:
        raise RuntimeError("CUDA error: device-side assert triggered")

    batcher.predict_batch = explode
    failed = await client.post("/classify-name", json={"name": "Smith"})
    body = assert_problem(failed, 500)
    assert "CUDA" not in failed.text
    assert "retry" in body["detail"]
    batcher.predict_batch = working
    assert (await client.post("/classify-name", json={"name": "Smith"})).status_code == 200


async def test_log_lines_carry_the_request_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from app.logs import RequestIdFilter

    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="app.access"):
        await client.get("/healthz", headers={"X-Request-ID": "trace-me-42"})
    lines = [r for r in caplog.records if r.name == "app.access"]
    assert any(getattr(r, "request_id", None) == "trace-me-42" for r in lines)
    assert any("GET /healthz 200" in r.getMessage() for r in lines)
