"""Store message facts: idempotent, batched through COPY, partitioned by month."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

import asyncpg

from mailflow.domain import MessageFact
from mailflow.errors import InvalidMessageFactError
from mailflow.store.connection import Connection
from mailflow.store.rows import (
    COLUMNS,
    FactRow,
    RollupCount,
    fact_record,
    has_repeats,
    months_of,
    rollup_counts,
    time_span,
)
from mailflow.store.sql import query

__all__ = [
    "InvalidMessageFactError", "NotInTransactionError", "RollupCount", "StoreResult",
    "ensure_partitions", "fact_record", "months_of", "require_transaction", "store_facts",
]

PARTITION_LOCK = 0x6D66_7061  # "mfpa": one session at a time creates message_facts partitions

class NotInTransactionError(RuntimeError):
    """A store or refresh step was called outside the caller's transaction."""


@dataclass
class StoreResult:
    """What storing one batch of message facts changed.

    ``counts`` are the newly stored facts by daily rollup key, for ``add_to_rollups``.
    """

    inserted: int = 0
    duplicates: int = 0
    touched_days: set[date] = field(default_factory=set)
    counts: list[RollupCount] = field(default_factory=list, compare=False)


def require_transaction(connection: Connection, operation: str) -> None:
    """Raise unless ``connection`` is inside a transaction that ``operation`` can join."""
    if not connection.is_in_transaction():
        raise NotInTransactionError(
            f"{operation} must run inside a transaction: "
            "wrap the call in `async with connection.transaction():`"
        )


async def ensure_partitions(connection: Connection, months: Iterable[date]) -> None:
    """Create the missing message_facts partitions of ``months``, inside the caller's transaction.

    The partition lock is taken only when a partition is missing; creating one also locks
    message_facts until commit, so a caller may run this in a short transaction of its own first.
    """
    require_transaction(connection, "ensure_partitions")
    missing = await connection.fetch(query("facts_missing_partitions"), sorted(set(months)))
    if not missing:
        return

    await connection.execute(query("facts_lock_partitions"), PARTITION_LOCK)
    for row in missing:
        await connection.execute(query("facts_create_partition"), row["month"])


async def store_facts(
    connection: Connection, organization_id: int, facts: Sequence[MessageFact]
) -> StoreResult:
    """Insert the facts not stored yet, inside the caller's transaction.

    Facts already stored (same organization, source key and time), also twice in one
    batch, are counted as duplicates. ``touched_days`` are the UTC days of inserted facts.
    A value PostgreSQL would misread or reject (see :func:`fact_record`) raises
    InvalidMessageFactError (a ValueError) naming the fact's source key and the value,
    before anything of the batch is written.

    A fact names its connector only if the connector still exists when it is stored: one
    removed since the facts were classified leaves them "no connector". The connectors named
    are held (FOR KEY SHARE) until the caller's transaction ends, so a concurrent removal
    waits and then detaches these facts too (see ``organizations.remove_connectors``). Call
    it before ``add_to_rollups`` in the transaction, never after: waiting for a connector
    while holding the rollup lock could deadlock with that removal.
    """
    require_transaction(connection, "store_facts")
    records = [fact_record(organization_id, fact) for fact in facts]
    if not records:
        return StoreResult()

    await ensure_partitions(connection, months_of(facts))
    # Lock the named connectors in id order first, as apply does, so that an ingest and an
    # apply that removes or renames several connectors never wait for each other in a cycle;
    # the insert then keeps only connectors held here and never waits for a row lock itself.
    connector_ids = sorted({fact.connector_id for fact in facts if fact.connector_id is not None})
    held: set[int] = set()
    if connector_ids:
        locked = await connection.fetch(query("facts_lock_connectors"), organization_id,
                                        connector_ids)
        held = {row["id"] for row in locked}

    await connection.execute(query("facts_create_incoming_table"))
    await connection.copy_records_to_table(
        "incoming_message_facts", records=records, columns=COLUMNS
    )
    stored = await _insert_new(connection, organization_id, records, held)
    if stored is None:
        stored = await _merge(connection, len(records))
    await connection.execute(query("facts_drop_incoming_table"))
    return stored


async def _insert_new(
    connection: Connection, organization_id: int, records: list[FactRow], held: set[int]
) -> StoreResult | None:
    """Insert a copied batch of a span of time that holds no stored fact, without looking
    for each one among the stored facts, and count it here; None when it may hold a stored
    fact or a fact twice, or another ingest stored one of its facts meanwhile."""
    earliest, latest = time_span(records)
    if has_repeats(records) or await connection.fetchval(
        query("facts_stored_between"), organization_id, earliest, latest
    ):
        return None
    try:
        async with connection.transaction():  # a savepoint, undone alone if the insert fails
            await connection.execute(query("facts_insert_new"))
    except asyncpg.UniqueViolationError:
        return None
    return _stored(rollup_counts(records, held), len(records))


async def _merge(connection: Connection, copied: int) -> StoreResult:
    """Insert the copied facts not stored yet, counting them by rollup key."""
    rows = await connection.fetch(query("facts_insert_incoming"))
    return _stored([RollupCount(*row) for row in rows], copied)


def _stored(counts: list[RollupCount], copied: int) -> StoreResult:
    """What storing ``copied`` facts changed, from the counts of those that were new."""
    inserted = sum(count.messages for count in counts)
    return StoreResult(
        inserted=inserted,
        duplicates=copied - inserted,
        touched_days={count.day for count in counts},
        counts=counts,
    )
