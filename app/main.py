"""Assembles the FastAPI application; ``app.main:app`` is what servers run."""

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry.trace import TracerProvider
from starlette.types import Receive, Scope, Send

from app import tracing
from app.api.deps import require_admin_key, require_api_key
from app.api.protocol import protocol_errors
from app.api.responses import problems
from app.api.routes import char_rnn, demo, digits, docs, health, models, names, v2
from app.connections import door
from app.errors import QueueFull
from app.logs import SummedWarning, configure_logging, flush_logs, flush_periodically
from app.memory import trim_periodically
from app.metrics import Metrics
from app.middleware import AccessMiddleware, BodyLimitMiddleware
from app.problems import install_problem_handlers
from app.services import Services
from app.settings import Settings, from_environment
from models.checkpoint import CheckpointError

logger = logging.getLogger("app")
YOUNG_GC_THRESHOLD = 10_000
DESCRIPTION = """Typed inference over the classic PyTorch course networks: handwritten digits
(Inception and ResNet), surname -> country (bidirectional GRU) and character RNNs; the same
models over the Open Inference Protocol v2 (KServe v2 / Triton HTTP) under `/v2`.
Every error is `application/problem+json` (RFC 9457), except on `/v2`, where it is the
protocol's `{"error": "..."}`."""


def create_app(
    settings: Settings | None = None, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    """Build the application from ``settings`` (default: the environment); models load in the
    lifespan. ``tracer_provider``: where traces go (default: as the ``OTEL_*`` variables say,
    ``app.tracing``; none, no tracing)."""
    settings = settings or from_environment()
    own_provider = tracer_provider is None
    if own_provider:
        tracer_provider = tracing.provider_from_environment()
    tracer = tracing.tracer_of(tracer_provider)
    metrics = Metrics()
    refusals = SummedWarning(  # 429s at python -m app's door
        logging.getLogger("app.access"),
        "refusing requests with 429: queues full",
        "refused %d requests in %.0f s with 429: queues full",
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_format, settings.log_level)
        services = Services.create(settings, metrics, tracer)
        try:
            await anyio.to_thread.run_sync(services.load)
        except CheckpointError as exc:
            logger.error("cannot start: %s", exc)
            raise
        services.start()
        # Everything loaded so far lives as long as the app: keep it out of the garbage
        # collector's full passes, which otherwise walk it all and stall requests for
        # milliseconds (given back at shutdown).
        thresholds = gc.get_threshold()
        gc.collect()
        gc.freeze()
        # A request allocates a few thousand objects, nearly all freed by reference counting:
        # the collector's youngest generation, at CPython's default of 700 allocations, would be
        # searched several times a request for cycles that are rarely there (0.05 ms of a scan
        # upload's 1.1 ms, bench.own_cost).
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        trimmer = (
            asyncio.get_running_loop().create_task(trim_periodically(settings.memory_trim_s))
            if settings.memory_trim_s
            else None
        )
        flusher = asyncio.get_running_loop().create_task(flush_periodically())
        app.state.services = services

        def refused_at_the_door(path: str) -> None:
            metrics.requests.labels("POST", path, "429").inc()
            refusals.add()

        # python -m app answers full queues' 429s before uvicorn parses the request
        door.open(lambda scope: refusal(services, scope), refused_at_the_door)
        registry = services.registry
        logger.info("ready: %s on %s", ", ".join(sorted(registry.served)), registry.device)
        try:
            yield
        finally:
            door.close()
            if trimmer is not None:
                trimmer.cancel()
            await services.close()
            if own_provider:
                tracing.shutdown(tracer_provider)
            metrics.close()
            gc.unfreeze()
            gc.set_threshold(*thresholds)
            flusher.cancel()
            flush_logs()

    app = FastAPI(
        title="tinyzoo",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # /docs, /redoc and /openapi.json come from app.api.routes.docs, which serves the
        # pages' assets itself instead of pointing browsers at a CDN.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Traces only when OTEL_TRACES_EXPORTER asks (app.tracing): FastAPI's server span of
        # each request, with this app's provider. Its metrics and logs stay off: the
        # service's metrics are Prometheus (/metrics), its logs the logging module's.
        telemetry={
            "tracing": tracer is not None,
            "operation_spans": False,
            "metrics": False,
            "logs": False,
            "tracer_provider": tracer_provider,
            "auto_configure": False,
        },
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_problem_handlers(app)
    for router in (names.router, digits.router, char_rnn.router, models.router):
        app.include_router(router, dependencies=[Depends(require_api_key)], responses=problems(401))
    app.include_router(
        v2.router, dependencies=[Depends(require_api_key)], responses=protocol_errors(401)
    )
    app.include_router(health.router)
    app.include_router(v2.health)
    app.include_router(
        v2.admin, dependencies=[Depends(require_admin_key)], responses=protocol_errors(401, 403)
    )
    app.include_router(demo.router)
    if settings.docs_enabled:
        app.include_router(docs.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(AccessMiddleware, metrics=metrics, traced=tracer is not None)
    return app


def refusal(services: Services, scope: Scope) -> QueueFull | None:
    """The 429 a POST to this path would meet in its service (its model's queue, or the gate
    of explanations or generations), from the path and query alone: what ``python -m app``'s
    door answers before reading the request. The service decides; this only maps routes."""
    path = scope["path"]
    if path in ("/classify-name", "/classify-name/batch"):
        return services.names.refusal()
    if path == "/digit":
        query = parse_qs(scope["query_string"].decode("latin-1"))
        return services.digits.refusal(query.get("model", ["digit-resnet"])[-1])
    if path in ("/digit/explain", "/classify-name/explain"):
        return services.explanations.refusal()
    if path == "/char-rnn/generate":
        return services.chars.refusal()
    return None


class _App:
    """The ASGI entry point for servers: builds the app (reading settings) on first use, so
    importing this module does no work."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)


app = _App()
