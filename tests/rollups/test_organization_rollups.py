"""Daily organization rollups equal the daily rollups summed over connectors, after every kind
of change to the rollups, and after the migration that introduced them."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime

import asyncpg
import pytest

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest.classify import load_classifier
from mailflow.ingest.pipeline import load_facts
from mailflow.ingest.reclassify import reclassify
from mailflow.rollups.refresh import rebuild_rollups, refresh_rollups
from mailflow.rollups.retention import delete_expired_rollups
from mailflow.store import migrate as migrations
from mailflow.store.embedded import EmbeddedPostgres
from mailflow.store.isolation import owner_transaction
from mailflow.store.migrate import load_migrations, migrate
from mailflow.store.organizations import apply_organization, parse_organization

SUMMED_OVER_CONNECTORS = """
SELECT organization_id, day, direction, tls_version, sum(messages), sum(recipients), sum(bytes)
FROM daily_rollups
GROUP BY organization_id, day, direction, tls_version
"""
ORGANIZATION_ROLLUPS = """
SELECT organization_id, day, direction, tls_version, messages, recipients, bytes
FROM daily_organization_rollups
"""
ORGANIZATION_FILE = """\
organization: {name}
accepted_domains: [{name}.example]
connectors:
{connectors}"""
CONNECTOR = """\
  - name: {domain}
    direction: inbound
    kind: partner
    sender_domains: [{domain}]
"""


async def rows(pool: asyncpg.Pool, sql: str) -> set[tuple[object, ...]]:
    return {tuple(row.values()) for row in await pool.fetch(sql)}


async def apply(pool: asyncpg.Pool, name: str, domains: list[str]) -> int:
    connectors = "".join(CONNECTOR.format(domain=domain) for domain in domains) or "  []\n"
    async with pool.acquire() as connection:
        applied = await apply_organization(connection, parse_organization(
            ORGANIZATION_FILE.format(name=name, connectors=connectors)))
    return applied.organization_id


async def test_organization_rollups_follow_every_change_of_the_daily_rollups(
    pool: asyncpg.Pool,
) -> None:
    domains = ["a.example", "b.example", "c.example"]
    organizations = [await apply(pool, name, domains) for name in ("acme", "globex")]
    versions = (TlsVersion.TLS1_2, TlsVersion.TLS1_3, TlsVersion.NONE, TlsVersion.TLS1_0)
    for organization_id in organizations:
        facts = [
            MessageFact(
                source_key=f"mx/{number}",
                occurred_at=datetime(2026, 1 + number % 3, 10 + number % 7, 10, tzinfo=UTC),
                direction=Direction.INBOUND if number % 5 else Direction.OUTBOUND,
                tls_version=versions[number % 4], tls_cipher=None, peer_host=None,
                peer_ip=None, sender_domain=[*domains, "other.example"][number % 4],
                recipient_domains=("acme.example",), recipients=1 + number % 2,
                size_bytes=1_000 + number, status=DeliveryStatus.RECEIVED,
            )
            for number in range(120)
        ]
        async with pool.acquire() as connection, owner_transaction(connection, organization_id):
            classifier = await load_classifier(connection, organization_id)
        await load_facts(pool, organization_id, facts, classify=classifier.assign, batch_size=50)
    states = [await rows(pool, ORGANIZATION_ROLLUPS)]
    assert states[0] == await rows(pool, SUMMED_OVER_CONNECTORS)
    assert len(states[0]) > 20

    acme = organizations[0]
    await apply(pool, "acme", ["a.example", "b.example"])  # c.example's mail: no connector
    await apply(pool, "acme", ["a.example", "b.example", "c.example"])
    await reclassify(pool, acme, date(2026, 1, 1), date(2026, 3, 31), batch_size=30)
    async with pool.acquire() as connection:
        async with owner_transaction(connection, acme):
            await refresh_rollups(connection, acme, [date(2026, 2, 11), date(2026, 2, 12)])
        async with owner_transaction(connection, acme):
            await rebuild_rollups(connection, acme)
        assert await rows(pool, ORGANIZATION_ROLLUPS) == states[0]  # moves change no total
        await delete_expired_rollups(connection, date(2026, 2, 1))

    after = await rows(pool, ORGANIZATION_ROLLUPS)
    assert after == await rows(pool, SUMMED_OVER_CONNECTORS)
    assert {row for row in states[0] if row[1] >= date(2026, 2, 1)} == after
    assert all(messages > 0 for *_, messages, _, _ in after)


async def test_the_migration_sums_the_rollups_stored_before_it(
    postgres: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"mailflow_before_0012_{os.getpid()}"
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    await admin.execute(f"CREATE DATABASE {name}")
    connection = await asyncpg.connect(postgres.dsn(name))
    try:
        every_migration = load_migrations()
        with monkeypatch.context() as patch:
            patch.setattr(migrations, "load_migrations",
                          lambda: [m for m in every_migration if m.version < 12])
            await migrate(connection)
        organization_id = await connection.fetchval(
            "INSERT INTO organizations (name) VALUES ('acme') RETURNING id")
        connectors = [await connection.fetchval(
            "INSERT INTO connectors (organization_id, name, direction, kind) "
            "VALUES ($1, $2, 'INBOUND', 'PARTNER') RETURNING id", organization_id, name)
            for name in ("One", "Two")]
        await connection.executemany(
            "INSERT INTO daily_rollups VALUES ($1, '2025-04-01', 'INBOUND', $2, $3, $4, $4, $5)",
            [(organization_id, connectors[0], "TLS1_2", 3, 300),
             (organization_id, connectors[1], "TLS1_2", 4, 400),
             (organization_id, None, "NONE", 2, 20)])

        await migrate(connection)

        assert await rows(connection, ORGANIZATION_ROLLUPS) == {  # type: ignore[arg-type]
            (organization_id, date(2025, 4, 1), "INBOUND", "TLS1_2", 7, 7, 700),
            (organization_id, date(2025, 4, 1), "INBOUND", "NONE", 2, 2, 20),
        }
    finally:
        await connection.close()
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()
