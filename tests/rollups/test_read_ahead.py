"""Loading with read-ahead: the next batch is read in a thread while the current one is stored."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from tests.rollups.conftest import MakeFact, NewOrganization, RollupRows

from mailflow.domain import MessageFact
from mailflow.ingest.pipeline import load_facts


def facts(make_fact: MakeFact, count: int) -> list[MessageFact]:
    start = datetime(2026, 1, 30, 20, tzinfo=UTC)
    return [make_fact(f"key-{n}", start + timedelta(hours=5 * n), recipients=n % 3 + 1)
            for n in range(count)]


async def test_read_ahead_stores_every_fact_with_rollups_equal_to_facts(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact,
    stored_rollups: RollupRows, expected_rollups: RollupRows,
) -> None:
    organization_id = await new_organization()
    read = 0
    readers: set[str] = set()

    def stream() -> Iterator[MessageFact]:
        nonlocal read
        for fact in facts(make_fact, 23):
            read += 1
            readers.add(threading.current_thread().name)
            yield fact

    read_when_stored: list[int] = []
    result = await load_facts(pool, organization_id, stream(), batch_size=5, read_ahead=True,
                              on_batch=lambda _: read_when_stored.append(read))

    assert result.inserted == 23
    assert await stored_rollups() == await expected_rollups()
    assert readers == {"mailflow-read-ahead"}
    # At most the stored batches and the one being read ahead: memory stays bounded.
    assert all(read <= 5 * (number + 2) for number, read in enumerate(read_when_stored))
    assert len(read_when_stored) == 5


async def test_an_error_of_the_source_reaches_the_caller_and_keeps_the_stored_batches(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact,
) -> None:
    organization_id = await new_organization()

    def stream() -> Iterator[MessageFact]:
        yield from facts(make_fact, 7)
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="the disk went away"):
        await load_facts(pool, organization_id, stream(), batch_size=5, read_ahead=True)

    assert await pool.fetchval("SELECT count(*) FROM message_facts") == 5
