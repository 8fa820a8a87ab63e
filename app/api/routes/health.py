"""Liveness and readiness."""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import get_services
from app.api.responses import problems
from app.schemas import Liveness, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Liveness)
async def healthz() -> Liveness:
    """200 while the process lives (readiness, with the models, is /readyz)."""
    return Liveness(status="ok")


@router.get("/readyz", response_model=Readiness, responses=problems(503))
async def readyz(request: Request) -> Readiness:
    """200 once every model is loaded and warmed, 503 before."""
    services = get_services(request)
    return Readiness(status="ready", models=services.served())


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "metrics"}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text: requests, latency, batches, queues, models; summed over the workers."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
