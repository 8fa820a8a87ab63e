"""Pure ASGI middleware: request ids, metrics and the access log; the request body limit."""

import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ServiceError
from app.logs import SummedWarning
from app.logs import request_id as current_request_id
from app.metrics import Metrics
from app.problems import problem

access = logging.getLogger("app.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def disconnect_probe(receive: Receive) -> Callable[[], bool] | None:
    """A probe of whether a request's client has disconnected, where the server offers a cheap
    one: uvicorn flags its request cycle (the owner of ``receive``) ``disconnected`` when the
    connection drops. None under other servers."""
    cycle = getattr(receive, "__self__", None)
    if cycle is None or not isinstance(getattr(cycle, "disconnected", None), bool):
        return None
    return lambda: bool(cycle.disconnected)


class AccessMiddleware:
    """Per request, with one timer and one status capture: accept a sane ``X-Request-ID`` or
    make one (on ``request.state``, echoed in the response), count and time the request in the
    metrics by route template and status, and write the access log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics, refusals: SummedWarning) -> None:
        self.app = app
        self.metrics = metrics
        self.refusals = refusals
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
        started = time.perf_counter()
        status = 500
        answered = False

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
            await self.app(scope, receive, send_with_id)
        finally:
            if not answered and (gone := disconnect_probe(receive)) is not None and gone():
                status = 499  # the client left before it could be answered (nginx's code)
            elapsed = time.perf_counter() - started
            metrics.in_flight.dec()
            refused = scope["state"].get("refused", False)
            # refused at the door, before routing: only known routes are refused
            route = str(
                getattr(scope.get("route"), "path", scope["path"] if refused else "unmatched")
            )
            method = scope["method"]
            key = (method, route, str(status))
            series = self._series.get(key)
            if series is None:
                series = (metrics.requests.labels(*key), metrics.latency.labels(method, route))
                self._series[key] = series
            series[0].inc()
            series[1].observe(elapsed)
            if refused:
                self.refusals.add()
            else:
                access.info("%s %s %d %.1f ms", method, scope["path"], status, elapsed * 1000)
            current_request_id.reset(token)


class AdmissionMiddleware:
    """Refuse work that could not be queued (429, ``Retry-After``) before its body is read or
    any route runs, so that under overload a refusal costs a fraction of an answer.

    ``refusal(scope)`` tells, from the path and query alone, whether the queue the request
    would join is full (``Runtime.refusal``). A refused request is marked in its scope: the
    access log counts such refusals and writes one line for many.
    """

    def __init__(self, app: ASGIApp, refusal: Callable[[Scope], ServiceError | None]) -> None:
        self.app = app
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            refused = self.refusal(scope)
            if refused is not None:
                scope.setdefault("state", {})["refused"] = True
                response = problem(
                    Request(scope),
                    refused.status,
                    refused.slug,
                    refused.title,
                    refused.detail,
                    headers=refused.headers,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
                await self._refuse(scope, receive, send, 400, "invalid Content-Length header")
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
        await self._refuse(scope, receive, send, 413, detail)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, detail: str
    ) -> None:
        slug, title = (
            ("payload-too-large", "Request body too large")
            if status == 413
            else ("bad-request", "Bad request")
        )
        response = problem(
            Request(scope), status, slug, title, detail, headers={"Connection": "close"}
        )
        await response(scope, receive, send)
