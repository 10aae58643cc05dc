"""Batched, per-request reads for reports: N connectors cost one statement per distinct range.

A request's resolvers ask these loaders for rows; the loaders collect what every resolver
asked for within one tick of the event loop and read it with as few statements as there
are distinct questions, not one per connector. Volume, TLS breakdown and insights are then
derived from the same rows in Python. All reads of a request share its one connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader

from mailflow.domain import Connector
from mailflow.reports.queries import (
    DailyTotal,
    FlowFilter,
    fetch_connector_daily_totals,
    fetch_daily_totals,
)
from mailflow.reports.ranges import DateRange
from mailflow.reports.tls import (
    TlsDomainSessions,
    TlsFailure,
    TlsFailureQuery,
    TlsQuery,
    fetch_tls_failures,
    fetch_tls_sessions,
)
from mailflow.store.connection import Connection
from mailflow.store.organizations import (
    load_accepted_domains,
    load_connectors,
    load_internal_networks,
)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class _FieldWait(asyncio.Future[T]):
    """One field's wait for an answer that other fields may wait for too."""

    def __init__(self, answer: asyncio.Future[T], waits: set[_FieldWait[T]]) -> None:
        super().__init__(loop=answer.get_loop())
        self._answer = answer
        self._waits = waits
        waits.add(self)

    def cancel(self, msg: Any | None = None) -> bool:
        """Cancel this wait, and the answer too when no other field waits for it."""
        if not super().cancel(msg):
            return False
        self._waits.discard(self)
        if not self._waits:
            self._answer.cancel()
        return True


class SharedLoader(DataLoader[K, T]):
    """A DataLoader whose answer to a key outlives the cancellation of one field awaiting it.

    strawberry hands every field asking for one key the same future, and graphql-core cancels
    the siblings of a field that failed: a cancelled sibling would cancel that future for
    every other field awaiting it. Here each field awaits a future of its own; the shared one
    is cancelled (and its read skipped) only when every field awaiting it is.
    """

    def __init__(self, load_fn: Callable[[list[K]], Awaitable[Sequence[T]]]) -> None:
        super().__init__(load_fn)
        self._waits: dict[asyncio.Future[T], set[_FieldWait[T]]] = {}

    def load(self, key: K) -> Awaitable[T]:
        answer = asyncio.ensure_future(super().load(key))
        if answer.done():
            return answer
        if answer not in self._waits:
            self._waits[answer] = set()
            answer.add_done_callback(self._pass_on)
        return _FieldWait(answer, self._waits[answer])

    def _pass_on(self, answer: asyncio.Future[T]) -> None:
        """Give every field still waiting for ``answer`` what it came to."""
        for wait in list(self._waits.pop(answer)):
            if wait.done():
                continue
            if answer.cancelled():
                wait.cancel()
            elif (error := answer.exception()) is not None:
                wait.set_exception(error)
            else:
                wait.set_result(answer.result())


@dataclass(frozen=True, slots=True)
class ConnectorWindow:
    """The mail of one connector over one range."""

    connector_id: int
    window: DateRange


@dataclass(frozen=True, slots=True)
class FlowQuery:
    """The organization's mail over one range, as one filter keeps it."""

    window: DateRange
    flow_filter: FlowFilter


class ReportLoaders:
    """The loaders of one request, scoped to one organization; never share them across requests."""

    def __init__(self, connection: Connection, organization_id: int) -> None:
        self._connection = connection
        self._one_statement_at_a_time = asyncio.Lock()
        self._organization_id = organization_id
        self._connectors = SharedLoader[int, list[Connector]](self._load_connectors)
        self.connector_totals = SharedLoader[ConnectorWindow, list[DailyTotal]](
            self._load_connector_totals
        )
        self.flow_totals = SharedLoader[FlowQuery, list[DailyTotal]](self._load_flow_totals)
        self.tls_sessions = SharedLoader[TlsQuery, list[TlsDomainSessions]](
            self._load_tls_sessions
        )
        self.tls_failures = SharedLoader[TlsFailureQuery, list[TlsFailure]](
            self._load_tls_failures
        )

    async def connectors(self) -> list[Connector]:
        """The organization's connectors, read once per request."""
        return await self._connectors.load(self._organization_id)

    async def accepted_domains(self) -> list[str]:
        """The organization's accepted domains, sorted."""
        async with self._one_statement_at_a_time:
            return await load_accepted_domains(self._connection, self._organization_id)

    async def internal_networks(self) -> list[str]:
        """The internal networks the organization declared, in CIDR notation, sorted."""
        async with self._one_statement_at_a_time:
            networks = await load_internal_networks(self._connection, self._organization_id)
        return [str(network) for network in networks]

    async def _load_connectors(self, organization_ids: list[int]) -> list[list[Connector]]:
        async with self._one_statement_at_a_time:
            return [await load_connectors(self._connection, key) for key in organization_ids]

    async def _load_connector_totals(self, keys: list[ConnectorWindow]) -> list[list[DailyTotal]]:
        connector_ids: dict[DateRange, list[int]] = {}
        for key in keys:
            connector_ids.setdefault(key.window, []).append(key.connector_id)

        totals: dict[DateRange, Mapping[int, list[DailyTotal]]] = {}
        async with self._one_statement_at_a_time:
            for window, ids in connector_ids.items():
                totals[window] = await fetch_connector_daily_totals(
                    self._connection, self._organization_id, ids, window
                )
        return [totals[key.window].get(key.connector_id, []) for key in keys]

    async def _load_flow_totals(self, keys: Sequence[FlowQuery]) -> list[list[DailyTotal]]:
        async with self._one_statement_at_a_time:
            return [
                await fetch_daily_totals(
                    self._connection, self._organization_id, key.window, key.flow_filter
                )
                for key in keys
            ]

    async def _load_tls_sessions(self, keys: Sequence[TlsQuery]) -> list[list[TlsDomainSessions]]:
        async with self._one_statement_at_a_time:
            return [
                await fetch_tls_sessions(self._connection, self._organization_id, key)
                for key in keys
            ]

    async def _load_tls_failures(self, keys: Sequence[TlsFailureQuery]) -> list[list[TlsFailure]]:
        async with self._one_statement_at_a_time:
            return [
                await fetch_tls_failures(self._connection, self._organization_id, key)
                for key in keys
            ]
