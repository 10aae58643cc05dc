"""Retention: fact partitions made ahead and dropped by whole months, rollups kept longer and
removed by day; facts inside the retention survive and reports still answer without the facts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from mailflow.api.app import create_app
from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest.pipeline import load_facts
from mailflow.rollups.retention import RetentionError, maintain
from mailflow.settings import Settings
from mailflow.store.isolation import owner_transaction
from mailflow.store.migrate import migrate
from mailflow.store.organizations import apply_organization, parse_organization
from mailflow.store.tokens import create_token
from tests.test_cli_owner import owner_database

__all__ = ["owner_database"]  # the fixture: a database whose owner is held to row security

MAILFLOW = str(Path(sys.executable).parent / "mailflow")
TODAY = date(2026, 6, 15)
FACT_RETENTION, ROLLUP_RETENTION = 100, 200  # keep facts since 2026-03-07, rollups 2025-11-27
# Per day, the facts stored; the months of the first two are wholly older than the retention.
DAYS = {
    date(2025, 10, 10): 3,  # its partition dropped, and its rollups too
    date(2026, 1, 20): 4,   # its partition dropped, its rollups kept
    date(2026, 3, 5): 2,    # older than the retention, but its month is not: kept
    date(2026, 3, 7): 5,    # the first day inside the retention
    date(2026, 6, 14): 6,
}
ORGANIZATIONS = ("acme", "globex")
ORGANIZATION_FILE = """\
organization: {name}
accepted_domains: [{name}.example]
connectors:
  - name: Partner
    direction: inbound
    kind: partner
    sender_domains: [partner.example]
"""
REPORT = """query Report($start: Date!, $end: Date!) {
    mailFlow(start: $start, end: $end) { date messages byTls { version messages } }
    tlsBreakdown(start: $start, end: $end) { total versions { version messages percent } }
    connectors { name volume(start: $start, end: $end) { messages } }
}"""


def facts_of(name: str) -> list[MessageFact]:
    versions = (TlsVersion.TLS1_2, TlsVersion.TLS1_3, TlsVersion.NONE)
    return [
        MessageFact(
            source_key=f"{name}/{day}/{number}",
            occurred_at=datetime(day.year, day.month, day.day, 10, number, tzinfo=UTC),
            direction=Direction.INBOUND, tls_version=versions[number % 3], tls_cipher=None,
            peer_host="mx.partner.example", peer_ip="192.0.2.25",
            sender_domain="partner.example" if number % 2 else "other.example",
            recipient_domains=(f"{name}.example",), recipients=1, size_bytes=1_000,
            status=DeliveryStatus.RECEIVED,
        )
        for day, count in DAYS.items() for number in range(count)
    ]


@pytest.fixture
async def owner_pool(owner_database: str) -> AsyncIterator[asyncpg.Pool]:
    """A migrated database of the plain owner role, with two organizations' facts loaded."""
    pool = await asyncpg.create_pool(owner_database, min_size=1, max_size=2)
    assert pool is not None
    try:
        async with pool.acquire() as connection:
            await migrate(connection)
        for name in ORGANIZATIONS:
            async with pool.acquire() as connection:
                applied = await apply_organization(
                    connection, parse_organization(ORGANIZATION_FILE.format(name=name)))
                classify = await _classifier(connection, applied.organization_id)
            await load_facts(pool, applied.organization_id, facts_of(name), classify=classify)
        yield pool
    finally:
        await pool.close()


async def _classifier(connection: Any, organization_id: int) -> Any:
    from mailflow.ingest.classify import load_classifier

    async with owner_transaction(connection, organization_id):
        return (await load_classifier(connection, organization_id)).assign


async def reports(pool: asyncpg.Pool, start: date, end: date) -> dict[str, Any]:
    """The report of ``start`` to ``end`` of each organization, through the GraphQL API."""
    answers = {}
    app = create_app(pool, Settings(max_range_days=366, rate_limit="off"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver") as client:
        for name in ORGANIZATIONS:
            async with pool.acquire() as connection:
                organization_id = await connection.fetchval(
                    "SELECT id FROM organizations WHERE name = $1", name)
                async with owner_transaction(connection, organization_id):
                    token = await create_token(connection, organization_id, description="")
            response = await client.post(
                "/graphql", headers={"Authorization": f"Bearer {token}"},
                json={"query": REPORT, "variables": {"start": str(start), "end": str(end)}})
            body = response.json()
            assert "errors" not in body, body
            answers[name] = body["data"]
    return answers


async def stored_facts_by_day(pool: asyncpg.Pool) -> dict[str, dict[date, int]]:
    stored: dict[str, dict[date, int]] = {}
    async with pool.acquire() as connection:
        for name in ORGANIZATIONS:
            organization_id = await connection.fetchval(
                "SELECT id FROM organizations WHERE name = $1", name)
            async with owner_transaction(connection, organization_id):
                rows = await connection.fetch(
                    "SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, count(*) "
                    "FROM message_facts GROUP BY day")
            stored[name] = {row["day"]: row["count"] for row in rows}
    return stored


async def partitions(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT inhrelid::regclass::text AS name FROM pg_inherits "
                            "WHERE inhparent = 'message_facts'::regclass ORDER BY name")
    return [row["name"] for row in rows]


async def run_maintenance(pool: asyncpg.Pool, *, dry_run: bool = False) -> Any:
    async with pool.acquire() as connection:
        return await maintain(connection, today=TODAY, fact_retention_days=FACT_RETENTION,
                              rollup_retention_days=ROLLUP_RETENTION, months_ahead=2,
                              dry_run=dry_run)


async def test_facts_inside_the_retention_survive_and_reports_still_answer_without_the_facts(
    owner_pool: asyncpg.Pool,
) -> None:
    everything = (date(2025, 10, 1), date(2026, 6, 30))
    before = await reports(owner_pool, *everything)
    kept_rollups = await reports(owner_pool, date(2025, 11, 27), date(2026, 6, 30))

    result = await run_maintenance(owner_pool)

    assert result.keep_facts_since == date(2026, 3, 7)
    assert result.keep_rollups_since == date(2025, 11, 27)
    assert result.created == [date(2026, 7, 1), date(2026, 8, 1)]
    assert result.dropped == [date(2025, 10, 1), date(2026, 1, 1)]
    # One rollup row per TLS version and connector of 2025-10-10, in each organization.
    assert result.rollups_removed == {"acme": 3, "globex": 3}
    assert await partitions(owner_pool) == [
        "message_facts_202603", "message_facts_202606", "message_facts_202607",
        "message_facts_202608",
    ]
    kept_days = {day: count for day, count in DAYS.items() if day >= date(2026, 3, 1)}
    assert await stored_facts_by_day(owner_pool) == dict.fromkeys(ORGANIZATIONS, kept_days)
    # Reports read rollups: from the rollup retention on, they answer as before, including
    # 2026-01-20, whose facts are gone; the rollups of 2025-10-10 are gone with their day.
    assert await reports(owner_pool, date(2025, 11, 27), date(2026, 6, 30)) == kept_rollups
    after = await reports(owner_pool, *everything)
    for name in ORGANIZATIONS:
        flow = {point["date"]: point["messages"] for point in after[name]["mailFlow"]}
        assert flow["2025-10-10"] == 0
        assert flow["2026-01-20"] == DAYS[date(2026, 1, 20)]
        assert after[name]["tlsBreakdown"]["total"] == (
            before[name]["tlsBreakdown"]["total"] - DAYS[date(2025, 10, 10)])


async def test_maintenance_run_again_changes_nothing_and_a_dry_run_changes_nothing(
    owner_pool: asyncpg.Pool,
) -> None:
    planned = await run_maintenance(owner_pool, dry_run=True)
    unchanged = await partitions(owner_pool), await stored_facts_by_day(owner_pool)

    first = await run_maintenance(owner_pool)
    done = await partitions(owner_pool), await stored_facts_by_day(owner_pool)
    again = await run_maintenance(owner_pool)

    assert planned.dry_run
    assert (planned.created, planned.dropped, planned.rollups_removed) == (
        first.created, first.dropped, first.rollups_removed)
    assert unchanged[0] == ["message_facts_202510", "message_facts_202601",
                            "message_facts_202603", "message_facts_202606"]
    assert unchanged[1]["acme"][date(2025, 10, 10)] == 3
    assert done != unchanged
    assert (again.created, again.dropped, again.rollups_removed) == ([], [], {})
    assert (await partitions(owner_pool), await stored_facts_by_day(owner_pool)) == done


@pytest.mark.parametrize(
    ("facts", "rollups", "named"),
    [
        (0, 10, "the fact retention must be 1 day or more, not 0"),
        (30, 10, "the rollup retention (10 days) is shorter than the fact retention (30 days)"),
    ],
)
async def test_retentions_that_would_lose_rollups_are_refused(
    pool: asyncpg.Pool, facts: int, rollups: int, named: str,
) -> None:
    async with pool.acquire() as connection:
        with pytest.raises(RetentionError) as refused:
            await maintain(connection, today=TODAY, fact_retention_days=facts,
                           rollup_retention_days=rollups, months_ahead=1)
    assert named in str(refused.value)


def mailflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAILFLOW, *args], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "MAILFLOW_LOG_LEVEL": "warning", **env})


async def test_the_command_lists_what_it_would_do_then_does_it_once(
    pool: asyncpg.Pool, database_url: str,
) -> None:
    today = datetime.now(UTC).date()
    old = datetime.combine(today - timedelta(days=120), datetime.min.time(), UTC)
    organization_id = await pool.fetchval("INSERT INTO organizations (name) VALUES ('acme') "
                                          "RETURNING id")
    await load_facts(pool, organization_id, [replace(facts_of("acme")[0], occurred_at=old)])
    env = {"DATABASE_URL": database_url, "MAILFLOW_FACT_RETENTION_DAYS": "60",
           "MAILFLOW_ROLLUP_RETENTION_DAYS": "90"}
    old_partition = f"message_facts_{old:%Y%m}"

    dry = mailflow(env, "partitions", "maintain", "--dry-run", "--months-ahead", "1")
    still = await partitions(pool)
    done = mailflow(env, "partitions", "maintain", "--months-ahead", "1")
    again = mailflow(env, "partitions", "maintain", "--months-ahead", "1")
    refused = mailflow({**env, "MAILFLOW_ROLLUP_RETENTION_DAYS": "30"}, "partitions", "maintain")

    assert dry.returncode == done.returncode == again.returncode == 0, dry.stderr + done.stderr
    assert f"would drop {old_partition}" in dry.stdout
    assert "would remove 1 rollup row(s) of organization acme" in dry.stdout
    assert old_partition in still
    assert f"drop {old_partition}" in done.stdout
    assert "remove 1 rollup row(s) of organization acme" in done.stdout
    assert old_partition not in await partitions(pool)
    assert f"message_facts_{today:%Y%m}" in await partitions(pool)
    assert "nothing to do" in again.stdout
    assert refused.returncode == 2
    assert ("MAILFLOW_ROLLUP_RETENTION_DAYS (30) is shorter than MAILFLOW_FACT_RETENTION_DAYS "
            "(60)") in refused.stderr


async def test_a_partition_of_the_calendars_last_month_is_kept_not_a_crash(
    pool: asyncpg.Pool, database_url: str,
) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT ensure_message_fact_partition('9999-12-01')")

    done = mailflow({"DATABASE_URL": database_url}, "partitions", "maintain")

    assert done.returncode == 0, done.stderr
    assert "message_facts_999912" in await partitions(pool)
