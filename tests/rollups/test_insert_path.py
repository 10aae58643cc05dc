"""A batch of a span of time that holds no stored fact yet is inserted without a lookup per fact.

The store takes that path only when no fact can be a duplicate, else it merges; these tests
check that both paths store and count the same, whatever the batch holds, and that a
concurrent ingest of the same facts still stores each once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from mailflow.domain import Direction, MessageFact, TlsVersion
from mailflow.ingest.pipeline import load_batch
from mailflow.store.facts import StoreResult, ensure_partitions, months_of, store_facts

MakeFact = Callable[..., MessageFact]
NewOrganization = Callable[[], Awaitable[int]]
NewConnector = Callable[[int, Direction], Awaitable[int]]
RollupRows = Callable[[], Awaitable[set[tuple[object, ...]]]]

STORED = """
SELECT source_key, occurred_at, direction, connector_id, tls_version, tls_cipher, peer_host,
       host(peer_ip), sender_domain, recipient_domains, recipients, size_bytes, status, routes
FROM message_facts WHERE organization_id = $1 ORDER BY occurred_at, source_key
"""


async def store(
    pool: asyncpg.Pool, organization_id: int, facts: Sequence[MessageFact]
) -> StoreResult:
    async with pool.acquire() as connection:
        return await load_batch(connection, organization_id, list(facts))


def as_row(fact: MessageFact) -> tuple[object, ...]:
    return (fact.source_key, fact.occurred_at, fact.direction.value, fact.connector_id,
            fact.tls_version.value, fact.tls_cipher, fact.peer_host, fact.peer_ip,
            fact.sender_domain, list(fact.recipient_domains), fact.recipients, fact.size_bytes,
            fact.status.value, list(fact.routes) if fact.routes else None)


async def test_text_with_quotes_tabs_and_backslashes_is_stored_as_it_was_given(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()
    awkward = dataclasses.replace(
        make_fact("tab\there, newline\nthere, back\\slash, \\N, quote\"", "2026-03-01T12:00:00"),
        tls_cipher="\\N", peer_host="odd\rhost", sender_domain="a\\b",
        recipient_domains=('quo"ted', "back\\slash", "com,ma", "{brace}", "NULL", ""),
        routes=("dnslookup", 'with "quotes" and \\', "tab\there"),
    )
    plain = dataclasses.replace(make_fact("plain", "2026-03-01T12:00:01"), tls_cipher=None,
                                peer_host=None, peer_ip=None, sender_domain=None,
                                recipient_domains=())

    result = await store(pool, organization_id, [awkward, plain])

    assert (result.inserted, result.duplicates) == (2, 0)
    rows = [tuple(row.values()) for row in await pool.fetch(STORED, organization_id)]
    assert rows == [as_row(awkward), as_row(plain)]


async def test_the_insert_and_the_merge_store_and_count_the_same(
    pool: asyncpg.Pool, new_organization: NewOrganization, new_connector: NewConnector,
    make_fact: MakeFact, stored_rollups: RollupRows, expected_rollups: RollupRows,
) -> None:
    """Load a day into an empty span (inserted), then a span overlapping it (merged): facts and
    rollups equal a count over the facts, and repeats are duplicates on either path."""
    organization_id = await new_organization()
    connector_id = await new_connector(organization_id, Direction.INBOUND)
    start = datetime(2026, 3, 1, 22, tzinfo=UTC)
    day = [
        make_fact(f"k{n}", start + timedelta(minutes=7 * n),
                  tls_version=(TlsVersion.TLS1_2, TlsVersion.TLS1_3, TlsVersion.NONE)[n % 3],
                  connector_id=connector_id if n % 2 else None, recipients=1 + n % 4,
                  size_bytes=1000 * n)
        for n in range(60)  # across midnight UTC: two days
    ]

    copied = await store(pool, organization_id, [*day[:40], day[5], day[5]])
    merged = await store(pool, organization_id, day[30:])

    assert (copied.inserted, copied.duplicates) == (40, 2)
    assert (merged.inserted, merged.duplicates) == (20, 10)
    rows = [tuple(row.values()) for row in await pool.fetch(STORED, organization_id)]
    assert rows == sorted((as_row(fact) for fact in day), key=lambda row: (row[1], row[0]))
    assert await stored_rollups() == await expected_rollups()
    assert sum(count.messages for count in copied.counts) == 40
    assert copied.touched_days == {start.date(), (start + timedelta(days=1)).date()}


async def test_a_connector_removed_before_the_insert_leaves_its_facts_no_connector(
    pool: asyncpg.Pool, new_organization: NewOrganization, new_connector: NewConnector,
    make_fact: MakeFact, stored_rollups: RollupRows, expected_rollups: RollupRows,
) -> None:
    organization_id = await new_organization()
    kept = await new_connector(organization_id, Direction.INBOUND)
    removed = await new_connector(organization_id, Direction.INBOUND)
    await pool.execute("DELETE FROM connectors WHERE organization_id = $1 AND id = $2",
                       organization_id, removed)

    await store(pool, organization_id, [
        make_fact("a", "2026-03-01T10:00:00", connector_id=kept),
        make_fact("b", "2026-03-01T10:00:01", connector_id=removed),
    ])

    stored = await pool.fetch(
        "SELECT source_key, connector_id FROM message_facts WHERE organization_id = $1 "
        "ORDER BY source_key", organization_id)
    assert [tuple(row.values()) for row in stored] == [("a", kept), ("b", None)]
    assert await stored_rollups() == await expected_rollups()


async def test_facts_another_ingest_commits_during_the_insert_are_duplicates(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    """Two ingests of the same facts into an empty span: the second insert waits for the first
    one's keys, fails on them when it commits, and merges instead, finding them stored."""
    organization_id = await new_organization()
    facts = [make_fact(f"k{n}", f"2026-03-02T10:00:{n:02}") for n in range(20)]
    async with pool.acquire() as setup, setup.transaction():
        await ensure_partitions(setup, months_of(facts))

    async with pool.acquire() as first:
        transaction = first.transaction()
        await transaction.start()
        first_result = await store_facts(first, organization_id, facts)
        again = [*facts[5:], make_fact("new", "2026-03-02T10:00:30")]
        later = asyncio.create_task(store(pool, organization_id, again))
        await asyncio.sleep(0.5)  # the second ingest now waits on the first one's keys
        assert not later.done()
        await transaction.commit()
        second_result = await asyncio.wait_for(later, 10)

    assert (first_result.inserted, first_result.duplicates) == (20, 0)
    assert (second_result.inserted, second_result.duplicates) == (1, 15)
    assert await pool.fetchval(
        "SELECT count(*) FROM message_facts WHERE organization_id = $1", organization_id) == 21


@pytest.mark.parametrize("repeat", [False, True])
async def test_a_batch_of_one_instant_is_inserted_or_found_stored(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact, repeat: bool,
) -> None:
    """A batch whose facts share one instant: the span is that instant, both ends included."""
    organization_id = await new_organization()
    facts = [make_fact(f"k{n}", "2026-03-03T00:00:00") for n in range(3)]
    if repeat:
        await store(pool, organization_id, facts[:1])

    result = await store(pool, organization_id, facts)

    assert (result.inserted, result.duplicates) == ((2, 1) if repeat else (3, 0))
