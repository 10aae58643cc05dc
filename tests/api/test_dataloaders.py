from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import httpx
import pytest

from mailflow.api.app import create_app
from mailflow.domain import (
    Direction,
    TlsFailureDetail,
    TlsPolicy,
    TlsPolicyType,
    TlsReport,
    TlsVersion,
)
from mailflow.reports.loaders import SharedLoader
from mailflow.settings import Settings
from mailflow.store.db import keep_session
from mailflow.store.tls_reports import store_tls_report

from .conftest import Api, Seed, global_connector_id

EVERY_CONNECTOR_REPORT = """{
    connectors {
        name
        volume(start: "2025-01-01", end: "2025-01-07") { date messages byTls { messages } }
        tlsBreakdown(start: "2025-01-01", end: "2025-01-07") { total versions { percent } }
        insights(start: "2025-01-01", end: "2025-01-07") { kind value }
    }
}"""


class StatementLog:
    """Every SQL statement the application's pool sends, in order."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def record(self, logged: asyncpg.connection.LoggedQuery) -> None:
        self.statements.append(logged.query)

    async def install(self, connection: asyncpg.Connection) -> None:
        connection.add_query_logger(self.record)


@pytest.fixture
def statement_log() -> StatementLog:
    return StatementLog()


@pytest.fixture
async def counted_client(
    database_url: str, settings: Settings, statement_log: StatementLog
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an application whose pool of one connection logs every statement it sends."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1,
                                     init=statement_log.install, reset=keep_session)
    assert pool is not None
    transport = httpx.ASGITransport(app=create_app(pool, settings))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        await pool.close()


async def seed_connectors(
    seed: Seed, organization_id: int, count: int, first_day: date = date(2025, 1, 1)
) -> None:
    """``count`` outbound connectors, each with mail of three TLS versions on 7 days."""
    rows = []
    for number in range(count):
        connector_id = await seed.connector(organization_id, f"Connector {number:03d}",
                                            Direction.OUTBOUND)
        for offset in range(7):
            day = first_day + timedelta(days=offset)
            for version in (TlsVersion.NONE, TlsVersion.TLS1_0, TlsVersion.TLS1_3):
                messages = number + offset + 1
                rows.append((organization_id, day, Direction.OUTBOUND.value, connector_id,
                             version.value, messages, messages, messages * 1000))
    await seed.pool.executemany(
        "INSERT INTO daily_rollups (organization_id, day, direction, connector_id, tls_version, "
        "messages, recipients, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", rows)


async def statements_for_every_connector_report(
    seed: Seed, counted_client: httpx.AsyncClient, statement_log: StatementLog, connectors: int
) -> list[str]:
    organization_id = await seed.organization()
    await seed_connectors(seed, organization_id, connectors)
    token = await seed.token(organization_id)

    statement_log.statements.clear()
    response = await counted_client.post(
        "/graphql", json={"query": EVERY_CONNECTOR_REPORT},
        headers={"Authorization": f"Bearer {token}"},
    )

    body = response.json()
    assert "errors" not in body, body
    assert len(body["data"]["connectors"]) == connectors
    assert all(len(c["volume"]) == 7 and c["insights"] for c in body["data"]["connectors"])
    return list(statement_log.statements)


async def test_reports_of_n_connectors_cost_the_same_few_statements_for_any_n(
    seed: Seed, counted_client: httpx.AsyncClient, statement_log: StatementLog
) -> None:
    # A connection's first use of a statement with array types makes asyncpg look the types
    # up once; warm the connection so that only what every request costs is counted.
    first_use = await statements_for_every_connector_report(
        seed, counted_client, statement_log, 1
    )
    print(f"\nfirst request on a new connection: {len(first_use)} SQL statements")

    counts = {}
    for connectors in (1, 10, 100):
        statements = await statements_for_every_connector_report(
            seed, counted_client, statement_log, connectors
        )
        counts[connectors] = len(statements)
        print(f"{connectors} connectors: {len(statements)} SQL statements")
        for statement in statements:
            print("   ", statement.strip().splitlines()[0][:100])

        assert not any("message_facts" in statement for statement in statements)

    assert counts[1] == counts[10] == counts[100]
    # The request's transaction (BEGIN, the service role, its organization, COMMIT),
    # authentication, the report version, the connectors and their rollups; the pool hands
    # the connection back without a reset, as the server's does.
    assert counts[1] <= 8


# The README's dashboard, over its default ranges (the last 7 days).
DASHBOARD = """query Dashboard {
  mailFlow(direction: INBOUND) { date messages byTls { version messages } }
  tlsBreakdown { total versions { version messages percent } }
  insights { kind value threshold connector { name } }
  connectors { name direction kind tlsBreakdown { total } }
}"""


async def statements_for_the_dashboard(
    seed: Seed, counted_client: httpx.AsyncClient, statement_log: StatementLog, connectors: int
) -> list[str]:
    organization_id = await seed.organization()
    await seed_connectors(seed, organization_id, connectors,
                          first_day=datetime.now(UTC).date() - timedelta(days=6))
    token = await seed.token(organization_id)

    statement_log.statements.clear()
    response = await counted_client.post(
        "/graphql", json={"query": DASHBOARD}, headers={"Authorization": f"Bearer {token}"})

    data = response.json()["data"]
    assert len(data["connectors"]) == connectors
    assert all(connector["tlsBreakdown"]["total"] > 0 for connector in data["connectors"])
    # Every connector sends a third of its mail without TLS and a third with TLS 1.0.
    assert {insight["connector"]["name"] for insight in data["insights"]} == {
        connector["name"] for connector in data["connectors"]}
    return list(statement_log.statements)


async def test_the_dashboard_costs_the_same_statements_for_1_10_and_100_connectors(
    seed: Seed, counted_client: httpx.AsyncClient, statement_log: StatementLog
) -> None:
    await statements_for_the_dashboard(seed, counted_client, statement_log, 1)

    counts = {}
    for connectors in (1, 10, 100):
        statements = await statements_for_the_dashboard(seed, counted_client, statement_log,
                                                        connectors)
        counts[connectors] = len(statements)
        print(f"dashboard, {connectors} connectors: {len(statements)} SQL statements")
        for statement in statements:
            print("   ", statement.strip().splitlines()[0][:100])
        assert not any("message_facts" in statement for statement in statements)

    assert counts[1] == counts[10] == counts[100]
    # The request's transaction (four statements), authentication, the organization's mail by
    # day for mailFlow (inbound) and for tlsBreakdown (all), the connectors, their rollups (for
    # their breakdowns and the insights at once), and the pool's reset.
    assert counts[1] <= 10


TLS_REPORTS = """{
    tlsSessions(start: "2025-01-01", end: "2025-01-07") {
        policyDomain days { failedSessions failedSessionsByResultType { failedSessions } }
    }
    tlsFailures(start: "2025-01-01", end: "2025-01-07") { resultType }
}"""


async def statements_for_tls_reports_of_n_domains(
    seed: Seed, counted_client: httpx.AsyncClient, statement_log: StatementLog, domains: int
) -> list[str]:
    organization_id = await seed.organization()
    policies = tuple(
        TlsPolicy(TlsPolicyType.STS, f"d{number}.example.com", 10, 1,
                  failure_details=(TlsFailureDetail("certificate-expired", 1),))
        for number in range(domains)
    )
    report = TlsReport(f"report-{domains}", "Sender", None, datetime(2025, 1, 2, tzinfo=UTC),
                       datetime(2025, 1, 3, tzinfo=UTC), policies)
    async with seed.pool.acquire() as connection, connection.transaction():
        await store_tls_report(connection, organization_id, report)
    token = await seed.token(organization_id)

    statement_log.statements.clear()
    response = await counted_client.post(
        "/graphql", json={"query": TLS_REPORTS}, headers={"Authorization": f"Bearer {token}"},
    )

    body = response.json()
    assert "errors" not in body, body
    assert len(body["data"]["tlsSessions"]) == len(body["data"]["tlsFailures"]) == domains
    return list(statement_log.statements)


async def test_tls_reports_of_n_policy_domains_cost_the_same_few_statements_for_any_n(
    seed: Seed, counted_client: httpx.AsyncClient, statement_log: StatementLog
) -> None:
    await statements_for_tls_reports_of_n_domains(seed, counted_client, statement_log, 1)

    counts = {
        domains: len(await statements_for_tls_reports_of_n_domains(
            seed, counted_client, statement_log, domains))
        for domains in (1, 10, 40)
    }

    assert counts[1] == counts[10] == counts[40]
    # The request's transaction (four statements), authentication, sessions, result types,
    # failure details, and the pool's reset.
    assert counts[1] <= 9


async def test_a_field_that_fails_leaves_a_field_awaiting_the_same_report_answered(
    seed: Seed, api: Api, organization_id: int
) -> None:
    # graphql-core cancels the siblings of the failing tlsBreakdown, among them a volume that
    # waits for the same rows as the volume under connectors.
    connector_id = await seed.connector(organization_id, "Partner")
    await seed.rollup(organization_id, date(2025, 1, 1), TlsVersion.TLS1_2, 3,
                      connector_id=connector_id)
    window = 'start: "2025-01-01", end: "2025-01-01"'
    query = f"""{{
        connectors {{ volume({window}) {{ messages }} }}
        connector(id: "{global_connector_id(connector_id)}") {{
            volume({window}) {{ messages }}
            tlsBreakdown(start: "2025-01-02", end: "2025-01-01") {{ total }}
        }}
    }}"""

    response = await api.post(query)

    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"connectors": [{"volume": [{"messages": 3}]}], "connector": None}
    assert [error["extensions"]["code"] for error in body["errors"]] == ["INVALID_DATE_RANGE"]


async def test_a_report_awaited_by_two_fields_is_read_for_the_one_left_when_the_other_is_cancelled(
) -> None:
    reads: list[list[str]] = []

    async def read(keys: list[str]) -> list[str]:
        reads.append(keys)
        return [key.upper() for key in keys]

    loader = SharedLoader(read)
    cancelled = asyncio.ensure_future(loader.load("a"))
    left = asyncio.ensure_future(loader.load("a"))
    await asyncio.sleep(0)
    cancelled.cancel()

    assert await left == "A"
    assert cancelled.cancelled()
    assert reads == [["a"]]


async def test_a_report_no_field_awaits_any_more_is_not_read() -> None:
    reads: list[list[str]] = []

    async def read(keys: list[str]) -> list[str]:
        reads.append(keys)
        return keys

    loader = SharedLoader(read)
    waiting = [asyncio.ensure_future(loader.load("a")) for _ in range(2)]
    await asyncio.sleep(0)
    for field in waiting:
        field.cancel()
    await asyncio.sleep(0.01)

    assert reads == []
