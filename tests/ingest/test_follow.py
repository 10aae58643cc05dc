"""Following a growing Postfix log: new lines, rotation, restarts, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from tests.conftest import realdata
from tests.ingest.follow_helpers import TIMEOUT, eventually, tls_message, tls_messages

from mailflow.ingest import follow
from mailflow.ingest.follow import CannotFollowError, follow_postfix_file
from mailflow.ingest.network import BoundaryPolicy
from mailflow.ingest.pipeline import LoadResult
from mailflow.ingest.postfix import PostfixParser
from mailflow.ingest.report import IngestReport
from mailflow.ingest.run import ingest_postfix_files
from mailflow.store.organizations import connector_config, create_connector, find_organization


async def counts(pool: asyncpg.Pool) -> tuple[int, int]:
    """Facts stored, and messages counted by the daily rollups."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM message_facts), "
        "(SELECT coalesce(sum(messages), 0) FROM daily_rollups)"
    )
    assert row is not None
    return row[0], row[1]


@asynccontextmanager
async def following(
    pool: asyncpg.Pool, path: Path, *, batch_size: int = 1000, organization: str = "acme"
) -> AsyncIterator[asyncio.Task[tuple[IngestReport, LoadResult]]]:
    """A follower running in the background until the block ends; then stopped cleanly."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        follow_postfix_file(pool, organization, str(path), year=2021, batch_size=batch_size,
                            stop=stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)


def append(path: Path, text: str) -> None:
    with path.open("a") as file:
        file.write(text)


async def test_lines_appended_show_in_the_rollups_within_seconds(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(tls_messages(0, 3))

    async with following(pool, log):
        await eventually(lambda: counts(pool), lambda counted: counted == (3, 3))
        started = time.monotonic()
        append(log, tls_messages(3, 2))
        await eventually(lambda: counts(pool), lambda counted: counted == (5, 5))
        assert time.monotonic() - started < 3


async def test_a_batch_closes_at_the_batch_size_before_a_second_passes(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow, "BATCH_SECONDS", 60.0)
    log = tmp_path / "mail.log"
    log.write_text(tls_messages(0, 7))

    async with following(pool, log, batch_size=3):
        # Two full batches commit at once; the seventh message waits for the clock or the stop.
        await eventually(lambda: counts(pool), lambda counted: counted == (6, 6))
    assert await counts(pool) == (7, 7)


async def test_a_connector_created_while_following_takes_the_mail_read_afterwards(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(tls_messages(0, 2))

    async with following(pool, log):
        await eventually(lambda: counts(pool), lambda counted: counted == (2, 2))
        async with pool.acquire() as connection:
            organization_id = await find_organization(connection, "acme")
            assert organization_id is not None
            await create_connector(connection, organization_id, connector_config(
                {"name": "Partner", "direction": "inbound", "kind": "partner",
                 "sender_domains": ["example.net"]}, subject="partner"))
        append(log, tls_messages(2, 3))
        await eventually(lambda: counts(pool), lambda counted: counted == (5, 5))

    by_connector = dict(await pool.fetch(
        "SELECT connector_id IS NOT NULL, count(*) FROM message_facts GROUP BY 1"))
    assert by_connector == {False: 2, True: 3}


async def test_a_rename_rotation_loses_and_doubles_nothing(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log = tmp_path / "mail.log"
    straddling = tls_message(10, version="TLSv1.2")
    log.write_text(tls_messages(0, 5) + "".join(straddling[:3]))

    async with following(pool, log):
        await eventually(lambda: counts(pool), lambda counted: counted == (5, 5))
        append(log, tls_messages(5, 2))  # written before the rotation, read after it
        log.rename(tmp_path / "mail.log.1")
        log.write_text("".join(straddling[3:]) + tls_messages(20, 4))
        await eventually(lambda: counts(pool), lambda counted: counted == (12, 12))

    assert await tls_of(pool, "F0000010") == "TLS1_2"


async def test_a_copytruncate_rotation_loses_and_doubles_nothing(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log = tmp_path / "mail.log"
    straddling = tls_message(10, version="TLSv1.2")
    log.write_text(tls_messages(0, 5) + "".join(straddling[:3]))

    async with following(pool, log):
        await eventually(lambda: counts(pool), lambda counted: counted == (5, 5))
        await eventually(lambda: saved_offset(pool), lambda offset: offset == log.stat().st_size)
        (tmp_path / "mail.log.1").write_bytes(log.read_bytes())
        with log.open("r+") as file:
            file.truncate(0)
        # Longer than what was read before: only the first bytes show the truncation.
        append(log, "".join(straddling[3:]) + tls_messages(20, 8))
        await eventually(lambda: counts(pool), lambda counted: counted == (14, 14))

    assert await tls_of(pool, "F0000010") == "TLS1_2"


async def test_a_restart_goes_on_from_the_saved_position_with_the_open_messages(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log = tmp_path / "mail.log"
    straddling = tls_message(10, version="TLSv1")
    log.write_text(tls_messages(0, 4) + "".join(straddling[:3]))
    async with following(pool, log):
        await eventually(lambda: counts(pool), lambda counted: counted == (4, 4))
    assert await saved_offset(pool) == log.stat().st_size

    append(log, "".join(straddling[3:]) + tls_messages(4, 2))
    async with following(pool, log) as task:
        await eventually(lambda: counts(pool), lambda counted: counted == (7, 7))
    report, _ = task.result()

    assert report.lines == 2 + 10  # the new lines only: nothing was read twice
    assert await tls_of(pool, "F0000010") == "TLS1_0"


async def test_a_restart_after_a_rotation_finishes_the_old_file_found_beside_it(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "mail.log"
    straddling = tls_message(10)
    log.write_text(tls_messages(0, 2))
    async with following(pool, log):
        await eventually(lambda: counts(pool), lambda counted: counted == (2, 2))

    # While no follower runs: more lines, a rotation, and the new file's first lines.
    append(log, tls_messages(2, 3) + "".join(straddling[:3]))
    log.rename(tmp_path / "mail.log.1")
    log.write_text("".join(straddling[3:]) + tls_messages(20, 2))
    async with following(pool, log):
        await eventually(lambda: counts(pool), lambda counted: counted == (8, 8))

    assert await tls_of(pool, "F0000010") == "TLS1_3"
    assert "warning" not in capsys.readouterr().err


async def test_a_restart_after_the_old_file_went_says_what_was_not_read(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "log").mkdir()
    log = tmp_path / "log" / "mail.log"
    log.write_text(tls_messages(0, 2))
    async with following(pool, log):
        await eventually(lambda: counts(pool), lambda counted: counted == (2, 2))
    size = log.stat().st_size

    log.rename(tmp_path / "mail.log.1")  # rotated out of the directory, say compressed
    log.write_text(tls_messages(20, 3))
    async with following(pool, log):
        await eventually(lambda: counts(pool), lambda counted: counted == (5, 5))

    assert (f"lines written to it after byte {size} were not read; reading {log} from the "
            "start") in capsys.readouterr().err


async def test_a_file_replaced_in_place_while_stopped_is_read_from_the_start(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(tls_messages(0, 3))
    async with following(pool, log):
        await eventually(lambda: counts(pool), lambda counted: counted == (3, 3))
    size = log.stat().st_size

    # The same inode, longer than before: only its first bytes tell it is another log.
    log.write_text(tls_messages(20, 2) + tls_messages(0, 3))
    async with following(pool, log):
        await eventually(lambda: counts(pool), lambda counted: counted == (5, 5))

    assert f"was truncated or replaced since the last run: reading it from the start; lines " \
           f"it held after byte {size} are not read" in capsys.readouterr().err


async def test_a_line_too_long_is_counted_and_the_lines_after_it_read(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(tls_messages(0, 1) + "x" * 300_000 + "\n" + tls_messages(1, 1))

    async with following(pool, log) as task:
        await eventually(lambda: counts(pool), lambda counted: counted == (2, 2))
    report, _ = task.result()

    assert report.skipped == {"line longer than 65536 characters": 1}
    assert report.lines == 11


async def test_a_saved_state_the_parser_cannot_read_is_named_and_reading_goes_on(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(tls_messages(0, 2))
    async with following(pool, log):
        await eventually(lambda: counts(pool), lambda counted: counted == (2, 2))
    await pool.execute("UPDATE follow_positions SET parser_state = '{\"version\": 0}'")

    append(log, tls_messages(2, 1))
    async with following(pool, log):
        await eventually(lambda: counts(pool), lambda counted: counted == (3, 3))

    assert "state is of version 0" in capsys.readouterr().err


async def test_standard_input_and_gzip_files_cannot_be_followed(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    compressed = tmp_path / "mail.log.gz"
    compressed.write_bytes(gzip.compress(tls_messages(0, 1).encode()))

    with pytest.raises(CannotFollowError, match="standard input cannot be followed"):
        await follow_postfix_file(pool, "acme", "-", year=2021)
    with pytest.raises(CannotFollowError, match="gzip-compressed"):
        await follow_postfix_file(pool, "acme", str(compressed), year=2021)


def split_with_messages_open(log: bytes) -> int:
    """The end of the first line past the middle of ``log`` after which a message is open."""
    parser = PostfixParser(policy=BoundaryPolicy(), year=2021, reference_time=None,
                           report=IngestReport())
    offset = 0
    for line in log.splitlines(keepends=True):
        parser.feed(line.decode(errors="replace"))
        offset += len(line)
        if offset > len(log) // 2 and parser.open_messages:
            return offset
    raise AssertionError("no message is open after the middle of the log")


async def tls_of(pool: asyncpg.Pool, queue_id: str) -> str:
    """The TLS version of the one inbound fact of a queue id."""
    versions = await pool.fetch(
        "SELECT tls_version::text FROM message_facts WHERE source_key LIKE $1",
        f"postfix:mx1:{queue_id}:%:in")
    assert len(versions) == 1
    return str(versions[0][0])


async def saved_offset(pool: asyncpg.Pool, organization: str = "acme") -> int | None:
    place = await saved_place(pool, organization)
    return None if place is None else place[1]


async def saved_place(pool: asyncpg.Pool, organization: str) -> tuple[int, int] | None:
    """The inode and byte offset saved for the organization's followed file."""
    row = await pool.fetchrow(
        "SELECT inode, byte_offset FROM follow_positions p "
        "JOIN organizations o ON o.id = p.organization_id WHERE o.name = $1", organization)
    return None if row is None else (int(row[0]), row[1])


async def facts_of(pool: asyncpg.Pool, organization: str) -> list[tuple[object, ...]]:
    """What the organization's facts and rollups say, sorted, without the organization."""
    facts = await pool.fetch(
        "SELECT source_key, occurred_at, direction::text, tls_version::text, tls_cipher, "
        "sender_domain, recipients, size_bytes FROM message_facts f "
        "JOIN organizations o ON o.id = f.organization_id WHERE o.name = $1", organization)
    rollups = await pool.fetch(
        "SELECT day, direction::text, tls_version::text, messages, recipients, bytes "
        "FROM daily_rollups r JOIN organizations o ON o.id = r.organization_id "
        "WHERE o.name = $1", organization)
    return sorted(tuple(row) for row in facts) + sorted(tuple(row) for row in rollups)



@pytest.mark.realdata
async def test_the_real_relay_log_followed_through_a_restart_and_a_rotation_gives_the_ingest_facts(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    rotated_out = realdata("postfix", "relay-2021-mail.log.1").read_bytes()
    current = realdata("postfix", "relay-2021-mail.log").read_bytes()
    (tmp_path / "old").write_bytes(rotated_out)
    (tmp_path / "new").write_bytes(current)
    await ingest_postfix_files(pool, "batch", [str(tmp_path / "old"), str(tmp_path / "new")],
                               year=2021, progress=False)

    log = tmp_path / "mail.log"
    half = split_with_messages_open(rotated_out)
    log.write_bytes(rotated_out[:half])
    async with following(pool, log, organization="followed"):
        await eventually(lambda: saved_offset(pool, "followed"), lambda offset: offset == half)
    # Stopped in the middle of the first day with messages open; then the rest, the rotation.
    assert await pool.fetchval(
        "SELECT jsonb_array_length(parser_state->'messages') FROM follow_positions") > 0
    async with following(pool, log, organization="followed"):
        with log.open("ab") as file:
            file.write(rotated_out[half:])
        await eventually(lambda: saved_offset(pool, "followed"),
                         lambda offset: offset == len(rotated_out))
        log.rename(tmp_path / "mail.log.1")
        log.write_bytes(current)
        await eventually(lambda: saved_place(pool, "followed"),
                         lambda place: place == (log.stat().st_ino, len(current)))

    followed, batch = await facts_of(pool, "followed"), await facts_of(pool, "batch")
    assert len(batch) > 100  # both days' inbound and outbound mail
    assert followed == batch


async def test_a_followed_fact_outside_the_time_window_is_counted_not_stored(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    fixture = Path(__file__).parent / "fixtures" / "iso_timestamps.log"
    log = tmp_path / "mail.log"
    log.write_text(fixture.read_text().replace("2021-", "2200-") + tls_messages(0, 1))

    async with following(pool, log) as task:
        await eventually(lambda: counts(pool), lambda counted: counted == (1, 1))
    report, _ = await task

    assert report.skipped["timestamp out of range"] >= 2
    assert report.facts == 1
