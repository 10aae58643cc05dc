"""Introspection and GraphiQL: on by default, each switched off by a setting."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from graphql import get_introspection_query

from mailflow.api.app import create_app
from mailflow.settings import Settings

from .conftest import Seed

ClientWith = Callable[..., AsyncIterator[httpx.AsyncClient]]
TYPE_QUERY = '{ __type(name: "Connector") { name fields { name } } }'
HIDDEN_IN_A_FRAGMENT = """
query Hidden { ...Root }
fragment Root on Query { connectors { name } schema: __schema { queryType { name } } }
"""


@pytest.fixture
async def clients(pool: asyncpg.Pool, seed: Seed) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Clients of two applications on one database: introspection on, and off."""
    token = await seed.token(await seed.organization("org-a"))
    opened = {}
    for name, introspection in (("on", True), ("off", False)):
        app = create_app(pool, Settings(introspection=introspection))
        opened[name] = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver",
            headers={"Authorization": f"Bearer {token}"},
        )
    yield opened
    for client in opened.values():
        await client.aclose()


async def post(client: httpx.AsyncClient, query: str) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_introspection_is_answered_by_default(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    body = await post(clients["on"], get_introspection_query())

    assert "errors" not in body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


@pytest.mark.parametrize(("query", "field"), [
    (get_introspection_query(), "__schema"),
    (TYPE_QUERY, "__type"),
    (HIDDEN_IN_A_FRAGMENT, "__schema"),
])
async def test_switched_off_an_introspection_query_is_refused_with_a_code(
    clients: dict[str, httpx.AsyncClient], query: str, field: str
) -> None:
    body = await post(clients["off"], query)

    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "INTROSPECTION_DISABLED"}
    assert error["message"] == (
        f"introspection is switched off on this server (MAILFLOW_INTROSPECTION), and the query "
        f"asks for '{field}'; mailflow's schema is published as SDL in its schema/ directory"
    )


async def test_switched_off_typename_and_report_queries_are_still_answered(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    body = await post(clients["off"], "{ __typename connectors { __typename name } }")

    assert body == {"data": {"__typename": "Query", "connectors": []}}


async def test_one_document_is_answered_or_refused_by_each_apps_setting_whatever_the_cache(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    answers = [
        await post(clients[setting], TYPE_QUERY) for setting in ("off", "on", "off", "on")
    ]

    assert ["errors" in answer for answer in answers] == [True, False, True, False]
    assert answers[1]["data"]["__type"]["name"] == "Connector"


def test_introspection_and_graphiql_are_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILFLOW_INTROSPECTION", raising=False)
    monkeypatch.delenv("MAILFLOW_GRAPHIQL", raising=False)

    settings = Settings()

    assert settings.introspection is True
    assert settings.graphiql is True


@pytest.fixture
def app_client(pool: asyncpg.Pool) -> Callable[[Settings], httpx.AsyncClient]:
    def client(settings: Settings) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=create_app(pool, settings))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    return client


async def test_switched_off_graphiql_is_not_rendered_for_a_browser(
    app_client: Callable[[Settings], httpx.AsyncClient], seed: Seed
) -> None:
    token = await seed.token(await seed.organization("org-a"))
    async with app_client(Settings(graphiql=False)) as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        script = await client.get("/static/graphiql/graphiql.min.js")
        query = await client.get(
            "/graphql", params={"query": "{ __typename }"},
            headers={"Accept": "text/html", "Authorization": f"Bearer {token}"},
        )

    assert page.status_code == 404
    assert page.headers["content-type"] == "application/json"
    (error,) = page.json()["errors"]
    assert error["extensions"] == {"code": "GRAPHIQL_DISABLED"}
    assert "MAILFLOW_GRAPHIQL" in error["message"]
    assert script.status_code == 404
    assert query.json() == {"data": {"__typename": "Query"}}


async def test_graphiql_without_introspection_carries_no_schema(
    app_client: Callable[[Settings], httpx.AsyncClient],
) -> None:
    async with app_client(Settings(introspection=False)) as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
    async with app_client(Settings()) as client:
        default_page = await client.get("/graphql", headers={"Accept": "text/html"})

    assert page.status_code == 200
    assert _config(page.text)["schema"] is None
    assert "__schema" not in page.text
    assert _config(default_page.text)["schema"]["__schema"]["queryType"]["name"] == "Query"


def _config(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="graphiql-config">(.*?)</script>', page)
    assert found is not None
    config: dict[str, Any] = json.loads(found.group(1))
    return config
