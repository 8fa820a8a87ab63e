"""Pure ASGI middleware: request ids, metrics and the access log; the request body limit."""

import logging
import random
import re
import time
from typing import Any

from opentelemetry import trace
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import BadRequest, PayloadTooLarge, ServiceError
from app.logs import request_id as current_request_id
from app.metrics import Metrics
from app.problems import error_problem
from app.tracing import REQUEST_ID

access = logging.getLogger("app.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class AccessMiddleware:
    """Per request, with one timer and one status capture: accept a sane ``X-Request-ID`` or
    make one (on ``request.state``, echoed in the response), count and time the request in the
    metrics by route template and status, and write the access log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics, *, traced: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.traced = traced
        """Whether requests are traced: the server span then carries the request id."""
        # The labelled series, looked up once per (method, route, status): prometheus-client's
        # ``labels()`` checks and locks on every call.
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _SAFE_ID.match(given) else f"{random.getrandbits(128):032x}"
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_request_id.set(request_id)
        if self.traced:
            trace.get_current_span().set_attribute(REQUEST_ID, request_id)
        started = time.perf_counter()
        status = 500
        answered = gone = False

        async def receive_noting() -> Message:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        metrics = self.metrics
        metrics.in_flight.inc()
        try:
            await self.app(scope, receive_noting, send_with_id)
        finally:
            if not answered and gone:
                status = 499  # the client left before it could be answered (nginx's code)
            elapsed = time.perf_counter() - started
            metrics.in_flight.dec()
            route = str(getattr(scope.get("route"), "path", "unmatched"))
            method = scope["method"]
            key = (method, route, str(status))
            series = self._series.get(key)
            if series is None:
                series = (metrics.requests.labels(*key), metrics.latency.labels(method, route))
                self._series[key] = series
            series[0].inc()
            series[1].observe(elapsed)
            access.info("%s %s %d %.1f ms", method, scope["path"], status, elapsed * 1000)
            current_request_id.reset(token)


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413, never holding more than the limit in memory.

    A declared ``Content-Length`` over the limit is refused before reading; a body without one
    (chunked) is read up to the limit and then replayed to the application.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._refuse(
                    scope, receive, send, BadRequest("invalid Content-Length header")
                )
                return
            if int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send, f"{int(declared)} bytes declared")
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send, "more than that was sent")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, what: str) -> None:
        detail = f"request body over the limit of {self.max_bytes} bytes ({what})"
        await self._refuse(scope, receive, send, PayloadTooLarge(detail))

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, error: ServiceError
    ) -> None:
        error.headers["Connection"] = "close"
        await error_problem(Request(scope), error)(scope, receive, send)
