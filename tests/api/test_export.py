from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from mailflow.api.app import create_app
from mailflow.demo import load_demo
from mailflow.domain import ConnectorKind, Direction, TlsVersion
from mailflow.settings import Settings
from mailflow.store.tokens import TokenRole

from .conftest import Api, Seed, global_connector_id

HEADER = [
    "Date", "Direction", "Connector", "Connector type", "Forced TLS",
    "No TLS", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3", "Unknown TLS", "Volume",
]
VERSIONS = ["NONE", "TLS1_0", "TLS1_1", "TLS1_2", "TLS1_3", "UNKNOWN"]
TLS_BREAKDOWN = """
query Breakdown(
    $start: Date, $end: Date, $direction: Direction, $connectorId: ID, $noConnector: Boolean
) {
    tlsBreakdown(start: $start, end: $end, direction: $direction,
                 connectorId: $connectorId, noConnector: $noConnector) {
        total
        versions { version messages }
    }
}
"""
JANUARY = {"start": "2025-01-01", "end": "2025-01-05"}


def rows_of(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


def tls_totals(rows: list[dict[str, str]]) -> dict[str, int]:
    columns = dict(zip(VERSIONS, HEADER[5:11], strict=True))
    return {version: sum(int(row[column]) for row in rows) for version, column in columns.items()}


@pytest.fixture
async def demo_client(
    pool: asyncpg.Pool, service_pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    """The application on the demo organization, which answers without a token."""
    organization_id = await load_demo(pool, now=datetime.now(UTC))
    app = create_app(service_pool, Settings(rate_limit="off"),
                     demo_organization_id=organization_id)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def graphql_breakdown(client: httpx.AsyncClient, variables: dict[str, Any]) -> Any:
    response = await client.post("/graphql", json={"query": TLS_BREAKDOWN,
                                                   "variables": variables})
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["tlsBreakdown"]


async def test_the_demo_export_has_the_admin_columns_and_the_graphql_totals(
    demo_client: httpx.AsyncClient,
) -> None:
    today = datetime.now(UTC).date()
    month = {"start": str(today - timedelta(days=29)), "end": str(today)}

    response = await demo_client.get("/export/connector-report.csv", params=month)
    rows = rows_of(response)
    breakdown = await graphql_breakdown(demo_client, month)

    assert response.text.splitlines()[0].split(",") == HEADER
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="connector-report_{month["start"]}_{month["end"]}.csv"'
    )
    assert sum(int(row["Volume"]) for row in rows) == breakdown["total"] > 0
    assert tls_totals(rows) == {item["version"]: item["messages"]
                                for item in breakdown["versions"]}
    assert {row["Connector"] for row in rows} >= {"Litware bank (inbound)", ""}
    keys = [(row["Date"], row["Direction"], row["Connector"]) for row in rows]
    assert len(keys) == len(set(keys)), "one row per date, direction and connector"


async def test_each_filter_keeps_the_mail_graphql_keeps(demo_client: httpx.AsyncClient) -> None:
    connectors = (await demo_client.post("/graphql", json={
        "query": "{ connectors { id name } }"})).json()["data"]["connectors"]
    litware = next(item["id"] for item in connectors if item["name"] == "Litware bank (inbound)")
    today = datetime.now(UTC).date()
    week = {"start": str(today - timedelta(days=6)), "end": str(today)}

    for extra in ({"direction": "OUTBOUND"}, {"connectorId": litware},
                  {"noConnector": True, "direction": "INBOUND"}):
        params = {**week, **{key: str(value).lower() if isinstance(value, bool) else value
                             for key, value in extra.items()}}
        rows = rows_of(await demo_client.get("/export/connector-report.csv", params=params))
        breakdown = await graphql_breakdown(demo_client, {**week, **extra})

        assert sum(int(row["Volume"]) for row in rows) == breakdown["total"] > 0, extra
        if "direction" in extra:
            assert {row["Direction"] for row in rows} == {extra["direction"]}
    assert {row["Connector"] for row in rows} == {""}


async def test_a_row_counts_one_connector_day_with_its_type_and_forced_tls(
    api: Api, seed: Seed, organization_id: int
) -> None:
    partner = await seed.connector(organization_id, "Partner", Direction.INBOUND,
                                   require_tls=True)
    relay = await seed.connector(organization_id, "=Relay", Direction.OUTBOUND,
                                 ConnectorKind.ON_PREMISES)
    day = date(2025, 1, 2)
    await seed.rollup(organization_id, day, TlsVersion.TLS1_2, 6, connector_id=partner)
    await seed.rollup(organization_id, day, TlsVersion.TLS1_3, 2, connector_id=partner)
    await seed.rollup(organization_id, day, TlsVersion.NONE, 1, direction=Direction.OUTBOUND,
                      connector_id=relay)
    await seed.rollup(organization_id, date(2025, 1, 4), TlsVersion.UNKNOWN, 3)

    response = await api.client.get("/export/connector-report.csv", params=JANUARY,
                                    headers={"Authorization": f"Bearer {api.token}"})

    assert response.text.splitlines()[1:] == [
        "2025-01-02,INBOUND,Partner,PARTNER,true,0,0,0,6,2,0,8",
        "2025-01-02,OUTBOUND,'=Relay,ON_PREMISES,false,1,0,0,0,0,0,1",
        "2025-01-04,INBOUND,,,,0,0,0,0,0,3,3",
    ]


async def test_tls_usage_gives_percents_that_add_up_to_100(
    api: Api, seed: Seed, organization_id: int
) -> None:
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.TLS1_2, 1)
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.TLS1_3, 1)
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.NONE, 1)

    response = await api.client.get("/export/tls-usage.csv", params=JANUARY,
                                    headers={"Authorization": f"Bearer {api.token}"})

    rows = rows_of(response)
    assert list(rows[0]) == [*HEADER[:5], *(f"{column} %" for column in HEADER[5:11]), "Volume"]
    assert [rows[0][f"{column} %"] for column in HEADER[5:11]] == [
        "33.4", "0.0", "0.0", "33.3", "33.3", "0.0",
    ]
    assert rows[0]["Volume"] == "3"


@pytest.mark.parametrize("name", ["connector-report", "tls-usage"])
async def test_a_range_to_the_calendars_last_day_is_a_file_with_its_header(
    demo_client: httpx.AsyncClient, name: str
) -> None:
    response = await demo_client.get(f"/export/{name}.csv",
                                     params={"start": "9999-12-20", "end": "9999-12-31"})

    assert response.status_code == 200
    assert response.text.splitlines()[0].startswith("Date,Direction,Connector,")
    assert len(response.text.splitlines()) == 1


@pytest.mark.parametrize(("params", "code", "variables"), [
    ({"start": "2025-01-09", "end": "2025-01-01"}, "INVALID_DATE_RANGE",
     {"start": "2025-01-09", "end": "2025-01-01"}),
    ({"start": "2025-01-01", "end": "2025-06-01"}, "RANGE_TOO_LONG",
     {"start": "2025-01-01", "end": "2025-06-01"}),
    ({"connectorId": "bm9wZQ==", "noConnector": "true"}, "CONFLICTING_FILTERS",
     {"connectorId": "bm9wZQ==", "noConnector": True}),
    ({"connectorId": "bm9wZQ=="}, "BAD_ID", {"connectorId": "bm9wZQ=="}),
    ({"connectorId": global_connector_id(999)}, "CONNECTOR_NOT_FOUND",
     {"connectorId": global_connector_id(999)}),
])
async def test_a_bad_filter_is_400_with_the_graphql_code_and_message(
    api: Api, params: dict[str, str], code: str, variables: dict[str, Any]
) -> None:
    response = await api.client.get("/export/connector-report.csv", params=params,
                                    headers={"Authorization": f"Bearer {api.token}"})
    graphql_error = await api.error(TLS_BREAKDOWN, variables)

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == code == graphql_error["extensions"]["code"]
    assert error["message"] == graphql_error["message"]


@pytest.mark.parametrize(("params", "named"), [
    ({"start": "2025-02-30"}, "2025-02-30"),
    ({"direction": "SIDEWAYS"}, "SIDEWAYS"),
    ({"noConnector": "yes"}, "yes"),
    ({"from": "2025-01-01"}, "from"),
])
async def test_a_parameter_that_does_not_fit_its_type_is_named(
    api: Api, params: dict[str, str], named: str
) -> None:
    response = await api.client.get("/export/tls-usage.csv", params=params,
                                    headers={"Authorization": f"Bearer {api.token}"})

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert named in error["message"]


async def test_an_export_needs_a_token_that_reads_reports(
    api: Api, seed: Seed, organization_id: int
) -> None:
    ingest_token = await seed.token(organization_id, role=TokenRole.INGEST)

    missing = await api.client.get("/export/connector-report.csv")
    ingest = await api.client.get("/export/connector-report.csv",
                                  headers={"Authorization": f"Bearer {ingest_token}"})

    assert missing.status_code == 401
    assert missing.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert ingest.status_code == 403


async def test_an_export_holds_only_the_token_organizations_mail(
    api: Api, seed: Seed, organization_id: int
) -> None:
    other = await seed.organization("org-b")
    await seed.rollup(other, date(2025, 1, 2), TlsVersion.TLS1_2, 50)
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.TLS1_2, 5)

    response = await api.client.get("/export/connector-report.csv", params=JANUARY,
                                    headers={"Authorization": f"Bearer {api.token}"})

    assert [row["Volume"] for row in rows_of(response)] == ["5"]


async def test_a_long_export_is_sent_in_several_body_messages(
    service_pool: asyncpg.Pool, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    connectors = [await seed.connector(organization_id, f"Partner {number:02d}")
                  for number in range(40)]
    start = date(2025, 1, 1)
    async with seed.pool.acquire() as connection:
        await connection.executemany(
            "INSERT INTO daily_rollups (organization_id, day, direction, connector_id, "
            "tls_version, messages, recipients, bytes) "
            "VALUES ($1, $2, 'INBOUND', $3, 'TLS1_2', 1, 1, 1)",
            [(organization_id, start + timedelta(days=offset), connector)
             for offset in range(90) for connector in connectors],
        )
    app = create_app(service_pool, Settings(rate_limit="off"))
    sent: list[dict[str, Any]] = []
    requested = False
    answered = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    # httpx's ASGI transport joins the body; the application's own messages show the stream.
    await app({
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/export/connector-report.csv", "raw_path": b"",
        "root_path": "", "query_string": b"start=2025-01-01&end=2025-03-31",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
        "server": ("testserver", 80), "client": ("127.0.0.1", 40000),
    }, receive, send)

    chunks = [message["body"] for message in sent
              if message["type"] == "http.response.body" and message.get("body")]
    lines = b"".join(chunks).decode().splitlines()
    assert sent[0]["status"] == 200
    assert len(lines) == 1 + 90 * 40
    assert len(chunks) > 1
    assert lines[1].startswith("2025-01-01,INBOUND,Partner 00,")
    assert lines[-1].startswith("2025-03-31,INBOUND,Partner 39,")


async def test_exports_count_against_the_rate_limit(
    service_pool: asyncpg.Pool, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    app = create_app(service_pool, Settings(rate_limit="2/minute"))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver") as client:
        statuses = [(await client.get("/export/connector-report.csv", headers=headers)).status_code
                    for _ in range(3)]

    assert statuses == [200, 200, 429]


async def test_an_export_is_503_when_the_database_cannot_be_reached() -> None:
    # Nothing listens on port 9 of this machine: connections are refused.
    pool = await asyncpg.create_pool("postgresql://nobody@127.0.0.1:9/none", min_size=0)
    assert pool is not None
    app = create_app(pool, Settings(rate_limit="off"))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://testserver") as client:
            response = await client.get("/export/connector-report.csv",
                                        headers={"Authorization": "Bearer any"})
    finally:
        await pool.close()

    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["errors"][0]["extensions"]["code"] == "DATABASE_UNAVAILABLE"
    assert "127.0.0.1" not in response.text
