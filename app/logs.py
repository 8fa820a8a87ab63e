"""Logging: plain text or one JSON object per line, written in batches.

Every request writes an access line. Formatted and written one by one, between requests, a line
costs about 30 us (a tenth of what a ``/digit`` request costs besides the model); buffered and
written a few hundred at a time it costs a third of that. So lines are buffered for at most
``FLUSH_S`` seconds (``flush_periodically``), as nginx's ``access_log ... flush=`` does; a
warning or error is written at once, after the lines before it. What is buffered is written at
shutdown and at exit, and lost only if the process is killed outright.
"""

import asyncio
import json
import logging
import logging.handlers
import re
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime

request_id: ContextVar[str] = ContextVar("request_id", default="-")


FLUSH_S = 0.2
"""Longest time a log line waits in the buffer."""
BUFFERED = 4096
"""Lines buffered before they are written regardless of ``FLUSH_S``."""


class RequestIdFilter(logging.Filter):
    """Stamp every record with the id of the request being handled (``-`` outside one); a record
    that has one already keeps it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class BufferedHandler(logging.handlers.MemoryHandler):
    """The ``app`` logger's handler: lines kept up to ``FLUSH_S``, warnings written at once."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Characters that would break a log line or a terminal: C0 and C1 controls, line separators."""


def escape_controls(text: str) -> str:
    """``text`` with every control character written as its escape (``\\n``, ``\\x1b``), so
    that what a client chose (a path, a header) can neither start a forged line nor drive the
    terminal."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    """One line per record, control characters escaped (a traceback follows on its own lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return escape_controls(super().formatMessage(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``json.dumps`` escapes every control character."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry["request_id"] = getattr(record, "request_id", "-")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(fmt: str, level: str) -> None:
    """Configure the ``app`` logger once (idempotent): lines to standard error, buffered (see
    the module's docstring), each stamped with its request id when it is logged."""
    logger = logging.getLogger("app")
    logger.setLevel(level.upper())
    if any(isinstance(h, BufferedHandler) for h in logger.handlers):
        return
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else TextFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    handler = BufferedHandler(BUFFERED, flushLevel=logging.WARNING, target=stream)
    handler.addFilter(RequestIdFilter())
    logger.addHandler(handler)
    logger.propagate = False


def flush_logs() -> None:
    """Write the buffered lines of the ``app`` logger now."""
    for handler in logging.getLogger("app").handlers:
        handler.flush()


async def flush_periodically(every_s: float = FLUSH_S) -> None:
    """Write the buffered log lines every ``every_s`` seconds, until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        flush_logs()


SUMMED_EVERY_S = 10.0
"""Events of one kind (refusals under overload) are summed in one warning at most this often."""


class SummedWarning:
    """Warnings for events that come by the thousand under overload: ``began`` when they begin,
    then ``summed`` (formatted with the count and the seconds) every ``SUMMED_EVERY_S`` while
    they go on, never one line each."""

    def __init__(self, logger: logging.Logger, began: str, summed: str) -> None:
        self.logger = logger
        self.began = f"{began} (summed every {SUMMED_EVERY_S:g} s)"
        self.summed = summed
        self.count = 0
        self.since: float | None = None

    def add(self) -> None:
        self.count += 1
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self.logger.warning(self.began)
        elif now - self.since >= SUMMED_EVERY_S:
            self.logger.warning(self.summed, self.count, now - self.since)
            self.count, self.since = 0, None
