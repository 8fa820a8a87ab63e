"""The intake of ``python -m app`` (``app.connections.Intake``): at most so many whole requests
in progress; the others wait their turn unread, probes never wait, a client still sending holds
no place, and a request that waits too long gets a 503 it can act on."""

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.launcher import Launched, launched

LONG = {"prompt": "A", "max_chars": 2000}  # a plain generation: holds its place for a while


def _serve(
    tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory, **settings: str
) -> Iterator[Launched]:
    """``python -m app`` with these settings, its log in a folder of its own."""
    log = tmp_path_factory.mktemp("intake") / "server.log"
    with launched(tiny_weights, log, **settings) as s:
        yield s


@pytest.fixture(scope="module")
def one_at_a_time(
    tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Launched]:
    yield from _serve(
        tiny_weights,
        tmp_path_factory,
        max_requests_in_progress="1",
        intake_wait_s="30",
        max_queue="8",
    )


@pytest.fixture(scope="module")
def impatient(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    yield from _serve(
        tiny_weights, tmp_path_factory, max_requests_in_progress="1", intake_wait_s="0.01"
    )


def test_requests_beyond_the_limit_wait_their_turn_and_all_get_answers(
    one_at_a_time: Launched,
) -> None:
    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=one_at_a_time.url, timeout=60, limits=limits) as c:
            names = [c.post("/classify-name", json={"name": f"Smith{i}"}) for i in range(120)]
            generations = [c.post("/char-rnn/generate", json=LONG) for _ in range(3)]
            return [r.status_code for r in await asyncio.gather(*generations, *names)]

    statuses = asyncio.run(burst())
    # 120 names at once would overflow the model's queue of 8 (429s) if they all came in
    assert statuses == [200] * 123, statuses  # nothing refused, nothing lost
    assert "Traceback" not in one_at_a_time.log()


def test_probes_go_past_the_requests_waiting(one_at_a_time: Launched) -> None:
    async def probe_while_busy() -> tuple[list[int], int, int, int]:
        async with httpx.AsyncClient(base_url=one_at_a_time.url, timeout=60) as c:
            busy = [
                asyncio.ensure_future(c.post("/char-rnn/generate", json=LONG)) for _ in range(4)
            ]
            await asyncio.sleep(0.05)
            health, ready = await c.get("/healthz"), await c.get("/readyz")
            waiting = sum(not task.done() for task in busy)
            statuses = [r.status_code for r in await asyncio.gather(*busy)]
            return statuses, health.status_code, ready.status_code, waiting

    generations, health, ready, waiting = asyncio.run(probe_while_busy())
    assert generations == [200] * 4
    assert health == 200 and ready == 200
    assert waiting >= 2, "the probes were answered while generations still waited"


def test_a_client_still_sending_its_body_holds_no_place(one_at_a_time: Launched) -> None:
    body = b'{"name": "Smith"}'
    with socket.create_connection(("127.0.0.1", one_at_a_time.port)) as slow:
        slow.sendall(
            b"POST /classify-name HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:5]
        )  # and the rest not yet
        answered = httpx.post(
            f"{one_at_a_time.url}/classify-name", json={"name": "Nakamura"}, timeout=10
        )
        assert answered.status_code == 200
        slow.sendall(body[5:])
        assert slow.recv(4096).startswith(b"HTTP/1.1 200 ")


def test_a_request_that_waits_too_long_gets_a_503_with_retry_after(impatient: Launched) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=impatient.url, timeout=60) as c:
            return await asyncio.gather(
                *(c.post("/char-rnn/generate", json=LONG) for _ in range(4))
            )

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and 503 in statuses, statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    problem = refused.json()
    assert problem["type"].endswith("/overloaded") and problem["status"] == 503
    assert "retry in" in problem["detail"]
    assert httpx.get(f"{impatient.url}/healthz", timeout=5).status_code == 200


@pytest.fixture(scope="module")
def one_generation(
    tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Launched]:
    yield from _serve(
        tiny_weights,
        tmp_path_factory,
        log_format="text",
        max_generations="1",
        max_generation_queue="0",
    )


def _post(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _read_answers(conn: socket.socket, count: int) -> list[bytes]:
    """``count`` whole responses (status line, headers, Content-Length body) from ``conn``."""
    data, answers = b"", []
    while len(answers) < count:
        chunk = conn.recv(65536)
        assert chunk, f"closed after {answers}"
        data += chunk
        while (end := data.find(b"\r\n\r\n")) >= 0:
            head = data[:end].decode()
            length = int(
                next(
                    v
                    for k, _, v in (h.partition(": ") for h in head.split("\r\n"))
                    if k.lower() == "content-length"
                )
            )
            if len(data) < end + 4 + length:
                break
            answers.append(data[: end + 4 + length])
            data = data[end + 4 + length :]
    return answers


def test_a_full_queue_is_refused_at_the_door_and_the_connection_still_answers(
    one_generation: Launched,
) -> None:
    long = json.dumps(LONG).encode()
    with socket.create_connection(("127.0.0.1", one_generation.port), timeout=60) as busy:
        busy.sendall(_post("/char-rnn/generate", long))  # takes the one generation slot
        time.sleep(0.05)  # running (it takes about 0.3 s) before the next one comes
        with socket.create_connection(("127.0.0.1", one_generation.port), timeout=60) as conn:
            # a refused generation, its body in two reads, then a name, pipelined behind it
            first = _post("/char-rnn/generate", long)
            conn.sendall(first[:-7])
            conn.sendall(first[-7:] + _post("/classify-name", b'{"name": "Smith"}'))
            refused, answered = _read_answers(conn, 2)
        assert _read_answers(busy, 1)[0].startswith(b"HTTP/1.1 200 ")
    assert refused.startswith(b"HTTP/1.1 429 "), refused[:300]
    assert b"retry-after: " in refused.lower() and b"application/problem+json" in refused
    assert b'"queue-full"' in refused or b"/queue-full" in refused
    assert answered.startswith(b"HTTP/1.1 200 ") and b'"Smith"' in answered
    metrics = httpx.get(f"{one_generation.url}/metrics", timeout=5).text
    assert 'route="/char-rnn/generate",status="429"' in metrics
    log = one_generation.log()
    assert "refusing requests with 429" in log and "Traceback" not in log
