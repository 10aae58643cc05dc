"""Report versions move in the transaction that changes an organization's report data."""

from __future__ import annotations

from datetime import date

import asyncpg
import pytest

from mailflow.store.report_versions import report_version

ROLLUP = """
    INSERT INTO daily_rollups (organization_id, day, direction, connector_id, tls_version,
                               messages, recipients, bytes)
    VALUES ($1, $2, 'INBOUND', NULL, 'TLS1_2', 1, 1, 100)
"""
CHANGES = {
    "a rollup": (ROLLUP, (date(2025, 1, 1),)),
    "a connector": ("INSERT INTO connectors (organization_id, name, direction, kind) "
                    "VALUES ($1, 'Fabrikam', 'INBOUND', 'PARTNER')", ()),
    "an accepted domain": ("INSERT INTO accepted_domains (organization_id, domain) "
                           "VALUES ($1, 'acme.example')", ()),
    "an internal network": ("INSERT INTO internal_networks (organization_id, network) "
                            "VALUES ($1, '10.9.0.0/16')", ()),
    "a TLS report": ("INSERT INTO tls_reports (organization_id, report_id, "
                     "reporting_organization, start_at, end_at) "
                     "VALUES ($1, 'r1', 'reporter', now(), now())", ()),
}


async def organizations(pool: asyncpg.Pool) -> tuple[int, int]:
    ids = [await pool.fetchval("INSERT INTO organizations (name) VALUES ($1) RETURNING id", name)
           for name in ("org-a", "org-b")]
    return ids[0], ids[1]


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_change_moves_its_organizations_version_and_no_other(
    pool: asyncpg.Pool, change: str
) -> None:
    changed, other = await organizations(pool)
    statement, arguments = CHANGES[change]
    async with pool.acquire() as connection:
        before = await report_version(connection, changed), await report_version(connection, other)
        await connection.execute(statement, changed, *arguments)
        after = await report_version(connection, changed), await report_version(connection, other)

    assert after[0] > before[0]
    assert after[1] == before[1]


async def test_a_change_rolled_back_leaves_the_version(pool: asyncpg.Pool) -> None:
    changed, _ = await organizations(pool)
    async with pool.acquire() as connection:
        before = await report_version(connection, changed)
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(ROLLUP, changed, date(2025, 1, 1))
        inside = await report_version(connection, changed)
        await transaction.rollback()

        assert inside > before
        assert await report_version(connection, changed) == before
