"""Open Inference Protocol v2 (KServe v2 / Triton HTTP): health, metadata, infer (binary tensor
and classification extensions) and the model repository extension."""

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Header, Request, Response

from app.api import open_inference
from app.api.deps import GoneDep, ServicesDep, get_services
from app.api.protocol import ProtocolRoute, body_doc, inline_schema, json_body, protocol_errors
from app.api.responses import problems
from app.api.tensors import HEADER_LENGTH
from app.errors import BadRequest, NotReady, ServiceError
from app.schemas_v2 import (
    InferRequest,
    InferResponse,
    Live,
    LoadRequest,
    LoadResponse,
    ModelMetadata,
    ModelReady,
    Ready,
    RepositoryIndexRequest,
    RepositoryModel,
    ServerMetadata,
    UnloadRequest,
    UnloadResponse,
)
from app.services import Services, repository

TAGS: Final[list[str | Any]] = ["open inference protocol v2"]
EXTENSIONS: Final = ["binary_tensor_data", "classification", "model_repository"]
router = APIRouter(prefix="/v2", tags=TAGS, route_class=ProtocolRoute)
"""Metadata and inference: behind the API key like the typed inference routes."""
health = APIRouter(prefix="/v2/health", tags=TAGS, route_class=ProtocolRoute)
"""Liveness and readiness: open, like /healthz and /readyz."""
admin = APIRouter(prefix="/v2/repository", tags=TAGS, route_class=ProtocolRoute)
"""The repository extension: behind the admin key. Like ``infer``, its bodies are JSON whatever
their Content-Type says (``json_body``), as tritonclient sends them."""

HeaderLength = Annotated[
    int | None,
    Header(
        alias=HEADER_LENGTH,
        ge=0,
        description="binary tensor extension: the length of the JSON header; the tensors follow",
    ),
]
INFER_DOC: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_schema(InferRequest)}},
        "description": f"JSON; or, with {HEADER_LENGTH}, that many bytes of JSON and then the "
        "binary tensors",
    }
}
INFER_RESPONSES: Final = {
    **protocol_errors(400, 404, 422, 429, 503, 504),
    **problems(413),
    200: {
        "description": f"JSON; binary outputs: a JSON header ({HEADER_LENGTH}) and the tensors",
        "content": {"application/octet-stream": {}},
    },
}


@router.get("", response_model=ServerMetadata)
async def server_metadata(request: Request) -> ServerMetadata:
    """The server's name, version and protocol extensions."""
    return ServerMetadata(name="tinyzoo", version=request.app.version, extensions=EXTENSIONS)


@health.get("/live", response_model=Live)
async def live() -> Live:
    """200 while the process lives."""
    return Live(live=True)


@health.get("/ready", response_model=Ready, responses=protocol_errors(400))
async def ready(request: Request) -> Ready:
    """200 once every model is loaded and warmed; 400 (the protocol's "false") before."""
    _loaded(request)
    return Ready(ready=True)


@router.get("/models/{name}", response_model=ModelMetadata, responses=protocol_errors(404, 503))
async def model_metadata(name: str, services: ServicesDep) -> ModelMetadata:
    """A model's inputs and outputs, and the version served."""
    return open_inference.metadata(services, name, None)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    responses=protocol_errors(404, 503),
)
async def model_version_metadata(name: str, version: str, services: ServicesDep) -> ModelMetadata:
    """A model's inputs and outputs, if it serves that version."""
    return open_inference.metadata(services, name, version)


@router.get("/models/{name}/ready", response_model=ModelReady, responses=protocol_errors(400, 404))
async def model_ready(name: str, request: Request) -> ModelReady:
    """200 when the model is served; 400 (the protocol's "false") when not loaded."""
    return _ready(request, name, None)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=ModelReady,
    responses=protocol_errors(400, 404),
)
async def model_version_ready(name: str, version: str, request: Request) -> ModelReady:
    """200 when the model serves that version."""
    return _ready(request, name, version)


def _loaded(request: Request) -> Services:
    """The services once ready; the protocol's "not ready" (400) before: the same test as
    /readyz."""
    try:
        return get_services(request)
    except ServiceError as exc:
        raise BadRequest(exc.detail) from None


def _ready(request: Request, name: str, version: str | None) -> ModelReady:
    services = _loaded(request)
    try:
        open_inference.served_version(services, name, version)
    except NotReady as exc:  # in the repository, not loaded: the protocol's "not ready"
        raise BadRequest(exc.detail) from None
    return ModelReady(name=name, ready=True)


@router.post(
    "/models/{name}/infer",
    response_model=InferResponse,
    responses=INFER_RESPONSES,
    openapi_extra=INFER_DOC,
)
async def infer(
    name: str,
    request: Request,
    services: ServicesDep,
    gone: GoneDep,
    header_length: HeaderLength = None,
) -> Response:
    """Run the model on the request's tensors; binary and classification extensions."""
    body = await request.body()
    out = await open_inference.infer(services, name, None, body, header_length, gone)
    return Response(out.body, media_type=out.media_type, headers=out.headers)


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=InferResponse,
    responses=INFER_RESPONSES,
    openapi_extra=INFER_DOC,
)
async def infer_version(
    name: str,
    version: str,
    request: Request,
    services: ServicesDep,
    gone: GoneDep,
    header_length: HeaderLength = None,
) -> Response:
    """Run the model, if it serves that version, on the request's tensors."""
    body = await request.body()
    out = await open_inference.infer(services, name, version, body, header_length, gone)
    return Response(out.body, media_type=out.media_type, headers=out.headers)


@admin.post(
    "/index",
    response_model=list[RepositoryModel],
    responses=protocol_errors(400, 503),
    openapi_extra=body_doc(RepositoryIndexRequest),
)
async def repository_index(
    services: ServicesDep,
    body: Annotated[RepositoryIndexRequest | None, Depends(json_body(RepositoryIndexRequest))],
) -> list[RepositoryModel]:
    """Every model version on disk; READY where it is the one served."""
    return repository.index(services, body.ready if body else False)


@admin.post(
    "/models/{name}/load",
    response_model=LoadResponse,
    responses=protocol_errors(400, 404, 409, 503),
    openapi_extra=body_doc(LoadRequest),
)
async def load_model(
    name: str,
    services: ServicesDep,
    body: Annotated[LoadRequest | None, Depends(json_body(LoadRequest))],
) -> LoadResponse:
    """Serve a version (default: the newest): verified, warmed, checked, then swapped in."""
    version = repository.requested_version(body.parameters if body else None)
    return await repository.load(services, name, version)


@admin.post(
    "/models/{name}/unload",
    response_model=UnloadResponse,
    responses=protocol_errors(400, 404, 409, 503),
    openapi_extra=body_doc(UnloadRequest),
)
async def unload_model(
    name: str,
    services: ServicesDep,
    body: Annotated[UnloadRequest | None, Depends(json_body(UnloadRequest))],
) -> UnloadResponse:
    """Stop serving a model; requests already queued are answered first."""
    return await repository.unload(services, name)
