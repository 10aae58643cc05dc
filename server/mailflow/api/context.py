"""What the resolvers of one GraphQL request share."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg
import strawberry

from mailflow.errors import MailflowError
from mailflow.reports.loaders import ReportLoaders
from mailflow.reports.ranges import DateRange, resolve_range, utc_today
from mailflow.rollups.changes import RollupChanges
from mailflow.settings import Settings
from mailflow.store.connection import Connection
from mailflow.store.tokens import Grant, TokenRole


@dataclass
class RequestContext:
    """One request: whose organization it reads and with which role, its id in logs, its
    connection (mutations write through it; reads go through the loaders) and its today."""

    organization_id: int
    role: TokenRole
    request_id: str
    settings: Settings
    connection: Connection
    loaders: ReportLoaders
    today: date

    def window(self, start: date | None, end: date | None) -> DateRange:
        """The report range for the ``start`` and ``end`` arguments, defaults filled in."""
        return resolve_range(start, end, today=self.today, max_days=self.settings.max_range_days)


class TransportError(MailflowError):
    """An operation sent where it is not answered: a subscription over HTTP, a query or
    mutation over WebSocket."""

    code = "BAD_REQUEST"


@dataclass(frozen=True)
class Push:
    """One answer of a subscription: its connection and loaders, for its fields."""

    connection: Connection
    loaders: ReportLoaders
    today: date


_push: contextvars.ContextVar[Push] = contextvars.ContextVar("mailflow_push")


@dataclass
class SubscriptionContext:
    """One WebSocket connection, shared by every subscription on it.

    It is authenticated once, when the client's ``connection_init`` arrives (``grant``); the
    token is checked again before every answer. Each answer reads in a transaction of its own
    (``Push``), so a subscription holds no connection while it waits. Its resolvers see what
    a request's see: ``connection``, ``loaders`` and ``today`` are those of the answer being
    computed, in the task of that subscription.
    """

    pool: asyncpg.Pool
    settings: Settings
    changes: RollupChanges
    request_id: str
    authorization: str | None  # the handshake's Authorization header, if it had one
    demo_organization_id: int | None
    rate_key: str  # what the rate limit counts this connection's subscriptions by
    connection_params: dict[str, Any] = field(default_factory=dict)
    grant: Grant | None = None
    token: str | None = None

    @property
    def organization_id(self) -> int:
        assert self.grant is not None, "subscriptions start after connection_init"
        return self.grant.organization_id

    @property
    def role(self) -> TokenRole:
        assert self.grant is not None, "subscriptions start after connection_init"
        return self.grant.role

    @property
    def connection(self) -> Connection:
        return self._push().connection

    @property
    def loaders(self) -> ReportLoaders:
        return self._push().loaders

    @property
    def today(self) -> date:
        push = _push.get(None)
        return utc_today() if push is None else push.today

    def window(self, start: date | None, end: date | None) -> DateRange:
        """The report range for the ``start`` and ``end`` arguments, defaults filled in."""
        return resolve_range(start, end, today=self.today, max_days=self.settings.max_range_days)

    def answering(self, push: Push) -> contextvars.Token[Push]:
        """Make ``push`` the answer this task's resolvers read through; reset with the token."""
        return _push.set(push)

    def answered(self, token: contextvars.Token[Push]) -> None:
        _push.reset(token)

    def _push(self) -> Push:
        push = _push.get(None)
        if push is None:
            raise TransportError(
                "this WebSocket answers subscriptions only: send queries and mutations as "
                "POST /graphql"
            )
        return push


OperationContext = RequestContext | SubscriptionContext

Info = strawberry.Info[OperationContext, None]
