"""RFC 9457 problem details: the one body format of every error response."""

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.errors import ClientClosedRequest, ServiceError, ValidationFailed, error_for

PROBLEM_TYPE_BASE = "https://tinyzoo.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = logging.getLogger("app.errors")


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return super().render(_writable(content))


def _writable(value: Any) -> Any:
    """``value`` with every string made writable as UTF-8: what a client sent may hold lone
    surrogates (``"\\ud800"`` is valid JSON), echoed back as the visible escape ``\\ud800``."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_writable(k): _writable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_writable(v) for v in value]
    return value


def error_problem(request: Request | None, exc: ServiceError) -> "ProblemResponse":
    """The problem+json response to a service error."""
    return problem(request, exc.status, exc.slug, exc.title, exc.detail, exc.errors, exc.headers)


def problem(
    request: Request | None,
    status: int,
    slug: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> ProblemResponse:
    """Build a problem+json response; ``instance`` is the request id."""
    body = problem_body(status, slug, title, detail, request_id_of(request), errors)
    return ProblemResponse(body, status_code=status, headers=headers)


def problem_body(
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The RFC 9457 body itself (also written by the connection guard, outside any request)."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def request_id_of(request: Request | None) -> str | None:
    if request is None:
        return None
    rid = getattr(request.state, "request_id", None)
    return str(rid) if rid else None


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's error list, without echoing huge inputs back and JSON-safe."""
    errors = []
    for err in exc.errors():
        item = {k: v for k, v in err.items() if k in ("type", "loc", "msg", "ctx")}
        if _echoable(err.get("input")):
            item["input"] = err["input"]
        errors.append(item)
    encoded: list[dict[str, Any]] = jsonable_encoder(errors, custom_encoder={Exception: str})
    return encoded


def _echoable(value: Any) -> bool:
    """Small scalar inputs are echoed back in ``errors``; NaN, big or nested ones are not."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool) and len(str(value)) <= 200


def _summary(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error (ours, validation, routing, unexpected) through ``problem``."""

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> ProblemResponse:
        return error_problem(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> ProblemResponse:
        errors = _validation_errors(exc)
        return error_problem(request, ValidationFailed(_summary(errors), errors=errors))

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, exc: Exception) -> ProblemResponse:
        return await service_error(
            request, ClientClosedRequest("the client went away before its request was read")
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> ProblemResponse:
        if isinstance(exc.__cause__, ClientDisconnect):  # FastAPI's 400 for a body cut short
            return await client_left(request, exc.__cause__)
        kind = error_for(exc.status_code)
        title = kind.title
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = (
                "the request body could not be parsed (malformed, not UTF-8, or nested too deeply)"
            )
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        headers = dict(exc.headers) if exc.headers else None
        return problem(request, exc.status_code, kind.slug, title, detail, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> ProblemResponse:
        logger.exception("unhandled error", extra={"request_id": request_id_of(request)})
        return error_problem(request, ServiceError(ServiceError.example))
