"""The Starlette application: GraphQL (and GraphiQL) at /graphql, scoped per organization."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import TYPE_CHECKING

import asyncpg
import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException, StarletteRequestAdapter
from graphql import OperationType, get_operation_ast
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.http.parse_content_type import parse_content_type
from strawberry.types import ExecutionResult
from strawberry.types.execution import SubscriptionExecutionResult

from mailflow.api.auth import (
    ForbiddenError,
    UnauthenticatedError,
    forbidden_response,
    reader_of,
    unauthenticated_response,
)
from mailflow.api.body import (
    RequestError,
    bounded,
    from_json_body,
    from_query_string,
    refuse_unread_parameters,
    unsupported_content_type,
)
from mailflow.api.context import RequestContext
from mailflow.api.errors import (
    BAD_REQUEST,
    DATABASE_RETRY_AFTER_SECONDS,
    INTERNAL_MESSAGE,
    INTERNAL_SERVER_ERROR,
    error_body,
    escaped_error,
    has_code,
    is_unavailable,
    log_unavailable,
    unavailable_response,
)
from mailflow.api.export import ExportEndpoint
from mailflow.api.graphiql import asks_for_html, graphiql_page, graphiql_routes
from mailflow.api.health import Readiness, healthz
from mailflow.api.ingest import IngestEndpoint
from mailflow.api.limits import parse_within
from mailflow.api.live import LiveEndpoint
from mailflow.api.metrics import Metrics, answered_from_cache, operation_name
from mailflow.api.persisted import PersistedQueries, refuse_persisted
from mailflow.api.ratelimit import RateLimit
from mailflow.api.response_cache import AnswerKey, ResponseCache, answer_key
from mailflow.api.schema import schema_for
from mailflow.api.tracing import provider_from_environment, tracing_middleware, tracing_requested
from mailflow.logs import request_logged_as
from mailflow.reports.loaders import ReportLoaders
from mailflow.reports.ranges import utc_today
from mailflow.rollups.changes import RollupChanges
from mailflow.settings import Settings
from mailflow.store.availability import is_database_unavailable, pooled
from mailflow.store.connection import Connection
from mailflow.store.isolation import enter_organization, service_transaction
from mailflow.store.report_versions import report_version
from mailflow.store.tokens import Grant

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("mailflow.api")

REQUEST_ID_HEADER = "X-Request-ID"
# A request id from a load balancer is kept when it is this plain; anything else is replaced.
PLAIN_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
GRAPHIQL_DISABLED = "GRAPHIQL_DISABLED"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
NOT_FOUND = "NOT_FOUND"

Handler = Callable[[Request], Awaitable[Response]]


class CompressedBodyError(RequestError):
    """A body sent with a content encoding: the server reads request bodies as they are."""

    status_code = 415


def refuse_compressed_body(request: Request) -> None:
    """Raise CompressedBodyError when a POST's Content-Encoding is other than identity."""
    if request.method == "GET":
        return
    encodings = [
        encoding.strip()
        for header in request.headers.getlist("content-encoding")
        for encoding in header.split(",")
        if encoding.strip()
    ]
    compressed = next((encoding for encoding in encodings if encoding.lower() != "identity"), None)
    if compressed is not None:
        raise CompressedBodyError(
            f'the request body has Content-Encoding "{compressed[:40]}": request bodies must '
            "not be compressed (Content-Encoding identity only); send the JSON uncompressed"
        )


class GraphQLView(GraphQL[RequestContext, None]):
    """strawberry's ASGI view, run by ``GraphQLEndpoint`` with a context it has built."""

    persisted: PersistedQueries | None = None

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """GraphiQL for a browser's GET: one that asks for HTML and sends neither a query nor
        extensions; a GET with ``extensions`` alone names a persisted query by its hash."""
        params = request.query_params
        return (request.method == "GET" and "query" not in params and "extensions" not in params
                and asks_for_html(request.headers.get("accept", "")))

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData:
        """One operation from a GET's query string or a POST's JSON body, its query looked up
        when sent by hash; RequestError if not."""
        data = await self._request_data(request)
        if self.persisted is None:
            return refuse_persisted(data)
        return self.persisted.resolve(data)

    async def _request_data(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData:
        if request.method == "GET":
            return from_query_string(request.query_params)
        content_type, _ = parse_content_type(request.content_type or "")
        if content_type.lower() != "application/json":
            raise unsupported_content_type(content_type)
        return from_json_body(await request.get_body())

    def encode_json(self, data: object) -> bytes:
        """The answer as JSON by orjson, which writes a long answer several times faster."""
        return orjson.dumps(data)

    async def execute_operation(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: RequestContext,
        root_value: None,
        sub_response: Response,
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        """Run the operation; note in ``request.state.cacheable`` a query answered without
        errors, whose answer the response cache may keep."""
        result = await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )
        request.state.cacheable = (
            isinstance(result, ExecutionResult) and not result.errors
            and isinstance(request_data, GraphQLRequestData)
            and _is_query(request_data, context.settings.max_query_tokens)
        )
        return result

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        # Errors raised inside an extension's hook skip the error boundary; code them here.
        if result.errors and not all(has_code(error) for error in result.errors):
            request_id = request.state.request_id
            result.errors = [
                error if has_code(error) else escaped_error(error, request_id)
                for error in result.errors
            ]
        if result.errors and any(is_unavailable(error) for error in result.errors):
            request.state.database_unavailable = True
        return await super().process_result(request, result)


class GraphQLEndpoint:
    """Serves /graphql: GraphiQL to browsers, and queries scoped to the caller's organization."""

    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, demo_organization_id: int | None
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.demo_organization_id = demo_organization_id
        self.view = GraphQLView(
            schema_for(settings), graphql_ide="graphiql", allow_queries_via_get=True
        )
        if settings.persisted_queries:
            self.view.persisted = PersistedQueries(settings.persisted_queries_max_bytes)
        self.cache = (
            ResponseCache(settings.response_cache_mb * 1024 * 1024)
            if settings.response_cache else None
        )

    async def handle(self, request: Request) -> Response:
        """Answer one request; every answer carries its request id."""
        request_id = _request_id(request)
        request.state.request_id = request_id
        try:
            with request_logged_as(request_id):
                response = await self._answer(request, request_id)
        except UnauthenticatedError as error:
            response = unauthenticated_response(error)
        except ForbiddenError as error:
            response = forbidden_response(error)
        except RequestError as error:
            response = JSONResponse(
                error_body(str(error), error.code), status_code=error.status_code
            )
        except Exception as error:
            response = _failure(error, request_id)
        if getattr(request.state, "database_unavailable", False):
            log_unavailable(request_id, "a query lost its connection")
            response.status_code = 503
            response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        response.headers[REQUEST_ID_HEADER] = request_id
        return response

    async def _answer(self, request: Request, request_id: str) -> Response:
        if self.view.should_render_graphql_ide(StarletteRequestAdapter(request)):
            return self._graphiql(request)

        refuse_compressed_body(request)
        if request.method == "GET":
            refuse_unread_parameters(request.query_params)
        request = await bounded(request, self.settings.max_request_bytes)
        # One connection and one transaction per request: authentication and every loader
        # share them, so a request costs one pool checkout however many reads it makes. The
        # transaction runs as the service role and, once the token is known, on the rows of
        # its organization alone (see mailflow.store.isolation).
        async with pooled(self.pool) as connection, service_transaction(connection):
            grant = await reader_of(
                request, connection, demo_organization_id=self.demo_organization_id
            )
            await enter_organization(connection, grant.organization_id)
            today = utc_today()
            key = None
            if self.cache is not None:
                key = await self._answer_key(request, connection, grant, today)
                if (body := self.cache.get(key)) is not None:
                    answered_from_cache(self.cache.operation_of(key))
                    return Response(body, media_type="application/json")

            context = RequestContext(
                organization_id=grant.organization_id,
                role=grant.role,
                request_id=request_id,
                settings=self.settings,
                connection=connection,
                loaders=ReportLoaders(connection, grant.organization_id),
                today=today,
            )
            try:
                response = await self.view.run(request, context=context)
            except HTTPException as error:
                # strawberry's own refusals, such as an operationName the document lacks.
                return JSONResponse(
                    error_body(error.reason, BAD_REQUEST), status_code=error.status_code
                )
            if self.cache is not None and key is not None and response.status_code == 200 \
                    and request.state.cacheable:
                self.cache.put(key, bytes(response.body), operation_name())
            return response

    async def _answer_key(
        self, request: Request, connection: Connection, grant: Grant, today: date
    ) -> AnswerKey:
        """The response cache's key for this request, at the organization's report version."""
        version = await report_version(connection, grant.organization_id)
        return answer_key(
            grant.organization_id, version, role=grant.role, today=today,
            method=request.method, content_type=request.headers.get("content-type", ""),
            request=await request.body() if request.method == "POST"
            else request.url.query.encode(),
        )

    def _graphiql(self, request: Request) -> Response:
        if not self.settings.graphiql:
            return JSONResponse(error_body(
                "GraphiQL is switched off on this server (MAILFLOW_GRAPHIQL); send queries "
                'as POST /graphql with a JSON body {"query": ...}', GRAPHIQL_DISABLED,
            ), status_code=404)
        return graphiql_page(request, introspection=self.settings.introspection)


def create_app(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    demo_organization_id: int | None = None,
    changes: RollupChanges | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Starlette:
    """The API on ``pool``; without a token, requests read ``demo_organization_id`` if given.

    With ``changes``, subscriptions are served over WebSocket at /graphql. Spans go to
    ``tracer_provider``, or, when OpenTelemetry's variables ask for tracing, to the exporters
    they name.
    """
    if tracer_provider is None and tracing_requested():
        tracer_provider = provider_from_environment()
    endpoint = GraphQLEndpoint(pool, settings, demo_organization_id)
    limit = None if settings.rate_limit == "off" else RateLimit(settings.rate_limit)
    live = None if changes is None else LiveEndpoint(
        schema_for(settings), pool, settings, changes, limit, demo_organization_id
    )
    metrics = Metrics(pool, token=_secret(settings.metrics_token))
    ingest = IngestEndpoint(pool, on_push=metrics.record_push)
    export = ExportEndpoint(pool, settings, demo_organization_id)
    app = Starlette(
        routes=[
            Route("/", _to_graphql, methods=["GET", "HEAD"]),
            _graphql_route(metrics.measured("graphql", metrics.graphql(
                _limited(limit, endpoint.handle)))),
            *([] if live is None else [WebSocketRoute("/graphql", live.handle)]),
            Route("/ingest", metrics.measured("ingest", _limited(limit, _identified(
                ingest.handle))), methods=["POST"], name="ingest"),
            *_export_routes(export, metrics, limit),
            *_operations_routes(pool, settings, metrics),
            *(graphiql_routes() if settings.graphiql else []),
        ],
        middleware=[
            *([] if tracer_provider is None else [tracing_middleware(tracer_provider)]),
            *_cross_origin(settings),
        ],
        exception_handlers={404: _not_found, 405: _method_not_allowed},
    )
    app.state.response_cache = endpoint.cache
    return app


def _graphql_route(handler: Handler) -> Route:
    """/graphql for GET and POST. Starlette adds HEAD to a route that takes GET, but
    strawberry answers no HEAD: left out, it gets the router's 405 like any other method."""
    route = Route("/graphql", handler, methods=["GET", "POST"], name="graphql")
    route.methods = {"GET", "POST"}
    return route


def _export_routes(
    export: ExportEndpoint, metrics: Metrics, limit: RateLimit | None
) -> list[Route]:
    """The CSV exports, behind the rate limit like /graphql."""
    return [
        Route(f"/export/{name}.csv", metrics.measured(f"export/{name}", _limited(
            limit, _identified(handler))), methods=["GET"], name=f"export-{name}")
        for name, handler in (("connector-report", export.connector_report),
                              ("tls-usage", export.tls_usage))
    ]


def _operations_routes(pool: asyncpg.Pool, settings: Settings, metrics: Metrics) -> list[Route]:
    """Health checks and metrics, outside the rate limit."""
    routes = [
        Route("/healthz", healthz, methods=["GET", "HEAD"], name="healthz"),
        Route("/readyz", Readiness(pool).handle, methods=["GET", "HEAD"], name="readyz"),
    ]
    if settings.metrics:
        routes.append(Route("/metrics", metrics.endpoint, methods=["GET"], name="metrics"))
    return routes


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


def _cross_origin(settings: Settings) -> list[Middleware]:
    """CORS for the browser origins the settings allow; none by default."""
    if not settings.cors_origins:
        return []
    return [Middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER],
        expose_headers=[REQUEST_ID_HEADER],
        max_age=600,
    )]


def _limited(limit: RateLimit | None, handler: Handler) -> Handler:
    """``handler`` behind the rate limit: over it, HTTP 429 before the request is read."""
    if limit is None:
        return handler

    async def handle(request: Request) -> Response:
        refusal = await limit.admit(request)
        if refusal is not None:
            refusal.headers[REQUEST_ID_HEADER] = _request_id(request)
            return refusal
        response = await handler(request)
        await limit.settle(request, response.status_code)
        return response

    return handle


def _identified(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` with a request id in ``request.state`` and in the answer's headers."""
    async def handle(request: Request) -> Response:
        request_id = _request_id(request)
        request.state.request_id = request_id
        with request_logged_as(request_id):
            response = await handler(request)
        response.headers[REQUEST_ID_HEADER] = request_id
        return response

    return handle


def _is_query(request_data: GraphQLRequestData, max_tokens: int) -> bool:
    """Whether the request's operation is a query (not a mutation or subscription); the
    document was parsed, and cached, by the query limits before the operation ran."""
    if request_data.query is None:
        return False
    document = parse_within(request_data.query, max_tokens)
    operation = get_operation_ast(document, request_data.operation_name)
    return operation is not None and operation.operation is OperationType.QUERY


def _failure(error: Exception, request_id: str) -> Response:
    """503 when the database is unavailable; 500, logged with the traceback, for a bug."""
    if is_database_unavailable(error):
        log_unavailable(request_id, f"{type(error).__name__}: {error}")
        return unavailable_response(request_id)
    log.error(
        "request %s failed outside GraphQL execution; the client saw only "
        "'Internal server error' and the request id",
        request_id, exc_info=error, extra={"request_id": request_id},
    )
    return JSONResponse(
        error_body(INTERNAL_MESSAGE, INTERNAL_SERVER_ERROR, requestId=request_id),
        status_code=500,
    )


def _not_found(request: Request, error: Exception) -> Response:
    """404 as a coded JSON error naming the paths the API answers."""
    message = (f"no such path: {request.url.path[:100]}; mailflow answers /graphql, /ingest, "
               "/export/connector-report.csv, /export/tls-usage.csv, /healthz, /readyz and "
               "/metrics")
    return JSONResponse(error_body(message, NOT_FOUND), status_code=404, headers={
        REQUEST_ID_HEADER: _request_id(request)})


def _method_not_allowed(request: Request, error: Exception) -> Response:
    """405 as the API's other refusals are answered: a coded JSON error, with ``Allow``."""
    headers = getattr(error, "headers", None) or {}
    # Static files refuse other methods without saying which they answer: GET and HEAD.
    allowed = ", ".join(sorted(
        method.strip() for method in headers.get("Allow", "GET, HEAD").split(",")
    ))
    message = (f"the method {request.method[:20]} is not allowed on {request.url.path[:100]}, "
               f"which answers {allowed}")
    return JSONResponse(error_body(message, METHOD_NOT_ALLOWED), status_code=405, headers={
        "Allow": allowed, REQUEST_ID_HEADER: _request_id(request)})


async def _to_graphql(request: Request) -> Response:
    return RedirectResponse(request.scope.get("root_path", "") + "/graphql")


def _request_id(request: Request) -> str:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    return offered if PLAIN_REQUEST_ID.match(offered) else uuid.uuid4().hex
