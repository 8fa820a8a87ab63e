"""OpenTelemetry traces: off unless the standard ``OTEL_*`` variables ask for them.

``OTEL_TRACES_EXPORTER`` names the exporters (``console``, ``otlp``, or both, comma-separated;
unset or ``none``: no tracing, and nothing on the request path asks for a span). The rest is the
SDK's own reading of the environment: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER`` and its argument (sampling), ``OTEL_EXPORTER_OTLP_ENDPOINT`` and its
headers, ``OTEL_SDK_DISABLED``. FastAPI makes the server span of each request (its native
telemetry); the services add spans of their own steps: ``decode``, ``preprocess``, ``queue``
(waiting in the batch queue) and ``model``, each with the request id.

The SDK and the OTLP exporter are the optional ``tracing`` extra (``pip install
'tinyzoo[tracing]'``; the container image has them).
"""

import importlib.util
import os
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.trace import Tracer, TracerProvider

SERVICE_NAME: Final = "tinyzoo"
REQUEST_ID: Final = "tinyzoo.request_id"
"""The attribute naming a span's request (the ``X-Request-ID`` it was answered with)."""
EXPORTERS: Final = ("console", "otlp")
NO_SDK: Final = (
    "OTEL_TRACES_EXPORTER is set, but the OpenTelemetry SDK is not installed: "
    "pip install 'tinyzoo[tracing]'"
)


class TracingError(ValueError):
    """``OTEL_*`` variables that ask for something this server cannot do."""


def exporter_names(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` asks for (none when ``OTEL_SDK_DISABLED`` is
    true); TracingError for one this server does not know."""
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return []
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise TracingError(
            f"OTEL_TRACES_EXPORTER={','.join(unknown)}: this server exports to console, otlp or "
            "none"
        )
    return names


def check_environment(environ: Mapping[str, str] = os.environ) -> None:
    """TracingError, at launch, for ``OTEL_*`` variables this server cannot follow: an unknown
    exporter, or tracing asked for without the SDK installed."""
    if exporter_names(environ) and importlib.util.find_spec("opentelemetry.sdk") is None:
        raise TracingError(NO_SDK)


def provider_from_environment(environ: Mapping[str, str] = os.environ) -> Any:
    """A tracer provider exporting as ``OTEL_TRACES_EXPORTER`` says, or None when it asks for
    no exporter."""
    names = exporter_names(environ)
    if not names:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise TracingError(NO_SDK) from None
    name = environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME
    # the resource's other attributes (OTEL_RESOURCE_ATTRIBUTES) and the sampler
    # (OTEL_TRACES_SAMPLER) are the SDK's own reading of the environment
    provider = SdkTracerProvider(resource=Resource.create({"service.name": name}))
    for exporter_name in names:
        if exporter_name == "console":
            exporter: Any = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # endpoint and headers: OTEL_EXPORTER_OTLP_*
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tracer_of(provider: TracerProvider | None) -> Tracer | None:
    """The service's tracer from a provider; None (no spans at all) without one."""
    return None if provider is None else provider.get_tracer(SERVICE_NAME)


def shutdown(provider: Any) -> None:
    """Export what is left and stop (an SDK provider; nothing for None)."""
    if provider is not None and hasattr(provider, "shutdown"):
        provider.shutdown()
