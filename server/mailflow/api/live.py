"""Subscriptions over WebSocket (graphql-transport-ws) at /graphql: answers pushed when an
organization's daily rollups change.

A client opens the socket, sends ``connection_init`` with ``{"Authorization": "Bearer
<token>"}`` (or sent that header with the handshake), then subscribes. A token that is
missing, unknown or may not read reports closes the socket with 4403; a subscribe before an
acknowledged ``connection_init`` closes it with 4401. Each subscription answers once at once,
then after every committed change of its organization's rollups that changes its answer.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import date, timedelta
from typing import Any, TypeVar, cast

import asyncpg
from graphql import DocumentNode, GraphQLError, get_operation_ast
from graphql import OperationType as DocumentOperationType
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import SchemaExtension
from strawberry.schema import BaseSchema
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from mailflow.api.auth import (
    ForbiddenError,
    UnauthenticatedError,
    grant_of_header,
    require_reader,
)
from mailflow.api.body import RequestError, request_data
from mailflow.api.context import Push, RequestContext, SubscriptionContext, TransportError
from mailflow.api.errors import BAD_REQUEST, error_body, escaped_error, log_unavailable
from mailflow.api.limits import TooManyTokensError, parse_within
from mailflow.api.ratelimit import RATE_LIMITED, RateLimit, client_key, header_hash
from mailflow.reports.loaders import ReportLoaders
from mailflow.reports.ranges import DateRange, utc_today
from mailflow.rollups.changes import RollupChanges
from mailflow.settings import Settings
from mailflow.store.availability import is_database_unavailable, pooled
from mailflow.store.isolation import enter_organization, service_transaction

log = logging.getLogger("mailflow.live")

Answer = TypeVar("Answer")

CONNECTION_INIT_SECONDS = 10
"""How long a client has, after the handshake, to send ``connection_init``."""
TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
TRY_AGAIN_LATER = 1013  # RFC 6455's close code for a server that cannot serve for now
UNAVAILABLE_REASON = "the database is unavailable; connect again in a few seconds"


class SubscriptionsOverWebSocket(SchemaExtension):
    """Refuse a subscription sent over HTTP, which could answer it only once, with null."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if (isinstance(context.context, RequestContext)
                and context.operation_type is OperationType.SUBSCRIPTION):
            error = TransportError(SUBSCRIBE_OVER_WEBSOCKET)
            context.pre_execution_errors = [GraphQLError(str(error), original_error=error)]
        yield


INVALID_MESSAGE = 'a graphql-transport-ws message is a JSON object with a "type" string'
INVALID_ID = 'a subscribe or complete message names its operation by an "id" string'
SUBSCRIPTIONS_ONLY = (
    "this WebSocket answers subscriptions only: send queries by POST or GET /graphql, "
    "mutations by POST /graphql"
)
SUBSCRIBE_SHAPE = (
    'a subscribe message\'s payload must be a JSON object with a "query" string, such as '
    '{"query": "subscription { insightsUpdates { insights { kind } } }"}'
)
SUBSCRIBE_OVER_WEBSOCKET = (
    "subscriptions are served over WebSocket: open one to /graphql with the "
    "graphql-transport-ws protocol to subscribe; POST /graphql answers queries and mutations"
)


class LiveView(GraphQL[SubscriptionContext, None]):
    """strawberry's WebSocket view: authenticates ``connection_init``, counts subscriptions."""

    def __init__(self, schema: BaseSchema, settings: Settings, limit: RateLimit | None) -> None:
        super().__init__(
            schema,
            graphql_ide=None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=CONNECTION_INIT_SECONDS),
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
            allowed_origins=settings.cors_origins,
        )
        self.graphql_transport_ws_handler_class = _counted_handler(limit)

    async def on_ws_connect(self, context: SubscriptionContext) -> UnsetType:
        """Accept the connection for the token of ``connection_init``, or of the handshake."""
        header = _authorization(context.connection_params, context.authorization)
        try:
            async with pooled(context.pool) as connection, service_transaction(connection):
                grant = require_reader(await grant_of_header(
                    header, connection, demo_organization_id=context.demo_organization_id))
        except (UnauthenticatedError, ForbiddenError) as error:
            log.info("refused a WebSocket connection: %s", error,
                     extra={"request_id": context.request_id, "code": error.code})
            raise ConnectionRejectionError from error
        context.grant = grant
        context.authorization = header
        token = None if header is None else header_hash(header)
        if token is not None:
            context.rate_key = "token:" + token
        return cast(UnsetType, UNSET)


class LiveEndpoint:
    """Serves WebSocket connections to /graphql."""

    def __init__(
        self, schema: BaseSchema, pool: asyncpg.Pool, settings: Settings,
        changes: RollupChanges, limit: RateLimit | None, demo_organization_id: int | None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.changes = changes
        self.limit = limit
        self.demo_organization_id = demo_organization_id
        self.view = LiveView(schema, settings, limit)

    async def handle(self, websocket: WebSocket) -> None:
        """Run one WebSocket connection until either side closes it."""
        if self.limit is not None:
            refusal = await self.limit.admit(websocket)
            if refusal is not None:
                await websocket.send_denial_response(refusal)
                return
        context = SubscriptionContext(
            pool=self.pool,
            settings=self.settings,
            changes=self.changes,
            request_id=uuid.uuid4().hex,
            authorization=websocket.headers.get("authorization"),
            demo_organization_id=self.demo_organization_id,
            rate_key=client_key(websocket.headers.get("authorization"), websocket),
        )
        await self.view.run(websocket, context=context)


def _authorization(params: dict[str, Any], header: str | None) -> str | None:
    """The Authorization value of ``connection_init``'s payload (any case), else ``header``."""
    for key, value in params.items():
        if key.lower() == "authorization" and isinstance(value, str):
            return value
    return header


def _counted_handler(
    limit: RateLimit | None,
) -> type[BaseGraphQLTransportWSHandler[SubscriptionContext, None]]:
    """The protocol's handler, each ``subscribe`` counted as a request of the connection's
    token: over the rate limit, the subscription gets an error and does not start."""

    class CountedHandler(BaseGraphQLTransportWSHandler[SubscriptionContext, None]):
        async def handle_message(self, message: Message) -> None:
            """Close with 4400, as for any invalid message, a message that is no JSON object
            or names its operation by something other than a string, which strawberry's
            handler would fail on."""
            received: object = message
            if not isinstance(received, dict):
                await self.handle_invalid_message(INVALID_MESSAGE)
                return
            if received.get("type") in ("subscribe", "complete") \
                    and not isinstance(received.get("id"), str):
                await self.handle_invalid_message(INVALID_ID)
                return
            await super().handle_message(message)

        async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
            try:
                await super().handle_connection_init(message)
            except Exception as error:
                if not is_database_unavailable(error):
                    raise
                log_unavailable(self.context.request_id, "a WebSocket could not authenticate")
                await self.websocket.close(code=TRY_AGAIN_LATER, reason=UNAVAILABLE_REASON)

        async def handle_subscribe(self, message: SubscribeMessage) -> None:
            context = self.context
            if refusal := self._refusal(message):
                await self.send_message(
                    {"id": message["id"], "type": "error", "payload": refusal["errors"]})
                return
            if limit is not None and context.grant is not None:
                wait = await limit.admit_client(context.rate_key)
                if wait is not None:
                    body = error_body(
                        f"too many subscriptions: the limit is {limit.rate} per token; retry "
                        f"in {wait} s", RATE_LIMITED, retryAfter=wait)
                    await self.send_message(
                        {"id": message["id"], "type": "error", "payload": body["errors"]})
                    return
            await super().handle_subscribe(message)

        def _refusal(self, message: SubscribeMessage) -> dict[str, Any] | None:
            """The error body for a subscription refused before it starts: a payload, or a
            field of it, of the wrong JSON type, one subscription too many for the connection, or a
            document that is over the token limit (which strawberry's task would only log),
            names no operation it holds, or picks one that is no subscription."""
            if not self.connection_acknowledged or message["id"] in self.operations:
                return None  # the protocol's own refusals, which close the socket
            payload = message["payload"]
            if not isinstance(payload, dict):
                return error_body(f"the payload is not a JSON object; {SUBSCRIBE_SHAPE}",
                                  BAD_REQUEST)
            try:
                request = request_data(payload, "field", SUBSCRIBE_SHAPE, persisted=False)
            except RequestError as error:
                return error_body(str(error), error.code)
            most = self.max_subscriptions_per_connection
            if most is not None and len(self.operations) >= most:
                return error_body(
                    f"this connection holds {len(self.operations)} subscriptions, the most one "
                    "may (MAILFLOW_MAX_SUBSCRIPTIONS_PER_CONNECTION); complete one first, or "
                    "open another connection", TOO_MANY_SUBSCRIPTIONS)
            assert request.query is not None
            try:
                document = parse_within(request.query, self.context.settings.max_query_tokens)
            except TooManyTokensError as error:
                return error_body(str(error), error.code)
            except GraphQLError:
                return None  # a syntax error, answered as any other
            return _operation_refusal(document, request.operation_name)

    return CountedHandler


def _operation_refusal(document: DocumentNode, operation_name: str | None) -> dict[str, Any] | None:
    """The error body for a document whose operation the socket does not run: one
    ``operation_name`` names none of, or one that is no subscription."""
    operation = get_operation_ast(document, operation_name)
    if operation is None and operation_name is not None:
        # The words POST /graphql answers the same request with.
        reason = CannotGetOperationTypeError(operation_name).as_http_error_reason()
        return error_body(reason, BAD_REQUEST)
    if operation is None or operation.operation is DocumentOperationType.SUBSCRIPTION:
        return None  # several operations and no name, or none: answered as over POST
    return error_body(SUBSCRIPTIONS_ONLY, BAD_REQUEST)


@contextlib.asynccontextmanager
async def answering(context: SubscriptionContext) -> AsyncIterator[Push]:
    """One answer's transaction on the connection's organization, its token checked again
    (a token revoked since the connection opened ends the subscription with an error)."""
    async with pooled(context.pool) as connection, service_transaction(connection):
        grant = require_reader(await grant_of_header(
            context.authorization, connection,
            demo_organization_id=context.demo_organization_id))
        await enter_organization(connection, grant.organization_id)
        push = Push(connection, ReportLoaders(connection, grant.organization_id), utc_today())
        token = context.answering(push)
        try:
            yield push
        finally:
            context.answered(token)


async def updates(
    context: SubscriptionContext,
    window: Callable[[], DateRange],
    answer: Callable[[], Awaitable[Answer | None]],
) -> AsyncIterator[Answer]:
    """What ``answer`` gives now, then each time it gives something after a change of the
    organization's rollups on a day of ``window``; None means "nothing new to say".

    An error ends the subscription: strawberry passes errors of a stream by no extension, so
    they get their ``extensions.code`` here.
    """
    with context.changes.subscribe(context.organization_id) as subscriber:
        while True:
            try:
                # The answer's connection is held until it is sent, for the fields under it;
                # a client slow to read keeps a pool connection that long.
                async with answering(context):
                    answered = await answer()
                    if answered is not None:
                        yield answered
            except Exception as error:
                raise escaped_error(GraphQLError(str(error), original_error=error),
                                    context.request_id) from error
            await _change_within(subscriber.changed_days, window)


async def _change_within(
    changed_days: Callable[[], Awaitable[set[date] | None]], window: Callable[[], DateRange]
) -> None:
    """Wait until the rollups change on a day of ``window`` (or on any day, unknown which)."""
    while True:
        days = await changed_days()
        if days is None:
            return
        range_ = window()
        if any(range_.start <= day <= range_.end for day in days):
            return
