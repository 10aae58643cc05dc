"""Generated queries against a running server: no 5xx, a code on every error, nothing leaked.

hypothesis-graphql builds operations from the published schema: valid ones, with arguments
drawn from the seeded organization's ids and days and from anything else, and invalid ones
(wrong types, missing arguments, unknown enum values). Each is posted to ``mailflow serve``
with a token of one organization while another organization's data sits in the same database.
MAILFLOW_FUZZ_EXAMPLES sets how many valid operations are sent (default 1200); a third as many
invalid ones and as many sets of variables follow.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, nodes

from mailflow.domain import (
    Direction,
    TlsFailureDetail,
    TlsPolicy,
    TlsPolicyType,
    TlsReport,
    TlsVersion,
)
from mailflow.store.tls_reports import store_tls_report
from mailflow.store.tokens import TokenRole
from tests.test_acceptance_postfix import serving

from .conftest import Seed, global_connector_id

REPO = Path(__file__).resolve().parents[2]
SCHEMA = (REPO / "schema" / "schema.graphql").read_text(encoding="utf-8")
EXAMPLES = int(os.environ.get("MAILFLOW_FUZZ_EXAMPLES", "1200"))
TODAY = datetime.now(UTC).date()
SEEDED_DAYS = 40

RIVAL = "rival-northwind-q7"
RIVAL_CONNECTOR = "RivalRouteXq"
RIVAL_POLICY_DOMAIN = "rival-policy-q7.example"
RIVAL_REPORTER = "Rival Reporter Zk"

# Text of the server's own insides: tracebacks, Python and SQL names, file paths.
SQL_DIR = REPO / "sql"
SQL_IDENTIFIERS = sorted({
    name
    for path in SQL_DIR.rglob("*.sql")
    for name in re.findall(r"\b[a-z]+(?:_[a-z0-9]+)+\b", path.read_text(encoding="utf-8"))
} - set(re.findall(r"\b\w+\b", SCHEMA)))
INTERNALS = [
    "Traceback", 'File "', ".py", ".sql", "site-packages", "/mailflow/", "asyncpg",
    "object at 0x", "<class ", "NoneType", "KeyError", "TypeError", "AttributeError",
    "IndexError", "ValueError", "AssertionError", "OverflowError", "RecursionError",
    "SELECT ", "INSERT INTO", "DELETE FROM", "UPDATE ", " WHERE ", "ON CONFLICT", "RETURNING",
    "pg_", "syntax error at or near", "violates", "invalid input syntax", "relation \"",
    *SQL_IDENTIFIERS,
]


@dataclass(frozen=True)
class Target:
    """The running server, the token it is asked with, and what only the rival may see."""

    url: str
    token: str
    own_connector_ids: tuple[str, ...]
    rival_connector_ids: tuple[str, ...]
    # Rival text a mutation has sent: the organization may hold it since (as a domain, say).
    written: set[str] = field(default_factory=set)

    @property
    def rival_marks(self) -> tuple[str, ...]:
        return (RIVAL, RIVAL_CONNECTOR, RIVAL_POLICY_DOMAIN, RIVAL_REPORTER,
                *self.rival_connector_ids)


def tls_report(report_id: str, reporter: str, policy_domain: str, day: date) -> TlsReport:
    start = datetime.combine(day, time(), UTC)
    failure = TlsFailureDetail("certificate-expired", 3, sending_mta_ip="192.0.2.10",
                               receiving_mx_hostname=f"mx.{policy_domain}")
    return TlsReport(
        report_id=report_id, reporting_organization=reporter, contact_info=None,
        start=start, end=start + timedelta(days=1) - timedelta(seconds=1),
        policies=(TlsPolicy(TlsPolicyType.STS, policy_domain, successful_sessions=40,
                            failed_sessions=3, failure_details=(failure,)),),
    )


async def seed_organization(
    pool: asyncpg.Pool, seed: Seed, organization_id: int, prefix: str, policy_domain: str,
    reporter: str,
) -> list[int]:
    """Connectors both ways, 40 days of rollups up to today, a TLS report every third day."""
    connectors = [
        await seed.connector(organization_id, f"{prefix}In"),
        await seed.connector(organization_id, f"{prefix}Out", Direction.OUTBOUND),
    ]
    versions = list(TlsVersion)
    for offset in range(SEEDED_DAYS):
        day = TODAY - timedelta(days=offset)
        for number, connector_id in enumerate([*connectors, None]):
            await seed.rollup(
                organization_id, day, versions[(offset + number) % len(versions)],
                1 + (offset * 7 + number) % 13, connector_id=connector_id,
                direction=Direction.OUTBOUND if number == 1 else Direction.INBOUND,
            )
    async with pool.acquire() as connection, connection.transaction():
        for offset in range(0, SEEDED_DAYS, 3):
            day = TODAY - timedelta(days=offset)
            await store_tls_report(connection, organization_id,
                                   tls_report(f"{prefix}-{offset}", reporter, policy_domain, day))
    return connectors


@pytest.fixture
async def target_data(
    pool: asyncpg.Pool, seed: Seed, organization_id: int
) -> tuple[str, list[int], list[int]]:
    """The fuzzed organization's and the rival's data, and an admin token of the first (admin,
    so that the mutations the schema gains are sent too, not only refused)."""
    own = await seed_organization(pool, seed, organization_id, "Partner", "example.com",
                                  "Sender Example Ltd")
    rival_id = await seed.organization(RIVAL)
    rival = await seed_organization(pool, seed, rival_id, RIVAL_CONNECTOR, RIVAL_POLICY_DOMAIN,
                                    RIVAL_REPORTER)
    return await seed.token(organization_id, TokenRole.ADMIN), own, rival


@pytest.fixture
def target(
    database_url: str, target_data: tuple[str, list[int], list[int]]
) -> Iterator[Target]:
    """``mailflow serve`` on the seeded database; warnings only, so its log stays short."""
    token, own, rival = target_data
    env = {**os.environ, "DATABASE_URL": database_url, "MAILFLOW_LOG_LEVEL": "WARNING"}
    with serving(env) as url:
        yield Target(url, token, tuple(map(global_connector_id, own)),
                     tuple(map(global_connector_id, rival)))


# Any text, with more of the characters that text columns and JSON encoders refuse: NUL and
# the halves of surrogate pairs (which JSON can carry as \\uXXXX escapes).
ANY_TEXT = st.text(st.characters(exclude_categories=[])
                   | st.sampled_from(["\x00", "\ud800", "\udfff"]))


def near_days() -> st.SearchStrategy[str]:
    """Days around the seeded ones, and now and then any day at all."""
    near = st.integers(-SEEDED_DAYS - 100, 10).map(lambda days: TODAY + timedelta(days=days))
    return st.one_of(near, st.dates()).map(date.isoformat)


def connector_ids(target: Target) -> st.SearchStrategy[str]:
    """The organization's connector ids, the rival's, and any text."""
    return st.one_of(st.sampled_from(target.own_connector_ids + target.rival_connector_ids),
                     ANY_TEXT, st.integers(-(2**70), 2**70).map(str))


POLICY_DOMAINS = st.one_of(
    st.sampled_from(["example.com", "EXAMPLE.COM.", RIVAL_POLICY_DOMAIN, "certificate-expired"]),
    ANY_TEXT,
)


def arguments(target: Target) -> dict[str, st.SearchStrategy[Any]]:
    """Literals for the schema's scalars: seeded values often, anything of the type otherwise."""
    return {"Date": near_days().map(nodes.String), "ID": connector_ids(target).map(nodes.String),
            "String": POLICY_DOMAINS.map(nodes.String)}


# Every report's arguments as variables, which take another path through the server than
# literals do: values are read from JSON, not from the document.
WITH_VARIABLES = """
query Reports(
  $start: Date, $end: Date, $direction: Direction, $connectorId: ID, $noConnector: Boolean,
  $id: ID!, $noTls: Float! = 25, $tls10: Float! = 50, $policyDomain: String,
  $resultType: String
) {
  mailFlow(start: $start, end: $end, direction: $direction, connectorId: $connectorId,
           noConnector: $noConnector) { date messages recipients bytes byTls { version messages } }
  tlsBreakdown(start: $start, end: $end, direction: $direction, connectorId: $connectorId,
               noConnector: $noConnector) { total versions { version messages percent } }
  insights(start: $start, end: $end, noTlsThreshold: $noTls, tls10Threshold: $tls10) {
    kind value threshold messages connector { id name }
  }
  connectors(direction: $direction) {
    id name volume(start: $start, end: $end) { date messages }
    insights(start: $start, end: $end, noTlsThreshold: $noTls, tls10Threshold: $tls10) { kind }
  }
  connector(id: $id) { name tlsBreakdown(start: $start, end: $end) { total } }
  tlsSessions(start: $start, end: $end, policyDomain: $policyDomain) {
    policyDomain failedSessions days { date reports }
  }
  tlsFailures(start: $start, end: $end, policyDomain: $policyDomain, resultType: $resultType) {
    reportId reportingOrganization policyDomain resultType failedSessions
  }
}
"""

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=6,
)


def variables(target: Target) -> st.SearchStrategy[dict[str, Any]]:
    """The variables of WITH_VARIABLES: mostly of their types, now and then any JSON value;
    all but ``id`` may be left out."""
    threshold = st.floats(-10, 110) | st.integers(-10, 110)
    fitting = {
        "start": near_days(), "end": near_days(),
        "direction": st.sampled_from([direction.value for direction in Direction]),
        "connectorId": connector_ids(target), "noConnector": st.booleans(),
        "noTls": threshold, "tls10": threshold,
        "policyDomain": POLICY_DOMAINS, "resultType": POLICY_DOMAINS,
    }

    def value(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.integers(0, 7).flatmap(lambda draw: strategy if draw else JSON_VALUES)

    return st.fixed_dictionaries(
        {"id": value(connector_ids(target))},
        optional={name: value(strategy) for name, strategy in fitting.items()},
    )


def strings(value: Any) -> str:
    """Every string in a JSON value, keys included, one a line."""
    if isinstance(value, dict):
        return "\n".join(strings(part) for item in value.items() for part in item)
    if isinstance(value, list):
        return "\n".join(map(strings, value))
    return value if isinstance(value, str) else ""


def problems(request: dict[str, Any], response: httpx.Response, target: Target) -> list[str]:
    """What is wrong with the answer to ``request``: an empty list when nothing is.

    A mark counts as leaked only when neither this request carried it (an error may quote the
    value it refuses) nor an earlier mutation (which may have stored it).
    """
    found = [f"HTTP {response.status_code}"] if response.status_code >= 500 else []
    try:
        body = response.json()
    except ValueError:
        body = response.text
    asked, answered = strings(request), strings(body)
    found += [f"leaks {mark!r}" for mark in (*INTERNALS, *target.rival_marks)
              if mark in answered and mark not in asked and mark not in target.written]
    if not isinstance(body, dict):
        return [*found, "a body that is not a JSON object"]
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        if not isinstance(code, str) or not code:
            found.append(f"an error without extensions.code: {error}")
        elif code == "INTERNAL_SERVER_ERROR":
            found.append(f"an internal error: {error}")
    return found


FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)


def fuzz(target: Target, requests: st.SearchStrategy[dict[str, Any]], examples: int) -> None:
    """Post ``examples`` generated requests and fail on the first badly answered one."""
    headers = {"Authorization": f"Bearer {target.token}", "Content-Type": "application/json"}
    with httpx.Client(headers=headers, timeout=30) as client:

        @settings(FUZZ_SETTINGS, max_examples=examples)
        @given(requests)
        def answered_well(request: dict[str, Any]) -> None:
            # ASCII JSON, so that a lone surrogate travels as its \\uXXXX escape.
            response = client.post(target.url, content=json.dumps(request).encode())
            found = problems(request, response, target)
            if "mutation" in str(request.get("query")):
                target.written.update(mark for mark in target.rival_marks
                                      if mark in strings(request))
            assert found == [], response.text

        answered_well()


def operations(target: Target, mode: Mode) -> st.SearchStrategy[dict[str, Any]]:
    operation = from_schema(SCHEMA, mode=mode, custom_scalars=arguments(target))
    return operation.map(lambda query: {"query": query})


def test_generated_valid_operations_get_no_5xx_no_uncoded_error_and_no_leak(
    target: Target,
) -> None:
    fuzz(target, operations(target, Mode.POSITIVE), EXAMPLES)


def test_generated_invalid_operations_are_refused_with_a_code_and_no_leak(
    target: Target,
) -> None:
    fuzz(target, operations(target, Mode.NEGATIVE), max(EXAMPLES // 3, 1))


def test_generated_variables_get_no_5xx_no_uncoded_error_and_no_leak(target: Target) -> None:
    requests = variables(target).map(
        lambda values: {"query": WITH_VARIABLES, "variables": values})
    fuzz(target, requests, max(EXAMPLES // 3, 1))


def test_the_checks_catch_a_leak_an_uncoded_error_and_a_5xx() -> None:
    target = Target("http://127.0.0.1:1/graphql", "token", ("Q29ubmVjdG9yOjE=",),
                    ("Q29ubmVjdG9yOjI=",))
    leaked = httpx.Response(200, json={"data": {"connector": {"id": "Q29ubmVjdG9yOjI="}}})
    uncoded = httpx.Response(200, json={"errors": [{"message": "x"}]})
    traceback = httpx.Response(500, text="Traceback (most recent call last)")
    quoted = httpx.Response(200, json={"errors": [
        {"message": f"{RIVAL_POLICY_DOMAIN!r} is bad", "extensions": {"code": "BAD"}}]})

    assert problems({"query": "{ connectors { id } }"}, leaked, target) == [
        "leaks 'Q29ubmVjdG9yOjI='"]
    assert problems({"query": "{ x }"}, uncoded, target) == [
        "an error without extensions.code: {'message': 'x'}"]
    assert problems({"query": "{ x }"}, traceback, target) == [
        "HTTP 500", "leaks 'Traceback'", "a body that is not a JSON object"]
    asked = {"query": "query($d: String) { tlsSessions(policyDomain: $d) { policyDomain } }",
             "variables": {"d": RIVAL_POLICY_DOMAIN}}
    assert problems(asked, quoted, target) == []
