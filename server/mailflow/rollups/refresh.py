"""Keep daily rollups equal to message facts: add newly stored facts, or recompute days.

An ingest adds the counts of the facts it stored to their rollup rows, in the transaction
that stored them (:func:`add_to_rollups`): its cost follows the new facts, not the history.
Changes that move stored facts (a removed connector) recompute the days they touch; facts
classified again move their counts between connectors' rows (:func:`move_in_rollups`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class RollupMove:
    """Stored facts of one day, direction and TLS version that moved between two connectors
    (None: "no connector"), and their counts."""

    day: date
    direction: str
    tls_version: str
    from_connector_id: int | None
    to_connector_id: int | None
    messages: int
    recipients: int
    bytes: int


async def move_in_rollups(
    connection: Connection, organization_id: int, moves: Iterable[RollupMove]
) -> None:
    """Move the counts of facts whose connector changed from their old rollup rows to their new
    ones, inside the caller's transaction (the one that changed the facts).

    The cost follows the moved facts, not the days they fall on; rows left counting nothing are
    removed, as a count over the facts would have no row for them.
    """
    require_transaction(connection, "move_in_rollups")
    changes: dict[tuple[date, str, int | None, str], tuple[int, int, int]] = {}
    for move in moves:
        for connector_id, sign in ((move.from_connector_id, -1), (move.to_connector_id, 1)):
            key = (move.day, move.direction, connector_id, move.tls_version)
            messages, recipients, size = changes.get(key, (0, 0, 0))
            changes[key] = (messages + sign * move.messages,
                            recipients + sign * move.recipients, size + sign * move.bytes)
    counts = [
        RollupCount(day, direction, connector_id, tls_version, *totals)
        for (day, direction, connector_id, tls_version), totals in changes.items()
        if totals != (0, 0, 0)
    ]
    if not counts:
        return

    await add_to_rollups(connection, organization_id, counts)
    days = sorted({count.day for count in counts})
    await connection.execute(query("rollups_delete_empty"), organization_id, days)


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
