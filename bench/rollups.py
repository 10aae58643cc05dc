"""Rollup figures on a generated load: the rollup work after loading one day of one organization
against a full recompute, and the 90-day TLS breakdown read from rollups against the same
figure counted over the message facts.

    python bench/rollups.py                     # loads 10,000,000 facts first (bench/generate.py)
    python bench/rollups.py --skip-load --end 2026-12-03        # on a database loaded before
    python bench/rollups.py --organizations 10 --facts 200000 --days 120 --repeat 5

It loads the generator's organizations and facts into DATABASE_URL (an embedded PostgreSQL
when it is unset) unless ``--skip-load`` (then ``--organizations``, ``--days``, ``--seed`` and
``--end`` must be those of the load). Then, for ``--organization`` (default: the first, with
100 connectors):

- it stores one more day of its mail (the day after ``--end``, as many facts as its average
  day, new source keys on every run) the way an ingest does, and times the rollup work of
  that transaction (``add_to_rollups``), and then a recount of that day from its facts
  (``refresh_rollups``, what a removed connector costs; the median of 3);
- it recomputes every organization's rollups from all their facts (``rebuild_rollups``, one
  transaction per organization), and that organization's alone;
- after ``VACUUM ANALYZE`` (the recompute left a dead row behind each rollup), it reads the
  90-day TLS breakdown ending on ``--end`` as the API does (``report_daily_totals``
  over daily rollups, as the service role) and computes the same figure from the facts
  (a ``GROUP BY`` over the facts of those days), checks that both agree, and times each
  ``--repeat`` times (medians, after one unmeasured warm-up), for this organization and the
  largest: as the client sees it, and PostgreSQL's own execution time (EXPLAIN ANALYZE).

Figures and ratios are printed as JSON, with the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).parent))
from generate import facts_of_day, generate, plan

from mailflow.domain import TlsVersion
from mailflow.reports.breakdown import TlsBreakdown, tls_breakdown
from mailflow.reports.queries import DailyTotal, FlowFilter, fetch_daily_totals
from mailflow.reports.ranges import DateRange
from mailflow.rollups.refresh import add_to_rollups, rebuild_rollups, refresh_rollups
from mailflow.store.facts import ensure_partitions, months_of, store_facts
from mailflow.store.isolation import organization_transaction, owner_transaction
from mailflow.store.sql import query

REPORT_DAYS = 90
# The same figure as a 90-day tlsBreakdown, counted over the facts instead of the rollups.
FACTS_BY_DAY_AND_TLS = """
SELECT
    (occurred_at AT TIME ZONE 'UTC')::date AS day,
    tls_version,
    count(*) AS messages,
    sum(recipients)::bigint AS recipients,
    sum(size_bytes)::bigint AS bytes
FROM message_facts
WHERE organization_id = $1
    AND occurred_at >= ($2::date::timestamp AT TIME ZONE 'UTC')
    AND occurred_at < (($3::date + 1)::timestamp AT TIME ZONE 'UTC')
GROUP BY
    day,
    tls_version
"""
ROLLUPS_DIFFERING_FROM_FACTS = """
WITH counted AS (
    SELECT
        (occurred_at AT TIME ZONE 'UTC')::date AS day, direction, connector_id, tls_version,
        count(*) AS messages, sum(recipients) AS recipients, sum(size_bytes) AS bytes
    FROM message_facts
    WHERE organization_id = $1
    GROUP BY 1, 2, 3, 4
),
rolled AS (
    SELECT day, direction, connector_id, tls_version, messages, recipients, bytes
    FROM daily_rollups
    WHERE organization_id = $1
)
SELECT count(*)
FROM ((SELECT * FROM counted EXCEPT ALL SELECT * FROM rolled)
      UNION ALL (SELECT * FROM rolled EXCEPT ALL SELECT * FROM counted)) AS differing
"""


async def organization_ids(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT id, name FROM organizations")
    return {row["name"]: row["id"] for row in rows}


async def timed(work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await work()
    return time.perf_counter() - started, result


async def load_one_day(
    pool: asyncpg.Pool, organization_id: int, facts: list[Any]
) -> dict[str, float]:
    """Store a day's facts as an ingest does; the seconds of the whole and of the rollup work."""
    async with pool.acquire() as connection:
        started = time.perf_counter()
        async with organization_transaction(connection, organization_id):
            await ensure_partitions(connection, months_of(facts))
        async with organization_transaction(connection, organization_id):
            stored = await store_facts(connection, organization_id, facts)
            add_seconds, _ = await timed(
                lambda: add_to_rollups(connection, organization_id, stored.counts))
        total = time.perf_counter() - started
        day = facts[0].occurred_at.date()
        refreshes = []
        for _ in range(3):
            async with organization_transaction(connection, organization_id):
                seconds, _ = await timed(
                    lambda: refresh_rollups(connection, organization_id, [day]))
            refreshes.append(seconds)
    return {"facts": len(facts), "inserted": stored.inserted, "store_seconds": total,
            "add_to_rollups_seconds": add_seconds,
            "refresh_day_seconds": statistics.median(refreshes)}


async def recompute(pool: asyncpg.Pool, organization_ids: list[int]) -> float:
    """Seconds to rebuild the rollups of every organization given from all their facts."""
    started = time.perf_counter()
    async with pool.acquire() as connection:
        for organization_id in organization_ids:
            async with owner_transaction(connection, organization_id):
                await rebuild_rollups(connection, organization_id)
    return time.perf_counter() - started


async def breakdown_from_rollups(
    connection: Any, organization_id: int, window: DateRange
) -> TlsBreakdown:
    """The 90-day tlsBreakdown as the API reads it."""
    totals = await fetch_daily_totals(connection, organization_id, window, FlowFilter())
    return tls_breakdown(totals)


async def breakdown_from_facts(
    connection: Any, organization_id: int, window: DateRange
) -> TlsBreakdown:
    """The same figure, counted over the message facts of the window."""
    rows = await connection.fetch(FACTS_BY_DAY_AND_TLS, organization_id, window.start,
                                  window.end)
    return tls_breakdown(
        DailyTotal(row["day"], TlsVersion(row["tls_version"]), row["messages"],
                   row["recipients"], row["bytes"])
        for row in rows)


async def compare_breakdowns(
    pool: asyncpg.Pool, organization_id: int, window: DateRange, repeat: int
) -> dict[str, Any]:
    """Median seconds of the breakdown from rollups and from facts, each read and computed in
    a transaction of the service role on the organization (the request's own statements, which
    both pay alike, left out); the two must agree."""
    figures: dict[str, Any] = {}
    answers = {}
    async with pool.acquire() as connection:
        for source, read in (("rollups", breakdown_from_rollups), ("facts", breakdown_from_facts)):
            async with organization_transaction(connection, organization_id):
                answers[source] = await read(connection, organization_id, window)  # warm-up
                seconds = [
                    (await timed(lambda read=read: read(connection, organization_id, window)))[0]
                    for _ in range(repeat)
                ]
            figures[f"{source}_ms"] = round(statistics.median(seconds) * 1000, 3)
            figures[f"{source}_server_ms"] = await server_milliseconds(
                connection, organization_id, window, source, repeat)
    if answers["rollups"] != answers["facts"]:
        raise SystemExit(f"the breakdown from rollups {answers['rollups']} differs from the one "
                         f"from facts {answers['facts']}")
    figures["messages"] = answers["facts"].total
    figures["ratio"] = round(figures["facts_ms"] / figures["rollups_ms"], 1)
    figures["server_ratio"] = round(figures["facts_server_ms"] / figures["rollups_server_ms"], 1)
    return figures


async def server_milliseconds(
    connection: Any, organization_id: int, window: DateRange, source: str, repeat: int
) -> float:
    """The median time PostgreSQL itself took for the statement (EXPLAIN ANALYZE's execution
    time), which a busy machine's scheduling between client and server does not add to."""
    statement, arguments = (
        (query("report_organization_daily_totals"), (window.start, window.end, None))
        if source == "rollups" else (FACTS_BY_DAY_AND_TLS, (window.start, window.end))
    )
    times = []
    async with organization_transaction(connection, organization_id):
        for _ in range(repeat):
            plan = await connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}",
                                             organization_id, *arguments)
            times.append(json.loads(plan)[0]["Execution Time"])
    return round(statistics.median(times), 3)


async def measure(
    pool: asyncpg.Pool, *, organizations: int, facts: int, days: int, seed: int, end: date,
    prefix: str, organization: int, repeat: int,
) -> dict[str, Any]:
    planned = plan(organizations, facts, seed, prefix)
    ids = await organization_ids(pool)
    chosen = planned[organization]
    chosen_id = ids[chosen.name]
    largest = max(planned, key=lambda o: o.facts)

    next_day = end + timedelta(days=1)
    count = max(1, round(chosen.facts / days))
    day_facts = facts_of_day(chosen, next_day, count, seed, first_number=time.time_ns())
    loaded = await load_one_day(pool, chosen_id, day_facts)
    full = await recompute(pool, sorted(ids[o.name] for o in planned))
    own = await recompute(pool, [chosen_id])
    async with pool.acquire() as connection, owner_transaction(connection, chosen_id):
        differing = await connection.fetchval(ROLLUPS_DIFFERING_FROM_FACTS, chosen_id)
    # What autovacuum does after the load: the recompute left every rollup row dead once.
    await pool.execute("VACUUM ANALYZE daily_rollups, daily_organization_rollups, message_facts")

    window = DateRange(end - timedelta(days=REPORT_DAYS - 1), end)
    breakdowns = {}
    for subject in dict.fromkeys([chosen, largest]):
        figures = await compare_breakdowns(pool, ids[subject.name], window, repeat)
        breakdowns[subject.name] = {"facts_of_organization": subject.facts, **figures}

    return {
        "organization": chosen.name, "connectors": len(chosen.routes) - 2,
        "one_day": {key: round(value, 4) if isinstance(value, float) else value
                    for key, value in loaded.items()},
        "full_recompute_seconds": round(full, 2),
        "organization_recompute_seconds": round(own, 3),
        "ratio_full_to_add": round(full / loaded["add_to_rollups_seconds"]),
        "ratio_full_to_refresh_day": round(full / loaded["refresh_day_seconds"]),
        "rollup_rows_differing_from_facts": differing,
        "tls_breakdown_90_days": breakdowns,
    }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--organizations", type=int, default=200)
    parser.add_argument("--facts", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--end", type=date.fromisoformat, default=datetime.now(UTC).date())
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--organization", type=int, default=0,
                        help="number of the organization that loads one more day")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-load", action="store_true",
                        help="the database holds the generated load already")
    return parser.parse_args()


async def run(options: argparse.Namespace, pool: asyncpg.Pool) -> dict[str, Any]:
    figures: dict[str, Any] = {"load_average_before": os.getloadavg()}
    shape = {"organizations": options.organizations, "facts": options.facts,
             "days": options.days, "seed": options.seed, "end": options.end,
             "prefix": options.prefix}
    if not options.skip_load:
        figures["load"] = await generate(pool, **shape)
    figures |= await measure(pool, **shape, organization=options.organization,
                             repeat=options.repeat)
    figures["load_average_after"] = os.getloadavg()
    return figures


def main() -> None:
    from mailflow.settings import get_settings
    from mailflow.store.db import open_database

    options = arguments()

    async def work() -> dict[str, Any]:
        async with open_database(get_settings()) as pool:
            return await run(options, pool)

    print(json.dumps(asyncio.run(work()), default=str))


if __name__ == "__main__":
    main()
