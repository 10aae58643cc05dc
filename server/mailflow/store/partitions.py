"""Message fact partitions over time: created ahead of the mail, dropped after the retention.

Facts live in one partition per UTC calendar month (``message_facts_YYYYMM``). A partition is
dropped only when its whole month is older than the fact retention, so a fact inside the
retention is never removed; facts are removed by whole months, never row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from mailflow.store.connection import Connection
from mailflow.store.facts import PARTITION_LOCK, ensure_partitions
from mailflow.store.sql import query


@dataclass(frozen=True)
class PartitionPlan:
    """The months whose partitions are to be created, and those to be dropped."""

    create: list[date]
    drop: list[date]


def add_months(month: date, months: int) -> date:
    """The first day of the month ``months`` after (or before) the month of ``month``."""
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


LAST_MONTH = date(9999, 12, 1)


def _over_by(month: date, day: date) -> bool:
    """Whether the month that starts on ``month`` has ended on or before ``day``; the
    calendar's last month (a partition of absurd times an older mailflow stored) never has."""
    return month < LAST_MONTH and add_months(month, 1) <= day


def partition_name(month: date) -> str:
    return f"message_facts_{month:%Y%m}"


async def plan_partitions(
    connection: Connection, *, today: date, months_ahead: int, keep_facts_since: date
) -> PartitionPlan:
    """What keeping partitions from this month to ``months_ahead`` months ahead, and none whose
    month ends on or before ``keep_facts_since``, would create and drop."""
    this_month = today.replace(day=1)
    wanted = [add_months(this_month, offset) for offset in range(months_ahead + 1)]
    missing = await connection.fetch(query("facts_missing_partitions"), wanted)
    existing = [row["month"] for row in await connection.fetch(query("facts_partition_months"))]
    expired = [month for month in existing if _over_by(month, keep_facts_since)]
    return PartitionPlan(create=sorted(row["month"] for row in missing), drop=expired)


async def create_partitions(connection: Connection, months: list[date]) -> None:
    """Create the partitions of ``months`` that are missing, in one transaction."""
    async with connection.transaction():
        await ensure_partitions(connection, months)


async def drop_partition(connection: Connection, month: date) -> bool:
    """Drop the partition of ``month`` with its facts, in a transaction of its own; False when
    it was gone already. Dropping locks message_facts for a moment, as creating does."""
    async with connection.transaction():
        await connection.execute(query("facts_lock_partitions"), PARTITION_LOCK)
        dropped: bool = await connection.fetchval(query("facts_drop_partition"), month)
    return dropped
