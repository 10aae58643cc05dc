"""Rollup changes are notified when they commit, per organization, and reach its subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest
from tests.rollups.conftest import MakeFact, NewConnector, NewOrganization

from mailflow.domain import Direction
from mailflow.ingest.pipeline import load_facts
from mailflow.ingest.reclassify import reclassify
from mailflow.rollups.changes import CHANNEL, RollupChange, RollupChanges, parse_change
from mailflow.rollups.refresh import rebuild_rollups

NOTIFY_SECONDS = 5.0


@pytest.fixture
async def heard(database_url: str) -> AsyncIterator[asyncio.Queue[RollupChange]]:
    """The changes notified on the test's database, as a listener hears them."""
    queue: asyncio.Queue[RollupChange] = asyncio.Queue()
    connection = await asyncpg.connect(database_url)
    await connection.add_listener(
        CHANNEL, lambda _connection, _pid, _channel, payload: queue.put_nowait(
            parse_change(str(payload))))
    try:
        yield queue
    finally:
        await connection.close()


async def next_change(heard: asyncio.Queue[RollupChange]) -> RollupChange:
    async with asyncio.timeout(NOTIFY_SECONDS):
        return await heard.get()


async def test_an_ingest_notifies_its_organization_and_the_days_it_touched_once(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact,
    heard: asyncio.Queue[RollupChange],
) -> None:
    organization_id = await new_organization()
    facts = [make_fact("a", "2026-03-01T10:00:00"), make_fact("b", "2026-03-03T23:59:59"),
             make_fact("c", "2026-03-03T00:00:00")]

    await load_facts(pool, organization_id, facts)

    assert await next_change(heard) == RollupChange(
        organization_id, frozenset({date(2026, 3, 1), date(2026, 3, 3)}))
    await asyncio.sleep(0.2)
    assert heard.empty()


async def test_classifying_stored_mail_again_notifies_the_days_whose_counts_moved(
    pool: asyncpg.Pool, new_organization: NewOrganization, new_connector: NewConnector,
    make_fact: MakeFact, heard: asyncio.Queue[RollupChange],
) -> None:
    organization_id = await new_organization()
    connector_id = await new_connector(organization_id, Direction.INBOUND)
    await load_facts(pool, organization_id, [make_fact("a", "2026-03-04T10:00:00"),
                                             make_fact("b", "2026-03-06T10:00:00")])
    await next_change(heard)
    await pool.execute("UPDATE connectors SET sender_domains = '{example.net}' WHERE id = $1",
                       connector_id)

    await reclassify(pool, organization_id, date(2026, 3, 1), date(2026, 3, 5))

    assert await next_change(heard) == RollupChange(organization_id, frozenset({date(2026, 3, 4)}))


async def test_a_change_rolled_back_is_never_notified(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact,
    heard: asyncio.Queue[RollupChange],
) -> None:
    undone, marker = await new_organization(), await new_organization()

    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(
            "INSERT INTO daily_rollups VALUES ($1, '2026-03-01', 'INBOUND', NULL, 'NONE', "
            "1, 1, 1)", undone)
        await transaction.rollback()
    await load_facts(pool, marker, [make_fact("m", "2026-03-02T08:00:00")])

    assert await next_change(heard) == RollupChange(marker, frozenset({date(2026, 3, 2)}))


async def test_a_change_of_more_days_than_a_notification_holds_says_any_day(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact,
    heard: asyncio.Queue[RollupChange],
) -> None:
    organization_id = await new_organization()
    await pool.execute(
        "INSERT INTO daily_rollups SELECT $1, day, 'INBOUND', NULL, 'NONE', 1, 1, 1 "
        "FROM generate_series(date '2025-01-01', date '2026-02-28', interval '1 day') AS day",
        organization_id)
    assert (await next_change(heard)).days is None

    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT set_config('mailflow.organization_id', $1, true)",
                                 str(organization_id))
        await rebuild_rollups(connection, organization_id)

    assert await next_change(heard) == RollupChange(organization_id, None)


async def test_each_change_reaches_the_subscribers_of_its_organization_alone() -> None:
    changes = RollupChanges("postgresql://unused@/unused")
    with changes.subscribe(1) as first, changes.subscribe(1) as second, \
            changes.subscribe(2) as other:
        changes.publish(RollupChange(1, frozenset({date(2026, 3, 1)})))
        changes.publish(RollupChange(1, frozenset({date(2026, 3, 2)})))
        changes.publish(RollupChange(3, None))

        days = [await first.changed_days(), await second.changed_days()]
        assert days == [{date(2026, 3, 1), date(2026, 3, 2)}] * 2
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await other.changed_days()
        assert changes.subscribers() == 3
    assert changes.subscribers() == 0


@pytest.mark.parametrize("payload", [
    "not json", '{"days": []}', '{"organization_id": "7", "days": []}',
    '{"organization_id": 7, "days": ["2026-02-30"]}', '{"organization_id": true, "days": null}',
])
def test_a_payload_that_is_no_rollup_change_is_refused_by_name(payload: str) -> None:
    with pytest.raises(ValueError, match="not a rollup change") as refused:
        parse_change(payload)
    assert payload[:20] in str(refused.value)
