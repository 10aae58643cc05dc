"""An ingest killed with SIGKILL at random points and then run to completion stores exactly what
one clean run stores: the same daily rollups, the same report figures, rollups equal to facts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import httpx
import pytest

from mailflow.api.app import create_app
from mailflow.settings import Settings
from mailflow.store.embedded import EmbeddedPostgres
from mailflow.store.tokens import create_token
from tests.conftest import load_script

MAILFLOW = str(Path(sys.executable).parent / "mailflow")
GENERATOR = Path(__file__).parents[1] / "bench" / "postfix_log.py"
ORGANIZATION = """\
organization: acme
accepted_domains: [example.com]
connectors:
  - name: Partners 1
    direction: inbound
    kind: partner
    sender_domains: ["partner1.example.net", "partner10.example.net"]
  - name: Partners 2 (outbound)
    direction: outbound
    kind: partner
    recipient_domains: ["partner2.example.net", "partner20.example.net"]
"""
KILLS = 3
BATCH_SIZE = 2  # about 1000 transactions: several seconds for the kills to fall in

ROLLUPS = """
    SELECT r.day, r.direction, c.name AS connector, r.tls_version,
           r.messages, r.recipients, r.bytes
    FROM daily_rollups AS r
    LEFT JOIN connectors AS c ON c.organization_id = r.organization_id AND c.id = r.connector_id
    ORDER BY 1, 2, 3 NULLS FIRST, 4
"""
ROLLUPS_FROM_FACTS = """
    SELECT (f.occurred_at AT TIME ZONE 'UTC')::date AS day, f.direction, c.name AS connector,
           f.tls_version, count(*) AS messages, sum(f.recipients) AS recipients,
           sum(f.size_bytes) AS bytes
    FROM message_facts AS f
    LEFT JOIN connectors AS c ON c.organization_id = f.organization_id AND c.id = f.connector_id
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3 NULLS FIRST, 4
"""
REPORTS = """
query Reports($start: Date!, $end: Date!) {
  inbound: mailFlow(start: $start, end: $end, direction: INBOUND) {
    date messages recipients bytes byTls { version messages }
  }
  outbound: mailFlow(start: $start, end: $end, direction: OUTBOUND) {
    date messages recipients bytes byTls { version messages }
  }
  tlsBreakdown(start: $start, end: $end) { total versions { version messages percent } }
  insights(start: $start, end: $end) { kind value threshold connector { name } }
  connectors {
    name
    volume(start: $start, end: $end) { date messages recipients bytes }
    tlsBreakdown(start: $start, end: $end) { total versions { version messages percent } }
  }
}
"""


def load_generator() -> ModuleType:
    return load_script(GENERATOR)


@pytest.fixture
async def clean_database_url(
    postgres: EmbeddedPostgres, template_database: str
) -> AsyncIterator[str]:
    """A second fresh database, for the clean run."""
    name = f"mailflow_test_clean_{os.getpid()}"
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
        yield postgres.dsn(name)
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


async def mailflow(database_url: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        MAILFLOW, *args, env={**os.environ, "DATABASE_URL": database_url,
                              "MAILFLOW_LOG_LEVEL": "WARNING"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


async def finished(database_url: str, *args: str) -> str:
    process = await mailflow(database_url, *args)
    _, errors = await process.communicate()
    assert process.returncode == 0, errors.decode()
    return errors.decode()


def ingest_arguments(log: Path, year: int) -> tuple[str, ...]:
    return ("ingest", "postfix", "--org", "acme", "--year", str(year),
            "--batch-size", str(BATCH_SIZE), str(log))


async def stored(database_url: str, statement: str) -> list[tuple[Any, ...]]:
    connection = await asyncpg.connect(database_url)
    try:
        return [tuple(row) for row in await connection.fetch(statement)]
    finally:
        await connection.close()


async def reports(database_url: str, start: str, end: str) -> Any:
    """Every report over the log's days, through the GraphQL API."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        async with pool.acquire() as connection:
            organization_id = await connection.fetchval(
                "SELECT id FROM organizations WHERE name = 'acme'")
            token = await create_token(connection, organization_id, description="test")
        transport = httpx.ASGITransport(app=create_app(pool, Settings(max_range_days=90)))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post(
                "/graphql", json={"query": REPORTS, "variables": {"start": start, "end": end}},
                headers={"Authorization": f"Bearer {token}"})
        body = response.json()
        assert "errors" not in body, body
        return body["data"]
    finally:
        await pool.close()


async def test_an_ingest_killed_at_random_points_then_finished_equals_one_clean_run(
    tmp_path: Path, database_url: str, clean_database_url: str,
) -> None:
    generator = load_generator()
    log = tmp_path / "mail.log"
    postfix_log = generator.PostfixLog(seed=5, messages_per_second=0.01)  # over 3 days
    with log.open("w") as file:
        file.writelines(postfix_log.lines(4_000_000))
    expected_facts = postfix_log.generated.facts
    (tmp_path / "acme.yaml").write_text(ORGANIZATION)
    for url in (database_url, clean_database_url):
        await finished(url, "org", "apply", str(tmp_path / "acme.yaml"))
    arguments = ingest_arguments(log, generator.YEAR)
    started = time.monotonic()
    await finished(clean_database_url, *arguments)
    clean_seconds = time.monotonic() - started  # the kills fall within this, on any machine

    seed = random.randrange(2**32)
    print(f"crash-safety seed: {seed}")  # shown with -s or when the test fails
    pick = random.Random(seed)
    stored_after_kills = []
    for _ in range(KILLS):
        process = await mailflow(database_url, *arguments)
        await asyncio.sleep(pick.uniform(0.15, 0.6) * clean_seconds)
        with contextlib.suppress(ProcessLookupError):  # it may have finished just now
            process.send_signal(signal.SIGKILL)
        await process.wait()
        stored_after_kills.append(
            (await stored(database_url, "SELECT count(*) FROM message_facts"))[0][0])
    print(f"facts stored after each kill: {stored_after_kills} of {expected_facts}")
    await finished(database_url, *arguments)

    assert stored_after_kills == sorted(stored_after_kills)
    assert any(0 < count < expected_facts for count in stored_after_kills), \
        "no kill fell between two batches of the ingest"
    clean_rollups = await stored(clean_database_url, ROLLUPS)
    assert sum(row[4] for row in clean_rollups) == expected_facts
    assert await stored(database_url, ROLLUPS) == clean_rollups
    assert await stored(database_url, ROLLUPS_FROM_FACTS) == clean_rollups
    days = sorted({row[0] for row in clean_rollups})
    start, end = days[0].isoformat(), days[-1].isoformat()
    assert await reports(database_url, start, end) == await reports(clean_database_url, start, end)


def test_the_batch_size_option_refuses_zero() -> None:
    done = subprocess.run([MAILFLOW, "ingest", "postfix", "--org", "acme", "--batch-size", "0",
                           "-"], capture_output=True, text=True, check=False, input="")
    assert done.returncode == 2
    assert "--batch-size" in done.stderr
