"""`mailflow ingest postfix` when a log goes wrong: what the user reads, exit code, what is kept."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from mailflow.ingest.pipeline import DEFAULT_BATCH_SIZE

MAILFLOW = str(Path(sys.executable).parent / "mailflow")


def messages(count: int, *, start: int = 0, nrcpt: str = "1") -> str:
    """``count`` inbound messages of three lines each: client=, queued, removed."""
    lines = []
    for n in range(start, start + count):
        stamp = f"Jan 27 {n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}"
        lines += [
            f"{stamp} mx1 postfix/smtpd[200]: Q{n:07d}: client=mx.example.net[203.0.113.5]\n",
            f"{stamp} mx1 postfix/qmgr[50]: Q{n:07d}: from=<a@example.net>, size=4622, "
            f"nrcpt={nrcpt} (queue active)\n",
            f"{stamp} mx1 postfix/qmgr[50]: Q{n:07d}: removed\n",
        ]
    return "".join(lines)


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "MAILFLOW_LOG_LEVEL": "warning"}


def ingest(env: dict[str, str], *files: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAILFLOW, "ingest", "postfix", "--org", "acme", "--year", "2021", *files],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )


async def stored_facts(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM message_facts")
        return count
    finally:
        await connection.close()


async def test_an_absurd_recipient_count_loses_one_number_and_no_fact(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(messages(3) + messages(1, start=3, nrcpt="99999999999"))

    result = ingest(env, str(log))

    assert result.returncode == 0, result.stderr
    assert "no lines skipped; values stored as 0: recipient count out of range: 1" in result.stderr
    assert await stored_facts(database_url) == 4


async def test_absurd_sizes_time_stamps_and_long_lines_are_counted_and_the_rest_loaded(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    stamp = "9999-12-31T23:59:59+00:00"
    log = tmp_path / "mail.log"
    log.write_bytes("".join([
        messages(2),
        messages(1, start=2).replace("size=4622", "size=-1"),
        messages(1, start=3).replace("size=4622", "size=" + "9" * 5000),
        f"{stamp} mx1 postfix/smtpd[200]: connect from mx.example.net[203.0.113.5]\n",
        f"{stamp} mx1 postfix/smtpd[200]: Q9: client=mx.example.net[203.0.113.5]\n",
        f"{stamp} mx1 postfix/qmgr[50]: Q9: from=<a@example.net>, size=1, nrcpt=1\n",
    ]).encode() + b"\0" * 300_000 + b"x" * 300_000 + b"\n")

    result = ingest(env, str(log))

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "acme: read 16 lines, found 4 message facts on 2021-01-27 (UTC)" in result.stderr
    assert ("skipped lines: timestamp out of range: 2, line longer than 65536 characters: 1; "
            "values stored as 0: size out of range: 2") in result.stderr
    assert await stored_facts(database_url) == 4


async def test_a_delivery_to_a_relay_address_that_is_no_ip_is_summarised_as_skipped(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    sent = ("Jan 27 10:00:02 mx1 postfix/smtp[300]: {queue_id}: to=<x@out.example>, "
            "relay=mx.out.example[{ip}]:25, delay=1, dsn=2.0.0, status=sent (250 ok)\n")
    log = tmp_path / "mail.log"
    log.write_text(
        sent.format(queue_id="B0000001", ip="198.51.100.300")
        + sent.format(queue_id="B0000002", ip="198.51.100.30")
    )

    result = ingest(env, str(log))

    assert result.returncode == 0, result.stderr
    assert ("2 lines, 1 message fact, skipped lines: "
            "postfix line whose client or relay address is not an IP address: 1\n"
            ) in result.stderr
    assert await stored_facts(database_url) == 1


async def test_a_truncated_gzip_is_named_and_the_lines_before_it_are_loaded(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    truncated = tmp_path / "mail.log.2.gz"
    truncated.write_bytes(gzip.compress(messages(3000).encode())[:20_000])

    result = ingest(env, str(truncated))

    assert f"{truncated}: the gzip stream is truncated after line " in result.stderr
    assert "the lines before it were loaded" in result.stderr
    assert "Aborted" not in result.stderr
    assert 0 < await stored_facts(database_url) < 3000


async def test_a_file_of_records_given_to_ingest_postfix_names_its_command_and_exits_1(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    records = tmp_path / "facts.ndjson"
    records.write_text('{"source_key": "mx1/1", "occurred_at": "2021-01-27T08:15:00Z", '
                       '"direction": "INBOUND", "tls_version": "TLS1_3"}\n')
    log = tmp_path / "mail.log"
    log.write_text(messages(2))

    result = ingest(env, str(records), str(log))

    assert result.returncode == 1, result.stderr
    assert (f"warning: no Postfix log lines found in {records}: it looks like NDJSON records: "
            "load it with `mailflow ingest ndjson`") in result.stderr
    assert await stored_facts(database_url) == 2  # the good file is loaded all the same


def test_a_postfix_log_exits_0(env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(messages(2))

    result = ingest(env, str(log))

    assert (result.returncode, result.stderr.count("warning")) == (0, 0), result.stderr


def test_an_ingest_that_could_not_read_a_file_to_the_end_exits_1(
    env: dict[str, str], tmp_path: Path
) -> None:
    header_only = tmp_path / "mail.log.2.gz"
    header_only.write_bytes(gzip.compress(messages(1).encode())[:10])
    log = tmp_path / "mail.log"
    log.write_text(messages(1))

    result = ingest(env, str(header_only), str(log))

    assert result.returncode == 1, result.stderr


async def test_ctrl_c_keeps_the_committed_batches_says_so_and_exits_130(
    env: dict[str, str], database_url: str
) -> None:
    ingesting = await asyncio.create_subprocess_exec(
        MAILFLOW, "ingest", "postfix", "--org", "acme", "--year", "2021", "-",
        env=env, stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert ingesting.stdin is not None
    assert ingesting.stderr is not None
    # A batch and more than a read buffer: the first is committed, then the ingest waits.
    ingesting.stdin.write(messages(DEFAULT_BATCH_SIZE + 1000).encode())
    await ingesting.stdin.drain()
    deadline = time.monotonic() + 60
    while await stored_facts(database_url) < DEFAULT_BATCH_SIZE:
        assert time.monotonic() < deadline, "the first batch was never committed"
        assert ingesting.returncode is None
        await asyncio.sleep(0.1)

    ingesting.send_signal(signal.SIGINT)
    ingesting.stdin.close()
    errors = await asyncio.wait_for(ingesting.stderr.read(), timeout=60)
    returncode = await asyncio.wait_for(ingesting.wait(), timeout=60)

    assert returncode == 130
    assert errors.decode().startswith(
        f"interrupted: {DEFAULT_BATCH_SIZE} facts loaded so far are kept; "
        "run the same command again to finish (loading is idempotent)"
    )
    assert await stored_facts(database_url) == DEFAULT_BATCH_SIZE


def test_ingest_ndjson_stores_good_records_names_rejected_ones_and_exits_1(
    env: dict[str, str], database_url: str, tmp_path: Path,
) -> None:
    good = '{"source_key": "k%d", "occurred_at": "2026-01-27T08:00:00Z", "direction": "INBOUND"}\n'
    first = tmp_path / "first.ndjson"
    first.write_text(good % 1 + '{"source_key": "bad"}\n')
    second = tmp_path / "second.ndjson.gz"
    second.write_bytes(gzip.compress((good % 2 + "[1]\n").encode()))

    result = subprocess.run(
        [MAILFLOW, "ingest", "ndjson", "--org", "acme", str(first), str(second)],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )

    assert result.returncode == 1, result.stderr
    assert "2 new, 0 already loaded" in result.stderr
    assert f"{first}, line 2: occurred_at is missing" in result.stderr
    assert f"{second}, line 2: a record is a JSON object {{...}}, not a list [1]" in result.stderr
    assert asyncio.run(stored_facts(database_url)) == 2


@pytest.mark.parametrize(("asked", "listed", "after"), [
    ([], 20, "  ... and 30 more (--rejections N lists up to 1,000)"),
    (["--rejections", "50"], 50, None),
    (["--rejections", "0"], 0, "  ... and 50 more (--rejections N lists up to 1,000)"),
])
def test_the_summary_lists_as_many_rejected_records_as_asked_and_counts_the_rest(
    env: dict[str, str], tmp_path: Path, asked: list[str], listed: int, after: str | None,
) -> None:
    records = tmp_path / "records.ndjson"
    records.write_text("".join(f'{{"source_key": "k{n}"}}\n' for n in range(50)))

    result = subprocess.run(
        [MAILFLOW, "ingest", "ndjson", "--org", "acme", *asked, str(records)],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )

    lines = result.stderr.splitlines()
    named = [line for line in lines if ", line " in line and "occurred_at is missing" in line]
    assert len(named) == listed, result.stderr
    assert "50 records rejected:" in lines
    assert (after in lines) if after else not any("more" in line for line in lines)


def test_records_rejected_for_their_values_are_of_the_format_and_a_csv_file_is_not_ndjson(
    env: dict[str, str], tmp_path: Path,
) -> None:
    sideways = tmp_path / "sideways.ndjson"
    sideways.write_text('{"source_key": "k1", "occurred_at": "2026-01-27T08:00:00Z", '
                        '"direction": "SIDEWAYS"}\n\n')
    table = tmp_path / "table.csv"
    table.write_text("source_key,occurred_at,direction\nk2,2026-01-27T08:00:00Z,INBOUND\n\n")

    result = subprocess.run(
        [MAILFLOW, "ingest", "ndjson", "--org", "acme", str(sideways), str(table)],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )

    assert result.returncode == 1, result.stderr
    assert f"{sideways}, line 1: direction 'SIDEWAYS' is not one of" in result.stderr
    assert f"no NDJSON log lines found in {sideways}" not in result.stderr
    assert f"warning: no NDJSON log lines found in {table}" in result.stderr


def test_ingest_csv_reads_the_header_of_each_file(
    env: dict[str, str], database_url: str, tmp_path: Path,
) -> None:
    csv = "source_key,occurred_at,direction\n{0},2026-01-27T08:00:00Z,OUTBOUND\n"
    files = [tmp_path / "a.csv", tmp_path / "b.csv"]
    files[0].write_text(csv.format("a"))
    files[1].write_text(csv.format("b"))

    result = subprocess.run(
        [MAILFLOW, "ingest", "csv", "--org", "acme", *map(str, files)],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )

    assert result.returncode == 0, result.stderr
    assert "2 new" in result.stderr
    assert asyncio.run(stored_facts(database_url)) == 2
