"""A short run of bench/ingest.py, so the benchmark keeps working; it asserts that its figures
agree with each other and with the generator, not speeds."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO, load_script


def load_bench() -> ModuleType:
    return load_script(REPO / "bench" / "ingest.py")


def test_a_short_ingest_benchmark_stores_every_fact_it_parses(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = load_bench()
    monkeypatch.setenv("DATABASE_URL", database_url)
    pflogsumm = shutil.which("pflogsumm") is not None
    if not pflogsumm:
        print("pflogsumm is not installed: its part of the benchmark is not run")
    database = bench.Database(tmp_path)

    result = bench.speed(tmp_path, size_mb=2, count=3_000, rounds=2, seed=3, batch_size=500,
                         workers=2, pflogsumm=pflogsumm, database=database)

    generated, runs = result["generated"], result["runs"]
    assert generated["facts"] > 500
    for parse, store in zip(runs["parse"], runs["store"], strict=True):
        assert parse["lines"] == store["lines"] == generated["lines"]
        assert parse["facts"] == store["facts"] == generated["facts"]
        assert parse["skipped"] == store["skipped"] == 0
        # Each round stores into an organization of its own: every fact is new there.
        assert store["inserted"] == store["stored"] == store["rolled_up"] == store["facts"]
        assert store["duplicates"] == 0
    for ndjson in runs["ndjson_store"]:
        assert ndjson["inserted"] == ndjson["stored"] == ndjson["rolled_up"] == 3_000
        assert ndjson["workers"] == 2
        assert ndjson["peak_rss_mib"] > ndjson["workers_rss_mib"] > 0
    assert len(runs["pflogsumm"]) == (2 if pflogsumm else 0)
    medians = result["medians"]
    for kind in ("parse", "store", "ndjson_store"):  # two runs: the median is their mean
        mean = sum(run["seconds"] for run in runs[kind]) / 2
        assert medians[kind]["seconds"] == round(mean, 2)
        assert medians[kind]["facts_per_second"] == round(runs[kind][0]["facts"] / mean)
    assert ("times_pflogsumm" in medians["parse"]) == pflogsumm
    assert all(run["peak_rss_mib"] > 0 for kind in runs.values() for run in kind)


def test_the_memory_run_measures_each_input_size(tmp_path: Path) -> None:
    bench = load_bench()

    measured = bench.memory(tmp_path, [0.5, 1], seed=3, store=False, batch_size=0,
                            database=None)

    assert [figures["size_mb"] for figures in measured] == [0.5, 1]
    for figures in measured:
        assert figures["parse"]["facts"] == figures["generated"]["facts"]
        assert figures["parse"]["peak_rss_mib"] > 0
    assert measured[0]["generated"]["lines"] < measured[1]["generated"]["lines"]
    assert not list(tmp_path.glob("*.log")), "each generated log is removed after its run"
