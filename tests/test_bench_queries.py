"""A short run of bench/queries.py's mailflow part, so the comparison keeps working: mailflow
with and without its response cache and the stack's limit, a few clients for a second each,
on a small generated data set. PostGraphile (npm) is left out. It asserts what was answered,
not how fast."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path

from tests.conftest import REPO, load_script


def test_a_short_comparison_checks_the_answers_equal_and_measures_every_target(
    database_url: str, tmp_path: Path
) -> None:
    bench = load_script(REPO / "bench" / "queries.py")
    days = [date.today() - timedelta(days=offset) for offset in range(34, -1, -1)]
    stored = asyncio.run(bench.load_data(database_url, 2, 3, days, 2))
    assert stored == 2 * 4 * 35 * 2  # three connectors and mail of none, each day

    names = ["mailflow", "mailflow-uncached", "limit"]
    options = bench.Options(names, rounds=2, seconds=1, warmup=0, connections=3,
                            client="python", sample=6)
    figures = bench.compare(database_url, options, tmp_path)

    assert figures["organizations"] == 2
    assert figures["requests_to_draw_from"] == 2 * 6  # six 30-day windows in 35 days
    assert figures["answers_checked_equal"] == 6
    assert sorted(figures["medians"]) == sorted(names)
    for measurement in figures["measurements"]:
        assert measurement["requests"] > 0, measurement
        assert measurement["errors"] == 0, measurement
    assert set(figures["ratios"]) == {"mailflow/limit", "mailflow-uncached/limit"}
