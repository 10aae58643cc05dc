"""`mailflow ingest ndjson|csv --workers N`: worker processes read, count and store records
exactly as one process does, and a load killed midway leaves no worker behind."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailflow.ingest.parallel import PARALLEL_MIN_BYTES, worker_count

MAILFLOW = str(Path(sys.executable).parent / "mailflow")
ORGANIZATION = """\
organization: {name}
accepted_domains: [example.com]
connectors:
  - name: Partners
    direction: inbound
    kind: partner
    sender_domains: [partner1.example.net]
"""
ROLLUPS = """
    SELECT r.day, r.direction, c.name AS connector, r.tls_version, r.messages, r.recipients,
           r.bytes
    FROM daily_rollups AS r
    JOIN organizations AS o ON o.id = r.organization_id
    LEFT JOIN connectors AS c ON c.id = r.connector_id
    WHERE o.name = $1
    ORDER BY 1, 2, 3 NULLS FIRST, 4
"""
FACTS = """
    SELECT f.source_key, f.occurred_at, f.direction, c.name AS connector, f.tls_version,
           f.recipients, f.size_bytes
    FROM message_facts AS f
    JOIN organizations AS o ON o.id = f.organization_id
    LEFT JOIN connectors AS c ON c.id = f.connector_id
    WHERE o.name = $1
    ORDER BY 1, 2
"""


def record(number: int, **fields: Any) -> dict[str, Any]:
    inbound = number % 3 != 0
    partner = f"partner{number % 4}.example.net"
    return {
        "source_key": f"mx1/{number}",
        "occurred_at": f"2026-03-{1 + number % 5:02d}T{number % 24:02d}:15:00Z",
        "direction": "INBOUND" if inbound else "OUTBOUND",
        "tls_version": ("TLS1_2", "TLS1_3", "NONE")[number % 3],
        "sender_domain": partner if inbound else "example.com",
        "recipient_domains": ["example.com" if inbound else partner],
        "recipients": 1 + number % 2,
        "size_bytes": 1000 + number,
        **fields,
    }


def ndjson(*records: dict[str, Any] | str) -> str:
    return "".join((item if isinstance(item, str) else json.dumps(item)) + "\n"
                   for item in records)


def mailflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAILFLOW, *args], env=env, capture_output=True, text=True,
                          check=False, timeout=300)


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "MAILFLOW_LOG_LEVEL": "warning"}
    for name in ("alone", "workers"):
        file = tmp_path / f"{name}.yaml"
        file.write_text(ORGANIZATION.format(name=name))
        assert mailflow(env, "org", "apply", str(file)).returncode == 0
    return env


async def stored(database_url: str, organization: str) -> tuple[list[Any], list[Any]]:
    connection = await asyncpg.connect(database_url)
    try:
        rollups = [tuple(row) for row in await connection.fetch(ROLLUPS, organization)]
        facts = [tuple(row) for row in await connection.fetch(FACTS, organization)]
        return rollups, facts
    finally:
        await connection.close()


def said(summary: str) -> str:
    """The summary without the accepted range's end, which moves with the clock."""
    return re.sub(r"after now \(\S+Z\)", "after now", summary)


async def assert_loaded_alike(
    env: dict[str, str], database_url: str, kind: str, files: list[Path]
) -> str:
    """Load ``files`` alone and with two workers (a few lines a batch); both say and store
    the same. The summary is returned."""
    names = [str(file) for file in files]
    alone = mailflow(env, "ingest", kind, "--org", "alone", "--workers", "1",
                     "--batch-size", "7", *names)
    workers = mailflow(env, "ingest", kind, "--org", "workers", "--workers", "2",
                       "--batch-size", "7", *names)

    assert workers.returncode == alone.returncode
    assert said(workers.stderr).replace("workers:", "alone:", 1) == said(alone.stderr)
    assert await stored(database_url, "workers") == await stored(database_url, "alone")
    return workers.stderr


async def test_records_loaded_by_workers_are_counted_rejected_and_stored_as_by_one_process(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    first = tmp_path / "first.ndjson"
    first.write_text("\ufeff" + ndjson(
        *(record(n) for n in range(12)),
        "not json",
        record(12, direction="SIDEWAYS"),
        "",
        *(record(n) for n in range(13, 30)),
        record(30, colour="blue"),
        record(33, tls_cipher="x" * 70_000),
        record(31, occurred_at="1970-01-01T00:00:00Z"),
    ))
    second = tmp_path / "second.ndjson.gz"
    second.write_bytes(gzip.compress(ndjson(
        record(5),  # already in the first file
        *(record(n) for n in range(40, 61)),
        record(61, recipients=-1),
    ).encode()))

    summary = await assert_loaded_alike(env, database_url, "ndjson", [first, second])

    assert "6 records rejected:" in summary
    assert "first.ndjson, line 13: not JSON" in summary
    assert "first.ndjson, line 14: direction 'SIDEWAYS'" in summary
    assert "first.ndjson, line 33: unknown field 'colour'" in summary
    assert "first.ndjson, line 34: the line is longer than 65536 characters" in summary
    assert "first.ndjson, line 35: occurred_at '1970-01-01T00:00:00Z' is outside" in summary
    assert "second.ndjson.gz, line 23: recipients" in summary
    assert ": 50 new, 1 already loaded;" in summary
    _, facts = await stored(database_url, "workers")
    assert len(facts) == 50


async def test_csv_records_below_the_header_of_their_file_load_with_workers_as_alone(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    columns = ("source_key", "occurred_at", "direction", "tls_version", "recipients")
    rows = [",".join(str(record(n)[column]) for column in columns) for n in range(25)]
    rows[17] = rows[17].replace("INBOUND", "UPWARD").replace("OUTBOUND", "UPWARD")
    good = tmp_path / "good.csv"
    good.write_text("\ufeff\n\n" + "Source_Key,occurred_at,DIRECTION,tls_version,recipients\n"
                    + "\n".join(rows) + "\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("source_key,when,direction\n" + "\n".join(rows) + "\n")

    summary = await assert_loaded_alike(env, database_url, "csv", [good, bad])

    assert "good.csv, line 21: direction 'UPWARD'" in summary
    assert "bad.csv, line 1: the CSV header names the unknown column 'when'" in summary
    assert "line under a bad CSV header: 25" in summary
    _, facts = await stored(database_url, "workers")
    assert len(facts) == 24


async def test_a_csv_line_too_long_is_rejected_by_number_and_the_header_after_it_read(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    records = tmp_path / "long.csv"
    records.write_text("x" * 70_000 + "\nsource_key,occurred_at,direction\n"
                       + "".join(f"k{n},2026-03-01T10:00:00Z,INBOUND\n" for n in range(9)))

    summary = await assert_loaded_alike(env, database_url, "csv", [records])

    assert "long.csv, line 1: the line is longer than 65536 characters" in summary
    _, facts = await stored(database_url, "workers")
    assert len(facts) == 9


async def test_a_load_by_workers_killed_midway_leaves_no_worker_and_loads_alike_when_run_again(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    records = tmp_path / "records.ndjson"
    records.write_text(ndjson(*(record(n) for n in range(6000))))
    arguments = ("ingest", "ndjson", "--workers", "2", "--batch-size", "10", str(records))
    assert mailflow(env, *arguments[:2], "--org", "alone", *arguments[2:]).returncode == 0

    load = await asyncio.create_subprocess_exec(
        MAILFLOW, *arguments[:2], "--org", "workers", *arguments[2:], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    connection = await asyncpg.connect(database_url)
    try:
        for _ in range(600):
            if await connection.fetchval("SELECT count(*) FROM message_facts") > 6000:
                break
            await asyncio.sleep(0.05)
        load.send_signal(signal.SIGKILL)
        await asyncio.wait_for(load.wait(), timeout=10)
        for _ in range(300):  # each worker's session ends with the worker
            sessions = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mailflow'")
            if sessions == 0:
                break
            await asyncio.sleep(0.1)
        assert sessions == 0
        partly = await connection.fetchval("SELECT count(*) FROM message_facts")
    finally:
        await connection.close()
    assert 6000 < partly < 12000, "the kill should fall within the load"

    again = mailflow(env, *arguments[:2], "--org", "workers", *arguments[2:])

    assert again.returncode == 0, again.stderr
    assert await stored(database_url, "workers") == await stored(database_url, "alone")


def test_workers_are_one_a_core_for_large_files_and_none_for_small_ones_or_stdin(
    tmp_path: Path
) -> None:
    small = tmp_path / "small.ndjson"
    small.write_text(ndjson(record(1)))
    large = tmp_path / "large.ndjson"
    with large.open("wb") as file:
        file.truncate(PARALLEL_MIN_BYTES)
    cores = len(os.sched_getaffinity(0))

    assert worker_count(3, [str(small)]) == 3
    assert worker_count(0, [str(small)]) == 1
    assert worker_count(0, [str(large), "-"]) == 1
    assert worker_count(0, [str(large)]) == min(cores, 4)


async def test_a_byte_order_mark_below_the_first_line_is_read_alike_with_workers(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    records = tmp_path / "marked.csv"
    records.write_text("\n\ufeffsource_key,occurred_at,direction\n"
                       + "".join(f"k{n},2026-03-01T10:00:00Z,INBOUND\n" for n in range(9)))

    await assert_loaded_alike(env, database_url, "csv", [records])


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
async def test_a_load_by_workers_stopped_midway_says_exactly_how_many_facts_it_kept(
    env: dict[str, str], database_url: str, tmp_path: Path, stop: signal.Signals
) -> None:
    records = tmp_path / "records.ndjson"
    records.write_text(ndjson(*(record(n) for n in range(6000))))
    load = await asyncio.create_subprocess_exec(
        MAILFLOW, "ingest", "ndjson", "--org", "stopped", "--workers", "2", "--batch-size", "10",
        str(records), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    connection = await asyncpg.connect(database_url)
    try:
        for _ in range(600):
            if await connection.fetchval("SELECT count(*) FROM message_facts") > 100:
                break
            await asyncio.sleep(0.05)
        load.send_signal(stop)
        _, errors = await asyncio.wait_for(load.communicate(), timeout=30)
        kept = await connection.fetchval("SELECT count(*) FROM message_facts")
    finally:
        await connection.close()
    assert 100 < kept < 6000, "the signal should fall within the load"

    said = errors.decode()
    assert load.returncode == 128 + stop, said
    assert f"interrupted: {kept} facts loaded so far are kept" in said
    assert "Traceback" not in said
    assert "leaked" not in said


def child_processes(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return len(children.read_text().split()) if children.exists() else 0


async def test_ctrl_c_while_the_workers_start_prints_no_worker_traceback(
    env: dict[str, str], tmp_path: Path
) -> None:
    records = tmp_path / "records.ndjson"
    records.write_text(ndjson(*(record(n) for n in range(2000))))
    load = await asyncio.create_subprocess_exec(
        MAILFLOW, "ingest", "ndjson", "--org", "early", "--workers", "2", str(records), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    for _ in range(2000):  # the resource tracker and the first worker have been started
        if child_processes(load.pid) >= 2:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.1)  # the worker runs Python by now, and is still importing
    os.killpg(load.pid, signal.SIGINT)  # as Ctrl-C reaches the whole process group
    _, errors = await asyncio.wait_for(load.communicate(), timeout=30)

    assert load.returncode == 130, errors.decode()
    assert "Traceback" not in errors.decode()


def process_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []


async def test_a_load_killed_while_a_worker_starts_leaves_no_worker_waiting(
    env: dict[str, str], tmp_path: Path
) -> None:
    records = tmp_path / "records.ndjson"
    records.write_text(ndjson(*(record(n) for n in range(2000))))
    load = await asyncio.create_subprocess_exec(
        MAILFLOW, "ingest", "ndjson", "--org", "orphans", "--workers", "2", str(records), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(2000):  # the resource tracker and the first worker have been started
        if len(children_of(load.pid)) >= 2:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.1)  # the worker is importing, before it can ask to die with us
    started = children_of(load.pid)
    load.send_signal(signal.SIGKILL)
    await load.wait()

    for _ in range(300):
        if not any(process_alive(pid) for pid in started):
            break
        await asyncio.sleep(0.1)
    assert not any(process_alive(pid) for pid in started)
