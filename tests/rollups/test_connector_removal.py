"""Removing connectors while facts naming them are stored: no fact or rollup names a missing one."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from mailflow.domain import MessageFact
from mailflow.ingest.pipeline import load_facts
from mailflow.rollups.refresh import refresh_rollups
from mailflow.store.facts import ensure_partitions, months_of, store_facts
from mailflow.store.organizations import (
    OrganizationConfig,
    apply_organization,
    parse_organization,
    remove_connectors,
)

MakeFact = Callable[..., MessageFact]
NewOrganization = Callable[[], Awaitable[int]]
RollupRows = Callable[[], Awaitable[set[tuple[object, ...]]]]
Result = TypeVar("Result")

# Facts and rollup rows naming a connector that does not exist: there must never be any.
ORPHANS = """
SELECT
    (
        SELECT count(*)
        FROM message_facts AS facts
        WHERE facts.connector_id IS NOT NULL
            AND NOT EXISTS (
                SELECT FROM connectors
                WHERE connectors.organization_id = facts.organization_id
                    AND connectors.id = facts.connector_id
            )
    ) + (
        SELECT count(*)
        FROM daily_rollups AS rollups
        WHERE rollups.connector_id IS NOT NULL
            AND NOT EXISTS (
                SELECT FROM connectors
                WHERE connectors.organization_id = rollups.organization_id
                    AND connectors.id = rollups.connector_id
            )
    )
"""


def organization(*names: str) -> OrganizationConfig:
    """The organization "race" with an inbound partner connector of each name."""
    lines = ["organization: race", "connectors:"]
    lines += [
        f"  - {{name: {name}, direction: inbound, kind: partner,"
        f" sender_domains: [{name.lower()}.example]}}"
        for name in names
    ]
    return parse_organization("\n".join(lines) + "\n")


async def apply(pool: asyncpg.Pool, config: OrganizationConfig) -> dict[str, int]:
    """Apply ``config``; return the organization's connector ids by name."""
    async with pool.acquire() as connection:
        await apply_organization(connection, config)
    return await connector_ids(pool)


async def connector_ids(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT name, id FROM connectors")
    return {row["name"]: row["id"] for row in rows}


async def connectors_of_facts(pool: asyncpg.Pool) -> dict[str, int | None]:
    rows = await pool.fetch("SELECT source_key, connector_id FROM message_facts")
    return {row["source_key"]: row["connector_id"] for row in rows}


async def orphans(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(ORPHANS)
    return count


async def wait_until_blocked(pool: asyncpg.Pool, pid: int | None = None) -> int:
    """Wait until backend ``pid`` (or any other backend of this database) waits for a lock;
    return its pid."""
    for _ in range(500):
        waiting: int | None = await pool.fetchval(
            """
            SELECT pid FROM pg_stat_activity
            WHERE datname = current_database()
                AND wait_event_type = 'Lock'
                AND ($1::integer IS NULL OR pid = $1)
            LIMIT 1
            """,
            pid,
        )
        if waiting is not None:
            return waiting
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid or '(any)'} never waited for a lock")


@asynccontextmanager
async def running(coroutine: Coroutine[Any, Any, Result]) -> AsyncIterator[asyncio.Task[Result]]:
    """Run ``coroutine`` as a task; cancel it if the block fails before awaiting it."""
    task = asyncio.create_task(coroutine)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_removal_waits_for_an_ingest_storing_facts_of_the_connector_then_detaches_them(
    pool: asyncpg.Pool,
    make_fact: MakeFact,
    stored_rollups: RollupRows,
    expected_rollups: RollupRows,
) -> None:
    ids = await apply(pool, organization("Gone", "Kept"))
    ingest, remover = await pool.acquire(), await pool.acquire()
    try:
        # The ingest classified its facts before the removal and stores them as load_facts does:
        # the month's partition in a short transaction first, then facts and rollups in one
        # transaction, held open here.
        facts = [
            make_fact("gone", "2026-03-01T01:00", connector_id=ids["Gone"]),
            make_fact("kept", "2026-03-01T02:00", connector_id=ids["Kept"]),
            make_fact("none", "2026-03-02T02:00"),
        ]
        async with ingest.transaction():
            await ensure_partitions(ingest, months_of(facts))
        transaction = ingest.transaction()
        await transaction.start()
        stored = await store_facts(ingest, await organization_id(pool), facts)
        await refresh_rollups(ingest, await organization_id(pool), stored.touched_days)

        async with running(apply_organization(remover, organization("Kept"))) as removal:
            # The removal waits for the connector row the ingest holds, not for the rollups.
            await wait_until_blocked(pool, remover.get_server_pid())
            waiting_in = await pool.fetchval(
                "SELECT query FROM pg_stat_activity WHERE pid = $1", remover.get_server_pid())
            assert "FOR UPDATE" in waiting_in
            assert not removal.done()
            await transaction.commit()
            result = await removal
    finally:
        await pool.release(ingest)
        await pool.release(remover)

    assert result.removed == ["Gone"]
    assert await connectors_of_facts(pool) == {"gone": None, "kept": ids["Kept"], "none": None}
    assert await orphans(pool) == 0
    assert await stored_rollups() == await expected_rollups()


async def test_an_ingest_waits_for_a_removal_in_progress_then_stores_no_connector(
    pool: asyncpg.Pool,
    make_fact: MakeFact,
    stored_rollups: RollupRows,
    expected_rollups: RollupRows,
) -> None:
    ids = await apply(pool, organization("Gone", "Kept"))
    organization_of_race = await organization_id(pool)
    # Facts stored before: the partition exists, and the removal has facts to detach.
    await load_facts(pool, organization_of_race, [
        make_fact("before", "2026-03-01T00:30", connector_id=ids["Gone"]),
    ])
    stale = [  # classified with the connectors as they were before the apply below
        make_fact("gone", "2026-03-01T01:00", connector_id=ids["Gone"]),
        make_fact("kept", "2026-03-01T02:00", connector_id=ids["Kept"]),
    ]
    remover = await pool.acquire()
    try:
        # The apply removes "Gone" and renames "Kept" to "KEPT" (both lock their rows); its
        # transaction is held open here, after it refreshed the rollups.
        transaction = remover.transaction()
        await transaction.start()
        result = await apply_organization(remover, organization("KEPT"))

        async with running(load_facts(pool, organization_of_race, stale)) as ingest:
            await wait_until_blocked(pool)
            assert not ingest.done()
            await transaction.commit()
            loaded = await ingest
    finally:
        await pool.release(remover)

    assert (result.removed, result.updated) == (["Gone"], ["KEPT"])
    assert loaded.inserted == 2
    assert await connector_ids(pool) == {"KEPT": ids["Kept"]}
    assert await connectors_of_facts(pool) == {
        "before": None, "gone": None, "kept": ids["Kept"],
    }
    assert await orphans(pool) == 0
    assert await stored_rollups() == await expected_rollups()


async def test_facts_naming_a_removed_connector_or_another_organizations_are_stored_as_none(
    pool: asyncpg.Pool,
    new_organization: NewOrganization,
    make_fact: MakeFact,
    stored_rollups: RollupRows,
    expected_rollups: RollupRows,
) -> None:
    ids = await apply(pool, organization("Gone", "Kept"))
    race = await organization_id(pool)
    other = await new_organization()
    async with pool.acquire() as connection, connection.transaction():
        await remove_connectors(connection, race, [ids["Gone"]])

    await load_facts(pool, race, [make_fact("gone", "2026-03-01T01:00", connector_id=ids["Gone"])])
    await load_facts(pool, other, [make_fact("theirs", "2026-03-01T01:00",
                                             connector_id=ids["Kept"])])

    assert await connectors_of_facts(pool) == {"gone": None, "theirs": None}
    assert await orphans(pool) == 0
    assert await stored_rollups() == await expected_rollups()


async def test_applies_toggling_a_connector_during_a_long_ingest_leave_no_orphans(
    pool: asyncpg.Pool,
    make_fact: MakeFact,
    stored_rollups: RollupRows,
    expected_rollups: RollupRows,
) -> None:
    # The tester's repro, shortened: an ingest classifying with the connectors of its start,
    # while applies alternately drop "Gone" (and change the case of "Kept") and bring it back.
    ids = await apply(pool, organization("Gone", "Kept"))
    race = await organization_id(pool)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    facts = [
        make_fact(f"m{number}", start + timedelta(minutes=7 * number),
                  connector_id=(ids["Gone"], ids["Kept"], None)[number % 3])
        for number in range(1_200)
    ]
    done = asyncio.Event()

    async def toggle() -> int:
        for applies in itertools.count():
            if done.is_set():
                return applies
            await apply(pool, organization("KEPT") if applies % 2 == 0 else
                        organization("Gone", "Kept"))
        raise AssertionError("unreachable")

    async def ingest() -> int:
        try:
            return (await load_facts(pool, race, facts, batch_size=20)).inserted
        finally:
            done.set()

    inserted, applies = await asyncio.gather(ingest(), toggle())

    assert inserted == len(facts)
    assert applies > 1
    assert ids["Kept"] in (await connector_ids(pool)).values()  # renamed in place each time
    kept = await pool.fetchval("SELECT count(*) FROM message_facts WHERE connector_id = $1",
                               ids["Kept"])
    assert kept == len(facts) // 3
    assert await orphans(pool) == 0
    assert await stored_rollups() == await expected_rollups()


async def organization_id(pool: asyncpg.Pool) -> int:
    found: int = await pool.fetchval("SELECT id FROM organizations WHERE name = 'race'")
    return found
