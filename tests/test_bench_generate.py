"""A short run of bench/generate.py: the load it makes is the one asked for, the same for the
same seed, stored through the ingest path (rollups equal to facts), and loading it again
stores nothing new."""

from __future__ import annotations

import statistics
from datetime import date
from types import ModuleType

import asyncpg

from tests.conftest import REPO, load_script

END = date(2026, 11, 29)  # a Sunday


def load_generator() -> ModuleType:
    return load_script(REPO / "bench" / "generate.py")


async def fact_rows(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    rows = await pool.fetch(
        "SELECT o.name, f.source_key, f.occurred_at, f.direction, c.name AS connector, "
        "f.tls_version, f.recipients, f.size_bytes FROM message_facts AS f "
        "JOIN organizations AS o ON o.id = f.organization_id "
        "LEFT JOIN connectors AS c ON c.organization_id = f.organization_id "
        "AND c.id = f.connector_id ORDER BY 1, 2")
    return [tuple(row.values()) for row in rows]


async def test_a_short_generated_load_is_what_was_asked_and_the_same_for_the_same_seed(
    pool: asyncpg.Pool,
) -> None:
    generator = load_generator()
    shape = {"organizations": 4, "facts": 12_000, "days": 28, "end": END}

    first = await generator.generate(pool, seed=5, batch_size=2_000, quiet=True, **shape)
    facts = await fact_rows(pool)
    again = await generator.generate(pool, seed=5, batch_size=2_000, quiet=True, **shape)

    assert first["inserted"] == 12_000
    assert first["duplicates"] == 0
    assert again["inserted"] == 0
    assert again["duplicates"] == 12_000
    assert await fact_rows(pool) == facts
    assert len(facts) == 12_000
    names = {row[0] for row in facts}
    assert names == {"bench000", "bench001", "bench002", "bench003"}
    counts = dict(await pool.fetch("SELECT o.name, count(*) FROM connectors AS c JOIN "
                                   "organizations AS o ON o.id = c.organization_id GROUP BY 1"))
    assert counts["bench000"] == 100
    assert all(2 <= counts[name] <= 20 for name in names - {"bench000"})
    days = {row[2].date() for row in facts}
    assert min(days) == date(2026, 11, 2)
    assert max(days) == END
    # Classified by the organizations' connectors: most mail has one, some has none.
    with_connector = sum(1 for row in facts if row[4] is not None)
    assert 0.5 < with_connector / len(facts) < 0.9
    # Weekdays carry more mail than weekends; office hours more than the night.
    by_day = [sum(1 for row in facts if row[2].date() == day) for day in sorted(days)]
    weekdays = [n for day, n in zip(sorted(days), by_day, strict=True) if day.weekday() < 5]
    weekends = [n for day, n in zip(sorted(days), by_day, strict=True) if day.weekday() >= 5]
    assert statistics.mean(weekdays) > 2 * statistics.mean(weekends)
    versions = {row[5] for row in facts}
    assert {"NONE", "TLS1_2", "TLS1_3"} <= versions
    # Stored the way an ingest stores: the rollups count exactly the facts.
    rolled = await pool.fetchval("SELECT sum(messages) FROM daily_rollups")
    summed = await pool.fetchval("SELECT sum(messages) FROM daily_organization_rollups")
    assert rolled == summed == 12_000


async def test_another_seed_makes_other_facts(pool: asyncpg.Pool) -> None:
    generator = load_generator()
    one = generator.plan(3, 9_000, seed=1, prefix="bench")
    other = generator.plan(3, 9_000, seed=2, prefix="bench")

    assert sum(o.facts for o in one) == sum(o.facts for o in other) == 9_000
    assert [o.facts for o in one] != [o.facts for o in other]
    day = generator.facts_of_day(one[1], END, 50, 1, 0)
    assert [f.occurred_at for f in day] == sorted(f.occurred_at for f in day)
    assert day == generator.facts_of_day(one[1], END, 50, 1, 0)
