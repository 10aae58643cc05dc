"""Rows of the connector report: one per UTC day, direction and connector with mail, read from
the daily rollups as a stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg

from mailflow.domain import ConnectorKind, Direction, TlsVersion
from mailflow.reports.queries import FlowFilter
from mailflow.reports.ranges import DateRange
from mailflow.store.connection import Connection
from mailflow.store.sql import query

# Days read per statement while an export streams: at most 7 x 2 x 101 rows (both directions,
# 100 connectors and no connector) are held at a time. Statements, not a cursor: asyncpg names
# a cursor's statement, which a pooler in transaction mode may not keep (see README).
DAYS_PER_READ = 7

_TLS_COLUMNS = (
    (TlsVersion.NONE, "no_tls"),
    (TlsVersion.TLS1_0, "tls1_0"),
    (TlsVersion.TLS1_1, "tls1_1"),
    (TlsVersion.TLS1_2, "tls1_2"),
    (TlsVersion.TLS1_3, "tls1_3"),
    (TlsVersion.UNKNOWN, "unknown"),
)


@dataclass(frozen=True, slots=True)
class ConnectorDay:
    """The mail of one connector (None: no connector) in one direction on one UTC day."""

    day: date
    direction: Direction
    connector_name: str | None
    connector_kind: ConnectorKind | None
    require_tls: bool | None
    messages_by_tls: tuple[tuple[TlsVersion, int], ...]

    @property
    def messages(self) -> int:
        """All its messages, whatever their TLS version."""
        return sum(count for _, count in self.messages_by_tls)


async def connector_days(
    connection: Connection, organization_id: int, window: DateRange, flow_filter: FlowFilter
) -> AsyncIterator[ConnectorDay]:
    """The organization's connector days in ``window`` that ``flow_filter`` keeps, ordered by
    day, direction and connector name (no connector last), read a few days at a time."""
    direction = flow_filter.direction.value if flow_filter.direction else None
    for days in _chunks(window, DAYS_PER_READ):
        rows = await connection.fetch(
            query("export_connector_days"),
            organization_id, days.start, days.end,
            direction, flow_filter.connector_id, flow_filter.no_connector,
        )
        for row in rows:
            yield _connector_day(row)


def _chunks(window: DateRange, days: int) -> Iterator[DateRange]:
    start = window.start
    while start <= window.end:
        end = window.end if (window.end - start).days < days else start + timedelta(days - 1)
        yield DateRange(start, end)
        if end == window.end:  # the last day of the calendar has no next day
            return
        start = end + timedelta(days=1)


def _connector_day(row: asyncpg.Record) -> ConnectorDay:
    kind = row["connector_kind"]
    return ConnectorDay(
        day=row["day"],
        direction=Direction(row["direction"]),
        connector_name=row["connector_name"],
        connector_kind=None if kind is None else ConnectorKind(kind),
        require_tls=row["require_tls"],
        messages_by_tls=tuple((version, row[column] or 0) for version, column in _TLS_COLUMNS),
    )
