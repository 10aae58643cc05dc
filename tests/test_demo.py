"""The demo organization: a realistic month that fires both insights, loaded without doubling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from mailflow.demo import DEMO_DAYS, demo_facts, load_demo

NOW = datetime(2026, 3, 18, 9, 30, tzinfo=UTC)  # a Wednesday morning


async def test_the_demo_holds_a_month_ending_now_and_a_second_load_adds_nothing(
    pool: asyncpg.Pool,
) -> None:
    organization_id = await load_demo(pool, now=NOW)
    async with pool.acquire() as connection:
        first = await connection.fetch(
            "SELECT day, sum(messages) AS messages FROM daily_rollups "
            "WHERE organization_id = $1 GROUP BY day ORDER BY day", organization_id)
        latest = await connection.fetchval(
            "SELECT max(occurred_at) FROM message_facts WHERE organization_id = $1",
            organization_id)
    assert [row["day"] for row in first] == [
        NOW.date() - timedelta(days=offset) for offset in range(DEMO_DAYS - 1, -1, -1)
    ]
    assert latest <= NOW, "no demo mail from the future"

    assert await load_demo(pool, now=NOW) == organization_id
    async with pool.acquire() as connection:
        again = await connection.fetch(
            "SELECT day, sum(messages) AS messages FROM daily_rollups "
            "WHERE organization_id = $1 GROUP BY day ORDER BY day", organization_id)
    assert again == first


async def test_a_later_start_tops_up_today_only(pool: asyncpg.Pool) -> None:
    organization_id = await load_demo(pool, now=NOW)
    later = NOW + timedelta(hours=6)
    await load_demo(pool, now=later)
    async with pool.acquire() as connection:
        today = await connection.fetchval(
            "SELECT sum(messages) FROM daily_rollups WHERE organization_id = $1 AND day = $2",
            organization_id, NOW.date())
    expected = sum(1 for _ in demo_facts(NOW.date(), until=later))
    assert today == expected
    assert expected > sum(1 for _ in demo_facts(NOW.date(), until=NOW))


async def test_weekdays_carry_more_mail_than_weekends_and_every_connector_has_mail(
    pool: asyncpg.Pool,
) -> None:
    organization_id = await load_demo(pool, now=NOW)
    async with pool.acquire() as connection:
        by_day = {
            row["day"]: row["messages"]
            for row in await connection.fetch(
                "SELECT day, sum(messages) AS messages FROM daily_rollups "
                "WHERE organization_id = $1 AND day < $2 GROUP BY day",
                organization_id, NOW.date())
        }
        idle = await connection.fetch(
            "SELECT c.name FROM connectors c WHERE c.organization_id = $1 AND NOT EXISTS ("
            "SELECT 1 FROM daily_rollups r WHERE r.organization_id = c.organization_id "
            "AND r.connector_id = c.id)", organization_id)
    weekdays = [messages for day, messages in by_day.items() if day.weekday() < 5]
    weekends = [messages for day, messages in by_day.items() if day.weekday() >= 5]
    assert min(weekdays) > 2 * max(weekends)
    assert [row["name"] for row in idle] == []


async def test_a_partner_connector_fires_both_insights(pool: asyncpg.Pool) -> None:
    organization_id = await load_demo(pool, now=NOW)
    async with pool.acquire() as connection:
        shares = await connection.fetch(
            """
            SELECT c.name,
                   sum(r.messages) FILTER (WHERE r.tls_version = 'NONE') * 100.0
                       / sum(r.messages) AS no_tls,
                   sum(r.messages) FILTER (WHERE r.tls_version = 'TLS1_0') * 100.0
                       / sum(r.messages) AS tls1_0
            FROM daily_rollups r
            JOIN connectors c ON c.organization_id = r.organization_id AND c.id = r.connector_id
            WHERE r.organization_id = $1 AND c.kind = 'PARTNER'
              AND r.day > $2::date - 7
            GROUP BY c.name
            """,
            organization_id, NOW.date())
    firing = [row["name"] for row in shares
              if (row["no_tls"] or 0) > 25 and (row["tls1_0"] or 0) > 50]
    assert firing == ["Fabrikam partner (inbound)"]
