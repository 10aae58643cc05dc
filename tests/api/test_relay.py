"""Relay's conventions: node(id) finds an object by its global id, and cursor connections
page through connectors and TLS failure details."""

from __future__ import annotations

import base64
from typing import Any

import asyncpg
import pytest

from mailflow.domain import Direction

from .conftest import Api, Seed, global_connector_id
from .test_tls_reports import OVERNIGHT, fixture_report, store

NAMES = ["beta", "Alpha", "delta", "alpha 2", "Gamma"]
BY_NAME = ["Alpha", "alpha 2", "beta", "delta", "Gamma"]

CONNECTOR_PAGE = """
query Page($first: Int!, $after: String, $direction: Direction) {
  allConnectors(first: $first, after: $after, direction: $direction) {
    totalCount
    edges { cursor node { id name } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

FAILURE_PAGE = """
query Page($first: Int!, $after: String) {
  allTlsFailures(start: "2025-03-01", end: "2025-03-04", first: $first, after: $after) {
    edges { cursor node { date reportId policyDomain resultType failedSessions } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}
"""

FAILURE_LIST = """
{
  tlsFailures(start: "2025-03-01", end: "2025-03-04") {
    date reportId policyDomain resultType failedSessions
  }
}
"""

NODE = """
query Node($id: ID!) { node(id: $id) { __typename id ... on Connector { name } } }
"""


@pytest.fixture
async def connector_ids(seed: Seed, organization_id: int) -> dict[str, int]:
    return {name: await seed.connector(organization_id, name) for name in NAMES}


async def every_page(api: Api, query: str, field: str, first: int,
                     **variables: Any) -> list[dict[str, Any]]:
    """Each page of the connection ``field``, following endCursor until the last one."""
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await api.data(query, {"first": first, "after": after, **variables}))[field]
        pages.append(page)
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            return pages
        after = page["pageInfo"]["endCursor"]
        assert len(pages) < 20, "the connection never ends"


async def test_pages_of_connectors_follow_one_another_in_name_order(
    api: Api, connector_ids: dict[str, int]
) -> None:
    pages = await every_page(api, CONNECTOR_PAGE, "allConnectors", 2)

    assert [[edge["node"]["name"] for edge in page["edges"]] for page in pages] == [
        BY_NAME[0:2], BY_NAME[2:4], BY_NAME[4:5]
    ]
    assert {page["totalCount"] for page in pages} == {5}
    for page in pages:
        assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
    first_node = pages[0]["edges"][0]["node"]
    assert first_node["id"] == global_connector_id(connector_ids["Alpha"])


async def test_a_page_stays_in_place_when_a_connector_before_it_is_deleted(
    api: Api, connector_ids: dict[str, int], pool: asyncpg.Pool
) -> None:
    first = (await api.data(CONNECTOR_PAGE, {"first": 2}))["allConnectors"]
    await pool.execute("DELETE FROM connectors WHERE id = $1", connector_ids["Alpha"])

    after = first["pageInfo"]["endCursor"]
    second = (await api.data(CONNECTOR_PAGE, {"first": 2, "after": after}))["allConnectors"]

    assert [edge["node"]["name"] for edge in second["edges"]] == ["beta", "delta"]
    assert second["totalCount"] == 4


async def test_the_connection_keeps_to_the_direction_asked_for(
    api: Api, seed: Seed, organization_id: int, connector_ids: dict[str, int]
) -> None:
    await seed.connector(organization_id, "Outbound relay", Direction.OUTBOUND)

    page = (await api.data(CONNECTOR_PAGE, {"first": 10, "direction": "OUTBOUND"}))
    names = [edge["node"]["name"] for edge in page["allConnectors"]["edges"]]

    assert names == ["Outbound relay"]
    assert page["allConnectors"]["totalCount"] == 1
    assert page["allConnectors"]["pageInfo"]["hasNextPage"] is False


@pytest.mark.parametrize("first", [0, -1, 101])
async def test_a_page_size_outside_1_to_100_is_refused_with_a_code(
    api: Api, first: int
) -> None:
    error = await api.error(CONNECTOR_PAGE, {"first": first})

    assert error["extensions"]["code"] == "INVALID_PAGE_SIZE"
    assert f"first is {first}" in error["message"]


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        base64.b64encode(b"ConnectorConnection:[1,2]").decode(),
        base64.b64encode(b'TlsFailureConnection:["a","a",1]').decode(),
        base64.b64encode(b"ConnectorConnection:{").decode(),
    ],
)
async def test_a_cursor_the_connection_did_not_hand_out_is_refused_with_a_code(
    api: Api, connector_ids: dict[str, int], cursor: str
) -> None:
    error = await api.error(CONNECTOR_PAGE, {"first": 2, "after": cursor})

    assert error["extensions"]["code"] == "BAD_CURSOR"
    assert repr(cursor) in error["message"]


async def test_pages_of_tls_failures_hold_the_failure_details_in_their_order(
    api: Api, pool: asyncpg.Pool, organization_id: int
) -> None:
    await store(pool, organization_id, fixture_report("rfc_spelling.json"),
                fixture_report("pattern_spelling.json"), OVERNIGHT)
    listed = (await api.data(FAILURE_LIST))["tlsFailures"]

    pages = await every_page(api, FAILURE_PAGE, "allTlsFailures", 1)

    assert len(listed) >= 2
    assert len(pages) == len(listed)
    assert [edge["node"] for page in pages for edge in page["edges"]] == listed
    connector_cursor = base64.b64encode(b'ConnectorConnection:["a","a",1]').decode()
    error = await api.error(FAILURE_PAGE, {"first": 1, "after": connector_cursor})
    assert error["extensions"]["code"] == "BAD_CURSOR"


async def test_node_finds_a_connector_by_its_global_id_and_nothing_of_another_organization(
    api: Api, seed: Seed, connector_ids: dict[str, int]
) -> None:
    other = await seed.connector(await seed.organization("org-b"), "Theirs")
    ours = global_connector_id(connector_ids["delta"])

    found = (await api.data(NODE, {"id": ours}))["node"]
    theirs = (await api.data(NODE, {"id": global_connector_id(other)}))["node"]

    assert found == {"__typename": "Connector", "id": ours, "name": "delta"}
    assert theirs is None


@pytest.mark.parametrize(
    "global_id",
    ["nonsense", base64.b64encode(b"Organization:1").decode(),
     base64.b64encode(b"Connector:x").decode()],
)
async def test_node_refuses_an_id_this_api_does_not_hand_out(api: Api, global_id: str) -> None:
    error = await api.error(NODE, {"id": global_id})

    assert error["extensions"]["code"] == "BAD_ID"
    assert repr(global_id) in error["message"]


async def test_nodes_answers_in_the_order_of_the_ids_with_null_for_unknown_ones(
    api: Api, connector_ids: dict[str, int]
) -> None:
    ids = [global_connector_id(connector_ids["Gamma"]), global_connector_id(2**40),
           global_connector_id(connector_ids["beta"])]

    data = await api.data(
        "query Nodes($ids: [ID!]!) { nodes(ids: $ids) { ... on Connector { name } } }",
        {"ids": ids},
    )

    assert data["nodes"] == [{"name": "Gamma"}, None, {"name": "beta"}]


async def test_nodes_refuses_more_than_100_ids(api: Api, connector_ids: dict[str, int]) -> None:
    ids = [global_connector_id(connector_ids["beta"])] * 101

    error = await api.error("query Nodes($ids: [ID!]!) { nodes(ids: $ids) { id } }",
                            {"ids": ids})

    assert error["extensions"]["code"] == "TOO_MANY_IDS"
    assert "101 ids" in error["message"]
