"""A short run of bench/push.py, so the benchmark keeps working; it asserts counts, not speed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).parents[1] / "bench" / "push.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_push", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_short_push_benchmark_stores_every_generated_record(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = load_bench()
    monkeypatch.setenv("DATABASE_URL", database_url)

    figures = bench.run(3_000, seed=7, data_dir=tmp_path)

    assert figures["accepted"] == 3_000
    assert figures["duplicates"] == figures["rejected"] == 0
    assert figures["server_peak_rss_mib"] > 0
