"""Load message facts in batches: classify, store and refresh rollups, one transaction a batch."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

import asyncpg

from mailflow.domain import MessageFact
from mailflow.rollups.refresh import refresh_rollups
from mailflow.store.connection import Connection
from mailflow.store.facts import StoreResult, ensure_partitions, months_of, store_facts

log = logging.getLogger("mailflow.ingest")

DEFAULT_BATCH_SIZE = 20_000


@dataclass
class LoadResult:
    """What loading a stream of message facts changed, over all its batches."""

    inserted: int = 0
    duplicates: int = 0
    touched_days: set[date] = field(default_factory=set)

    def add(self, batch: StoreResult) -> None:
        self.inserted += batch.inserted
        self.duplicates += batch.duplicates
        self.touched_days |= batch.touched_days


async def load_facts(
    pool: asyncpg.Pool,
    organization_id: int,
    facts: Iterable[MessageFact],
    *,
    classify: Callable[[MessageFact], MessageFact] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[StoreResult], None] | None = None,
) -> LoadResult:
    """Store the facts and refresh the rollups of the days they touch, batch by batch.

    Each batch commits its facts together with its rollups, so rollups equal facts after every
    batch; after an interruption, loading the same input again stores only what is missing.
    ``on_batch`` is told of each batch as soon as it is committed.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")

    result = LoadResult()
    for batch in _batches(facts, batch_size):
        if classify is not None:
            batch = [classify(fact) for fact in batch]
        async with pool.acquire() as connection:
            stored = await load_batch(connection, organization_id, batch)
            # Counted before the connection goes back: a cancellation there loses no count.
            result.add(stored)
            log.debug(
                "stored a batch of message facts",
                extra={"organization_id": organization_id, "inserted": stored.inserted,
                       "duplicates": stored.duplicates, "days": len(stored.touched_days)},
            )
            if on_batch is not None:
                on_batch(stored)
    return result


async def load_batch(
    connection: Connection, organization_id: int, batch: list[MessageFact], *,
    then: Callable[[Connection], Awaitable[None]] | None = None,
) -> StoreResult:
    """Store one batch and refresh its days' rollups in one transaction.

    ``then`` runs last in that transaction, so what it writes (a follow position) commits
    with the facts or not at all.
    """
    # New partitions lock message_facts until commit: create them in a short transaction.
    if batch:
        async with connection.transaction():
            await ensure_partitions(connection, months_of(batch))

    # A day spread over many batches is recounted by each: simple and always exact, at the
    # price of rereading that day's facts once per batch.
    async with connection.transaction():
        stored = await store_facts(connection, organization_id, batch)
        await refresh_rollups(connection, organization_id, stored.touched_days)
        if then is not None:
            await then(connection)
    return stored


def _batches(facts: Iterable[MessageFact], size: int) -> Iterator[list[MessageFact]]:
    iterator = iter(facts)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
