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
  may compute without writing (``request_timeout_s``, the deadline of every model call).
"""

import asyncio
import functools
import json
from typing import Any, cast

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from app.errors import HeadersTooLarge
from app.problems import problem_body
from app.settings import Settings

HEAD_END = b"\r\n\r\n"


@functools.cache
def _limits() -> tuple[int, float, int]:
    """The limits of this process, read once from the environment (each worker is a process
    of its own, so they cannot travel as attributes set in the launcher)."""
    s = Settings()
    return s.max_header_bytes, s.client_timeout_s, s.max_header_bytes + s.max_body_bytes


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
        self.max_head, self.timeout_s, self.max_unanswered = _limits()
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's, but have the same methods
        self.transport = cast(asyncio.Transport, transport)
        self.inner.connection_made(_Watched(self.transport, self))
        self.timer = self.loop.call_later(self.timeout_s, self._check)

    def data_received(self, data: bytes) -> None:
        now = self.last = self.loop.time()
        self.unanswered += len(data)
        if self.head is not None:
            if self.head_began is None:
                self.head_began = now
            end = data.find(HEAD_END)
            if end < 0 and self.tail:  # the blank line may straddle two reads
                end = (self.tail + data[:3]).find(HEAD_END) - len(self.tail)
                end = -1 if end < -len(self.tail) else max(end, 0)
            size = self.head + (len(data) if end < 0 else end)
            if size > self.max_head:
                self._refuse_head(size)
                return
            if end < 0:
                self.head, self.tail = size, (self.tail + data)[-3:]
            else:
                self.head = self.head_began = None
        elif self.unanswered > self.max_unanswered:
            self._close()  # a pipelined request past every limit
            return
        self.inner.data_received(data)

    def wrote(self, start: bytes) -> None:
        """The inner protocol wrote: a response line (not 100 Continue) begins a new exchange,
        so the client's next bytes are a new head."""
        self.last = self.loop.time()
        if start[:7] == b"HTTP/1." and start[9:10] != b"1":
            self.head, self.head_began, self.tail, self.unanswered = 0, None, b"", 0

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
        exc = HeadersTooLarge(
            f"the request head is over {size:,} bytes; this server reads at most "
            f"{self.max_head:,} bytes of request line and headers"
        )
        body = json.dumps(problem_body(exc.status, exc.slug, exc.title, exc.detail)).encode()
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/problem+json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self._close()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
