from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import httpx
import pytest

from mailflow.api.app import create_app
from mailflow.domain import TlsVersion
from mailflow.settings import Settings
from mailflow.store.tokens import TokenRole, create_token

from .conftest import Api, Seed, global_connector_id

QUERY = '{ tlsBreakdown(start: "2025-01-01", end: "2025-01-01") { total } }'


def assert_unauthenticated(response: httpx.Response, challenge: str = "Bearer") -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == challenge
    body = response.json()
    assert list(body) == ["errors"]
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    assert error["message"]


async def test_a_request_without_a_token_is_unauthenticated(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": QUERY})

    assert_unauthenticated(response)
    assert "Authorization: Bearer <token>" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "header",
    ["Bearer mf_1_nonsense", "Bearer ", "Basic dXNlcjpwYXNz", "mf_1_token", "Bearer\t"],
)
async def test_a_request_with_an_unusable_authorization_header_is_unauthenticated(
    client: httpx.AsyncClient, header: str
) -> None:
    response = await client.post(
        "/graphql", json={"query": QUERY}, headers={"Authorization": header}
    )

    assert_unauthenticated(response, 'Bearer error="invalid_token"')


async def test_an_expired_token_is_unauthenticated(
    client: httpx.AsyncClient, seed: Seed, organization_id: int
) -> None:
    async with seed.pool.acquire() as connection:
        token = await create_token(
            connection, organization_id, expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )

    response = await client.post(
        "/graphql", json={"query": QUERY}, headers={"Authorization": f"Bearer {token}"}
    )

    assert_unauthenticated(response, 'Bearer error="invalid_token"')


async def test_a_query_over_get_needs_a_token_too(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": QUERY})

    assert_unauthenticated(response)


async def test_the_scheme_name_is_case_insensitive(api: Api) -> None:
    response = await api.client.post(
        "/graphql", json={"query": QUERY}, headers={"Authorization": f"bearer {api.token}"}
    )

    assert response.status_code == 200
    assert response.json() == {"data": {"tlsBreakdown": {"total": 0}}}


@pytest.mark.parametrize("accept", [
    "text/html", "TEXT/HTML", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
])
async def test_a_browser_gets_graphiql_without_a_token(
    client: httpx.AsyncClient, accept: str
) -> None:
    response = await client.get("/graphql", headers={"Accept": accept})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


@pytest.mark.parametrize("accept", ["*/*", "application/json", "text/html;q=0", "text/htmlx"])
async def test_a_get_that_does_not_ask_for_html_is_answered_as_an_api_request(
    api: Api, accept: str
) -> None:
    response = await api.client.get(
        "/graphql", headers={"Authorization": f"Bearer {api.token}", "Accept": accept})

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert error["message"].startswith('the "query" parameter is missing')


async def test_the_root_redirects_to_graphql(client: httpx.AsyncClient) -> None:
    response = await client.get("/")

    assert response.is_redirect
    assert response.headers["location"] == "/graphql"


@pytest.fixture
async def demo_client(
    pool: asyncpg.Pool, settings: Settings, organization_id: int
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(pool, settings, demo_organization_id=organization_id)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_the_demo_organization_is_open_without_a_token(
    demo_client: httpx.AsyncClient, seed: Seed, organization_id: int
) -> None:
    await seed.rollup(organization_id, date(2025, 1, 1), TlsVersion.TLS1_3, 5)

    response = await demo_client.post("/graphql", json={"query": QUERY})

    assert response.status_code == 200
    assert response.json() == {"data": {"tlsBreakdown": {"total": 5}}}


async def test_the_demo_still_refuses_an_invalid_token(demo_client: httpx.AsyncClient) -> None:
    response = await demo_client.post(
        "/graphql", json={"query": QUERY}, headers={"Authorization": "Bearer wrong"}
    )

    assert_unauthenticated(response, 'Bearer error="invalid_token"')


async def test_a_token_of_another_organization_reads_that_organization_even_in_the_demo(
    demo_client: httpx.AsyncClient, seed: Seed
) -> None:
    other = await seed.organization("org-b")
    await seed.rollup(other, date(2025, 1, 1), TlsVersion.TLS1_3, 11)
    token = await seed.token(other)

    response = await demo_client.post(
        "/graphql", json={"query": QUERY}, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.json() == {"data": {"tlsBreakdown": {"total": 11}}}


async def test_one_organization_never_sees_another_organizations_mail_or_connectors(
    api: Api, seed: Seed, organization_id: int
) -> None:
    other = await seed.organization("org-b")
    theirs = await seed.connector(other, "Their partner")
    ours = await seed.connector(organization_id, "Our partner")
    day = date(2025, 1, 1)
    await seed.rollup(other, day, TlsVersion.NONE, 1000, connector_id=theirs)
    await seed.rollup(other, day, TlsVersion.NONE, 2000)
    await seed.rollup(organization_id, day, TlsVersion.TLS1_3, 3, connector_id=ours)

    data = await api.data("""{
        connectors { name volume(start: "2025-01-01", end: "2025-01-01") { messages } }
        mailFlow(start: "2025-01-01", end: "2025-01-01") { messages }
        tlsBreakdown(start: "2025-01-01", end: "2025-01-01") { total }
        insights(start: "2025-01-01", end: "2025-01-01", noTlsThreshold: 0) { connector { name } }
    }""")

    assert data == {
        "connectors": [{"name": "Our partner", "volume": [{"messages": 3}]}],
        "mailFlow": [{"messages": 3}],
        "tlsBreakdown": {"total": 3},
        "insights": [],
    }


async def test_another_organizations_connector_id_is_not_found(
    api: Api, seed: Seed
) -> None:
    other = await seed.organization("org-b")
    theirs = await seed.connector(other, "Their partner")
    await seed.rollup(other, date(2025, 1, 1), TlsVersion.NONE, 1000, connector_id=theirs)

    for query in (
        "query($id: ID!) { connector(id: $id) { name } }",
        'query($id: ID!) { mailFlow(start: "2025-01-01", end: "2025-01-01", connectorId: $id) '
        "{ messages } }",
    ):
        error = await api.error(query, {"id": global_connector_id(theirs)})
        assert error["extensions"]["code"] == "CONNECTOR_NOT_FOUND"
        assert "Their partner" not in error["message"]
        assert "org-b" not in error["message"]


async def test_a_request_with_two_authorization_headers_is_a_bad_request(api: Api) -> None:
    bearer = f"Bearer {api.token}"

    response = await api.client.post(
        "/graphql", json={"query": QUERY},
        headers=[("Authorization", bearer), ("Authorization", bearer)],
    )

    assert response.status_code == 400
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_request"'
    assert response.json() == {
        "errors": [{
            "message": "the request has 2 Authorization headers; send exactly one, "
                       "'Authorization: Bearer <token>'",
            "extensions": {"code": "BAD_REQUEST"},
        }]
    }


async def test_an_ingest_token_cannot_read_reports(
    client: httpx.AsyncClient, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id, TokenRole.INGEST)

    response = await client.post(
        "/graphql", json={"query": QUERY}, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 403
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "FORBIDDEN"}
    assert "ingest role" in error["message"]


@pytest.mark.parametrize("role", [TokenRole.VIEWER, TokenRole.ADMIN])
async def test_viewer_and_admin_tokens_read_reports(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, role: TokenRole
) -> None:
    token = await seed.token(organization_id, role)

    response = await client.post(
        "/graphql", json={"query": QUERY}, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 200
    assert response.json() == {"data": {"tlsBreakdown": {"total": 0}}}
