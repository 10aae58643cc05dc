from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import httpx
import pytest
import uvicorn

from mailflow.api.app import create_app
from mailflow.domain import TlsVersion
from mailflow.settings import Settings

from .conftest import Seed


@pytest.fixture
async def server_url(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[str]:
    """The application under a real uvicorn on 127.0.0.1, on a port the system picked."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(pool, settings), log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        listener.close()


async def test_a_query_over_real_http_is_answered(
    server_url: str, seed: Seed, organization_id: int
) -> None:
    await seed.rollup(organization_id, date(2025, 1, 1), TlsVersion.TLS1_2, 3, size=2**40)
    token = await seed.token(organization_id)

    async with httpx.AsyncClient(base_url=server_url) as client:
        response = await client.post(
            "/graphql",
            json={"query": '{ mailFlow(start: "2025-01-01", end: "2025-01-01") { bytes } }'},
            headers={"Authorization": f"Bearer {token}"},
        )
        refused = await client.post("/graphql", json={"query": "{ connectors { name } }"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"data": {"mailFlow": [{"bytes": 2**40}]}}
    assert refused.status_code == 401


async def test_an_oversized_body_over_real_http_is_refused_at_once_and_others_are_answered(
    server_url: str, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    headers = {"Authorization": f"Bearer {token}"}
    aliases = " ".join(
        f'a{number}: mailFlow(start: "2020-11-01", end: "2021-01-29") '
        "{ date messages byTls { version messages } }"
        for number in range(5000)
    )
    five_thousand_aliases = {"query": "{ " + aliases + " }"}
    fifty_megabytes = b'{"query": "' + b" " * 50_000_000 + b'{ __typename }"}'

    async with httpx.AsyncClient(base_url=server_url, timeout=10) as client:
        started = time.perf_counter()
        aliased = await client.post("/graphql", json=five_thousand_aliases, headers=headers)
        aliased_seconds = time.perf_counter() - started
        huge = await client.post(
            "/graphql", content=fifty_megabytes,
            headers={**headers, "Content-Type": "application/json"},
        )
        other = await client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)

    print(f"\n5000 aliases refused in {aliased_seconds * 1000:.0f} ms")
    assert aliased.status_code == 413
    assert aliased_seconds < 1
    assert huge.status_code == 413
    assert huge.json()["errors"][0]["message"].startswith("the request body is 50000027 bytes;")
    assert other.json() == {"data": {"__typename": "Query"}}
