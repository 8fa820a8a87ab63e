"""Checks shared by the routes, as FastAPI dependencies (``Annotated`` aliases).

Dependencies are coroutines: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
hop per dependency per request that costs more than the check itself.
"""

import secrets
from typing import Annotated

from fastapi import Depends, Request, UploadFile

from app.batching import Gone
from app.errors import Forbidden, InvalidInput, NotReady, Unauthorized, UnsupportedMediaType
from app.services import Services


def get_services(request: Request) -> Services:
    """The services of the loaded models; 503 until every model is loaded and warmed."""
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None or not services.ready:
        raise NotReady("models are still loading; retry shortly", headers={"Retry-After": "1"})
    return services


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


async def require_upload(request: Request) -> None:
    """415 unless the body is ``multipart/form-data`` or an image itself (``image/*``), checked
    before the body is read."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "multipart/form-data" and not media_type.startswith("image/"):
        raise UnsupportedMediaType(
            "expected multipart/form-data with the image in a field named 'file', or the image "
            f"itself with its image/* Content-Type; got {media_type or 'no Content-Type'!r}"
        )


async def upload_bytes(request: Request, file: UploadFile | None) -> bytes:
    """The uploaded image: the multipart form's ``file``, or the body itself when it is sent
    as ``image/*`` (422 for a form without the file)."""
    if file is not None:
        return await file.read()
    if request.headers.get("content-type", "").lower().startswith("image/"):
        return await request.body()
    raise InvalidInput(
        "the form has no field named 'file' holding the image",
        errors=[{"type": "missing", "loc": ["body", "file"], "msg": "Field required"}],
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


async def _services(request: Request) -> Services:
    return get_services(request)


async def _gone(request: Request) -> Gone:
    return request.is_disconnected


ServicesDep = Annotated[Services, Depends(_services)]
GoneDep = Annotated[Gone, Depends(_gone)]
"""Whether the request's client has disconnected (ASGI's ``http.disconnect``), asked by the
services before they spend work on it."""


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
