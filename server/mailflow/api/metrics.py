"""Prometheus metrics of one server process, at /metrics.

Each application has a registry of its own: GraphQL requests by operation name and outcome,
request latency, the connection pool, records pushed to /ingest and how far the daily
rollups trail the mail. Counts are this process's alone (several processes behind a load
balancer are scraped one by one; prometheus_client's multiprocess mode is not used).
"""

from __future__ import annotations

import hmac
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import asyncpg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from strawberry.extensions import SchemaExtension

from mailflow.api.errors import error_body
from mailflow.ingest.push import PushResult

Handler = Callable[[Request], Awaitable[Response]]

# Operation names are the client's to choose: only this many distinct ones get a label value
# of their own, the others count as "other", so a client cannot grow the series without end.
MAX_OPERATION_NAMES = 100
OPERATION_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,63}$")
ANONYMOUS = "anonymous"  # a document whose operation has no name
UNKNOWN = "unknown"  # refused before its document was read (rate limit, token, body)
OTHER = "other"
INGEST_RESULTS = ("accepted", "duplicate", "rejected")


@dataclass
class OperationSeen:
    """What the schema learned of one request's operation."""

    name: str | None = None
    errors: bool = False
    executed: bool = False


_operation: ContextVar[OperationSeen | None] = ContextVar("mailflow_operation", default=None)


def operation_name() -> str | None:
    """The name of the operation the current request ran, once it has run."""
    seen = _operation.get()
    return None if seen is None else seen.name


def answered_from_cache(name: str | None) -> None:
    """Count the current request as its operation, answered without errors, though it was
    answered from the response cache without running."""
    seen = _operation.get()
    if seen is not None:
        seen.executed, seen.name, seen.errors = True, name, False


class OperationMetrics(SchemaExtension):
    """Hands the operation's name, and whether it answered with errors, to the metrics."""

    def on_operation(self) -> Iterator[None]:
        yield
        seen = _operation.get()
        if seen is None:
            return
        seen.executed = True
        seen.name = self.execution_context.operation_name
        result = self.execution_context.result
        seen.errors = bool(result is not None and result.errors)


class Metrics:
    """The metrics of one application and the handlers that feed and show them."""

    def __init__(self, pool: asyncpg.Pool, *, token: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self._token = token
        self._operation_names: set[str] = set()
        process_collector.ProcessCollector(registry=self.registry)
        platform_collector.PlatformCollector(registry=self.registry)
        gc_collector.GCCollector(registry=self.registry)

        self.graphql_requests = Counter(
            "mailflow_graphql_requests", "GraphQL requests by operation name and outcome.",
            ["operation", "outcome"], registry=self.registry,
        )
        self.graphql_seconds = Histogram(
            "mailflow_graphql_request_duration_seconds",
            "Time from a GraphQL request's arrival to its answer, by operation name.",
            ["operation"], registry=self.registry,
        )
        self.http_requests = Counter(
            "mailflow_http_requests", "HTTP requests by route and status code.",
            ["route", "status"], registry=self.registry,
        )
        self.http_seconds = Histogram(
            "mailflow_http_request_duration_seconds",
            "Time from a request's arrival to its answer's start, by route.",
            ["route"], registry=self.registry,
        )
        self.ingest_records = Counter(
            "mailflow_ingest_records", "Records pushed to POST /ingest, by what became of them.",
            ["result"], registry=self.registry,
        )
        for result in INGEST_RESULTS:
            self.ingest_records.labels(result)  # shown as 0 before the first push
        self.rollup_lag = Gauge(
            "mailflow_rollup_lag_seconds",
            "For the last batch pushed to this process: seconds from its newest message "
            "fact's time to the commit of the facts with their daily rollups.",
            registry=self.registry,
        )
        self.rollup_lag.set(math.nan)  # unknown until this process stores a push
        self.rollup_committed = Gauge(
            "mailflow_rollup_last_commit_timestamp_seconds",
            "Unix time of the last commit of pushed facts and their daily rollups.",
            registry=self.registry,
        )
        self._pool_gauges(pool)

    def _pool_gauges(self, pool: asyncpg.Pool) -> None:
        gauges = {
            "mailflow_db_pool_size": ("Connections the pool holds open.", pool.get_size),
            "mailflow_db_pool_in_use": (
                "Connections checked out of the pool.",
                lambda: pool.get_size() - pool.get_idle_size(),
            ),
            "mailflow_db_pool_max_size": ("Most connections the pool opens.", pool.get_max_size),
        }
        for name, (description, read) in gauges.items():
            Gauge(name, description, registry=self.registry).set_function(read)

    def measured(self, route: str, handler: Handler) -> Handler:
        """``handler`` with its requests counted and timed under ``route``."""
        async def handle(request: Request) -> Response:
            started = time.perf_counter()
            response = await handler(request)
            self.http_seconds.labels(route).observe(time.perf_counter() - started)
            self.http_requests.labels(route, str(response.status_code)).inc()
            return response

        return handle

    def graphql(self, handler: Handler) -> Handler:
        """``handler`` of /graphql with each request counted by operation name and outcome."""
        async def handle(request: Request) -> Response:
            seen = OperationSeen()
            reset = _operation.set(seen)
            started = time.perf_counter()
            try:
                response = await handler(request)
            finally:
                _operation.reset(reset)
            operation = self._operation_label(seen)
            self.graphql_seconds.labels(operation).observe(time.perf_counter() - started)
            self.graphql_requests.labels(operation, _outcome(seen, response)).inc()
            return response

        return handle

    def record_push(self, result: PushResult) -> None:
        """Count what one push to /ingest stored, committed batches only."""
        self.ingest_records.labels("accepted").inc(result.accepted)
        self.ingest_records.labels("duplicate").inc(result.duplicates)
        self.ingest_records.labels("rejected").inc(result.rejected)
        if result.committed_at is not None and result.newest_fact_at is not None:
            lag = (result.committed_at - result.newest_fact_at).total_seconds()
            self.rollup_lag.set(max(lag, 0.0))
            self.rollup_committed.set(result.committed_at.timestamp())

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics in Prometheus's text format; 401 without the metrics token if one
        is set."""
        if self._token is not None and not self._authorized(request):
            return JSONResponse(
                error_body("/metrics needs 'Authorization: Bearer <MAILFLOW_METRICS_TOKEN>'",
                           "UNAUTHENTICATED"),
                status_code=401, headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def _authorized(self, request: Request) -> bool:
        assert self._token is not None
        scheme, _, offered = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            offered.strip().encode(), self._token.encode()
        )

    def _operation_label(self, seen: OperationSeen) -> str:
        if not seen.executed:
            return UNKNOWN
        if seen.name is None:
            return ANONYMOUS
        if not OPERATION_NAME.match(seen.name):
            return OTHER
        if seen.name in self._operation_names:
            return seen.name
        if len(self._operation_names) >= MAX_OPERATION_NAMES:
            return OTHER
        self._operation_names.add(seen.name)
        return seen.name


def _outcome(seen: OperationSeen, response: Response) -> str:
    """ok, error (an answer with GraphQL errors), refused (any other 4xx), unavailable (the
    database: 503) or failed (another 5xx)."""
    status = response.status_code
    if status == 503:
        return "unavailable"
    if status >= 500:
        return "failed"
    if seen.errors:
        return "error"
    if status >= 400:
        return "refused"
    return "ok"
