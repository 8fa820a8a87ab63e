"""Where a request ends is uvicorn's HTTP parser's decision alone, with ``python -m app``'s
connection guard (``app.connections``) in front: framing edge cases get the parser's answer,
and the connection's next request (or the next connection) is still served."""

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.launcher import Launched, launched

NAME = json.dumps({"name": "Smith"}).encode()


@pytest.fixture(scope="module")
def server(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    log = tmp_path_factory.mktemp("framing") / "server.log"
    with launched(tiny_weights, log, max_requests_in_progress="2") as s:
        yield s


def _head(*headers: str, path: str = "/classify-name") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _exchange(port: int, data: bytes, *, until: int = 1, timeout: float = 10) -> bytes:
    """Send ``data`` and read until ``until`` responses have begun and the last is whole (or the
    server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
            if received.count(b"HTTP/1.1 ") >= until and received.rstrip().endswith(b"}"):
                break
        return received


def _statuses(received: bytes) -> list[int]:
    return [int(part[:3]) for part in received.split(b"HTTP/1.1 ")[1:]]


def _still_serves(server: Launched) -> None:
    answer = _exchange(server.port, _head(f"Content-Length: {len(NAME)}") + NAME)
    assert _statuses(answer) == [200]


def test_two_different_content_lengths_are_a_400(server: Launched) -> None:
    data = _head(f"Content-Length: {len(NAME)}", "Content-Length: 3") + NAME
    assert _statuses(_exchange(server.port, data)) == [400]
    _still_serves(server)


def test_content_length_with_transfer_encoding_is_a_400(server: Launched) -> None:
    chunked = f"{len(NAME):x}\r\n".encode() + NAME + b"\r\n0\r\n\r\n"
    data = _head("Content-Length: 4", "Transfer-Encoding: chunked") + chunked
    assert _statuses(_exchange(server.port, data)) == [400]
    _still_serves(server)


def test_a_chunked_body_is_read_to_its_end(server: Launched) -> None:
    chunked = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (NAME[:5], NAME[5:])
    )
    data = _head("Transfer-Encoding: chunked") + chunked + b"0\r\n\r\n"
    answer = _exchange(server.port, data)
    assert _statuses(answer) == [200]
    assert b'"normalized":"Smith"' in answer


def test_pipelined_requests_are_answered_in_order(server: Launched) -> None:
    one = _head(f"Content-Length: {len(NAME)}") + NAME
    li = json.dumps({"name": "Li"}).encode()
    two = _head(f"Content-Length: {len(li)}") + li
    probe = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
    answer = _exchange(server.port, one + probe + two, until=3)
    assert _statuses(answer) == [200, 200, 200]
    assert answer.index(b'"Smith"') < answer.index(b'"status":"ok"') < answer.index(b'"Li"')


def test_expect_100_continue_gets_its_interim_answer_then_the_real_one(server: Launched) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(_head(f"Content-Length: {len(NAME)}", "Expect: 100-continue"))
        interim = conn.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100")
        conn.sendall(NAME)
        answer = b""
        while not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            assert chunk, "the server closed the connection"
            answer += chunk
    assert _statuses(answer) == [200]
