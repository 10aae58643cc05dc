"""Classify stored message facts again, with the organization's connectors as they are now.

Connector rules apply as mail is ingested; after rules change, ``reclassify`` gives the facts
of a range of UTC days the connector the current rules choose, and moves their counts between
the connectors' daily rollups. It reads the facts in (time, source key) order, a batch at a
time, and commits each batch with its rollups, so a range of any length costs memory and locks
of one batch, and reports equal the facts after every commit. Running it again changes nothing.

A batch holds the organization row, as ``org apply`` and the API's mutations do, so connectors
cannot change in the middle of one; they may between batches, and later batches then follow
the rules as they are then.

Classification reads what a fact stores: peer host and IP, sender and recipient domains, and
the routes the source named. Facts stored before routes were kept have none, so only the
other rules can match them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest.classify import load_classifier
from mailflow.rollups.refresh import RollupMove, move_in_rollups
from mailflow.store.connection import Connection
from mailflow.store.isolation import owner_transaction
from mailflow.store.sql import query

log = logging.getLogger("mailflow.ingest")

DEFAULT_BATCH_SIZE = 10_000
"""Message facts read and classified per transaction."""

Position = tuple[datetime, str]  # (occurred_at, source_key) of the last fact read


@dataclass
class ReclassifyResult:
    """What classifying a range again read and changed."""

    facts: int = 0
    moved: int = 0
    batches: int = 0
    days_changed: set[date] = field(default_factory=set)


async def reclassify(
    pool: asyncpg.Pool, organization_id: int, first: date, last: date, *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[ReclassifyResult], None] | None = None,
) -> ReclassifyResult:
    """Give the facts of the UTC days ``first`` to ``last`` (both included) the connectors the
    current rules choose, and their rollups the counts that follow; one transaction a batch."""
    if last < first:
        raise ValueError(f"the last day {last} is before the first day {first}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    # The calendar's last day ends at its last instant, the first begins at its first.
    end = (datetime.combine(last + timedelta(days=1), time(), UTC) if last < date.max
           else datetime.max.replace(tzinfo=UTC))
    after: Position = (datetime.combine(first, time(), UTC) - timedelta(microseconds=1)
                       if first > date.min else datetime.min.replace(tzinfo=UTC), "")
    result = ReclassifyResult()
    while True:
        async with pool.acquire() as connection:
            read = await _reclassify_batch(connection, organization_id, after, end,
                                           batch_size, result)
        if on_batch is not None:
            on_batch(result)
        if read is None:
            return result
        after = read


async def _reclassify_batch(
    connection: Connection, organization_id: int, after: Position, end: datetime,
    size: int, result: ReclassifyResult,
) -> Position | None:
    """Classify the next batch after ``after``; where it ended, or None after the last."""
    async with owner_transaction(connection, organization_id):
        await connection.execute(query("organization_lock"), organization_id)
        classifier = await load_classifier(connection, organization_id)
        rows = await connection.fetch(
            query("facts_page_for_classification"), organization_id, *after, end, size)
        changes = [
            (row, connector_id) for row in rows
            if (connector_id := classifier.connector_id(_fact(row))) != row["connector_id"]
        ]
        moves = await _move(connection, organization_id, changes) if changes else []
        await move_in_rollups(connection, organization_id, moves)

    result.batches += 1
    result.facts += len(rows)
    result.moved += sum(move.messages for move in moves)
    result.days_changed.update(move.day for move in moves)
    log.debug("classified a batch of message facts again",
              extra={"organization_id": organization_id, "facts": len(rows),
                     "moved": sum(move.messages for move in moves)})
    if len(rows) < size:
        return None
    return rows[-1]["occurred_at"], rows[-1]["source_key"]


async def _move(
    connection: Connection, organization_id: int,
    changes: list[tuple[asyncpg.Record, int | None]],
) -> list[RollupMove]:
    times = [row["occurred_at"] for row, _ in changes]
    rows = await connection.fetch(
        query("facts_move_to_connectors"), organization_id,
        [row["source_key"] for row, _ in changes], times,
        [row["connector_id"] for row, _ in changes], [connector_id for _, connector_id in changes],
        min(times), max(times),
    )
    return [RollupMove(**row) for row in rows]


def _fact(row: asyncpg.Record) -> MessageFact:
    """A stored fact as classification sees it."""
    return MessageFact(
        source_key=row["source_key"],
        occurred_at=row["occurred_at"],
        direction=Direction(row["direction"]),
        tls_version=TlsVersion(row["tls_version"]),
        tls_cipher=row["tls_cipher"],
        peer_host=row["peer_host"],
        peer_ip=row["peer_ip"],
        sender_domain=row["sender_domain"],
        recipient_domains=tuple(row["recipient_domains"]),
        recipients=row["recipients"],
        size_bytes=row["size_bytes"],
        status=DeliveryStatus(row["status"]),
        connector_id=row["connector_id"],
        routes=tuple(row["routes"] or ()),
    )
