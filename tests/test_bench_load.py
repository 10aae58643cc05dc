"""A short run of bench/load.py, so the load script keeps working: a few clients for a few
seconds, PostgreSQL restarted once under them. It asserts what was answered, not how fast."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO, load_script


def test_a_short_load_run_has_no_errors_and_answers_again_after_a_restart(
    tmp_path: Path,
) -> None:
    bench = load_script(REPO / "bench" / "load.py")

    # Few clients send more per token than the default rate allows; the limit has tests of its own.
    figures = bench.run(4, seconds=4, outage_seconds=1, data_dir=tmp_path, rate_limit="off")

    steady, restarted = figures["steady"], figures["outage_run"]
    assert steady["requests"] > 0
    assert steady["errors"] == 0, steady["errors_by_kind"]
    outage = restarted["outage"]
    assert outage["unavailable_503"] > 0
    assert outage["other_errors"] == {}
    assert outage["recovered_within_target"], outage
    assert "ERROR" not in figures["server_log_lines"]
