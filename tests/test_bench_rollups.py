"""A short run of bench/rollups.py, so the rollup benchmark keeps working: it asserts that its
figures agree with the load, not how fast anything is."""

from __future__ import annotations

import argparse
from datetime import date

import asyncpg

from tests.conftest import REPO, load_script


async def test_a_short_rollup_benchmark_agrees_with_its_facts(pool: asyncpg.Pool) -> None:
    bench = load_script(REPO / "bench" / "rollups.py")
    options = argparse.Namespace(organizations=3, facts=9_000, days=120, seed=2,
                                 end=date(2026, 11, 30), prefix="bench", organization=0,
                                 repeat=2, skip_load=False)

    figures = await bench.run(options, pool)

    assert figures["load"]["inserted"] == 9_000
    assert figures["organization"] == "bench000"
    assert figures["connectors"] == 100
    one_day = figures["one_day"]
    assert one_day["inserted"] == one_day["facts"] > 0
    assert figures["rollup_rows_differing_from_facts"] == 0
    breakdowns = figures["tls_breakdown_90_days"]
    assert "bench000" in breakdowns
    for figure in breakdowns.values():
        assert 0 < figure["messages"] < figure["facts_of_organization"] + one_day["facts"]
        assert figure["rollups_ms"] > 0
        assert figure["facts_ms"] > 0
        assert figure["rollups_server_ms"] > 0
        assert figure["facts_server_ms"] > 0
    assert figures["full_recompute_seconds"] > 0
    # The day loaded last is counted in the rollups: 9,000 facts and that day's.
    rolled_up = await pool.fetchval("SELECT sum(messages) FROM daily_rollups")
    assert rolled_up == 9_000 + one_day["facts"]
