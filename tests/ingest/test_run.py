"""The ingest runner: files in, facts stored, a summary that says what happened."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import os
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailflow.domain import MessageFact
from mailflow.ingest import run
from mailflow.ingest.run import ingest_postfix_files
from mailflow.store.facts import InvalidMessageFactError


def messages(count: int, *, day: int = 27, start: int = 0, nrcpt: str = "1") -> str:
    """``count`` inbound messages of three lines each: client=, queued, removed."""
    lines = []
    for n in range(start, start + count):
        stamp = f"Jan {day} 10:{n // 60 % 60:02d}:{n % 60:02d}"
        lines += [
            f"{stamp} mx1 postfix/smtpd[200]: Q{n:07d}: client=mx.example.net[203.0.113.5]\n",
            f"{stamp} mx1 postfix/qmgr[50]: Q{n:07d}: from=<a@example.net>, size=1000, "
            f"nrcpt={nrcpt} (queue active)\n",
            f"{stamp} mx1 postfix/qmgr[50]: Q{n:07d}: removed\n",
        ]
    return "".join(lines)


def write(path: Path, text: str, *, modified: datetime | None = None) -> str:
    path.write_text(text)
    if modified is not None:
        os.utime(path, (modified.timestamp(), modified.timestamp()))
    return str(path)


async def stored(pool: asyncpg.Pool) -> tuple[int, int]:
    """Facts stored, and messages counted by the daily rollups."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM message_facts), "
        "(SELECT coalesce(sum(messages), 0) FROM daily_rollups)"
    )
    assert row is not None
    return row[0], row[1]


async def test_an_absurd_recipient_count_loses_that_count_and_every_fact_is_stored(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write(tmp_path / "mail.log", messages(3) + messages(1, start=3, nrcpt="99999999999"))

    report, result = await ingest_postfix_files(pool, "acme", [log], year=2021, progress=False)

    assert (result.inserted, report.problems) == (4, [])
    assert await stored(pool) == (4, 4)
    assert await pool.fetchval("SELECT sum(recipients) FROM message_facts") == 3
    assert "values stored as 0: recipient count out of range: 1" in capsys.readouterr().err


async def test_a_line_too_long_is_counted_as_read_and_skipped_and_the_rest_stored(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "mail.log"
    long_line = b"x" * (5 * 2**20) + b"\n"
    log.write_bytes(messages(1).encode() + long_line + messages(1, start=1).encode())
    endless = tmp_path / "endless.log"
    endless.write_bytes(b"x" * (5 * 2**20))

    report, result = await ingest_postfix_files(
        pool, "acme", [str(log), str(endless)], year=2021, progress=False
    )

    assert (report.lines, report.facts, result.inserted) == (8, 2, 2)
    assert report.skipped == {"line longer than 65536 characters": 2}
    assert report.unrecognized_files == [str(endless)]
    err = capsys.readouterr().err
    assert "acme: read 8 lines, found 2 message facts on 2021-01-27 (UTC)" in err
    assert "8 lines, 2 message facts, skipped lines: line longer than 65536 characters: 2" in err


async def test_a_message_at_the_end_of_the_calendar_is_out_of_range_not_a_traceback(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stamp = "9999-12-31T23:59:59+00:00"
    log = write(tmp_path / "mail.log", messages(1) + (
        f"{stamp} mx1 postfix/smtpd[200]: connect from mx.example.net[203.0.113.5]\n"
        f"{stamp} mx1 postfix/smtpd[200]: Q9: client=mx.example.net[203.0.113.5]\n"
        f"{stamp} mx1 postfix/qmgr[50]: Q9: from=<a@example.net>, size=1, nrcpt=1\n"
    ))

    report, result = await ingest_postfix_files(pool, "acme", [log], year=2021, progress=False)

    assert (report.lines, result.inserted, report.problems) == (6, 1, [])
    assert "1 message fact, skipped lines: timestamp out of range: 2" in capsys.readouterr().err


async def test_the_facts_before_a_truncated_gzip_and_of_the_files_after_it_are_stored(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = gzip.compress(messages(3000, day=26).encode())
    cut = tmp_path / "mail.log.1.gz"
    cut.write_bytes(whole[:20_000])
    after = write(tmp_path / "mail.log", messages(5, day=27))

    report, result = await ingest_postfix_files(
        pool, "acme", [str(cut), after], year=2021, progress=False
    )

    [problem] = report.problems
    assert problem.startswith(f"{cut}: the gzip stream is truncated after line ")
    lines_read = int(problem.split("after line ")[1].split(";")[0])
    queued_before_the_cut = (lines_read + 1) // 3  # a message counts once qmgr queued it
    assert 0 < queued_before_the_cut < 3000
    assert result.inserted == queued_before_the_cut + 5
    assert await stored(pool) == (result.inserted, result.inserted)
    assert f"  {problem}" in capsys.readouterr().err


async def test_a_directory_among_the_files_is_listed_as_a_problem_and_the_rest_loaded(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log = write(tmp_path / "mail.log", messages(2))

    report, result = await ingest_postfix_files(
        pool, "acme", [str(tmp_path), log], year=2021, progress=False
    )

    assert report.problems == [
        f"{tmp_path}: is a directory, not a log file; nothing was loaded from it"
    ]
    assert result.inserted == 2


async def test_a_file_with_no_postfix_line_is_named_in_a_warning(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    noise = tmp_path / "random.bin"
    noise.write_bytes(random.Random(7).randbytes(50_000))
    empty = write(tmp_path / "empty.log", "")
    log = write(tmp_path / "mail.log", messages(2))

    report, _ = await ingest_postfix_files(
        pool, "acme", [str(noise), empty, log], year=2021, progress=False
    )

    assert report.unrecognized_files == [str(noise)]
    assert report.problems == []
    assert (
        f"warning: no Postfix log lines found in {noise}: is this a Postfix log?"
        in capsys.readouterr().err
    )


async def test_the_summary_gives_the_days_of_the_facts_and_the_year_assumed_for_them(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    modified = datetime(2026, 3, 4, 12, tzinfo=UTC)
    older = write(tmp_path / "mail.log.1", messages(2, day=27),
                  modified=datetime(2026, 1, 1, tzinfo=UTC))
    newer = write(tmp_path / "mail.log", messages(2, day=28), modified=modified)

    await ingest_postfix_files(pool, "acme", [older, newer], year=None, progress=False)
    assumed = capsys.readouterr().err
    await ingest_postfix_files(pool, "acme", [older, newer], year=2021, progress=False)
    given = capsys.readouterr().err

    assert "found 4 message facts from 2026-01-27 to 2026-01-28 (UTC)" in assumed
    assert (
        "note: the log's time stamps carry no year: its first line was taken to be from 2026, "
        f"going by the modification time of {newer} (2026-03-04); if that is wrong, give --year"
    ) in assumed
    assert "found 4 message facts from 2021-01-27 to 2021-01-28 (UTC)" in given
    assert "note:" not in given


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, asyncio.CancelledError])
async def test_an_interrupted_ingest_keeps_the_committed_batches_and_says_how_to_finish(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, interruption: type[BaseException],
) -> None:
    log = write(tmp_path / "mail.log", messages(10))
    parse_postfix = run.parse_postfix

    def interrupted_after_five(*args: Any, **kwargs: Any) -> Iterator[MessageFact]:
        for number, fact in enumerate(parse_postfix(*args, **kwargs), 1):
            if number > 5:
                raise interruption
            yield fact

    monkeypatch.setattr(run, "parse_postfix", interrupted_after_five)
    with pytest.raises(interruption):
        await ingest_postfix_files(pool, "acme", [log], year=2021, progress=False, batch_size=2)
    monkeypatch.undo()
    message = capsys.readouterr().err
    after_interruption = await stored(pool)
    _, rerun = await ingest_postfix_files(pool, "acme", [log], year=2021, progress=False)

    assert message == (
        "interrupted: 4 facts loaded so far are kept; run the same command again to finish "
        "(loading is idempotent)\n"
    )
    assert after_interruption == (4, 4)
    assert (rerun.inserted, rerun.duplicates) == (6, 4)
    assert await stored(pool) == (10, 10)


async def test_an_ingest_stopped_by_an_error_says_what_it_kept(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = write(tmp_path / "mail.log", messages(3))
    parse_postfix = run.parse_postfix

    def third_fact_naive(*args: Any, **kwargs: Any) -> Iterator[MessageFact]:
        for number, fact in enumerate(parse_postfix(*args, **kwargs), 1):
            naive = fact.occurred_at.replace(tzinfo=None)
            yield dataclasses.replace(fact, occurred_at=naive) if number == 3 else fact

    monkeypatch.setattr(run, "parse_postfix", third_fact_naive)
    with pytest.raises(InvalidMessageFactError, match="naive occurred_at"):
        await ingest_postfix_files(pool, "acme", [log], year=2021, progress=False, batch_size=2)

    assert capsys.readouterr().err.startswith("stopped by an error: 2 facts loaded so far are kept")
    assert await stored(pool) == (2, 2)


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("log_format", "fixture", "year"),
    [
        (run.postfix_format(None), "iso_timestamps.log", "2021-"),
        (run.exim_format(), "exim/timestamps.log", "2021-"),
        (run.exchange_format(), "exchange_tracking.log", "2026-"),
    ],
    ids=["postfix", "exim", "exchange"],
)
@pytest.mark.parametrize("absurd", ["2200-", "1985-"])
async def test_facts_of_any_parser_outside_the_time_window_are_counted_not_stored(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    log_format: run.LogFormat, fixture: str, year: str, absurd: str,
) -> None:
    text = (FIXTURES / fixture).read_text()
    plausible, _ = await run.ingest_files(
        pool, "acme", [write(tmp_path / "mail.log", text)], log_format, progress=False)
    capsys.readouterr()

    report, result = await run.ingest_files(
        pool, "other", [write(tmp_path / "moved.log", text.replace(year, absurd))], log_format,
        progress=False)

    assert plausible.facts > 0
    assert (report.facts, result.inserted, report.problems) == (0, 0, [])
    assert report.skipped["timestamp out of range"] >= plausible.facts
    partitions = "SELECT count(*) FROM pg_class WHERE relname LIKE $1"
    assert await pool.fetchval(partitions, f"message_facts_{absurd[:4]}%") == 0
    assert "found 0 message facts: 0 new" in capsys.readouterr().err


async def test_the_summary_gives_utc_days_whatever_the_offset_of_the_times(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = tmp_path / "facts.ndjson"
    records.write_text(
        '{"source_key": "a", "occurred_at": "2026-05-01T00:00:00+14:00", "direction": "INBOUND"}\n'
        '{"source_key": "b", "occurred_at": "2026-05-02T23:00:00-12:00", "direction": "INBOUND"}\n'
    )

    await run.ingest_files(pool, "acme", [str(records)], run.records_format("ndjson"),
                           progress=False)

    assert "found 2 message facts from 2026-04-30 to 2026-05-03 (UTC)" in capsys.readouterr().err
    days = await pool.fetch("SELECT day FROM daily_rollups ORDER BY day")
    assert [str(row["day"]) for row in days] == ["2026-04-30", "2026-05-03"]


@pytest.mark.parametrize(("text", "command"), [
    (messages(1), "postfix"),
    ("2021-03-01 10:00:00 1lGnaA-0001aB-Cd <= a@example.net H=mx [203.0.113.5] S=1\n", "exim"),
    ("#Software: Microsoft Exchange Server\n", "exchange"),
    ('\n{"source_key": "k", "occurred_at": "2026-01-27T08:15:00Z", "direction": "INBOUND", '
     '"tls_version": "TLS1_3"}\n', "ndjson"),
    ("source_key,occurred_at,direction,tls_version\n", "csv"),
    ("\n\n   \nnothing of mail\n", None),
])
def test_the_command_for_a_file_of_another_format_is_guessed_from_its_first_lines(
    tmp_path: Path, text: str, command: str | None
) -> None:
    asked = run.exchange_format() if command == "postfix" else run.postfix_format(None)

    assert run.guess_command(write(tmp_path / "file", text), asked) == command


def test_no_command_is_guessed_for_a_named_pipe_so_the_summary_does_not_wait_for_a_writer(
    tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    guesses: list[str | None] = []
    guessing = threading.Thread(
        target=lambda: guesses.append(run.guess_command(str(fifo), run.postfix_format(None))))

    guessing.start()
    guessing.join(timeout=5)
    blocked = guessing.is_alive()
    if blocked:  # waiting in open() for a writer: let it go before failing
        with open(fifo, "w"):
            pass
        guessing.join()

    assert not blocked
    assert guesses == [None]
