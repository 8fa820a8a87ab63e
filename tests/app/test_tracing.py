"""OpenTelemetry traces: a server span per request with the service's own steps as its
children, each carrying the request id; off, and asking for nothing, unless configured."""

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app import tracing
from app.main import create_app
from app.settings import Settings
from tests.app.test_api import digit_png

pytestmark = pytest.mark.anyio
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def traced(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, tracer_provider=provider)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, exporter


async def test_a_digit_request_is_a_server_span_with_the_services_steps(
    traced: tuple[httpx.AsyncClient, Any],
) -> None:
    client, exporter = traced
    files = {"file": ("d.png", digit_png(), "image/png")}
    response = await client.post("/digit", files=files, headers={"X-Request-ID": "trace-7"})
    assert response.status_code == 200
    spans = {span.name: span for span in exporter.get_finished_spans()}
    server = next(s for s in spans.values() if s.parent is None)
    assert server.attributes[tracing.REQUEST_ID] == "trace-7"
    assert server.attributes.get("http.request.method") == "POST"
    for step in ("decode", "preprocess", "queue", "model"):
        span = spans[step]
        assert span.parent is not None and span.parent.span_id == server.context.span_id, step
        assert span.context.trace_id == server.context.trace_id
        assert span.attributes[tracing.REQUEST_ID] == "trace-7"
        assert span.start_time <= span.end_time
    assert spans["queue"].end_time <= spans["model"].start_time
    assert spans["preprocess"].end_time <= spans["queue"].start_time


async def test_names_have_their_queue_and_model_spans(
    traced: tuple[httpx.AsyncClient, Any],
) -> None:
    client, exporter = traced
    assert (await client.post("/classify-name", json={"name": "Smith"})).status_code == 200
    names = [span.name for span in exporter.get_finished_spans()]
    assert "queue" in names and "model" in names


async def test_without_otel_variables_nothing_is_traced(settings: Settings) -> None:
    assert tracing.provider_from_environment({}) is None
    assert tracing.provider_from_environment({"OTEL_TRACES_EXPORTER": "none"}) is None
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        services = app.state.services
        assert services.digits.tracer is None
        assert services.registry.served["digit-resnet"].runner.batcher.tracer is None


def test_the_otel_variables_choose_the_exporters() -> None:
    provider = tracing.provider_from_environment({"OTEL_TRACES_EXPORTER": "console,otlp"})
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "tinyzoo"
    provider.shutdown()
    named = tracing.provider_from_environment(
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "digits-eu"}
    )
    assert named.resource.attributes["service.name"] == "digits-eu"
    named.shutdown()
    with pytest.raises(tracing.TracingError, match="zipkin"):
        tracing.provider_from_environment({"OTEL_TRACES_EXPORTER": "zipkin"})
    off = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
    assert tracing.provider_from_environment(off) is None


def test_an_unknown_exporter_is_one_line_at_launch() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYZOO_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=PROJECT,
        env={**env, "OTEL_TRACES_EXPORTER": "zipkin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "tinyzoo: OTEL_TRACES_EXPORTER=zipkin: this server exports to console, otlp or none"
    ]
