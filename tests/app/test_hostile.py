"""Hostile and careless clients against the service as ``make serve`` runs it (``python -m app``):
streams that finish, bounded memory, no 500s, connections that cannot be held open."""

import asyncio
import contextlib
import io
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from app.settings import Settings
from tests.app.launcher import Launched, launched

CLIENT_TIMEOUT_S = 2
MAX_HEADER_BYTES = 16384


@pytest.fixture(scope="module")
def server(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    with launched(
        tiny_weights, log, log_format="text", max_header_bytes=str(MAX_HEADER_BYTES)
    ) as s:
        yield s


@pytest.fixture(scope="module")
def impatient(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    """A server that gives clients CLIENT_TIMEOUT_S to send their requests."""
    log = tmp_path_factory.mktemp("impatient") / "server.log"
    with launched(
        tiny_weights,
        log,
        client_timeout_s=str(CLIENT_TIMEOUT_S),
        request_timeout_s=str(CLIENT_TIMEOUT_S / 2),
    ) as s:
        yield s


def _status(response: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", response)
    assert match, response[:200]
    return int(match.group(1))


def _still_serving(server: Launched) -> None:
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    ok = httpx.post(f"{server.url}/classify-name", json={"name": "Smith"}, timeout=10)
    assert ok.status_code == 200


def test_streamed_generations_beside_plain_ones_all_finish(server: Launched) -> None:
    async def stream(client: httpx.AsyncClient, seed: int) -> tuple[int, str]:
        body = {"prompt": "A", "max_chars": 2000, "seed": seed, "stream": True}
        async with client.stream("POST", "/char-rnn/generate", json=body) as response:
            return response.status_code, "".join([t async for t in response.aiter_text()])

    async def plain(client: httpx.AsyncClient, seed: int) -> int:
        body = {"prompt": "A", "max_chars": 2000, "seed": seed}
        return (await client.post("/char-rnn/generate", json=body)).status_code

    async def burst() -> list[object]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return await asyncio.gather(
                *(stream(client, i) for i in range(8)), *(plain(client, i) for i in range(5))
            )

    results = asyncio.run(burst())
    for status, text in results[:8]:  # type: ignore[misc]
        assert status == 200
        assert text.rstrip().endswith('"chars": 2000}'), text[-200:]
    assert results[8:] == [200] * 5
    assert "Traceback" not in server.log()


def test_an_oversized_request_header_is_refused(server: Launched) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8 << 20) + b"\r\n\r\n"
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(head)  # refused before the rest was read
        answer = conn.recv(65536)
    assert _status(answer) == 431
    problem = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert problem["status"] == 431 and f"{MAX_HEADER_BYTES:,} bytes" in problem["detail"]
    big_but_allowed = {"X-Big": "a" * (MAX_HEADER_BYTES // 2)}
    assert httpx.get(f"{server.url}/healthz", headers=big_but_allowed).status_code == 200
    _still_serving(server)


def test_a_request_that_stops_mid_headers_is_closed(impatient: Launched) -> None:
    server = impatient
    with socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT_S + 30) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")
        answer = c.recv(65536)
    assert answer == b"" or _status(answer) == 408
    with socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT_S + 30) as c:
        assert c.recv(65536) == b""  # a connection that never sends a byte
    _still_serving(server)


def test_a_request_that_stops_mid_body_is_closed(impatient: Launched) -> None:
    server = impatient
    with socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT_S + 30) as c:
        c.sendall(
            b"POST /classify-name HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 40\r\n\r\n{"name": '
        )
        answer = c.recv(65536)
    assert answer == b"" or _status(answer) == 408
    server.wait_for_log("POST /classify-name 499")
    _still_serving(server)


def test_a_head_sent_a_byte_at_a_time_is_closed(impatient: Launched) -> None:
    """A slow-loris client: every byte resets no clock; the head must be done in time."""
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=1) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Drip: ")
        for _ in range(int(CLIENT_TIMEOUT_S * 20)):
            try:
                c.sendall(b"a")
                if c.recv(65536, socket.MSG_DONTWAIT) == b"":
                    break
            except (BlockingIOError, TimeoutError):
                pass
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.25)
        else:
            raise AssertionError("a head dripped for 5x the timeout is still being read")
    _still_serving(impatient)


def test_control_characters_a_client_sends_are_escaped_in_the_log(server: Launched) -> None:
    forged = "2026-01-01 00:00:00,000 INFO app.access [forged] GET /admin 200 1.0 ms"
    path = "/healthz%0a" + forged.replace(" ", "%20") + "%0d%1b[31m"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert _status(conn.recv(65536)) == 404
    log = server.wait_for_log("[forged]")
    assert not any(line.startswith("2026-01-01") for line in log.splitlines())
    assert "\x1b" not in log and "\r" not in log
    assert "/healthz\\n2026-01-01" in log


def _multipart_head(length: int) -> bytes:
    return (
        b"POST /digit HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=b0undary\r\n"
        b"Content-Length: " + str(length).encode() + b"\r\n\r\n"
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="file"; filename="d.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )


def test_a_client_that_leaves_mid_upload_is_a_499(server: Launched) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(_multipart_head(500_000) + b"\x89PNG\r\n\x1a\n" + b"\0" * 4000)
        time.sleep(0.2)  # the server is reading the body when the client leaves
    server.wait_for_log("POST /digit 499")
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    assert 'route="/digit",status="499"' in metrics
    assert 'route="/digit",status="500"' not in metrics
    assert "Traceback" not in server.log()
    _still_serving(server)


def _deep_uploads() -> dict[str, bytes]:
    """Small files (about 100 KB each) that decode to about 190 MiB or more of deep samples."""

    def saved(image: Image.Image, fmt: str, **params: object) -> bytes:
        out = io.BytesIO()
        image.save(out, format=fmt, **params)
        return out.getvalue()

    rgba16 = cv2.imencode(".png", np.full((5000, 5000, 4), 65535, np.uint16))[1].tobytes()
    return {
        "16-bit grey PNG 7000 x 7000": saved(Image.new("I;16", (7000, 7000), 65535), "PNG"),
        "16-bit RGBA PNG 5000 x 5000": rgba16,
        "float TIFF 5000 x 5000": saved(
            Image.fromarray(np.ones((5000, 5000), np.float32), mode="F"),
            "TIFF",
            compression="tiff_deflate",
        ),
    }


@pytest.mark.slow
def test_two_deep_uploads_take_no_more_memory_than_the_limit_allows(server: Launched) -> None:
    limit_mib = Settings().max_decoded_bytes / 2**20  # the server runs with the default
    for label, blob in _deep_uploads().items():
        assert len(blob) < 1 << 20, label
        server.reset_peak()
        before = server.rss_kib()

        async def both(blob: bytes = blob) -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                files = {"file": ("deep", blob, "application/octet-stream")}
                return list(
                    await asyncio.gather(*(client.post("/digit", files=files) for _ in "ab"))
                )

        for response in asyncio.run(both()):
            assert response.status_code in (413, 422), (label, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
        grown_mib = (server.rss_kib("VmHWM") - before) / 1024
        assert grown_mib < 2 * (limit_mib + 16), f"{label}: two took {grown_mib:.0f} MiB"
    _still_serving(server)
