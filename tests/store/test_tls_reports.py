"""TLS reports are stored once per organization and report id, with policies and failures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from mailflow.domain import TlsReport
from mailflow.ingest.tlsrpt import parse_report, read_report_file
from mailflow.store.facts import NotInTransactionError
from mailflow.store.organizations import ensure_organization
from mailflow.store.tls_reports import store_tls_report

FIXTURES = Path(__file__).parents[1] / "ingest" / "fixtures" / "tlsrpt"
TABLES = ("tls_reports", "tls_report_policies", "tls_report_failures")


def fixture_report(name: str) -> TlsReport:
    [document] = read_report_file(str(FIXTURES / name))
    return parse_report(document)


async def stored(connection: asyncpg.Connection, organization_id: int) -> dict[str, int]:
    return {
        table: await connection.fetchval(
            f"SELECT count(*) FROM {table} WHERE organization_id = $1", organization_id)
        for table in TABLES
    }


async def store(connection: asyncpg.Connection, organization_id: int, report: TlsReport) -> bool:
    async with connection.transaction():
        return await store_tls_report(connection, organization_id, report)


async def test_a_report_is_stored_with_its_policies_and_failure_details(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection:
        organization_id = await ensure_organization(connection, "acme")

        assert await store(connection, organization_id, fixture_report("rfc_spelling.json"))

        assert await stored(connection, organization_id) == {
            "tls_reports": 1, "tls_report_policies": 2, "tls_report_failures": 2}
        row = await connection.fetchrow(
            "SELECT start_day, policy_domain, mx_host_patterns, failed_sessions "
            "FROM tls_reports JOIN tls_report_policies USING (organization_id, report_id) "
            "WHERE policy_index = 0")
        assert row is not None
        assert (str(row["start_day"]), row["policy_domain"], row["mx_host_patterns"],
                row["failed_sessions"]) == ("2025-03-01", "example.com",
                                            ["*.mail.example.com"], 5)


async def test_a_report_id_seen_again_in_the_organization_is_a_duplicate_and_changes_nothing(
    pool: asyncpg.Pool,
) -> None:
    report = fixture_report("rfc_spelling.json")
    async with pool.acquire() as connection:
        organization_id = await ensure_organization(connection, "acme")
        await store(connection, organization_id, report)
        before = await stored(connection, organization_id)

        again = await store(connection, organization_id, report)
        other_content = replace(fixture_report("pattern_spelling.json"),
                                report_id=report.report_id)
        resent = await store(connection, organization_id, other_content)

        assert (again, resent) == (False, False)
        assert await stored(connection, organization_id) == before


async def test_the_same_report_id_in_another_organization_is_stored_for_it(
    pool: asyncpg.Pool,
) -> None:
    report = fixture_report("rfc_spelling.json")
    async with pool.acquire() as connection:
        acme = await ensure_organization(connection, "acme")
        other = await ensure_organization(connection, "other")
        await store(connection, acme, report)

        assert await store(connection, other, report)
        assert await stored(connection, other) == await stored(connection, acme)


async def test_storing_outside_a_transaction_is_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        organization_id = await ensure_organization(connection, "acme")
        with pytest.raises(NotInTransactionError):
            await store_tls_report(connection, organization_id, fixture_report("rfc_spelling.json"))
