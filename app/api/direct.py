"""A route class for the hot endpoints: their query parameters checked in one pydantic pass.

FastAPI resolves an endpoint's parameters afresh for every request (dependency solving, one
validation per parameter, an exit stack), about a tenth of what a ``/digit`` request costs
besides the model. ``DirectRoute`` serves endpoints whose only parameters are the ``Request``
and plain query values from a pydantic model built from the same declarations, and calls the
endpoint with them. A request whose query does not validate goes to FastAPI's own handler,
so errors keep FastAPI's 422 shape; any route with dependencies (the API-key check when a key
is set), a body, path, header or cookie parameters or list-valued queries is left entirely to
FastAPI. The endpoint must return a ``Response`` (it is sent as it is); the route still
declares everything for the OpenAPI schema.
"""

import typing
from collections.abc import Callable, Coroutine
from typing import Any

import fastapi.routing
import pydantic
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

_SEQUENCES = {list, tuple, set, frozenset, typing.Sequence, typing.AbstractSet}


def _effective_dependant(route: APIRoute) -> Dependant | None:
    """The dependant the handler being built is for: FastAPI (>= 0.16x) builds the handlers of
    included routes with the router's dependencies merged into a context it sets meanwhile."""
    var = getattr(fastapi.routing, "_effective_route_context_var", None)
    context = var.get() if var is not None else None
    if context is not None and getattr(context, "original_route", None) is route:
        dependant: Dependant | None = getattr(context, "dependant", None)
        return dependant
    return route.dependant


def query_model(dependant: Dependant) -> type[pydantic.BaseModel] | None:
    """A model of the endpoint's query parameters, or None if it takes anything else."""
    if (
        dependant.dependencies
        or dependant.path_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.request_param_name is None
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    ):
        return None
    fields: dict[str, Any] = {}
    for field in dependant.query_params:
        annotation = field.field_info.annotation
        if typing.get_origin(annotation) in _SEQUENCES or annotation in _SEQUENCES:
            return None
        fields[field.name] = (annotation, field.field_info)
    name = f"{dependant.call.__name__ if dependant.call else 'endpoint'}_query"
    model: type[pydantic.BaseModel] = pydantic.create_model(name, **fields)
    return model


class DirectRoute(APIRoute):
    """An ``APIRoute`` that calls a plain endpoint directly (see the module's docstring)."""

    def get_route_handler(self) -> Handler:
        standard = super().get_route_handler()
        dependant = _effective_dependant(self)
        model = query_model(dependant) if dependant is not None else None
        if model is None or dependant is None:
            return standard
        endpoint = self.endpoint
        request_name = dependant.request_param_name
        aliases = {name: field.alias or name for name, field in model.model_fields.items()}
        validate = model.model_validate

        async def handler(request: Request) -> Response:
            query = request.query_params
            given = {alias: query[alias] for alias in aliases.values() if alias in query}
            try:
                values = validate(given)
            except pydantic.ValidationError:
                return await standard(request)  # FastAPI's own 422
            kwargs = {name: getattr(values, name) for name in aliases}
            kwargs[str(request_name)] = request
            response: Response = await endpoint(**kwargs)
            return response

        return handler
