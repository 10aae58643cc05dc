"""No answer ever holds another organization's rows, ids, names or counts.

Hypothesis builds several organizations with random connectors, mail pushed through
POST /ingest, SMTP TLS reports and tokens, then sends random report queries with random
tokens (valid ones of any organization, revoked, forged and malformed ones). Each answer
must be exactly what the token's own organization's data gives, and name nothing of the
others. The application runs on a login without privileges of its own, as the service role.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow.api.ids import CONNECTOR, encode_global_id
from mailflow.domain import TlsFailureDetail, TlsPolicy, TlsPolicyType, TlsReport
from mailflow.store.isolation import owner_transaction
from mailflow.store.organizations import OrganizationConfig, apply_organization
from mailflow.store.tls_reports import store_tls_report
from mailflow.store.tokens import TokenRole, create_token, revoke_token

FIRST_DAY = date(2025, 3, 1)
DAYS = 7
TLS_VERSIONS = ("NONE", "TLS1_0", "TLS1_1", "TLS1_2", "TLS1_3", "UNKNOWN")
DIRECTIONS = ("INBOUND", "OUTBOUND")


@dataclass(frozen=True)
class FactPlan:
    day: int
    direction: str
    tls_version: str
    connector: int | None  # an index into every organization's connectors, or none
    recipients: int
    size: int


@dataclass(frozen=True)
class ReportPlan:
    day: int
    domain: int
    successful: int
    failures: tuple[int, ...]


@dataclass(frozen=True)
class OrganizationPlan:
    suffix: str
    connectors: tuple[str, ...]  # directions
    facts: tuple[FactPlan, ...]
    reports: tuple[ReportPlan, ...]


@dataclass(frozen=True)
class RequestPlan:
    token: str  # viewer, admin, revoked, forged, malformed, ingest
    organization: int
    query: str
    start: int
    length: int
    direction: str | None
    connector: int


facts = st.builds(
    FactPlan, day=st.integers(0, DAYS - 1), direction=st.sampled_from(DIRECTIONS),
    tls_version=st.sampled_from(TLS_VERSIONS), connector=st.none() | st.integers(0, 8),
    recipients=st.integers(0, 4), size=st.integers(0, 50_000),
)
reports = st.builds(
    ReportPlan, day=st.integers(0, DAYS - 1), domain=st.integers(0, 1),
    successful=st.integers(0, 100), failures=st.lists(st.integers(1, 9), max_size=2).map(tuple),
)
organizations = st.builds(
    OrganizationPlan,
    suffix=st.text("abcdefghijklmnopqrstuvwxyz", min_size=5, max_size=5),
    connectors=st.lists(st.sampled_from(DIRECTIONS), max_size=3).map(tuple),
    facts=st.lists(facts, max_size=12).map(tuple),
    reports=st.lists(reports, max_size=2).map(tuple),
)
requests = st.builds(
    RequestPlan,
    token=st.sampled_from(("viewer", "viewer", "admin", "revoked", "forged", "malformed",
                           "ingest")),
    organization=st.integers(0, 2),
    query=st.sampled_from(("connectors", "mail_flow", "connector", "tls_reports", "insights")),
    start=st.integers(-2, DAYS), length=st.integers(1, DAYS + 2),
    direction=st.none() | st.sampled_from(DIRECTIONS), connector=st.integers(0, 8),
)


@dataclass
class Organization:
    """One organization as stored, and what its own data should answer."""

    id: int
    marker: str
    connectors: list[tuple[int, str, str]]  # id, name, direction
    facts: list[tuple[date, str, str, int | None, int, int]] = field(default_factory=list)
    reports: list[TlsReport] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)

    def connector_ids(self) -> set[str]:
        return {encode_global_id(CONNECTOR, connector_id) for connector_id, _, _ in self.connectors}


@dataclass
class World:
    organizations: list[Organization]

    def all_connectors(self) -> list[tuple[int, str, str]]:
        return [connector for organization in self.organizations
                for connector in organization.connectors]


async def build_world(
    pool: asyncpg.Pool, client: httpx.AsyncClient, plans: list[OrganizationPlan]
) -> World:
    await pool.execute("TRUNCATE organizations, message_facts, daily_rollups CASCADE")
    world = World([])
    for index, plan in enumerate(plans):
        marker = f"tenant{index}x{plan.suffix}"
        config = OrganizationConfig.model_validate({
            "organization": marker,
            "accepted_domains": [f"{marker}.example"],
            "connectors": [
                {"name": f"{marker} route {number}", "direction": direction.lower(),
                 "kind": "partner",
                 "sender_domains" if direction == "INBOUND" else "recipient_domains":
                     [f"c{number}.{marker}.example"]}
                for number, direction in enumerate(plan.connectors)
            ],
        })
        async with pool.acquire() as connection:
            organization_id = (await apply_organization(connection, config)).organization_id
            async with owner_transaction(connection, organization_id):
                rows = await connection.fetch(
                    "SELECT id, name, direction FROM connectors WHERE organization_id = $1",
                    organization_id)
                organization = Organization(organization_id, marker,
                                            [(row[0], row[1], row[2]) for row in rows])
                for role in TokenRole:
                    organization.tokens[role.value] = await create_token(
                        connection, organization_id, role=role)
                revoked = await create_token(connection, organization_id)
                tokens = await connection.fetch(
                    "SELECT id FROM api_tokens WHERE organization_id = $1 ORDER BY id DESC "
                    "LIMIT 1", organization_id)
                await revoke_token(connection, organization_id, tokens[0]["id"])
                organization.tokens["revoked"] = revoked
        world.organizations.append(organization)

    for plan, organization in zip(plans, world.organizations, strict=True):
        await push_facts(client, world, plan, organization)
        await store_reports(pool, plan, organization)
    return world


async def push_facts(
    client: httpx.AsyncClient, world: World, plan: OrganizationPlan, organization: Organization
) -> None:
    """The plan's mail through POST /ingest: a record may name a connector of any
    organization, and takes it only when it is one of its own of the same direction."""
    everyone = world.all_connectors()
    lines = []
    for number, fact in enumerate(plan.facts):
        day = FIRST_DAY + timedelta(days=fact.day)
        named = everyone[fact.connector % len(everyone)] if (
            fact.connector is not None and everyone) else None
        own = named if named in organization.connectors and named[2] == fact.direction else None
        record: dict[str, Any] = {
            "source_key": f"{organization.marker}/{number}",
            "occurred_at": datetime(day.year, day.month, day.day, 12, tzinfo=UTC).isoformat(),
            "direction": fact.direction, "tls_version": fact.tls_version,
            "sender_domain": f"peer.{organization.marker}.example",
            "recipient_domains": [f"far.{organization.marker}.example"],
            "recipients": fact.recipients, "size_bytes": fact.size,
        }
        if named is not None:
            record["connector"] = named[1]
        lines.append(json.dumps(record))
        organization.facts.append((day, fact.direction, fact.tls_version,
                                   own[0] if own else None, fact.recipients, fact.size))
    response = await client.post(
        "/ingest", content="\n".join(lines).encode(),
        headers={"Content-Type": "application/x-ndjson",
                 "Authorization": f"Bearer {organization.tokens['ingest']}"})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(plan.facts), response.text


async def store_reports(
    pool: asyncpg.Pool, plan: OrganizationPlan, organization: Organization
) -> None:
    marker = organization.marker
    for number, report_plan in enumerate(plan.reports):
        start = datetime.combine(FIRST_DAY + timedelta(days=report_plan.day),
                                 datetime.min.time(), UTC)
        failures = tuple(TlsFailureDetail("certificate-expired", count,
                                          receiving_mx_hostname=f"mx.{marker}.example")
                         for count in report_plan.failures)
        policy = TlsPolicy(TlsPolicyType.STS, f"mx{report_plan.domain}.{marker}.example",
                           report_plan.successful, sum(report_plan.failures),
                           failure_details=failures)
        report = TlsReport(f"{marker}-report-{number}", f"reporter of {marker}", None,
                           start, start + timedelta(days=1), (policy,))
        async with pool.acquire() as connection, owner_transaction(connection, organization.id):
            await store_tls_report(connection, organization.id, report)
        organization.reports.append(report)


# The queries, each with what the organization's own data must answer.

def days_of(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def flow_points(
    organization: Organization, start: date, end: date, direction: str | None,
    connector_id: int | None = None,
) -> list[dict[str, Any]]:
    points = []
    for day in days_of(start, end):
        chosen = [fact for fact in organization.facts
                  if fact[0] == day and direction in (None, fact[1])
                  and connector_id in (None, fact[3])]
        by_tls = Counter(fact[2] for fact in chosen)
        points.append({
            "date": day.isoformat(), "messages": len(chosen),
            "recipients": sum(fact[4] for fact in chosen),
            "bytes": sum(fact[5] for fact in chosen),
            "byTls": [{"version": version, "messages": by_tls[version]}
                      for version in TLS_VERSIONS],
        })
    return points


def expected_answer(
    organization: Organization, request: RequestPlan, start: date, end: date
) -> Any:
    """What the organization's own data answers to the connectors, mail_flow and tls_reports
    queries."""
    if request.query == "connectors":
        return {"connectors": sorted(
            ({"id": encode_global_id(CONNECTOR, connector_id), "name": name,
              "volume": [{"date": point["date"], "messages": point["messages"]}
                         for point in flow_points(organization, start, end, None, connector_id)]}
             for connector_id, name, _ in organization.connectors),
            key=lambda connector: (connector["name"].casefold(), connector["name"]))}
    if request.query == "mail_flow":
        points = flow_points(organization, start, end, request.direction)
        return {"mailFlow": points,
                "tlsBreakdown": {"total": sum(point["messages"] for point in points)}}
    if request.query == "tls_reports":
        chosen = [report for report in organization.reports
                  if start <= report.start.date() <= end]
        domains = sorted({report.policies[0].policy_domain for report in chosen})
        return {
            "tlsSessions": [
                {"policyDomain": domain,
                 "successfulSessions": sum(report.policies[0].successful_sessions
                                           for report in chosen
                                           if report.policies[0].policy_domain == domain),
                 "failedSessions": sum(report.policies[0].failed_sessions for report in chosen
                                       if report.policies[0].policy_domain == domain)}
                for domain in domains
            ],
            "tlsFailures": sorted(
                ({"reportId": report.report_id,
                  "reportingOrganization": report.reporting_organization,
                  "policyDomain": report.policies[0].policy_domain,
                  "failedSessions": failure.failed_sessions}
                 for report in chosen for failure in report.policies[0].failure_details),
                key=json.dumps),
        }
    raise AssertionError(f"no expected answer for {request.query}")


QUERIES = {
    "connectors": """query ($start: Date, $end: Date) {
        connectors { id name volume(start: $start, end: $end) { date messages } } }""",
    "mail_flow": """query ($start: Date, $end: Date, $direction: Direction) {
        mailFlow(start: $start, end: $end, direction: $direction) {
            date messages recipients bytes byTls { version messages } }
        tlsBreakdown(start: $start, end: $end, direction: $direction) { total } }""",
    "connector": """query ($start: Date, $end: Date, $id: ID!) {
        connector(id: $id) { id name volume(start: $start, end: $end) { messages } }
        mailFlow(start: $start, end: $end, connectorId: $id) { messages } }""",
    "tls_reports": """query ($start: Date, $end: Date) {
        tlsSessions(start: $start, end: $end) { policyDomain successfulSessions failedSessions }
        tlsFailures(start: $start, end: $end) {
            reportId reportingOrganization policyDomain failedSessions } }""",
    "insights": """query ($start: Date, $end: Date) {
        insights(start: $start, end: $end, noTlsThreshold: 0, tls10Threshold: 0) {
            kind messages connector { id name } } }""",
}


def token_for(world: World, request: RequestPlan) -> tuple[str, Organization | None, int]:
    """The bearer token to send, the organization it reads (None: it reads nothing), and the
    HTTP status it must get."""
    organization = world.organizations[request.organization % len(world.organizations)]
    other = world.organizations[(request.organization + 1) % len(world.organizations)]
    if request.token in ("viewer", "admin"):
        return organization.tokens[request.token], organization, 200
    if request.token == "revoked":
        return organization.tokens["revoked"], None, 401
    if request.token == "ingest":
        return organization.tokens["ingest"], None, 403
    if request.token == "forged":  # another organization's id with this one's secret
        secret = organization.tokens["viewer"].split("_", 2)[2]
        return f"mf_{other.id}_{secret}", None, 401
    return f"mf_{organization.id}_" + "A" * 43, None, 401


def ids_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "id" and isinstance(item, str):
                yield item
            else:
                yield from ids_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from ids_in(item)


async def check_request(client: httpx.AsyncClient, world: World, request: RequestPlan) -> None:
    token, organization, status = token_for(world, request)
    start = FIRST_DAY + timedelta(days=request.start)
    end = start + timedelta(days=request.length - 1)
    variables: dict[str, Any] = {"start": start.isoformat(), "end": end.isoformat()}
    everyone = world.all_connectors()
    # Any organization's connector, or an id no connector has.
    asked = everyone[request.connector % len(everyone)][0] if everyone else 2**40
    if request.query == "mail_flow":
        variables["direction"] = request.direction
    if request.query == "connector":
        variables["id"] = encode_global_id(CONNECTOR, asked)

    response = await client.post("/graphql", json={"query": QUERIES[request.query],
                                                   "variables": variables},
                                 headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == status, response.text
    others = [other for other in world.organizations if other is not organization]
    for other in others:
        assert other.marker not in response.text, f"{other.marker} leaked: {response.text}"
    if organization is None:
        assert "data" not in response.json()
        return
    body = response.json()
    assert set(ids_in(body.get("data"))) <= organization.connector_ids(), response.text

    if request.query == "connector":
        names = {connector_id: name for connector_id, name, _ in organization.connectors}
        if asked in names:
            volume = [{"messages": point["messages"]}
                      for point in flow_points(organization, start, end, None, asked)]
            assert body == {"data": {
                "connector": {"id": variables["id"], "name": names[asked], "volume": volume},
                "mailFlow": volume}}, response.text
        else:
            codes = {error["extensions"]["code"] for error in body["errors"]}
            assert codes == {"CONNECTOR_NOT_FOUND"}, response.text
            assert body["data"] is None
    elif request.query == "insights":
        assert "errors" not in body, response.text
        by_id = {encode_global_id(CONNECTOR, connector_id): connector_id
                 for connector_id, _, _ in organization.connectors}
        for insight in body["data"]["insights"]:
            volume = flow_points(organization, start, end, None,
                                 by_id[insight["connector"]["id"]])
            assert insight["messages"] == sum(point["messages"] for point in volume)
    else:
        assert "errors" not in body, response.text
        data = body["data"]
        if request.query == "tls_reports":
            data["tlsFailures"] = sorted(data["tlsFailures"], key=json.dumps)
        assert data == expected_answer(organization, request, start, end)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plans=st.lists(organizations, min_size=2, max_size=3),
       requests=st.lists(requests, min_size=3, max_size=6))
async def test_no_answer_holds_anything_of_another_organization(
    pool: asyncpg.Pool, client: httpx.AsyncClient,
    plans: list[OrganizationPlan], requests: list[RequestPlan],
) -> None:
    world = await build_world(pool, client, plans)
    for request in requests:
        await check_request(client, world, request)
