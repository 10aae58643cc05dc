"""The example operations in schema/operations run against the demo organization and answer
what its message facts hold."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from graphql import OperationDefinitionNode, parse, specified_rules, validate
from graphql.validation import NoDeprecatedCustomRule

from mailflow.api.ids import CONNECTOR, decode_global_id
from mailflow.api.schema import schema
from mailflow.demo import load_demo
from mailflow.domain import TlsVersion
from mailflow.reports.ranges import utc_today

from .conftest import Api, Seed

OPERATIONS = Path(__file__).resolve().parents[2] / "schema" / "operations"
TESTED = {"ConnectorReport", "TlsUsage", "ProtectedInTransit", "Insights"}
PROTECTED = {TlsVersion.TLS1_0.value, TlsVersion.TLS1_1.value, TlsVersion.TLS1_2.value,
             TlsVersion.TLS1_3.value}

# Two complete weeks before today: the demo organization has mail on every one of them.
END = utc_today() - timedelta(days=1)
START = END - timedelta(days=13)
DAYS = [START + timedelta(days=offset) for offset in range(14)]
RANGE = {"start": START.isoformat(), "end": END.isoformat()}


def operation(name: str) -> str:
    return (OPERATIONS / f"{name}.graphql").read_text(encoding="utf-8")


@pytest.fixture
async def demo(pool: asyncpg.Pool, client: httpx.AsyncClient, seed: Seed) -> tuple[Api, int]:
    """The demo organization, loaded as `mailflow serve --demo` loads it, and its reader."""
    organization_id = await load_demo(pool)
    return Api(client, await seed.token(organization_id)), organization_id


async def facts(pool: asyncpg.Pool, organization_id: int) -> list[asyncpg.Record]:
    """The demo's message facts of the range: day, direction, connector and TLS version."""
    return await pool.fetch(
        """
        SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, direction, connector_id,
               tls_version
        FROM message_facts
        WHERE organization_id = $1 AND occurred_at >= $2 AND occurred_at < $3
        """,
        organization_id, datetime.combine(START, time(), UTC),
        datetime.combine(END + timedelta(days=1), time(), UTC),
    )


def series(counts: Counter[date]) -> list[dict[str, Any]]:
    return [{"date": day.isoformat(), "messages": counts[day]} for day in DAYS]


def test_every_operation_is_tested_and_valid_against_the_schema_without_deprecated_fields(
) -> None:
    files = {path.stem: path for path in OPERATIONS.glob("*.graphql")}

    assert set(files) == TESTED
    for name, path in files.items():
        document = parse(path.read_text(encoding="utf-8"))
        errors = validate(schema._schema, document, [*specified_rules, NoDeprecatedCustomRule])
        assert errors == [], (name, errors)
        names = [definition.name.value if isinstance(definition, OperationDefinitionNode)
                 and definition.name else None for definition in document.definitions]
        assert names == [name], "one operation per file, named as the file"


async def test_the_connector_report_counts_each_connectors_messages_per_day(
    demo: tuple[Api, int], pool: asyncpg.Pool,
) -> None:
    api, organization_id = demo
    rows = await facts(pool, organization_id)
    per_connector: defaultdict[int | None, Counter[date]] = defaultdict(Counter)
    for row in rows:
        per_connector[row["connector_id"]][row["day"]] += 1

    data = await api.data(operation("ConnectorReport"), RANGE)

    connectors = [edge["node"] for edge in data["allConnectors"]["edges"]]
    assert data["allConnectors"]["totalCount"] == len(connectors) == 6
    assert {decode_global_id(CONNECTOR, node["id"]) for node in connectors} == {
        key for key in per_connector if key is not None
    }
    for node in connectors:
        assert node["volume"] == series(per_connector[decode_global_id(CONNECTOR, node["id"])])
    assert data["noConnector"] == series(per_connector[None])
    assert data["allMailFlow"] == series(Counter(row["day"] for row in rows))
    assert sum(per_connector[None].values()) > 0, "the demo has mail that used no connector"


async def test_tls_usage_gives_each_versions_share_of_the_facts_per_direction(
    demo: tuple[Api, int], pool: asyncpg.Pool,
) -> None:
    api, organization_id = demo
    rows = await facts(pool, organization_id)

    data = await api.data(operation("TlsUsage"), RANGE)

    for alias, direction in (("all", None), ("inbound", "INBOUND"), ("outbound", "OUTBOUND")):
        counts = Counter(row["tls_version"] for row in rows
                         if direction is None or row["direction"] == direction)
        breakdown = data[alias]
        assert breakdown["total"] == sum(counts.values()) > 0
        assert [(share["version"], share["messages"]) for share in breakdown["versions"]] == [
            (version.value, counts[version.value]) for version in TlsVersion
        ]
        assert round(sum(share["percent"] for share in breakdown["versions"]), 1) == 100.0
        for share in breakdown["versions"]:
            exact = 100 * share["messages"] / breakdown["total"]
            assert abs(share["percent"] - exact) < 0.1, (alias, share)


async def test_messages_protected_in_transit_are_the_tls_counts_of_each_day(
    demo: tuple[Api, int], pool: asyncpg.Pool,
) -> None:
    api, organization_id = demo
    rows = [row for row in await facts(pool, organization_id) if row["direction"] == "OUTBOUND"]

    data = await api.data(operation("ProtectedInTransit"), {**RANGE, "direction": "OUTBOUND"})

    assert [point["date"] for point in data["mailFlow"]] == [day.isoformat() for day in DAYS]
    for point in data["mailFlow"]:
        day = date.fromisoformat(point["date"])
        of_day = Counter(row["tls_version"] for row in rows if row["day"] == day)
        by_tls = {count["version"]: count["messages"] for count in point["byTls"]}
        assert point["messages"] == sum(of_day.values()) > 0
        assert by_tls == {version.value: of_day[version.value] for version in TlsVersion}
        assert sum(by_tls[version] for version in PROTECTED) == sum(
            of_day[version] for version in PROTECTED)


async def test_insights_name_the_connectors_whose_shares_pass_the_thresholds(
    demo: tuple[Api, int], pool: asyncpg.Pool,
) -> None:
    api, organization_id = demo
    per_connector: defaultdict[int, Counter[str]] = defaultdict(Counter)
    for row in await facts(pool, organization_id):
        if row["connector_id"] is not None:
            per_connector[row["connector_id"]][row["tls_version"]] += 1

    def expected(no_tls: float, tls1_0: float) -> set[tuple[int, str, float]]:
        found = set()
        for connector_id, counts in per_connector.items():
            total = sum(counts.values())
            for kind, version, threshold in (("NO_TLS_OVER_THRESHOLD", "NONE", no_tls),
                                             ("TLS1_0_OVER_THRESHOLD", "TLS1_0", tls1_0)):
                share = 100 * counts[version] / total
                if share > threshold:
                    found.add((connector_id, kind, round(share, 6)))
        return found

    def answered(data: dict[str, Any]) -> set[tuple[int, str, float]]:
        for insight in data["insights"]:
            connector_id = decode_global_id(CONNECTOR, insight["connector"]["id"])
            assert insight["messages"] == sum(per_connector[connector_id].values())
            assert (insight["start"], insight["end"]) == (RANGE["start"], RANGE["end"])
        return {
            (decode_global_id(CONNECTOR, insight["connector"]["id"]), insight["kind"],
             round(insight["value"], 6))
            for insight in data["insights"]
        }

    by_default = await api.data(operation("Insights"), RANGE)
    higher = await api.data(operation("Insights"), {**RANGE, "noTlsThreshold": 40.0,
                                                    "tls10Threshold": 60.0})

    assert answered(by_default) == expected(25, 50)
    assert {insight["kind"] for insight in by_default["insights"]} == {
        "NO_TLS_OVER_THRESHOLD", "TLS1_0_OVER_THRESHOLD"}, "the demo fires both insights"
    assert answered(higher) == expected(40, 60) == set()
