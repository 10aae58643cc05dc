from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mailflow.api.app import create_app
from mailflow.api.tracing import (
    TracingSetupError,
    provider_from_environment,
    stop_tracing,
    tracing_requested,
)
from mailflow.settings import Settings

from .conftest import Seed


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider, exporter
    finally:
        stop_tracing()
        provider.shutdown()


@pytest.fixture
async def traced_client(
    service_pool: asyncpg.Pool, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(service_pool, Settings(rate_limit="off"), tracer_provider=spans[0])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver") as client:
        yield client


async def test_a_query_leaves_http_graphql_and_sql_spans_in_one_trace(
    traced_client: httpx.AsyncClient, spans: tuple[TracerProvider, InMemorySpanExporter],
    seed: Seed, organization_id: int,
) -> None:
    token = await seed.token(organization_id)

    answer = await traced_client.post(
        "/graphql", json={"query": "query Dashboard { connectors { name } }"},
        headers={"Authorization": f"Bearer {token}"})
    await traced_client.get("/healthz")

    finished = spans[1].get_finished_spans()
    names = [span.name for span in finished]
    request = next(span for span in finished if span.name == "POST /graphql")
    in_request = [span for span in finished
                  if span.context.trace_id == request.context.trace_id]
    assert answer.status_code == 200
    assert "GraphQL Query: Dashboard" in [span.name for span in in_request]
    assert any("db.system" in (span.attributes or {}) or "db.system.name" in (span.attributes or {})
               for span in in_request), [span.name for span in in_request]
    assert not any("healthz" in name for name in names)
    assert not any(token in str(span.attributes) for span in finished)


async def test_without_tracing_a_query_leaves_no_span(
    client: httpx.AsyncClient, spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    await client.post("/graphql", json={"query": "{ __typename }"})

    assert spans[1].get_finished_spans() == ()


def test_tracing_is_on_when_an_exporter_or_an_otlp_endpoint_is_named() -> None:
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing_requested({"OTEL_TRACES_EXPORTER": "none",
                                  "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not tracing_requested({})


def test_an_unknown_exporter_is_named_with_those_that_work() -> None:
    with pytest.raises(TracingSetupError, match=r"'zipkin'.*otlp or console"):
        provider_from_environment({"OTEL_TRACES_EXPORTER": "zipkin"})
