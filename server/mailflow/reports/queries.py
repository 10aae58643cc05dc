"""Reads of daily rollups for reports; message facts are never scanned here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import asyncpg

from mailflow.domain import Direction, TlsVersion
from mailflow.reports.ranges import DateRange
from mailflow.store.connection import Connection
from mailflow.store.sql import query


@dataclass(frozen=True, slots=True)
class DailyTotal:
    """The mail of one UTC day and TLS version, summed over the rollups a report selects."""

    day: date
    tls_version: TlsVersion
    messages: int
    recipients: int
    bytes: int


@dataclass(frozen=True, slots=True)
class FlowFilter:
    """Which boundary mail a report counts.

    ``direction`` None counts both directions; ``connector_id`` keeps the mail of one
    connector; ``no_connector`` keeps only the mail that matched no connector.
    """

    direction: Direction | None = None
    connector_id: int | None = None
    no_connector: bool = False


async def fetch_daily_totals(
    connection: Connection,
    organization_id: int,
    window: DateRange,
    flow_filter: FlowFilter,
) -> list[DailyTotal]:
    """The organization's mail per day and TLS version in ``window`` that ``flow_filter`` keeps."""
    direction = flow_filter.direction.value if flow_filter.direction else None
    if flow_filter.connector_id is None and not flow_filter.no_connector:
        # All the organization's mail: its organization rollups, a row per day, direction and
        # TLS version, instead of one per connector too.
        rows = await connection.fetch(
            query("report_organization_daily_totals"),
            organization_id, window.start, window.end, direction,
        )
    else:
        rows = await connection.fetch(
            query("report_daily_totals"),
            organization_id, window.start, window.end,
            direction, flow_filter.connector_id, flow_filter.no_connector,
        )
    return [_daily_total(row) for row in rows]


async def fetch_connector_daily_totals(
    connection: Connection,
    organization_id: int,
    connector_ids: Sequence[int],
    window: DateRange,
) -> Mapping[int, list[DailyTotal]]:
    """The mail per connector, day and TLS version in ``window``; no key for a connector
    without mail."""
    rows = await connection.fetch(
        query("report_connector_daily_totals"),
        organization_id, list(connector_ids), window.start, window.end,
    )
    totals: defaultdict[int, list[DailyTotal]] = defaultdict(list)
    for row in rows:
        totals[row["connector_id"]].append(_daily_total(row))
    return totals


def _daily_total(row: asyncpg.Record) -> DailyTotal:
    return DailyTotal(
        day=row["day"],
        tls_version=TlsVersion(row["tls_version"]),
        messages=row["messages"],
        recipients=row["recipients"],
        bytes=row["bytes"],
    )
