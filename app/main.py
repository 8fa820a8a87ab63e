"""Assembles the FastAPI application; ``app.main:app`` is what servers run."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import Depends, FastAPI

from app.api.deps import require_api_key
from app.api.responses import problems
from app.api.routes import char_rnn, digits, health, models, names
from app.logs import configure_logging
from app.metrics import Metrics, MetricsMiddleware
from app.middleware import BodyLimitMiddleware, RequestIdMiddleware
from app.problems import install_problem_handlers
from app.runtime import Runtime
from app.settings import Settings

logger = logging.getLogger("app")
DESCRIPTION = """Typed inference over the classic PyTorch course networks: handwritten digits
(Inception and ResNet), surname -> country (bidirectional GRU) and character RNNs.
Every error is `application/problem+json` (RFC 9457)."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; settings are read and models loaded in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or Settings()
        app.state.settings = resolved
        configure_logging(resolved.log_format, resolved.log_level)
        runtime = await anyio.to_thread.run_sync(Runtime.build, resolved)
        await anyio.to_thread.run_sync(runtime.warm)
        runtime.start_batchers(metrics)
        runtime.ready = True
        app.state.runtime = runtime
        logger.info(
            "ready: %s on %s", ", ".join(sorted(runtime.registry.models)), runtime.registry.device
        )
        try:
            yield
        finally:
            runtime.ready = False
            await runtime.stop()

    app = FastAPI(
        title="tinyzoo",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    metrics = Metrics()
    app.state.metrics = metrics
    install_problem_handlers(app)
    for router in (names.router, digits.router, char_rnn.router, models.router):
        app.include_router(router, dependencies=[Depends(require_api_key)], responses=problems(401))
    app.include_router(health.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=lambda: _body_limit(app, settings))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    return app


def _body_limit(app: FastAPI, settings: Settings | None) -> int:
    resolved: Settings | None = getattr(app.state, "settings", None) or settings
    return resolved.max_body_bytes if resolved else Settings.model_fields["max_body_bytes"].default


app = create_app()
