"""With MAILFLOW_FEDERATION the API is an Apollo Federation subgraph; without it, it is not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from graphql import build_schema

from mailflow.api.app import create_app
from mailflow.api.schema import schema
from mailflow.settings import Settings

from .conftest import Api, Seed, global_connector_id

SERVICE = "{ _service { sdl } }"
ENTITIES = """
query Entities($representations: [_Any!]!) {
  _entities(representations: $representations) { ... on Connector { id name } }
}
"""


async def api_with(
    pool: asyncpg.Pool, seed: Seed, organization_id: int, settings: Settings
) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=create_app(pool, settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Api(client, await seed.token(organization_id))


@pytest.fixture
async def subgraph(pool: asyncpg.Pool, seed: Seed, organization_id: int) -> AsyncIterator[Api]:
    async for api in api_with(pool, seed, organization_id,
                              Settings(federation=True, rate_limit="off")):
        yield api


async def test_a_subgraph_serves_its_sdl_with_connectors_keyed_by_id(subgraph: Api) -> None:
    sdl = (await subgraph.data(SERVICE))["_service"]["sdl"]

    assert 'type Connector implements Node @key(fields: "id")' in sdl
    assert "https://specs.apollo.dev/federation/v2" in sdl
    assert "allConnectors(" in sdl


async def test_a_gateway_finds_connectors_of_the_organization_by_their_id(
    subgraph: Api, seed: Seed, organization_id: int
) -> None:
    ours = global_connector_id(await seed.connector(organization_id, "Harbor Relay"))
    theirs = global_connector_id(
        await seed.connector(await seed.organization("org-b"), "Other Relay"))

    body = (await subgraph.post(ENTITIES, {"representations": [
        {"__typename": "Connector", "id": ours}, {"__typename": "Connector", "id": theirs},
    ]})).json()

    assert body["data"]["_entities"] == [{"id": ours, "name": "Harbor Relay"}, None]
    assert [error["extensions"]["code"] for error in body["errors"]] == ["CONNECTOR_NOT_FOUND"]


async def test_without_federation_there_is_no_service_field_and_no_key_in_the_sdl(
    api: Api,
) -> None:
    error = await api.error(SERVICE)

    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "_service" in error["message"]
    assert "@key" not in str(schema)
    assert "_Service" not in str(schema)
    build_schema(str(schema))  # the published SDL stands on its own: no undefined directive


def test_federation_is_off_by_default_and_a_setting_switches_it_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().federation is False
    monkeypatch.setenv("MAILFLOW_FEDERATION", "true")
    assert Settings().federation is True
