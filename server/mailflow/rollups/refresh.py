"""Keep daily rollups equal to message facts: add newly stored facts, or recompute days.

An ingest adds the counts of the facts it stored to their rollup rows, in the transaction
that stored them (:func:`add_to_rollups`): its cost follows the new facts, not the history.
Changes that move stored facts (a removed connector) recompute the days they touch.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from mailflow.store.connection import Connection
from mailflow.store.facts import RollupCount, require_transaction
from mailflow.store.sql import query

# The advisory lock space of rollup refreshes ("mfro"); the organization id, folded into 31 bits,
# is the key: ids 2^31 apart would share a lock, which only serializes them, never corrupts.
ROLLUP_LOCK_CLASS = 0x6D66_726F


class RollupIsolationError(RuntimeError):
    """A refresh ran in a transaction that could not see facts committed while it waited."""


async def add_to_rollups(
    connection: Connection, organization_id: int, counts: Iterable[RollupCount]
) -> None:
    """Add the counts of facts just stored to the organization's rollups, inside the caller's
    transaction (the one that stored them), so rollups and facts commit together.

    Facts are immutable and stored once (duplicates are not counted), so adding what is new
    keeps every rollup row equal to a count over its facts.
    """
    require_transaction(connection, "add_to_rollups")
    counts = list(counts)
    if not counts:
        return

    await lock_organization_rollups(connection, organization_id)
    await connection.execute(
        query("rollups_add_counts"), organization_id,
        [count.day for count in counts], [count.direction for count in counts],
        [count.connector_id for count in counts], [count.tls_version for count in counts],
        [count.messages for count in counts], [count.recipients for count in counts],
        [count.bytes for count in counts],
    )


async def refresh_rollups(
    connection: Connection, organization_id: int, days: Iterable[date]
) -> int:
    """Recompute the organization's rollups of exactly ``days`` (UTC) inside the caller's
    transaction; return the number of rollup rows written.

    Only the facts of those days are read, through the primary key (organization_id,
    occurred_at, source_key) of each partition they fall in, so the cost follows the touched
    days, not the history.
    """
    require_transaction(connection, "refresh_rollups")
    touched = sorted({_as_date(day) for day in days})
    if not touched:
        return 0

    await lock_organization_rollups(connection, organization_id)
    await connection.execute(query("rollups_delete_days"), organization_id, touched)
    status = await connection.execute(query("rollups_insert_days"), organization_id, touched)
    return _inserted_rows(status)


async def rebuild_rollups(connection: Connection, organization_id: int) -> int:
    """Recompute all of the organization's rollups from all its facts; return the rows written."""
    require_transaction(connection, "rebuild_rollups")
    await lock_organization_rollups(connection, organization_id)
    await connection.execute(query("rollups_delete_organization"), organization_id)
    status = await connection.execute(query("rollups_insert_organization"), organization_id)
    return _inserted_rows(status)


async def lock_organization_rollups(connection: Connection, organization_id: int) -> None:
    """Wait until no other transaction refreshes this organization's rollups; hold until commit.

    Under READ COMMITTED each statement after the wait sees the facts that the previous holder
    committed, so the last refresh of a day counts every fact of it. A snapshot-isolated
    transaction would keep counting without them, hence the check.
    """
    row = await connection.fetchrow(
        query("rollups_lock_organization"), ROLLUP_LOCK_CLASS, organization_id
    )
    assert row is not None
    if row["isolation"] != "read committed":
        raise RollupIsolationError(
            f"rollups of organization {organization_id} must be refreshed in a READ COMMITTED "
            f"transaction, not {row['isolation'].upper()}: "
            "use `connection.transaction()` with the default isolation"
        )


def _as_date(day: date) -> date:
    if isinstance(day, datetime):
        raise TypeError(f"rollup days are dates (UTC calendar days), not datetimes: {day!r}")
    return day


def _inserted_rows(status: str) -> int:
    """The row count of an ``INSERT 0 <rows>`` command status."""
    return int(status.rsplit(" ", 1)[-1])
