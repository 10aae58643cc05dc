"""Classifying stored facts again: connectors as the rules say now, rollups equal to the facts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from mailflow.domain import Connector, DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest.classify import load_classifier
from mailflow.ingest.pipeline import load_facts
from mailflow.ingest.reclassify import reclassify
from mailflow.store.organizations import (
    connector_config,
    create_connector,
    ensure_organization,
    update_connector,
)

RollupRows = Callable[[], Awaitable[set[tuple[object, ...]]]]
FIRST = date(2026, 1, 30)  # three days across a month's end: two partitions


def mail(
    number: int, day: date, sender_domain: str | None, *,
    direction: Direction = Direction.INBOUND, routes: tuple[str, ...] = (),
) -> MessageFact:
    return MessageFact(
        source_key=f"m-{number}",
        occurred_at=datetime.combine(day, datetime.min.time(), UTC) + timedelta(minutes=number),
        direction=direction, tls_version=TlsVersion.TLS1_2, tls_cipher=None,
        peer_host="mx.example.net", peer_ip="192.0.2.25", sender_domain=sender_domain,
        recipient_domains=("example.org",), recipients=1 + number % 3, size_bytes=1000 + number,
        status=DeliveryStatus.RECEIVED, routes=routes,
    )


async def ingest(pool: asyncpg.Pool, organization_id: int, facts: list[MessageFact]) -> None:
    """Store facts as every ingest does: classified by the connectors as they are now."""
    async with pool.acquire() as connection:
        classifier = await load_classifier(connection, organization_id)
    await load_facts(pool, organization_id, facts, classify=classifier.assign)


async def connectors_of_facts(pool: asyncpg.Pool) -> dict[str, str | None]:
    rows = await pool.fetch(
        "SELECT source_key, connectors.name FROM message_facts LEFT JOIN connectors"
        " ON connectors.organization_id = message_facts.organization_id"
        " AND connectors.id = message_facts.connector_id")
    return {row["source_key"]: row["name"] for row in rows}


@pytest.fixture
async def acme(pool: asyncpg.Pool) -> tuple[int, Connector]:
    """An organization whose partner connector matches fabrikam.example, with mail of three
    days from fabrikam.example, contoso.example and elsewhere."""
    async with pool.acquire() as connection:
        organization_id = await ensure_organization(connection, "acme")
        partner = await create_connector(connection, organization_id, connector_config(
            {"name": "Partner", "direction": "inbound", "kind": "partner",
             "sender_domains": ["fabrikam.example"]}, subject="partner"))
    domains = ["fabrikam.example", "contoso.example", "other.example"]
    await ingest(pool, organization_id, [
        mail(number, FIRST + timedelta(days=number % 3), domains[number // 3 % 3])
        for number in range(45)
    ])
    return organization_id, partner


async def change_rules(pool: asyncpg.Pool, organization_id: int, connector: Connector,
                       **changes: object) -> None:
    async with pool.acquire() as connection:
        await update_connector(connection, organization_id, connector.id, changes,
                               subject="changes")


async def test_reclassify_gives_the_facts_of_the_range_the_connectors_of_the_current_rules(
    pool: asyncpg.Pool, acme: tuple[int, Connector],
    expected_rollups: RollupRows, stored_rollups: RollupRows,
) -> None:
    organization_id, partner = acme
    before = await connectors_of_facts(pool)
    await change_rules(pool, organization_id, partner, sender_domains=["contoso.example"])

    result = await reclassify(pool, organization_id, FIRST, FIRST + timedelta(days=1))

    after = await connectors_of_facts(pool)
    last_day = {f"m-{number}" for number in range(45) if number % 3 == 2}
    for key, connector in after.items():
        number = int(key.removeprefix("m-"))
        domain = ["fabrikam.example", "contoso.example", "other.example"][number // 3 % 3]
        if key in last_day:
            assert connector == before[key]  # outside the range: as ingested
        else:
            assert connector == ("Partner" if domain == "contoso.example" else None)
    assert result.facts == 30
    assert result.moved == 20  # of 30 facts, 10 left the partner and 10 joined it
    assert result.days_changed == {FIRST, FIRST + timedelta(days=1)}
    assert await stored_rollups() == await expected_rollups()


async def test_reclassify_again_changes_nothing(
    pool: asyncpg.Pool, acme: tuple[int, Connector], stored_rollups: RollupRows,
) -> None:
    organization_id, partner = acme
    await change_rules(pool, organization_id, partner, sender_domains=["contoso.example"])
    await reclassify(pool, organization_id, FIRST, FIRST + timedelta(days=2))
    facts, rollups = await connectors_of_facts(pool), await stored_rollups()

    again = await reclassify(pool, organization_id, FIRST, FIRST + timedelta(days=2))

    assert (again.facts, again.moved, again.days_changed) == (45, 0, set())
    assert await connectors_of_facts(pool) == facts
    assert await stored_rollups() == rollups


async def test_small_batches_commit_apart_and_give_what_one_batch_gives(
    pool: asyncpg.Pool, acme: tuple[int, Connector],
    expected_rollups: RollupRows, stored_rollups: RollupRows,
) -> None:
    organization_id, partner = acme
    await change_rules(pool, organization_id, partner, sender_domains=["*.example"])
    seen: list[int] = []

    result = await reclassify(pool, organization_id, FIRST, FIRST + timedelta(days=2),
                              batch_size=4, on_batch=lambda done: seen.append(done.facts))

    assert result.batches == 12  # 45 facts: 11 full batches, one of 1
    assert seen == [min(4 * batch, 45) for batch in range(1, 13)]
    assert result.moved == 30
    assert set((await connectors_of_facts(pool)).values()) == {"Partner"}
    assert await stored_rollups() == await expected_rollups()


async def test_a_connector_left_without_mail_keeps_no_rollup_rows(
    pool: asyncpg.Pool, acme: tuple[int, Connector],
    expected_rollups: RollupRows, stored_rollups: RollupRows,
) -> None:
    organization_id, partner = acme
    await change_rules(pool, organization_id, partner, sender_domains=["nobody.example"])

    await reclassify(pool, organization_id, FIRST, FIRST + timedelta(days=2))

    assert not await pool.fetchval(
        "SELECT count(*) FROM daily_rollups WHERE connector_id = $1", partner.id)
    assert await stored_rollups() == await expected_rollups()


async def test_facts_are_matched_by_the_routes_their_source_named(
    pool: asyncpg.Pool, expected_rollups: RollupRows, stored_rollups: RollupRows,
) -> None:
    async with pool.acquire() as connection:
        organization_id = await ensure_organization(connection, "acme")
    await ingest(pool, organization_id, [
        mail(1, FIRST, None, direction=Direction.OUTBOUND,
             routes=("dnslookup_vpn", "remote_smtp_smarthost")),
        mail(2, FIRST, None, direction=Direction.OUTBOUND, routes=("dnslookup", "remote_smtp")),
    ])
    async with pool.acquire() as connection:
        await create_connector(connection, organization_id, connector_config(
            {"name": "VPN relay", "direction": "outbound", "kind": "on_premises",
             "routes": ["dnslookup_vpn"]}, subject="vpn"))

    result = await reclassify(pool, organization_id, FIRST, FIRST)

    assert result.moved == 1
    assert await connectors_of_facts(pool) == {"m-1": "VPN relay", "m-2": None}
    assert await pool.fetchval(
        "SELECT routes FROM message_facts WHERE source_key = 'm-1'") == [
        "dnslookup_vpn", "remote_smtp_smarthost"]
    assert await stored_rollups() == await expected_rollups()


async def test_a_range_of_days_without_mail_reads_nothing(
    pool: asyncpg.Pool, acme: tuple[int, Connector],
) -> None:
    organization_id, _ = acme

    result = await reclassify(pool, organization_id, date(2025, 1, 1), date(2025, 12, 31))

    assert (result.facts, result.moved, result.batches) == (0, 0, 1)


async def test_another_organization_s_facts_are_left_alone(
    pool: asyncpg.Pool, acme: tuple[int, Connector],
) -> None:
    organization_id, partner = acme
    async with pool.acquire() as connection:
        other = await ensure_organization(connection, "other")
    await ingest(pool, other, [mail(100, FIRST, "contoso.example")])
    await change_rules(pool, organization_id, partner, sender_domains=["contoso.example"])

    result = await reclassify(pool, organization_id, FIRST, FIRST + timedelta(days=2))

    assert result.facts == 45
    assert await pool.fetchval(
        "SELECT connector_id FROM message_facts WHERE organization_id = $1", other) is None


async def test_a_range_that_ends_before_it_starts_is_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="the last day 2026-01-01 is before the first day"):
        await reclassify(pool, 1, date(2026, 1, 2), date(2026, 1, 1))
