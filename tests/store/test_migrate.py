from __future__ import annotations

import asyncpg
import pytest

from mailflow.store.migrate import MigrationError, load_migrations, migrate, pending_migrations

EXPECTED_TABLES = {
    "organizations", "accepted_domains", "internal_networks", "connectors",
    "message_facts", "daily_rollups", "api_tokens", "schema_migrations",
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
