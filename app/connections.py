"""Connection guards uvicorn lacks, around its own HTTP/1.1 protocol (``python -m app``).

uvicorn's httptools protocol reads a request head of any size (an 8 MiB header is parsed, a
50 MB one stalls the worker for seconds) and waits forever for a head or body that never
finishes; a connection that never sends a byte is held until the client closes it. h11, its
other protocol, bounds the head (``h11_max_incomplete_event_size``) but serves about half the
requests per second. So the launcher runs uvicorn's default protocol inside ``GuardedHTTP``
(uvicorn takes the class through its public ``http=`` parameter), which watches the bytes
going in and out and enforces:

* a request head (request line and headers) of at most ``max_header_bytes``: 431, then close;
* a head finished within ``client_timeout_s`` of its first byte, and no connection on which
  nothing has moved, either way, for ``client_timeout_s``: closed (an application reading a
  body then sees the client leave, a 499). ``client_timeout_s`` must be longer than a request
  may compute without writing (``request_timeout_s``, the deadline of every model call);
* at most ``max_requests_in_progress`` requests in progress at once (``Intake``): a request
  counts from its last byte (the head's end plus its ``Content-Length``) to the first byte of
  its response, so a client still sending, however slowly, holds no place. Beyond that, a
  whole request waits: its last read is held here, anything after it stays in the kernel's
  socket buffer (reading is paused), and the longest-waiting connection goes next. One that
  waits ``intake_wait_s`` is answered 503 with ``Retry-After`` and closed. Health, readiness and
  metrics probes, and chunked bodies (whose end the head does not tell; the application's own
  admission bounds them), go straight in;
* a POST whose queue is full (``Door``, asked with the app's ``app.main.refusal`` as soon as its
  head is whole) is answered 429 here, its body dropped as it comes, and its connection is not
  read again until the ``Retry-After`` it was given has passed.

Why wait rather than refuse: clients that send their next request as soon as they have an
answer (load generators, impatient users, retry loops) would turn every refusal into another
request at once, and a server with thousands of requests in progress spends its event loop
going round them all: each step of each request waits behind a step of every other, a new
connection (a health probe too) waits for the accept behind them, and the work each request
leaves behind (timers, futures, garbage) grows with their number. A request that waits unread
costs nothing until its turn. And a refusal must cost next to nothing and not come back at
once: a client refused in the app would cost a tenth of an answer each time, and one that asks
again at once, thousands of times a second, would starve the work that has a place.
"""

import asyncio
import functools
import json
import logging
import re
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from app.errors import HeadersTooLarge, Overloaded, ServiceError
from app.logs import SummedWarning
from app.problems import problem_body
from app.settings import from_environment

HEAD_END = b"\r\n\r\n"
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d+)", re.IGNORECASE)
TRANSFER_ENCODING = re.compile(rb"\r\ntransfer-encoding[ \t]*:", re.IGNORECASE)
PROBES = (b"GET /healthz", b"GET /readyz", b"GET /metrics", b"GET /v2/health/")
"""Request lines that never wait at the intake: they cost next to nothing, and a probe that
waited behind the load would report a busy server as a dead one."""
RETRY_S = 1
"""What a 503 of the intake tells the client: try again in a second."""
CLOSING_GRACE_S = 0.05
"""How long a connection given up while paced is still read, for a request sent meanwhile."""

logger = logging.getLogger("app.connections")


class Intake:
    """The requests this process works on at once (``limit``), and the connections whose next
    request waits for a place, oldest first."""

    def __init__(self, limit: int, wait_s: float) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self.busy = 0
        self.waiting: deque[GuardedHTTP] = deque()
        self.overloaded = SummedWarning(
            logger,
            f"answering requests 503: no place within {wait_s:g} s",
            f"answered %d requests 503 in %.0f s: no place within {wait_s:g} s",
        )
        """Requests that waited in vain."""

    def enter(self, connection: "GuardedHTTP") -> bool:
        """Take a place for the connection's new request, or queue it (False)."""
        if self.busy < self.limit and not self.waiting:
            self.busy += 1
            return True
        self.waiting.append(connection)
        return False

    def leave(self) -> None:
        """A request's response began (or its connection closed): its place goes to the
        longest-waiting connection still open."""
        self.busy -= 1
        while self.waiting and self.busy < self.limit:
            connection = self.waiting.popleft()
            if connection.admit():
                self.busy += 1

    def withdraw(self, connection: "GuardedHTTP") -> None:
        """A waiting connection gives up its turn (answered 503, or closed)."""
        if connection in self.waiting:
            self.waiting.remove(connection)


class Door:
    """The refusal a POST meets at the door, asked by the intake as soon as the request's head
    is whole: the app, once ready, ``open``s it with ``app.main.refusal`` (the 429 the
    request's queue would give it, from path and query alone) and how to count one. A refused
    request is answered here, with keep-alive, and its body read and dropped as it comes: no
    task, no middleware, no parsing, a fraction of what the same 429 costs in the app."""

    def __init__(self) -> None:
        self.refusal: Callable[[dict[str, Any]], ServiceError | None] | None = None
        self.counted: Callable[[str], None] | None = None

    def open(
        self,
        refusal: Callable[[dict[str, Any]], ServiceError | None],
        counted: Callable[[str], None],
    ) -> None:
        self.refusal, self.counted = refusal, counted

    def close(self) -> None:
        self.refusal = self.counted = None

    def answer(self, line: bytes, *, close: bool = False) -> tuple[bytes, float] | None:
        """The whole 429 response for a request line (``POST /path?query HTTP/1.1``), closing
        the connection if ``close``, and its ``Retry-After`` in seconds, or None to let the
        request in."""
        if self.refusal is None or not line.startswith(b"POST "):
            return None
        target = line[5:].partition(b" ")[0]
        raw_path, _, query = target.partition(b"?")
        path = unquote(raw_path.decode("latin-1"))
        refused = self.refusal({"type": "http", "path": path, "query_string": query})
        if refused is None:
            return None
        if self.counted is not None:
            self.counted(path)
        retry_s = float(refused.headers.get("Retry-After", 1))
        return _response(refused, close=close), retry_s


def _response(error: ServiceError, *, close: bool = False) -> bytes:
    """The whole problem+json response to an error, written by this module, not by uvicorn."""
    body = json.dumps(problem_body(error.status, error.slug, error.title, error.detail)).encode()
    headers = "".join(f"{k.lower()}: {v}\r\n" for k, v in error.headers.items())
    return b"".join(
        (
            f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n".encode(),
            b"content-type: application/problem+json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\n",
            headers.encode("latin-1"),
            b"connection: close\r\n\r\n" if close else b"\r\n",
            body,
        )
    )


door = Door()
"""This process's door (one app per worker process)."""


@functools.cache
def intake() -> Intake:
    """This process's intake (one event loop per worker process)."""
    s = from_environment()
    return Intake(s.max_requests_in_progress, s.intake_wait_s)


class _Watched(asyncio.Transport):
    """The connection's transport as the inner protocol sees it: writes are noted."""

    def __init__(self, transport: asyncio.Transport, guard: "GuardedHTTP") -> None:
        super().__init__()
        self._transport = transport
        self._guard = guard

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._guard.wrote(bytes(data[:12]))
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        if self._guard.held is not None:  # uvicorn sees an idle connection; a request waits
            self._guard.overloaded()
            return
        if self._guard.paced is not None:  # idle to uvicorn, but a request may wait unread
            self._guard.closing = True
            return
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self._transport.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


class GuardedHTTP(asyncio.Protocol):
    """uvicorn's HTTP protocol for one connection, behind the guards of this module."""

    def __init__(self, **kwargs: Any) -> None:
        self.inner: asyncio.Protocol = AutoHTTPProtocol(**kwargs)
        s = from_environment()
        self.max_head, self.timeout_s = s.max_header_bytes, s.client_timeout_s
        self.max_unanswered = s.max_header_bytes + s.max_body_bytes
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.last = self.loop.time()
        """When anything last moved, either way."""
        self.head: int | None = 0
        """Bytes of the request head read so far; None once the head is complete."""
        self.head_began: float | None = None
        self.tail = b""
        self.unanswered = 0
        """Bytes received since the last response began."""
        self.timer: asyncio.TimerHandle | None = None
        self.intake = intake()
        self.counted = False
        """Whether a request of this connection holds a place at the intake."""
        self.held: bytes | None = None
        """The first bytes of a request waiting for a place, not yet given to uvicorn."""
        self.held_timer: asyncio.TimerHandle | None = None
        self.head_data = bytearray()
        """The request head read so far, while it is not whole."""
        self.expect: int | None = None
        """Bytes of the request (head and body) once its head is whole, while it has not yet
        passed the intake; None for requests that do not pass it (probes, chunked bodies)."""
        self.line: bytes | None = None
        """The request line, from the read that completes the head to the door's question."""
        self.discard = 0
        """Bytes still to come of a body refused at the door, read and dropped."""
        self.paced: asyncio.TimerHandle | None = None
        """Resumes reading once a refusal's ``Retry-After`` has passed."""
        self.closing = False
        """uvicorn gave the connection up while it was paced: what the client sent meanwhile
        gets a 503, then the connection is closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's, but have the same methods
        self.transport = cast(asyncio.Transport, transport)
        self.inner.connection_made(_Watched(self.transport, self))
        self.timer = self.loop.call_later(self.timeout_s, self._check)

    def data_received(self, data: bytes) -> None:
        if self.held is not None:  # a request waits for a place; reading is paused, but a
            self.held += data  # read may already have been under way
            return
        if self.closing:
            self._answer_and_close(self._overload())
            return
        if self.discard:  # the rest of a body refused at the door
            self.last = self.loop.time()
            dropped, data = data[: self.discard], data[self.discard :]
            self.discard -= len(dropped)
            if not data:
                return
        if not self._track(data):
            return
        if self.line is not None:  # the head is whole: the door's question
            line, self.line = self.line, None
            # a chunked body's end is not known: after a refusal the connection is closed
            refused = door.answer(line, close=self.expect is None)
            if refused is not None:
                self._refused(*refused, data)
                return
        if self.expect is not None and self.unanswered >= self.expect:  # the request is whole
            self.expect = None
            if not self.intake.enter(self):
                self.held = data
                self.held_timer = self.loop.call_later(self.intake.wait_s, self.overloaded)
                assert self.transport is not None
                self.transport.pause_reading()
                return
            self.counted = True
        self.inner.data_received(data)

    def _refused(self, answer: bytes, retry_s: float, data: bytes) -> None:
        """Answer a request refused at the door, and read past it: its body is dropped as it
        comes, and the connection is not read again for ``retry_s``, the ``Retry-After`` it was
        given (a client that asks again at once waits in the kernel meanwhile, unread: refusals
        cannot take the server's time from its work however fast they are asked for); what
        follows the request (a pipelined one) is read then as a new one."""
        assert self.transport is not None
        self.transport.write(answer)
        if self.expect is None:  # a chunked body, whose end is not known (answered to close)
            self._close()
            return
        beyond = self.unanswered - self.expect  # > 0: the next request began in this read
        self._next_request()
        self.discard = max(0, -beyond)
        rest = data[len(data) - beyond :] if beyond > 0 else b""
        self.transport.pause_reading()
        self.paced = self.loop.call_later(retry_s, self._resume, rest)

    def _resume(self, rest: bytes) -> None:
        """The ``Retry-After`` of a refusal has passed: read the connection again."""
        self.paced = None
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.resume_reading()
        if self.closing:  # close, after answering anything the client sent meanwhile
            self.loop.call_later(CLOSING_GRACE_S, self._close)
        if rest:
            self.data_received(rest)

    def admit(self) -> bool:
        """The intake gives this connection's waiting request a place: it goes in now (False
        if the connection closed meanwhile)."""
        data, self.held = self.held, None
        if self.held_timer is not None:
            self.held_timer.cancel()
        if data is None or self.transport is None or self.transport.is_closing():
            return False
        self.counted = True
        self.transport.resume_reading()
        self.inner.data_received(data)
        return True

    def overloaded(self) -> None:
        """The waiting request found no place in time (or uvicorn closes the connection it
        thinks idle): 503 with Retry-After, and the connection closed."""
        if self.held is None:
            return
        self.held = None
        self.intake.withdraw(self)
        self.intake.overloaded.add()
        self._answer_and_close(self._overload())

    def _overload(self) -> Overloaded:
        return Overloaded(
            f"{self.intake.busy} requests in progress and {len(self.intake.waiting)} waiting; "
            f"no place for this one within {self.intake.wait_s:g} s; retry in {RETRY_S} s",
            headers={"Retry-After": str(RETRY_S)},
        )

    def _track(self, data: bytes) -> bool:
        """Follow the request head through ``data``: 431 past ``max_head``, and once the head
        is whole, how many bytes the request has (``expect``); False when the connection is
        refused or closed."""
        now = self.last = self.loop.time()
        before = self.unanswered
        self.unanswered += len(data)
        if self.head is not None:
            if self.head_began is None:
                self.head_began = now
            end: int | None = data.find(HEAD_END)  # where the blank line begins, in ``data``
            if end == -1:
                end = None
                if self.tail:  # it may straddle two reads, and then begin before ``data``
                    found = (self.tail + data[:3]).find(HEAD_END)
                    end = found - len(self.tail) if found >= 0 else None
            size = self.head + (len(data) if end is None else max(end, 0))
            if size > self.max_head:
                self._refuse_head(size)
                return False
            if end is None:
                self.head, self.tail = size, (self.tail + data)[-3:]
                self.head_data += data
            else:
                head = bytes(self.head_data) + data[: max(end, 0)]
                self.head = self.head_began = None
                self.head_data = bytearray()
                self.expect = self._length(head, before + end + len(HEAD_END))
                self.line = head.partition(b"\r\n")[0]
        elif self.unanswered > self.max_unanswered:
            self._close()  # a pipelined request past every limit
            return False
        return True

    @staticmethod
    def _length(head: bytes, head_bytes: int) -> int | None:
        """The bytes of a request with this head (``head_bytes`` of it), when it goes through
        the intake: None for a probe, or a chunked body (its end is not known from the head;
        the application's own admission bounds such requests)."""
        if head.startswith(PROBES):
            return None
        if TRANSFER_ENCODING.search(head):
            return None
        length = CONTENT_LENGTH.search(head)
        return head_bytes + (int(length.group(1)) if length else 0)

    def wrote(self, start: bytes) -> None:
        """The inner protocol wrote: a response line (not 100 Continue) begins a new exchange,
        so the client's next bytes are a new head."""
        self.last = self.loop.time()
        if start[:7] == b"HTTP/1." and start[9:10] != b"1":
            self._next_request()
            if self.counted:
                self.counted = False
                self.intake.leave()

    def _next_request(self) -> None:
        """The exchange is over (answered, or refused at the door): the client's next bytes
        are a new request head."""
        self.head, self.head_began, self.tail, self.unanswered = 0, None, b"", 0
        self.head_data, self.expect = bytearray(), None

    def _check(self) -> None:
        now = self.loop.time()
        began = self.head_began
        if now - self.last >= self.timeout_s or (
            began is not None and now - began >= self.timeout_s
        ):
            self._close()
            return
        due = self.last if began is None else min(self.last, began)
        self.timer = self.loop.call_later(max(0.05, due + self.timeout_s - now), self._check)

    def _refuse_head(self, size: int) -> None:
        self._answer_and_close(
            HeadersTooLarge(
                f"the request head is over {size:,} bytes; this server reads at most "
                f"{self.max_head:,} bytes of request line and headers"
            )
        )

    def _answer_and_close(self, error: ServiceError) -> None:
        """A problem+json answer written here, not by uvicorn, then the connection closed."""
        assert self.transport is not None
        self.transport.write(_response(error, close=True))
        self._close()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.held is not None:
            self.held = None
            self.intake.withdraw(self)
        if self.held_timer is not None:
            self.held_timer.cancel()
        if self.paced is not None:
            self.paced.cancel()
        if self.counted:  # the request never got its answer: its place is free again
            self.counted = False
            self.intake.leave()
        self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
