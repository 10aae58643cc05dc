"""Load message facts in batches: classify, store and add to rollups, one transaction a batch."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

import asyncpg

from mailflow.domain import MessageFact
from mailflow.rollups.refresh import add_to_rollups
from mailflow.store.connection import Connection
from mailflow.store.facts import StoreResult, ensure_partitions, months_of, store_facts
from mailflow.store.isolation import organization_transaction

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
    read_ahead: bool = False,
) -> LoadResult:
    """Store the facts and add them to the rollups of the days they touch, batch by batch.

    Each batch commits its facts together with its rollups, so rollups equal facts after every
    batch; after an interruption, loading the same input again stores only what is missing.
    ``on_batch`` is told of each batch as soon as it is committed. With ``read_ahead`` the
    next batch is read and classified in a thread while PostgreSQL stores the one before, so
    parsing and storing overlap; two batches are then held instead of one.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")

    result = LoadResult()
    batches = _batches(facts, batch_size, classify)
    ahead = _ReadAhead(batches) if read_ahead else None
    upcoming = ahead.next() if ahead else None
    while (batch := await upcoming if upcoming else next(batches, None)) is not None:
        upcoming = ahead.next() if ahead else None
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
    """Store one batch and add its new facts to their rollups in one transaction.

    The transaction runs as the service role on the organization's rows alone, from the CLI
    too. ``then`` runs last in it, so what it writes (a follow position) commits with the
    facts or not at all.
    """
    # New partitions lock message_facts until commit: create them in a short transaction.
    if batch:
        async with organization_transaction(connection, organization_id):
            await ensure_partitions(connection, months_of(batch))

    async with organization_transaction(connection, organization_id):
        stored = await store_facts(connection, organization_id, batch)
        await add_to_rollups(connection, organization_id, stored.counts)
        if then is not None:
            await then(connection)
    return stored


def _batches(
    facts: Iterable[MessageFact], size: int, classify: Callable[[MessageFact], MessageFact] | None
) -> Iterator[list[MessageFact]]:
    iterator = iter(facts)
    while batch := list(itertools.islice(iterator, size)):
        yield batch if classify is None else [classify(fact) for fact in batch]


class _ReadAhead:
    """Makes the next batch in a thread while the event loop waits for PostgreSQL.

    One thread at a time reads the batches, never two. The thread is a daemon, so that an
    interrupted ingest does not wait for a source that blocks (a pipe, standard input).
    """

    def __init__(self, batches: Iterator[list[MessageFact]]) -> None:
        self._batches = batches
        self._loop = asyncio.get_running_loop()

    def next(self) -> asyncio.Future[list[MessageFact] | None]:
        """The next batch, None after the last; an error of the source is raised by it."""
        future: asyncio.Future[list[MessageFact] | None] = self._loop.create_future()
        threading.Thread(target=self._make, args=(future,), daemon=True,
                         name="mailflow-read-ahead").start()
        return future

    def _make(self, future: asyncio.Future[list[MessageFact] | None]) -> None:
        try:
            batch = next(self._batches, None)
        except BaseException as error:  # handed to the awaiting task, raised there
            self._settle(future, error)
        else:
            self._settle(future, batch)

    def _settle(
        self, future: asyncio.Future[list[MessageFact] | None],
        outcome: list[MessageFact] | BaseException | None,
    ) -> None:
        def settle() -> None:
            if future.done():  # the load was cancelled meanwhile
                return
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        with contextlib.suppress(RuntimeError):  # a closed event loop waits for no batch
            self._loop.call_soon_threadsafe(settle)
