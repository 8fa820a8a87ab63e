"""Errors on the Open Inference Protocol routes: the same error table, the protocol's body.

Every ``/v2`` route is a ``ProtocolRoute``: a service error or a validation failure raised while
handling it (its dependencies included) answers ``{"error": "..."}`` with the status and headers
the error table gives, which is what Triton and KServe clients read.
"""

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from app.errors import BadRequest, ServiceError, error_for
from app.schemas_v2 import ProtocolError


def protocol_error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": detail}, status_code=status, headers=headers)


def protocol_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a ``/v2`` route: each status with the protocol's error body."""
    return {
        status: {"model": ProtocolError, "description": error_for(status).title}
        for status in statuses
    }


class ProtocolRoute(APIRoute):
    """An APIRoute whose errors take the protocol's ``{"error": ...}`` body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                return protocol_error(exc.status, exc.detail, exc.headers)
            except HTTPException as exc:  # FastAPI's own: a body that is not JSON
                headers = dict(exc.headers) if exc.headers else None
                return protocol_error(exc.status_code, str(exc.detail), headers)
            except RequestValidationError as exc:
                parts = [
                    f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
                    for err in exc.errors()[:3]
                ]
                return protocol_error(422, "; ".join(parts))

        return handle


Body = TypeVar("Body", bound=BaseModel)


def json_body(model: type[Body]) -> Callable[[Request], Coroutine[Any, Any, Body | None]]:
    """A dependency reading a ``/v2`` request's body as ``model``'s JSON whatever its
    Content-Type says, as ``infer`` reads its own and as tritonclient sends them (no body:
    None); a body that is not that JSON is a 400."""

    async def read(request: Request) -> Body | None:
        raw = await request.body()
        if not raw.strip():
            return None
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise BadRequest(f"not a valid request body: {where}: {first['msg']}") from None

    return read


def body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a body read by ``json_body``."""
    return {
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": inline_schema(model)}},
        }
    }


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` written in place, for a request body the route
    reads itself (``openapi_extra``), where ``#/$defs/...`` would point nowhere."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
