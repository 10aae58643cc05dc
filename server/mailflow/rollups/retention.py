"""Retention: message fact partitions made ahead and dropped when old, old rollups removed.

Rollups are kept longer than the facts they count, so that reports over old days still answer
after the facts are gone. Facts go by whole monthly partitions (``store.partitions``); rollups
day by day, each organization's in a transaction that names that organization (row security
holds the owner to it too) and holds its rollup lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from mailflow.errors import MailflowError
from mailflow.rollups.refresh import lock_organization_rollups
from mailflow.store.connection import Connection
from mailflow.store.isolation import owner_transaction
from mailflow.store.partitions import create_partitions, drop_partition, plan_partitions
from mailflow.store.sql import query


class RetentionError(MailflowError):
    """Retention periods that would remove data still needed, or that are not periods."""

    code = "INVALID_RETENTION"


@dataclass
class MaintenanceResult:
    """What one maintenance run did (or, in a dry run, would do).

    Facts on or after ``keep_facts_since`` and rollups of days on or after
    ``keep_rollups_since`` are kept; ``rollups_removed`` counts rows per organization name.
    """

    keep_facts_since: date
    keep_rollups_since: date
    created: list[date] = field(default_factory=list)
    dropped: list[date] = field(default_factory=list)
    rollups_removed: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False


def check_retention(fact_retention_days: int, rollup_retention_days: int) -> None:
    """Raise RetentionError unless both are positive and rollups outlive facts."""
    for name, days in (("fact", fact_retention_days), ("rollup", rollup_retention_days)):
        if days < 1:
            raise RetentionError(f"the {name} retention must be 1 day or more, not {days}")
    if rollup_retention_days < fact_retention_days:
        raise RetentionError(
            f"the rollup retention ({rollup_retention_days} days) is shorter than the fact "
            f"retention ({fact_retention_days} days): rollups must be kept at least as long "
            "as the facts they count; raise the rollup retention or lower the fact retention"
        )


async def maintain(
    connection: Connection, *, today: date, fact_retention_days: int,
    rollup_retention_days: int, months_ahead: int, dry_run: bool = False,
) -> MaintenanceResult:
    """Create the fact partitions of this month and ``months_ahead`` more, drop those whose
    whole month is older than ``fact_retention_days`` before ``today`` (UTC), and remove the
    rollups of days more than ``rollup_retention_days`` before it. Running it again the same
    day changes nothing; ``dry_run`` only says what it would do."""
    check_retention(fact_retention_days, rollup_retention_days)
    if months_ahead < 0:
        raise RetentionError(f"months ahead must be 0 or more, not {months_ahead}")
    result = MaintenanceResult(
        keep_facts_since=today - timedelta(days=fact_retention_days),
        keep_rollups_since=today - timedelta(days=rollup_retention_days),
        dry_run=dry_run,
    )
    plan = await plan_partitions(connection, today=today, months_ahead=months_ahead,
                                 keep_facts_since=result.keep_facts_since)
    if dry_run:
        result.created, result.dropped = plan.create, plan.drop
        result.rollups_removed = await expired_rollups(connection, result.keep_rollups_since)
        return result

    if plan.create:
        await create_partitions(connection, plan.create)
        result.created = plan.create
    result.dropped = [month for month in plan.drop if await drop_partition(connection, month)]
    result.rollups_removed = await delete_expired_rollups(connection, result.keep_rollups_since)
    return result


async def expired_rollups(connection: Connection, keep_since: date) -> dict[str, int]:
    """The number of rollups before ``keep_since`` per organization name, for those with any."""
    counts = {}
    for organization_id, name in await organizations(connection):
        async with owner_transaction(connection, organization_id):
            count: int = await connection.fetchval(query("rollups_count_before"),
                                                   organization_id, keep_since)
        if count:
            counts[name] = count
    return counts


async def delete_expired_rollups(connection: Connection, keep_since: date) -> dict[str, int]:
    """Remove every rollup of a day before ``keep_since``; the rows removed per organization
    name, for those that had any."""
    deleted = {}
    for organization_id, name in await organizations(connection):
        async with owner_transaction(connection, organization_id):
            await lock_organization_rollups(connection, organization_id)
            status = await connection.execute(query("rollups_delete_before"), organization_id,
                                              keep_since)
        count = int(status.rsplit(" ", 1)[-1])
        if count:
            deleted[name] = count
    return deleted


async def organizations(connection: Connection) -> list[tuple[int, str]]:
    """The id and name of every organization."""
    return [(row["id"], row["name"]) for row in await connection.fetch(query("organization_list"))]
