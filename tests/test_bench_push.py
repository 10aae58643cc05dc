"""A short run of bench/push.py, so the benchmark keeps working; it asserts counts, not speed."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO, load_script


def load_bench() -> ModuleType:
    return load_script(REPO / "bench" / "push.py")


def test_a_short_push_benchmark_stores_every_generated_record(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = load_bench()
    monkeypatch.setenv("DATABASE_URL", database_url)

    figures = bench.run(3_000, seed=7, data_dir=tmp_path)

    assert figures["accepted"] == 3_000
    assert figures["duplicates"] == figures["rejected"] == 0
    assert figures["server_peak_rss_mib"] > 0
