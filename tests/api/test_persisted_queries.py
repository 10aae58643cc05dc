"""Automatic persisted queries: a query sent once with its SHA-256 can be sent by hash alone,
over POST and GET, the way Apollo's clients do it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import asyncpg
import httpx
import pytest
from strawberry.http import GraphQLRequestData

from mailflow.api.app import create_app
from mailflow.api.persisted import PersistedQueries, PersistedQueryNotFoundError
from mailflow.settings import Settings

from .conftest import Api, Seed

QUERY = "query Domains { acceptedDomains }"
SHA256 = hashlib.sha256(QUERY.encode()).hexdigest()


def persisted(sha256: str = SHA256, version: object = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": sha256}}


async def post(api: Api, body: dict[str, Any]) -> httpx.Response:
    return await api.client.post(
        "/graphql", json=body, headers={"Authorization": f"Bearer {api.token}"})


async def get(api: Api, **params: Any) -> httpx.Response:
    encoded = {name: json.dumps(value) if isinstance(value, dict) else value
               for name, value in params.items()}
    return await api.client.get(
        "/graphql", params=encoded,
        headers={"Authorization": f"Bearer {api.token}", "Accept": "application/json"})


def code_of(response: httpx.Response) -> str:
    [error] = response.json()["errors"]
    code: str = error["extensions"]["code"]
    return code


@pytest.fixture
async def domains(pool: asyncpg.Pool, organization_id: int) -> list[str]:
    await pool.execute(
        "INSERT INTO accepted_domains (organization_id, domain) VALUES ($1, 'a.example')",
        organization_id)
    return ["a.example"]


async def test_a_hash_the_server_does_not_know_asks_for_the_query_then_it_is_known(
    api: Api, domains: list[str]
) -> None:
    unknown = await post(api, {"extensions": persisted()})
    registered = await post(api, {"query": QUERY, "extensions": persisted()})
    by_hash = await post(api, {"extensions": persisted()})

    assert unknown.status_code == 200
    assert code_of(unknown) == "PERSISTED_QUERY_NOT_FOUND"
    assert SHA256 in unknown.json()["errors"][0]["message"]
    assert registered.json() == {"data": {"acceptedDomains": domains}}
    assert by_hash.status_code == 200
    assert by_hash.json() == {"data": {"acceptedDomains": domains}}


async def test_get_requests_register_and_send_persisted_queries_too(
    api: Api, domains: list[str]
) -> None:
    unknown = await get(api, extensions=persisted())
    registered = await get(api, query=QUERY, extensions=persisted())
    by_hash = await get(api, extensions=persisted())

    assert code_of(unknown) == "PERSISTED_QUERY_NOT_FOUND"
    assert registered.json() == by_hash.json() == {"data": {"acceptedDomains": domains}}


async def test_a_query_persisted_over_post_is_known_to_get_and_its_variables_apply(
    api: Api, domains: list[str]
) -> None:
    query = "query Connector($id: ID!) { connector(id: $id) { name } }"
    extensions = persisted(hashlib.sha256(query.encode()).hexdigest())
    await post(api, {"query": query, "extensions": extensions, "variables": {"id": "bad"}})

    answer = await get(api, extensions=extensions, variables={"id": "nonsense"})

    assert code_of(answer) == "BAD_ID"
    assert "'nonsense'" in answer.json()["errors"][0]["message"]


async def test_a_query_that_is_not_the_one_its_hash_names_is_refused(api: Api) -> None:
    wrong = hashlib.sha256(b"{ connectors { name } }").hexdigest()

    answer = await post(api, {"query": QUERY, "extensions": persisted(wrong)})
    after = await post(api, {"extensions": persisted(wrong)})

    assert answer.status_code == 400
    assert code_of(answer) == "PERSISTED_QUERY_HASH_MISMATCH"
    assert wrong in answer.json()["errors"][0]["message"]
    assert SHA256 in answer.json()["errors"][0]["message"]
    assert code_of(after) == "PERSISTED_QUERY_NOT_FOUND", "a refused query is not kept"


@pytest.mark.parametrize(
    ("extensions", "message"),
    [
        (persisted(version=2), "version 2 is not supported"),
        (persisted(version=True), "version True is not supported"),
        (persisted("abc"), "'abc' is not a SHA-256"),
        ({"persistedQuery": "yes"}, "must be an object"),
    ],
)
async def test_a_persisted_query_extension_of_another_shape_is_refused(
    api: Api, extensions: dict[str, Any], message: str
) -> None:
    answer = await post(api, {"extensions": extensions})

    assert answer.status_code == 400
    assert code_of(answer) == "BAD_REQUEST"
    assert message in answer.json()["errors"][0]["message"]


async def test_switched_off_persisted_queries_say_so_and_whole_queries_still_run(
    pool: asyncpg.Pool, seed: Seed, organization_id: int, domains: list[str]
) -> None:
    settings = Settings(persisted_queries=False, rate_limit="off")
    transport = httpx.ASGITransport(app=create_app(pool, settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        api = Api(client, await seed.token(organization_id))
        by_hash = await post(api, {"query": QUERY, "extensions": persisted()})
        whole = await post(api, {"query": QUERY})

    assert by_hash.status_code == 200
    assert code_of(by_hash) == "PERSISTED_QUERY_NOT_SUPPORTED"
    assert "MAILFLOW_PERSISTED_QUERIES" in by_hash.json()["errors"][0]["message"]
    assert whole.json() == {"data": {"acceptedDomains": domains}}


def test_the_store_drops_the_least_recently_used_query_past_its_size() -> None:
    store = PersistedQueries(max_bytes=100)
    queries = [f"query Q{number} {{ {'acceptedDomains ' * 2}}}" for number in range(3)]
    hashes = [hashlib.sha256(query.encode()).hexdigest() for query in queries]

    def send(number: int, *, with_query: bool) -> str | None:
        request = GraphQLRequestData(
            query=queries[number] if with_query else None, variables=None,
            operation_name=None, extensions=persisted(hashes[number]))
        return store.resolve(request).query

    send(0, with_query=True)
    send(1, with_query=True)
    assert send(0, with_query=False) == queries[0]  # used: now the most recent
    send(2, with_query=True)

    assert len(queries[0].encode()) * 3 > 100 >= len(queries[0].encode()) * 2
    assert len(store) == 2
    assert send(0, with_query=False) == queries[0]
    assert send(2, with_query=False) == queries[2]
    with pytest.raises(PersistedQueryNotFoundError, match="no persisted query has the hash"):
        send(1, with_query=False)


def test_persisted_queries_are_on_by_default_and_a_setting_switches_them_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().persisted_queries is True
    monkeypatch.setenv("MAILFLOW_PERSISTED_QUERIES", "false")
    assert Settings().persisted_queries is False


@pytest.mark.parametrize(
    "accept", ["*/*", "text/html", "text/html,application/xhtml+xml,*/*;q=0.8"])
async def test_a_get_by_hash_is_answered_as_a_query_whatever_it_accepts(
    api: Api, domains: list[str], accept: str
) -> None:
    await post(api, {"query": QUERY, "extensions": persisted()})
    headers = {"Authorization": f"Bearer {api.token}", "Accept": accept}

    known = await api.client.get(
        "/graphql", params={"extensions": json.dumps(persisted())}, headers=headers)
    unknown = await api.client.get(
        "/graphql", params={"extensions": json.dumps(persisted("0" * 64))}, headers=headers)

    assert known.json() == {"data": {"acceptedDomains": domains}}
    assert code_of(unknown) == "PERSISTED_QUERY_NOT_FOUND"
