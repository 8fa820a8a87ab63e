"""Log lines: buffered, written in order, each with the request id it was logged under."""

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from app.logs import configure_logging, flush_logs, flush_periodically, request_id


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """A fresh ``app`` logger configured for JSON lines into a string; the old one put back."""
    logger = logging.getLogger("app")
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers = []
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("json", "info")
    yield stream
    logger.handlers, logger.level, logger.propagate = saved


def _lines(stream: io.StringIO) -> list[tuple[str, str, str]]:
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [(e["level"], e["message"], e["request_id"]) for e in entries]


def test_a_warning_writes_the_lines_before_it_in_order_with_their_request_ids(
    stderr: io.StringIO,
) -> None:
    token = request_id.set("req-1")
    logging.getLogger("app.access").info("POST /digit 200 1.0 ms")
    request_id.reset(token)
    assert stderr.getvalue() == ""  # buffered
    logging.getLogger("app.batching").warning("a batch failed")
    assert _lines(stderr) == [
        ("INFO", "POST /digit 200 1.0 ms", "req-1"),
        ("WARNING", "a batch failed", "-"),
    ]


def test_configuring_twice_adds_no_second_handler(stderr: io.StringIO) -> None:
    configure_logging("text", "debug")
    logging.getLogger("app.access").info("once")
    flush_logs()
    assert _lines(stderr) == [("INFO", "once", "-")]


@pytest.mark.anyio
async def test_buffered_lines_are_written_within_the_flush_interval(stderr: io.StringIO) -> None:
    flusher = asyncio.get_running_loop().create_task(flush_periodically(0.01))
    try:
        logging.getLogger("app.access").info("GET /healthz 200 0.1 ms")
        await asyncio.sleep(0.1)
        assert _lines(stderr) == [("INFO", "GET /healthz 200 0.1 ms", "-")]
    finally:
        flusher.cancel()


FORGED = "GET /healthz\n2026-01-01 00:00:00,000 INFO app.access [x] GET /admin 200\x1b[2J\r\u2028"


def test_what_a_client_chose_cannot_forge_a_json_line(stderr: io.StringIO) -> None:
    logging.getLogger("app.access").warning("%s 404 0.1 ms", FORGED)
    assert _lines(stderr) == [("WARNING", f"{FORGED} 404 0.1 ms", "-")]  # one line, exact


def test_what_a_client_chose_is_escaped_in_a_text_line(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("app")
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers = []
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    try:
        configure_logging("text", "info")
        logging.getLogger("app.access").warning("%s 404 0.1 ms", FORGED)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("app.errors").exception("unhandled\nerror")
    finally:
        logger.handlers, logger.level, logger.propagate = saved
    first, second, *traceback = stream.getvalue().splitlines()
    assert first.endswith(
        "GET /healthz\\n2026-01-01 00:00:00,000 INFO app.access [x] GET /admin 200\\x1b[2J\\r"
        "\\u2028 404 0.1 ms"
    )
    assert second.endswith("unhandled\\nerror")
    assert traceback[0] == "Traceback (most recent call last):"  # still readable
