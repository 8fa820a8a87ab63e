"""Checks shared by the routes, as FastAPI dependencies (``Annotated`` aliases).

Dependencies are coroutines: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
hop per dependency per request that costs more than the check itself.
"""

import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from app.errors import Forbidden, NotReady, Unauthorized, UnsupportedMediaType
from app.middleware import disconnect_probe
from app.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The loaded runtime; 503 until every model is loaded and warmed."""
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None or not runtime.ready:
        raise NotReady("models are still loading; retry shortly", headers={"Retry-After": "1"})
    return runtime


async def require_json(request: Request) -> None:
    """415 unless the body is JSON (``application/json`` or ``application/*+json``)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise UnsupportedMediaType(
            f"expected a JSON body with Content-Type: application/json, "
            f"got {media_type or 'no Content-Type'!r}"
        )


async def require_multipart(request: Request) -> None:
    """415 unless the body is ``multipart/form-data`` (checked before the body is parsed)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "multipart/form-data":
        raise UnsupportedMediaType(
            "expected multipart/form-data with the image in a field named 'file', "
            f"got {media_type or 'no Content-Type'!r}"
        )


async def require_api_key(request: Request) -> None:
    """When an API key is configured, require ``Authorization: Bearer <key>`` (401 otherwise)."""
    expected = request.app.state.settings.api_key
    if not expected:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise Unauthorized(
            "this server needs an API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def client_gone(request: Request) -> Callable[[], bool] | None:
    """A probe of whether the request's client has disconnected (``disconnect_probe``); None
    under servers other than uvicorn, whose inputs are run even if nobody waits."""
    return disconnect_probe(request.receive)


async def _runtime(request: Request) -> Runtime:
    return get_runtime(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


async def require_admin_key(request: Request) -> None:
    """The repository routes: ``Authorization: Bearer <admin key>`` (401), and 403 when the
    server has no admin key (``TINYZOO_ADMIN_KEY``), so that they are off unless turned on."""
    expected = request.app.state.settings.admin_key
    if not expected:
        raise Forbidden("the model repository routes are off: this server has no admin key set")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise Unauthorized(
            "the model repository routes need the admin key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
