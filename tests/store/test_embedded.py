"""The embedded PostgreSQL starts, answers and stops, with either kind of binaries."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from mailflow.settings import Settings
from mailflow.store.db import open_database
from mailflow.store.embedded import EmbeddedPostgres, EmbeddedPostgresError


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mailflow-embedded-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def servers_running_in(path: Path) -> list[str]:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in listing.stdout.splitlines()
            if str(path) in line and "postgres" in line]


async def answers(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        value: int = await connection.fetchval("SELECT 41 + 1")
        return value
    finally:
        await connection.close()


async def test_the_pip_installed_server_is_used_without_system_binaries(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir, bindir=None)
    dsn = server.start()
    try:
        assert await answers(dsn) == 42
        assert "/mailflow" in dsn
    finally:
        server.stop()
    assert servers_running_in(data_dir) == []


async def test_a_second_start_reuses_the_running_server_and_leaves_it_running(
    data_dir: Path,
) -> None:
    first = EmbeddedPostgres(data_dir)
    dsn = first.start()
    try:
        second = EmbeddedPostgres(data_dir)
        assert second.start() == dsn
        second.stop()
        assert await answers(dsn) == 42, "the second user must not stop the first one's server"
    finally:
        first.stop()
    assert servers_running_in(data_dir) == []


def test_a_second_server_on_the_same_data_directory_is_refused(data_dir: Path) -> None:
    first = EmbeddedPostgres(data_dir, owner=True)
    first.start()
    try:
        with pytest.raises(EmbeddedPostgresError, match="another mailflow server"):
            EmbeddedPostgres(data_dir, owner=True).start()
    finally:
        first.stop()
    assert servers_running_in(data_dir) == []


async def test_a_server_adopts_a_postgres_left_running_and_stops_it(data_dir: Path) -> None:
    orphan = EmbeddedPostgres(data_dir)
    orphan.start()  # and never stopped, as when its process is killed
    server = EmbeddedPostgres(data_dir, owner=True)
    dsn = server.start()
    assert await answers(dsn) == 42
    server.stop()
    assert servers_running_in(data_dir) == []


async def test_a_command_leaves_running_the_postgres_a_server_adopted(data_dir: Path) -> None:
    command = EmbeddedPostgres(data_dir)
    dsn = command.start()
    server = EmbeddedPostgres(data_dir, owner=True)
    server.start()
    try:
        command.stop()
        assert await answers(dsn) == 42
    finally:
        server.stop()
    assert servers_running_in(data_dir) == []


async def test_a_server_that_stops_leaves_postgres_running_for_a_command_still_using_it(
    data_dir: Path,
) -> None:
    settings = Settings(data_dir=data_dir)
    async with open_database(settings, server=True):
        ingest = await asyncpg.connect(EmbeddedPostgres(data_dir).dsn())  # shares the database
    try:
        assert await ingest.fetchval("SELECT 42") == 42, "the command was cut off"
        assert servers_running_in(data_dir), "PostgreSQL was stopped under the command"
    finally:
        await ingest.close()

    async with open_database(settings, server=True) as pool:  # the next server adopts it
        assert await pool.fetchval("SELECT 1") == 1
    assert servers_running_in(data_dir) == []
