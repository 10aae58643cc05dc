"""OpenTelemetry tracing, on when an exporter is configured by OpenTelemetry's variables.

A trace has a span per HTTP request (the ASGI instrumentation), per GraphQL operation and
resolver (strawberry's extension) and per SQL statement (the asyncpg instrumentation, which
records the statement's text, never its parameters). The packages are the ``otel`` extra:
``pip install 'mailflow[otel]'``.

Instrumentation is process-wide, as OpenTelemetry's is: asyncpg's classes are patched and the
schema gains the tracing extension once, for every application the process creates after.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware

from mailflow.errors import MailflowError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

EXPORTERS = ("otlp", "console")
# Probes and scrapes come every few seconds and say nothing about the work: no spans for them.
UNTRACED_PATHS = "healthz,readyz,metrics"
SERVICE_NAME = "mailflow"


class TracingSetupError(MailflowError):
    """Tracing is asked for but cannot be set up as asked."""

    code = "BAD_USAGE"


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether OpenTelemetry's variables name a trace exporter: OTEL_TRACES_EXPORTER (other
    than none), or an OTLP endpoint, which means the OTLP exporter."""
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def provider_from_environment(environ: Mapping[str, str] = os.environ) -> TracerProvider:
    """A tracer provider that sends spans in batches to the exporters OpenTelemetry's
    variables name; the service is called mailflow unless OTEL_SERVICE_NAME says otherwise."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingSetupError(
            "tracing is configured (OTEL_TRACES_EXPORTER or OTEL_EXPORTER_OTLP_ENDPOINT) but "
            "OpenTelemetry is not installed: pip install 'mailflow[otel]'"
        ) from None

    names = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    exporters = [_exporter(name.strip()) for name in names.split(",") if name.strip()]
    attributes = {} if environ.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(name: str) -> SpanExporter:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise TracingSetupError(
        f"OTEL_TRACES_EXPORTER names {name[:40]!r}, which mailflow cannot send spans to; "
        f"use {' or '.join(EXPORTERS)} (several separated by commas), or none"
    )


def tracing_middleware(provider: TracerProvider) -> Middleware:
    """Instrument asyncpg and the GraphQL schema for ``provider``; the ASGI middleware that
    opens each request's span."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=provider)
    _trace_graphql(provider)
    return Middleware(OpenTelemetryMiddleware, tracer_provider=provider,
                      excluded_urls=UNTRACED_PATHS, exclude_spans=["receive", "send"])


def stop_tracing() -> None:
    """Undo the instrumentation: asyncpg's classes as they were, the schema without spans."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    from mailflow.api.schema import schema

    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    schema.extensions = _untraced(schema.extensions)


def _trace_graphql(provider: TracerProvider) -> None:
    from strawberry.extensions.tracing import OpenTelemetryExtension

    from mailflow.api.schema import schema

    class GraphQLSpans(OpenTelemetryExtension):
        """strawberry's spans, sent to mailflow's tracer provider."""

        mailflow_tracing = True

        def __init__(self, **options: Any) -> None:
            super().__init__(tracer_provider=provider, **options)

    schema.extensions = (*_untraced(schema.extensions), GraphQLSpans)


def _untraced(extensions: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(extension for extension in extensions
                 if not getattr(extension, "mailflow_tracing", False))
