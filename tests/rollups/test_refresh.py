"""Refreshing daily rollups: exact counts, only the days asked for, one refresh at a time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from mailflow.domain import Direction, MessageFact, TlsVersion
from mailflow.ingest.pipeline import load_facts
from mailflow.rollups import RollupIsolationError, rebuild_rollups, refresh_rollups
from mailflow.store.facts import NotInTransactionError, store_facts
from mailflow.store.sql import query

MakeFact = Callable[..., MessageFact]
NewOrganization = Callable[[], Awaitable[int]]
NewConnector = Callable[[int, Direction], Awaitable[int]]
RollupRows = Callable[[], Awaitable[set[tuple[object, ...]]]]


async def store_and_refresh(
    pool: asyncpg.Pool, organization_id: int, facts: Sequence[MessageFact]
) -> int:
    async with pool.acquire() as connection, connection.transaction():
        stored = await store_facts(connection, organization_id, facts)
        return await refresh_rollups(connection, organization_id, stored.touched_days)


async def refresh(pool: asyncpg.Pool, organization_id: int, days: Iterable[date]) -> int:
    async with pool.acquire() as connection, connection.transaction():
        return await refresh_rollups(connection, organization_id, days)


async def rollups_of(pool: asyncpg.Pool, organization_id: int) -> list[tuple[object, ...]]:
    rows = await pool.fetch(
        "SELECT day, direction, connector_id, tls_version, messages, recipients, bytes "
        "FROM daily_rollups WHERE organization_id = $1 "
        "ORDER BY day, direction, connector_id NULLS FIRST, tls_version",
        organization_id,
    )
    return [tuple(row.values()) for row in rows]


async def test_refresh_counts_messages_recipients_and_bytes_per_day_direction_connector_and_tls(
    pool: asyncpg.Pool,
    new_organization: NewOrganization,
    new_connector: NewConnector,
    make_fact: MakeFact,
) -> None:
    organization_id = await new_organization()
    partner = await new_connector(organization_id, Direction.INBOUND)
    inbound, outbound = Direction.INBOUND, Direction.OUTBOUND
    facts = [
        make_fact("a", "2026-03-01T00:00:00", connector_id=partner, recipients=2, size_bytes=100),
        make_fact("b", "2026-03-01T23:59:59", connector_id=partner, recipients=3, size_bytes=50),
        make_fact("c", "2026-03-01T10:00:00", tls_version=TlsVersion.NONE, size_bytes=7),
        make_fact("d", "2026-03-01T10:00:00", direction=outbound, size_bytes=9),
        make_fact("e", "2026-03-02T00:00:00", connector_id=partner, size_bytes=1),
    ]

    written = await store_and_refresh(pool, organization_id, facts)

    assert written == 4
    assert await rollups_of(pool, organization_id) == [
        (date(2026, 3, 1), inbound.value, None, "NONE", 1, 1, 7),
        (date(2026, 3, 1), inbound.value, partner, "TLS1_2", 2, 5, 150),
        (date(2026, 3, 1), outbound.value, None, "TLS1_2", 1, 1, 9),
        (date(2026, 3, 2), inbound.value, partner, "TLS1_2", 1, 1, 1),
    ]


async def test_refresh_recomputes_the_given_days_and_leaves_other_days_alone(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()
    await store_and_refresh(pool, organization_id, [
        make_fact("a", "2026-03-01T12:00:00"),
        make_fact("b", "2026-03-02T12:00:00"),
    ])
    await pool.execute("UPDATE daily_rollups SET messages = 99")

    await refresh(pool, organization_id, [date(2026, 3, 2)])

    messages = await pool.fetch("SELECT day, messages FROM daily_rollups ORDER BY day")
    assert [tuple(row.values()) for row in messages] == [
        (date(2026, 3, 1), 99),
        (date(2026, 3, 2), 1),
    ]


async def test_refreshing_a_day_without_facts_removes_its_rollups(
    pool: asyncpg.Pool, new_organization: NewOrganization
) -> None:
    organization_id = await new_organization()
    await pool.execute(
        "INSERT INTO daily_rollups VALUES ($1, '2026-03-01', 'INBOUND', NULL, 'NONE', 5, 5, 5)",
        organization_id,
    )

    written = await refresh(pool, organization_id, [date(2026, 3, 1)])

    assert written == 0
    assert await rollups_of(pool, organization_id) == []


async def test_refresh_leaves_the_rollups_of_other_organizations_alone(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    ours, theirs = await new_organization(), await new_organization()
    day_facts = [make_fact("a", "2026-03-01T12:00:00")]
    await store_and_refresh(pool, ours, day_facts)
    await store_and_refresh(pool, theirs, day_facts)
    await pool.execute("UPDATE daily_rollups SET messages = 99 WHERE organization_id = $1", theirs)

    await refresh(pool, ours, [date(2026, 3, 1)])

    assert [row[4] for row in await rollups_of(pool, ours)] == [1]
    assert [row[4] for row in await rollups_of(pool, theirs)] == [99]


async def test_refresh_with_no_days_writes_nothing(
    pool: asyncpg.Pool, new_organization: NewOrganization
) -> None:
    organization_id = await new_organization()

    assert await refresh(pool, organization_id, []) == 0


async def test_refresh_rejects_datetimes_as_days(
    pool: asyncpg.Pool, new_organization: NewOrganization
) -> None:
    organization_id = await new_organization()

    with pytest.raises(TypeError, match="not datetimes"):
        await refresh(pool, organization_id, [datetime(2026, 3, 1, tzinfo=UTC)])


async def test_refresh_outside_a_transaction_is_refused(
    pool: asyncpg.Pool, new_organization: NewOrganization
) -> None:
    organization_id = await new_organization()

    async with pool.acquire() as connection:
        with pytest.raises(NotInTransactionError, match="refresh_rollups"):
            await refresh_rollups(connection, organization_id, [date(2026, 3, 1)])
        with pytest.raises(NotInTransactionError, match="rebuild_rollups"):
            await rebuild_rollups(connection, organization_id)


async def test_refresh_in_a_repeatable_read_transaction_is_refused(
    pool: asyncpg.Pool, new_organization: NewOrganization
) -> None:
    organization_id = await new_organization()

    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
        with pytest.raises(RollupIsolationError, match="READ COMMITTED"):
            await refresh_rollups(connection, organization_id, [date(2026, 3, 1)])


async def test_rebuild_writes_what_refreshing_every_day_writes(
    pool: asyncpg.Pool,
    new_organization: NewOrganization,
    make_fact: MakeFact,
    stored_rollups: RollupRows,
    expected_rollups: RollupRows,
) -> None:
    organization_id = await new_organization()
    start = datetime(2026, 1, 30, tzinfo=UTC)
    tls_versions = list(TlsVersion)
    facts = [
        make_fact(f"key-{n}", start + timedelta(hours=5 * n), tls_version=tls_versions[n % 6])
        for n in range(60)
    ]
    await store_and_refresh(pool, organization_id, facts)
    refreshed = await stored_rollups()
    await pool.execute("UPDATE daily_rollups SET messages = 99")

    async with pool.acquire() as connection, connection.transaction():
        written = await rebuild_rollups(connection, organization_id)

    assert written == len(refreshed)
    assert await stored_rollups() == refreshed == await expected_rollups()


async def test_refresh_reads_only_the_touched_days_partition_through_the_time_index(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    """The facts of a day are found by a range on occurred_at: the partitions of other months
    are pruned at run time (never executed) and the touched one is read by its primary key,
    which leads with (organization_id, occurred_at), so the cost follows the touched days."""
    organization_id = await new_organization()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    every_20_minutes = (start + timedelta(minutes=20 * n) for n in range(3 * 31 * 72))
    await load_facts(pool, organization_id, (
        make_fact(f"key-{time.isoformat()}", time) for time in every_20_minutes
    ))
    await pool.execute("ANALYZE message_facts")

    plan = await explain_refresh(pool, organization_id, [date(2026, 2, 14)])

    executed = [node for node in plan_nodes(plan) if node.get("Actual Loops", 0) > 0]
    assert {
        node["Relation Name"] for node in executed
        if node.get("Relation Name", "").startswith("message_facts")
    } == {"message_facts_202602"}
    assert not [node for node in executed if node["Node Type"] == "Seq Scan"]
    assert {node["Index Name"] for node in executed if "Index Name" in node} == {
        "message_facts_202602_pkey"
    }


async def explain_refresh(
    pool: asyncpg.Pool, organization_id: int, days: list[date]
) -> dict[str, Any]:
    """The executed plan of the rollup insert for ``days``, with nothing left changed."""
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute(query("rollups_delete_days"), organization_id, days)
            explained = await connection.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + query("rollups_insert_days"),
                organization_id, days,
            )
        finally:
            await transaction.rollback()
    plan: dict[str, Any] = json.loads(explained)[0]["Plan"]
    return plan


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


async def test_concurrent_refreshes_of_one_organization_wait_for_each_other_and_count_every_fact(
    pool: asyncpg.Pool,
    new_organization: NewOrganization,
    make_fact: MakeFact,
    stored_rollups: RollupRows,
    expected_rollups: RollupRows,
) -> None:
    organization_id = await new_organization()
    first, second = await pool.acquire(), await pool.acquire()
    try:
        first_transaction = first.transaction()
        await first_transaction.start()
        stored = await store_facts(first, organization_id, [make_fact("a", "2026-03-01T01:00")])
        await refresh_rollups(first, organization_id, stored.touched_days)

        async def second_ingest() -> None:
            async with second.transaction():
                stored = await store_facts(
                    second, organization_id, [make_fact("b", "2026-03-01T02:00")]
                )
                await refresh_rollups(second, organization_id, stored.touched_days)

        waiting = asyncio.create_task(second_ingest())
        await wait_until_blocked(pool, second.get_server_pid())
        assert not waiting.done()
        await first_transaction.commit()
        await waiting
    finally:
        await pool.release(first)
        await pool.release(second)

    assert [row[4] for row in await rollups_of(pool, organization_id)] == [2]
    assert await stored_rollups() == await expected_rollups()


async def wait_until_blocked(pool: asyncpg.Pool, pid: int) -> None:
    for _ in range(200):
        if await pool.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock")
