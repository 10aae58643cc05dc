from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from mailflow.store.embedded import EmbeddedPostgres
from mailflow.store.migrate import MigrationError, load_migrations, migrate, pending_migrations
from mailflow.store.sql import query

EXPECTED_TABLES = {
    "organizations", "accepted_domains", "internal_networks", "connectors",
    "message_facts", "daily_rollups", "api_tokens", "follow_positions", "schema_migrations",
    "tls_reports", "tls_report_policies", "tls_report_failures", "daily_organization_rollups",
}


async def test_applying_all_migrations_yields_the_tables_the_code_expects(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection:
        tables = {
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        versions = [r["version"] for r in await connection.fetch(
            "SELECT version FROM schema_migrations ORDER BY version")]
    assert tables >= EXPECTED_TABLES
    assert versions == [m.version for m in load_migrations()]


async def test_migrating_twice_applies_nothing_the_second_time(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        assert await migrate(connection) == []
        assert await pending_migrations(connection) == []


@pytest.fixture
async def empty_database(postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    """The DSN of a database without mailflow's tables, dropped after the test."""
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    try:
        await admin.execute("CREATE DATABASE mailflow_unmigrated")
        yield postgres.dsn("mailflow_unmigrated")
        await admin.execute("DROP DATABASE mailflow_unmigrated WITH (FORCE)")
    finally:
        await admin.close()


async def test_two_servers_migrating_at_once_apply_each_migration_once_and_hold_no_lock(
    empty_database: str,
) -> None:
    connections = [await asyncpg.connect(empty_database) for _ in range(2)]
    try:
        applied = await asyncio.gather(*(migrate(connection) for connection in connections))
        locks = await connections[0].fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
    finally:
        for connection in connections:
            await connection.close()

    versions = sorted(migration.version for migration in [*applied[0], *applied[1]])
    assert versions == [migration.version for migration in load_migrations()]
    assert locks == 0


async def test_a_changed_migration_file_is_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        await connection.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        with pytest.raises(MigrationError, match="was changed after it was applied"):
            await migrate(connection)


async def test_every_organization_owned_key_leads_with_the_organization(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            """
            SELECT c.relname AS table_name, i.relname AS index_name,
                   a.attname AS first_column
            FROM pg_index x
            JOIN pg_class c ON c.oid = x.indrelid
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]
            WHERE n.nspname = 'public'
              AND c.relname NOT IN ('organizations', 'schema_migrations')
              AND c.relname NOT LIKE 'message_facts_%'
            """
        )
    assert rows
    offenders = [(r["table_name"], r["index_name"]) for r in rows
                 if r["first_column"] != "organization_id"]
    assert offenders == []


async def test_the_repair_migration_detaches_facts_of_missing_connectors_and_recounts_rollups(
    pool: asyncpg.Pool,
) -> None:
    [repair] = [m for m in load_migrations() if m.name == "detach_facts_of_removed_connectors"]
    async with pool.acquire() as connection:
        organization_id = await connection.fetchval(
            "INSERT INTO organizations (name) VALUES ('race') RETURNING id")
        kept = await connection.fetchval(
            "INSERT INTO connectors (organization_id, name, direction, kind) "
            "VALUES ($1, 'Kept', 'INBOUND', 'PARTNER') RETURNING id", organization_id)
        missing = kept + 100  # what an ingest racing a removal could leave behind
        await connection.execute("SELECT ensure_message_fact_partition('2025-04-01')")
        await connection.executemany(
            "INSERT INTO message_facts (organization_id, occurred_at, source_key, direction, "
            "connector_id, tls_version, recipients, size_bytes, status) "
            "VALUES ($1, $2::text::timestamptz, $3, 'INBOUND', $4, 'NONE', 1, 10, 'RECEIVED')",
            [(organization_id, "2025-04-01T08:00Z", "kept", kept),
             (organization_id, "2025-04-01T09:00Z", "orphan", missing),
             (organization_id, "2025-04-01T10:00Z", "none", None),
             (organization_id, "2025-04-02T10:00Z", "untouched", kept)],
        )
        await connection.execute(query("rollups_insert_organization"), organization_id)
        await connection.execute(  # a rollup left naming a connector without facts
            "INSERT INTO daily_rollups VALUES ($1, '2025-04-03', 'INBOUND', $2, 'NONE', 1, 1, 1)",
            organization_id, missing + 1)
        untouched = await connection.fetchrow(
            "SELECT ctid, * FROM daily_rollups WHERE day = '2025-04-02'")

        async with connection.transaction():
            await connection.execute(repair.sql)

        facts = dict(await connection.fetch(
            "SELECT source_key, connector_id FROM message_facts"))
        rollups = [tuple(row) for row in await connection.fetch(
            "SELECT day::text, connector_id, messages, recipients, bytes FROM daily_rollups "
            "ORDER BY day, connector_id NULLS FIRST")]
        still_untouched = await connection.fetchrow(
            "SELECT ctid, * FROM daily_rollups WHERE day = '2025-04-02'")

    assert facts == {"kept": kept, "orphan": None, "none": None, "untouched": kept}
    assert rollups == [
        ("2025-04-01", None, 2, 2, 20),
        ("2025-04-01", kept, 1, 1, 10),
        ("2025-04-02", kept, 1, 1, 10),
    ]
    assert still_untouched == untouched
