"""`mailflow ingest postfix --follow` as a process: killed, started again, stopped by a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from tests.ingest.follow_helpers import TIMEOUT, eventually, tls_message, tls_messages

MAILFLOW = str(Path(sys.executable).parent / "mailflow")


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "MAILFLOW_LOG_LEVEL": "warning"}


@contextmanager
def follower(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[str]]:
    """The CLI following ``log``; killed at the end of the block if still running."""
    process = subprocess.Popen(
        [MAILFLOW, "ingest", "postfix", "--follow", "--org", "acme", "--year", "2021", str(log)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


async def facts_and_position(database_url: str) -> tuple[int, int, int | None]:
    """Facts stored, messages in the daily rollups, and the saved byte offset."""
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM message_facts), "
            "(SELECT coalesce(sum(messages), 0) FROM daily_rollups), "
            "(SELECT max(byte_offset) FROM follow_positions)")
        assert row is not None
        return row[0], row[1], row[2]
    finally:
        await connection.close()


async def test_a_follower_killed_while_catching_up_then_started_again_counts_each_once(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(tls_messages(0, 1100))  # more than one batch of 1,000 facts

    # Killed once something is committed, wherever that lands: between batches or inside one.
    with follower(env, log) as process:
        await eventually(lambda: facts_and_position(database_url), lambda got: got[0] > 0)
        process.kill()
    with follower(env, log) as process:
        await eventually(lambda: facts_and_position(database_url),
                         lambda got: got == (1100, 1100, log.stat().st_size))
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0


async def test_a_message_whose_lines_straddle_a_kill_is_counted_once_with_its_tls(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "mail.log"
    straddling = tls_message(10, version="TLSv1.2")
    log.write_text(tls_messages(0, 3) + "".join(straddling[:3]))

    # Killed with the message open: its TLS and client= lines committed, its queueing not yet.
    with follower(env, log) as process:
        await eventually(lambda: facts_and_position(database_url),
                         lambda got: got == (3, 3, log.stat().st_size))
        process.kill()
    with log.open("a") as file:
        file.write("".join(straddling[3:]) + tls_messages(3, 2))
    with follower(env, log) as process:
        await eventually(lambda: facts_and_position(database_url),
                         lambda got: got == (6, 6, log.stat().st_size))
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0

    connection = await asyncpg.connect(database_url)
    try:
        versions = await connection.fetch(
            "SELECT tls_version::text FROM message_facts "
            "WHERE source_key LIKE 'postfix:mx1:F0000010:%'")
    finally:
        await connection.close()
    assert [row[0] for row in versions] == ["TLS1_2"]


async def test_sigterm_stops_after_committing_and_prints_the_summary(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(tls_messages(0, 3) + "".join(tls_message(10)[:3]))

    with follower(env, log) as process:
        await eventually(lambda: facts_and_position(database_url),
                         lambda counted: counted == (3, 3, log.stat().st_size))
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=TIMEOUT)

    assert process.returncode == 0, stderr
    assert "acme: read 18 lines, found 3 message facts on 2021-01-27 (UTC): 3 new" in stderr
    assert f"stopped following {log} at byte {log.stat().st_size}; 1 message still open" in stderr


@pytest.mark.parametrize(("files", "error"), [
    (["a.log", "b.log"], "--follow reads one file, not 2 (a.log b.log)"),
    (["-"], "standard input cannot be followed"),
    (["missing.log"], "missing.log: no such file"),
])
def test_follow_refuses_what_it_cannot_follow_with_a_clear_error(
    env: dict[str, str], tmp_path: Path, files: list[str], error: str
) -> None:
    for name in ("a.log", "b.log"):
        (tmp_path / name).write_text(tls_messages(0, 1))

    result = subprocess.run(
        [MAILFLOW, "ingest", "postfix", "--follow", "--org", "acme", *files],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60,
    )

    assert result.returncode == 2
    assert f"mailflow: error: {error}" in result.stderr
