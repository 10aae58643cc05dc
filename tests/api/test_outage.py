"""A database that goes away: 503 with a code and Retry-After, and answers again once it is
back, on the same pool and application, without a restart."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path

import asyncpg
import httpx
import pytest

from mailflow.api.app import create_app
from mailflow.domain import TlsVersion
from mailflow.settings import Settings
from mailflow.store.embedded import EmbeddedPostgres
from mailflow.store.migrate import migrate
from mailflow.store.tokens import TokenRole

from .conftest import Seed

QUERY = '{ mailFlow(start: "2025-01-01", end: "2025-01-01") { messages } }'
RECORD = (
    b'{"source_key": "k1", "occurred_at": "2025-01-01T10:00:00Z", "direction": "INBOUND", '
    b'"tls_version": "TLS1_2", "sender_domain": "partner.example", '
    b'"recipient_domains": ["acme.example"]}\n'
)
_database_numbers = itertools.count()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this module's own, which its tests stop and start again."""
    data_dir = Path(tempfile.mkdtemp(prefix="mailflow-test-outage-"))
    data_dir.chmod(0o755)
    server = EmbeddedPostgres(data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def outage_pool(private_postgres: EmbeddedPostgres) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh migrated database of the private server, which runs after each test."""
    name = f"outage_{next(_database_numbers)}"
    await _admin(private_postgres, f"CREATE DATABASE {name}")
    connection = await asyncpg.connect(private_postgres.dsn(name))
    try:
        await migrate(connection)
    finally:
        await connection.close()
    pool = await asyncpg.create_pool(private_postgres.dsn(name), min_size=2, max_size=4)
    try:
        yield pool
    finally:
        if not private_postgres.started_here:
            await asyncio.to_thread(private_postgres.start)
        await pool.close()
        await _admin(private_postgres, f"DROP DATABASE {name} WITH (FORCE)")


async def _admin(server: EmbeddedPostgres, statement: str) -> None:
    connection = await asyncpg.connect(server.dsn("postgres"))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
async def outage_client(outage_pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(outage_pool, Settings(max_range_days=90))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def assert_unavailable(response: httpx.Response, *, where: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "2"
    request_id = response.headers["x-request-id"]
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "DATABASE_UNAVAILABLE", "requestId": request_id}
    assert error["message"] == "The database is unavailable; retry in a few seconds"
    for leak in (where, "postgres", "socket", "errno", "traceback", ".py"):
        assert leak not in response.text.lower()


async def test_a_stopped_database_is_503_and_the_same_app_answers_once_it_is_back(
    private_postgres: EmbeddedPostgres, outage_pool: asyncpg.Pool,
    outage_client: httpx.AsyncClient,
) -> None:
    seed = Seed(outage_pool)
    organization_id = await seed.organization("acme")
    await seed.rollup(organization_id, date(2025, 1, 1), TlsVersion.TLS1_2, 7)
    viewer = {"Authorization": f"Bearer {await seed.token(organization_id)}"}
    ingest = {
        "Authorization": f"Bearer {await seed.token(organization_id, TokenRole.INGEST)}",
        "Content-Type": "application/x-ndjson",
    }
    assert (await outage_client.post("/graphql", json={"query": QUERY}, headers=viewer)).json() \
        == {"data": {"mailFlow": [{"messages": 7}]}}

    await asyncio.to_thread(private_postgres.stop)
    query = await outage_client.post("/graphql", json={"query": QUERY}, headers=viewer)
    push = await outage_client.post("/ingest", content=RECORD, headers=ingest)
    await asyncio.to_thread(private_postgres.start)
    after_query = await outage_client.post("/graphql", json={"query": QUERY}, headers=viewer)
    after_push = await outage_client.post("/ingest", content=RECORD, headers=ingest)

    where = str(private_postgres.data_dir).lower()
    assert_unavailable(query, where=where)
    assert_unavailable(push, where=where)
    assert push.json()["accepted"] == 0
    assert after_query.json() == {"data": {"mailFlow": [{"messages": 7}]}}
    assert after_push.status_code == 200
    assert after_push.json()["accepted"] == 1


async def test_pooled_connections_to_a_restarted_database_are_replaced_not_handed_out(
    private_postgres: EmbeddedPostgres, outage_pool: asyncpg.Pool,
    outage_client: httpx.AsyncClient,
) -> None:
    seed = Seed(outage_pool)
    token = await seed.token(await seed.organization("acme"))
    headers = {"Authorization": f"Bearer {token}"}
    # Every connection of the pool opened and back in it, idle, when the server restarts.
    async with outage_pool.acquire(), outage_pool.acquire(), outage_pool.acquire():
        pass
    before = {connection["pid"] for connection in await outage_pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    )}

    await asyncio.to_thread(private_postgres.stop)
    await asyncio.to_thread(private_postgres.start)
    answers = [
        await outage_client.post("/graphql", json={"query": QUERY}, headers=headers)
        for _ in range(6)
    ]

    assert [answer.status_code for answer in answers] == [200] * 6
    after = {connection["pid"] for connection in await outage_pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    )}
    assert before.isdisjoint(after)


async def test_the_log_says_the_database_is_unavailable_without_a_traceback(
    private_postgres: EmbeddedPostgres, outage_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await asyncio.to_thread(private_postgres.stop)
    with caplog.at_level("WARNING", logger="mailflow.api"):
        response = await outage_client.post(
            "/graphql", json={"query": QUERY}, headers={"Authorization": "Bearer mf_1_x"}
        )

    request_id = response.headers["x-request-id"]
    (record,) = [r for r in caplog.records if r.name == "mailflow.api"]
    assert record.levelname == "WARNING"
    assert request_id in record.getMessage()
    assert "the database is unavailable" in record.getMessage()
    assert record.exc_info is None


async def test_a_query_whose_connection_is_lost_midway_is_503_and_the_next_is_answered(
    outage_pool: asyncpg.Pool, outage_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed = Seed(outage_pool)
    organization_id = await seed.organization("acme")
    await seed.rollup(organization_id, date(2025, 1, 1), TlsVersion.TLS1_2, 7)
    headers = {"Authorization": f"Bearer {await seed.token(organization_id)}"}
    # The rollups, read through a view whose reading ends the session that reads it: the
    # request authenticates, then loses its connection inside the report's query.
    await outage_pool.execute("""
        ALTER TABLE daily_organization_rollups RENAME TO daily_organization_rollups_kept;
        CREATE FUNCTION lose_connection() RETURNS boolean LANGUAGE sql SECURITY DEFINER
            AS 'SELECT pg_terminate_backend(pg_backend_pid())';
        CREATE VIEW daily_organization_rollups AS
            SELECT * FROM daily_organization_rollups_kept WHERE lose_connection();
        GRANT SELECT ON daily_organization_rollups TO mailflow_app;  -- the role requests run as
    """)

    with caplog.at_level("WARNING", logger="mailflow.api"):
        lost = await outage_client.post("/graphql", json={"query": QUERY}, headers=headers)
    await outage_pool.execute("""
        DROP VIEW daily_organization_rollups;
        ALTER TABLE daily_organization_rollups_kept RENAME TO daily_organization_rollups;
    """)
    after = await outage_client.post("/graphql", json={"query": QUERY}, headers=headers)

    assert lost.status_code == 503
    assert lost.headers["retry-after"] == "2"
    body = lost.json()
    assert body.get("data") is None  # lost inside GraphQL, or when the transaction ends
    assert {error["extensions"]["code"] for error in body["errors"]} == {"DATABASE_UNAVAILABLE"}
    assert "terminat" not in lost.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert after.json() == {"data": {"mailFlow": [{"messages": 7}]}}
