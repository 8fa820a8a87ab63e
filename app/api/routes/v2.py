"""Open Inference Protocol v2 (KServe v2 / Triton HTTP): health, metadata, infer (binary tensor
and classification extensions) and the model repository extension."""

from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Header, Request, Response

from app.api.deps import RuntimeDep, client_gone
from app.api.protocol import ProtocolRoute, inline_schema, protocol_errors
from app.api.responses import problems
from app.errors import BadRequest, ModelUnavailable
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
from app.services import open_inference, repository
from app.services.protocol import HEADER_LENGTH

TAGS: Final[list[str | Any]] = ["open inference protocol v2"]
EXTENSIONS: Final = ["binary_tensor_data", "classification", "model_repository"]
router = APIRouter(prefix="/v2", tags=TAGS, route_class=ProtocolRoute)
"""Metadata and inference: behind the API key like the typed inference routes."""
health = APIRouter(prefix="/v2/health", tags=TAGS, route_class=ProtocolRoute)
"""Liveness and readiness: open, like /healthz and /readyz."""
admin = APIRouter(
    prefix="/v2/repository", tags=TAGS, route_class=ProtocolRoute, strict_content_type=False
)
"""The repository extension: behind the admin key; a body without a Content-Type is JSON, as
tritonclient sends it."""

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
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None or not runtime.ready:
        raise BadRequest("models are still loading")
    return Ready(ready=True)


@router.get("/models/{name}", response_model=ModelMetadata, responses=protocol_errors(404, 503))
async def model_metadata(name: str, runtime: RuntimeDep) -> ModelMetadata:
    """A model's inputs and outputs, and the version served."""
    return open_inference.metadata(runtime, name, None)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    responses=protocol_errors(404, 503),
)
async def model_version_metadata(name: str, version: str, runtime: RuntimeDep) -> ModelMetadata:
    """A model's inputs and outputs, if it serves that version."""
    return open_inference.metadata(runtime, name, version)


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


def _ready(request: Request, name: str, version: str | None) -> ModelReady:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None or not runtime.ready:
        raise BadRequest("models are still loading")
    try:
        open_inference.served_version(runtime, name, version)
    except ModelUnavailable as exc:
        raise BadRequest(exc.detail) from None
    return ModelReady(name=name, ready=True)


@router.post(
    "/models/{name}/infer",
    response_model=InferResponse,
    responses=INFER_RESPONSES,
    openapi_extra=INFER_DOC,
)
async def infer(
    name: str, request: Request, runtime: RuntimeDep, header_length: HeaderLength = None
) -> Response:
    """Run the model on the request's tensors; binary and classification extensions."""
    body = await request.body()
    out = await open_inference.infer(runtime, name, None, body, header_length, client_gone(request))
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
    runtime: RuntimeDep,
    header_length: HeaderLength = None,
) -> Response:
    """Run the model, if it serves that version, on the request's tensors."""
    body = await request.body()
    gone = client_gone(request)
    out = await open_inference.infer(runtime, name, version, body, header_length, gone)
    return Response(out.body, media_type=out.media_type, headers=out.headers)


@admin.post("/index", response_model=list[RepositoryModel], responses=protocol_errors(400, 503))
async def repository_index(
    runtime: RuntimeDep, body: Annotated[RepositoryIndexRequest | None, Body()] = None
) -> list[RepositoryModel]:
    """Every model version on disk; READY where it is the one served."""
    return repository.index(runtime, body.ready if body else False)


@admin.post(
    "/models/{name}/load",
    response_model=LoadResponse,
    responses=protocol_errors(400, 404, 409, 503),
)
async def load_model(
    name: str, runtime: RuntimeDep, body: Annotated[LoadRequest | None, Body()] = None
) -> LoadResponse:
    """Serve a version (default: the newest): verified, warmed, checked, then swapped in."""
    version = repository.requested_version(body.parameters if body else None)
    return await repository.load(runtime, name, version)


@admin.post(
    "/models/{name}/unload",
    response_model=UnloadResponse,
    responses=protocol_errors(400, 404, 409, 503),
)
async def unload_model(
    name: str, runtime: RuntimeDep, body: Annotated[UnloadRequest | None, Body()] = None
) -> UnloadResponse:
    """Stop serving a model; requests already queued are answered first."""
    return await repository.unload(runtime, name)
