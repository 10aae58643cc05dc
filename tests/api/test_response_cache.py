"""The response cache: answers kept per organization until its report version changes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import httpx
import pytest

from mailflow.api.app import create_app
from mailflow.api.response_cache import AnswerKey, ResponseCache, answer_key
from mailflow.domain import TlsVersion
from mailflow.settings import Settings
from mailflow.store.tokens import TokenRole

from .conftest import Api, Seed, global_connector_id

DAY = date(2026, 3, 1)
REPORT = """{
    tlsBreakdown(start: "2026-03-01", end: "2026-03-07") { total versions { version messages } }
    connectors { name volume(start: "2026-03-01", end: "2026-03-07") { messages } }
}"""


@pytest.fixture
async def app_and_client(
    service_pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[tuple[ResponseCache, httpx.AsyncClient]]:
    app = create_app(service_pool, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield app.state.response_cache, client


@pytest.fixture
def cache(app_and_client: tuple[ResponseCache, httpx.AsyncClient]) -> ResponseCache:
    return app_and_client[0]


@pytest.fixture
async def api(
    app_and_client: tuple[ResponseCache, httpx.AsyncClient], seed: Seed, organization_id: int
) -> Api:
    return Api(app_and_client[1], await seed.token(organization_id))


async def push(api: Api, token: str, day: date, count: int) -> None:
    lines = [
        json.dumps({"source_key": f"pushed-{day}-{number}", "occurred_at": f"{day}T10:00:00Z",
                    "direction": "INBOUND", "tls_version": "TLS1_3"})
        for number in range(count)
    ]
    response = await api.client.post("/ingest", content="\n".join(lines).encode(), headers={
        "Content-Type": "application/x-ndjson", "Authorization": f"Bearer {token}"})
    assert response.json()["accepted"] == count


async def test_a_repeated_query_is_answered_from_the_cache_with_the_same_answer(
    api: Api, seed: Seed, organization_id: int, cache: ResponseCache
) -> None:
    await seed.rollup(organization_id, DAY, TlsVersion.TLS1_2, 7)
    first = await api.post(REPORT)
    second = await api.post(REPORT)

    assert (cache.misses, cache.hits) == (1, 1)
    assert second.status_code == 200
    assert second.headers["content-type"] == "application/json"
    assert second.content == first.content
    assert second.json()["data"]["tlsBreakdown"]["total"] == 7


async def test_an_ingest_drops_exactly_its_organizations_answers(
    api: Api, seed: Seed, organization_id: int, cache: ResponseCache
) -> None:
    other = Api(api.client, await seed.token(await seed.organization("org-b")))
    await seed.rollup(organization_id, DAY, TlsVersion.TLS1_2, 7)
    before = (await api.post(REPORT)).json()
    other_before = await other.post(REPORT)
    assert len(cache) == 2

    await push(api, await seed.token(organization_id, TokenRole.INGEST), DAY, 3)
    after = (await api.post(REPORT)).json()
    other_after = await other.post(REPORT)

    assert before["data"]["tlsBreakdown"]["total"] == 7
    assert after["data"]["tlsBreakdown"]["total"] == 10
    assert other_after.content == other_before.content
    assert (cache.misses, cache.hits) == (3, 1)  # only the other organization's answer hit
    assert len(cache) == 2


async def test_a_renamed_connector_is_seen_at_once(
    api: Api, seed: Seed, organization_id: int, cache: ResponseCache
) -> None:
    connector_id = await seed.connector(organization_id, "Fabrikam")
    assert (await api.data(REPORT))["connectors"][0]["name"] == "Fabrikam"
    await seed.pool.execute("UPDATE connectors SET name = 'Litware' WHERE id = $1", connector_id)

    assert (await api.data(REPORT))["connectors"][0]["name"] == "Litware"
    assert cache.hits == 0


async def test_mutations_and_answers_with_errors_are_not_kept(
    api: Api, seed: Seed, organization_id: int, cache: ResponseCache
) -> None:
    admin = Api(api.client, await seed.token(organization_id, TokenRole.ADMIN))
    connector_id = global_connector_id(await seed.connector(organization_id, "Fabrikam"))
    rename = 'mutation { updateConnector(id: "%s", input: {name: "%s"}) { connector { name } } }'
    bad_range = '{ tlsBreakdown(start: "2026-03-07", end: "2026-03-01") { total } }'

    for _ in range(2):
        await admin.post(rename % (connector_id, "Litware"))
        await api.post(bad_range)

    assert cache.hits == 0
    assert len(cache) == 0


def key(
    organization_id: int, number: int, version: int = 1, *,
    role: TokenRole = TokenRole.VIEWER, today: date = DAY,
) -> AnswerKey:
    return answer_key(organization_id, version, role=role, today=today, method="POST",
                      content_type="application/json", request=str(number).encode())


async def test_roles_and_days_have_answers_of_their_own() -> None:
    cache = ResponseCache(max_bytes=10_000)
    viewer = key(1, 0)
    admin = key(1, 0, role=TokenRole.ADMIN)
    tomorrow = key(1, 0, today=date(2026, 3, 2))
    cache.put(viewer, b"viewer")

    assert cache.get(viewer) == b"viewer"
    assert cache.get(admin) is None
    assert cache.get(tomorrow) is None


async def test_the_cache_holds_at_most_its_size_dropping_the_least_recently_used() -> None:
    cache = ResponseCache(max_bytes=1_000)
    body = b"x" * 84  # 100 bytes with its key
    for number in range(10):
        cache.put(key(1, number), body)
    assert cache.get(key(1, 0)) == body

    cache.put(key(1, 10), body)
    cache.put(key(1, 11), b"y" * 2_000)

    assert cache.size == 1_000
    assert len(cache) == 10
    assert cache.get(key(1, 1)) is None
    assert cache.get(key(1, 0)) == body
    assert cache.get(key(1, 11)) is None


async def test_a_newer_version_drops_the_organizations_answers_and_no_others() -> None:
    cache = ResponseCache(max_bytes=10_000)
    cache.put(key(1, 0), b"one")
    cache.put(key(2, 0), b"two")

    assert cache.get(key(1, 0, version=2)) is None
    cache.put(key(1, 0, version=1), b"late")

    assert cache.get(key(1, 0, version=1)) is None
    assert cache.get(key(2, 0)) == b"two"
    assert len(cache) == 1
    assert cache.size == 3 + 16


async def test_the_setting_turns_the_cache_off(service_pool: asyncpg.Pool) -> None:
    app = create_app(service_pool, Settings(rate_limit="off", response_cache=False))
    assert app.state.response_cache is None
