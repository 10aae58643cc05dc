"""Rows of the connector report: one per UTC day, direction and connector with mail, read from
the daily rollups as a stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date

import asyncpg

from mailflow.domain import ConnectorKind, Direction, TlsVersion
from mailflow.reports.queries import FlowFilter
from mailflow.reports.ranges import DateRange
from mailflow.store.connection import Connection
from mailflow.store.sql import query

# Rows read from PostgreSQL per round trip while the export streams.
PREFETCH_ROWS = 500

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
    day, direction and connector name (no connector last). Runs inside a transaction."""
    direction = flow_filter.direction.value if flow_filter.direction else None
    rows = connection.cursor(
        query("export_connector_days"),
        organization_id, window.start, window.end,
        direction, flow_filter.connector_id, flow_filter.no_connector,
        prefetch=PREFETCH_ROWS,
    )
    async for row in rows:
        yield _connector_day(row)


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
