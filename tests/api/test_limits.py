from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from graphql import GraphQLList, GraphQLNonNull, get_introspection_query, parse

from mailflow.api.app import create_app
from mailflow.api.graphiql import example_operations
from mailflow.api.limits import LIST_SIZES, REPORT_FIELDS, measure
from mailflow.api.schema import schema
from mailflow.domain import TlsVersion
from mailflow.settings import Settings

from .conftest import Api, Seed

NINETY_DAYS = 'start: "2020-11-01", end: "2021-01-29"'
README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
DASHBOARD = README.split("```graphql\nquery Dashboard {", 1)[1].split("```", 1)[0]
DASHBOARD = "query Dashboard {" + DASHBOARD

EVERY_REPORT_OF_EVERY_CONNECTOR = f"""{{
  connectors {{
    id name direction kind requireTls
    senderDomains recipientDomains clientIps smartHosts tlsCertNames routes
    volume({NINETY_DAYS}) {{ date messages recipients bytes byTls {{ version messages }} }}
    tlsBreakdown({NINETY_DAYS}) {{ total versions {{ version messages percent }} }}
    insights({NINETY_DAYS}) {{ kind value threshold messages start end }}
  }}
}}"""
EVERY_REPORT = EVERY_REPORT_OF_EVERY_CONNECTOR.removesuffix("}") + f"""
  mailFlow({NINETY_DAYS}) {{ date messages recipients bytes byTls {{ version messages }} }}
  tlsBreakdown({NINETY_DAYS}) {{ total versions {{ version messages percent }} }}
  insights({NINETY_DAYS}) {{ kind value threshold messages start end connector {{ id name }} }}
}}"""


EVERY_TLS_REPORT = f"""{{
  tlsSessions({NINETY_DAYS}) {{
    policyDomain successfulSessions failedSessions
    days {{ date reports successfulSessions failedSessions
           failedSessionsByResultType {{ resultType failedSessions }} }}
  }}
  tlsFailures({NINETY_DAYS}) {{
    date reportId reportingOrganization contactInfo policyDomain policyType resultType
    failedSessions sendingMtaIp receivingMxHostname receivingMxHelo receivingIp
    additionalInformation failureReasonCode
  }}
}}"""


def nested_insights(levels: int) -> str:
    """The tester's query: insights whose connectors' insights nest ``levels`` deep."""
    volume = (
        f"volume({NINETY_DAYS}) {{ date messages bytes recipients byTls {{ version messages }} }}"
    )
    query = volume
    for _ in range(levels):
        query = f"insights({NINETY_DAYS}) {{ connector {{ {volume} {query} }} }}"
    return query


def cost(query: str) -> int:
    """The points the limits measure for ``query``'s one operation, with default settings."""
    (measured,) = measure(parse(query), schema._schema, {}, Settings())
    return measured.cost


def aliased(count: int, selection: str) -> str:
    return "{ " + " ".join(f"a{number}: {selection}" for number in range(count)) + " }"


def only_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    (error,) = body["errors"]
    assert isinstance(error, dict)
    return error


async def test_a_document_over_the_token_limit_is_refused_with_its_token_count(api: Api) -> None:
    error = only_error(await api.post(aliased(400, "connectors { name }")))

    assert error["extensions"] == {"code": "TOO_MANY_TOKENS"}
    assert error["message"] == (
        "the query has 2402 tokens; the limit is 2000 (MAILFLOW_MAX_QUERY_TOKENS)"
    )


async def test_an_operation_nested_too_deep_is_refused_with_its_depth(api: Api) -> None:
    query = "{ connectors" + " { insights { connector" * 7 + " { name }" + " } }" * 7 + " }"

    error = only_error(await api.post(query))

    assert error["extensions"] == {"code": "QUERY_TOO_DEEP"}
    assert error["message"] == (
        "the query nests fields 16 deep; the limit is 15 (MAILFLOW_MAX_QUERY_DEPTH)"
    )


async def test_too_many_aliases_are_refused_with_their_count(api: Api) -> None:
    error = only_error(await api.post(aliased(31, "connectors { name }")))

    assert error["extensions"] == {"code": "TOO_MANY_ALIASES"}
    assert error["message"] == (
        "the query uses 31 aliases, counting each fragment spread; the limit is 30 "
        "(MAILFLOW_MAX_QUERY_ALIASES)"
    )


async def test_aliases_in_a_fragment_count_once_per_spread(api: Api) -> None:
    fragment = "fragment Names on Connector { " + " ".join(
        f"n{number}: name" for number in range(8)
    ) + " }"
    within = "{ connectors { ...Names ...Names ...Names } } " + fragment
    over = "{ connectors { ...Names ...Names ...Names ...Names } } " + fragment

    assert "errors" not in (await api.post(within)).json()
    error = only_error(await api.post(over))
    assert error["extensions"] == {"code": "TOO_MANY_ALIASES"}
    assert "uses 32 aliases" in error["message"]


async def test_fragments_that_multiply_each_other_are_refused_without_being_expanded(
    api: Api,
) -> None:
    fragments = " ".join(
        f"fragment F{level} on Query {{ ...F{level + 1} ...F{level + 1} }}" for level in range(40)
    )
    query = "{ ...F0 } " + fragments + " fragment F40 on Query { a: __typename }"

    error = (await api.post(query)).json()["errors"][0]

    assert error["extensions"] == {"code": "TOO_MANY_ALIASES"}
    assert f"uses {2**40} aliases" in error["message"]


async def test_too_many_directives_are_refused_with_their_count(api: Api) -> None:
    fields = " ".join(["name @skip(if: false) @include(if: true)"] * 26)

    error = only_error(await api.post("{ connectors { " + fields + " } }"))

    assert error["extensions"] == {"code": "TOO_MANY_DIRECTIVES"}
    assert error["message"] == (
        "the query uses 52 directives, counting each fragment spread; the limit is 50 "
        "(MAILFLOW_MAX_QUERY_DIRECTIVES)"
    )


async def test_report_fields_cost_their_days_and_too_costly_an_operation_is_refused(
    api: Api,
) -> None:
    within = aliased(30, f"mailFlow({NINETY_DAYS}) {{ date }}")
    over = aliased(30, f"connectors {{ volume({NINETY_DAYS}) {{ date }} }}")

    assert "errors" not in (await api.post(within)).json()
    error = only_error(await api.post(over))
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY"}
    # Each alias: connectors 10 + 10 connectors x (volume 90 days + 90 days x date 1).
    assert error["message"].startswith(
        "the query costs 54300 points; the limit is 30000 (MAILFLOW_MAX_QUERY_COST)."
    )


async def test_five_thousand_aliased_reports_are_refused_by_size_or_else_by_token_count(
    api: Api, pool: asyncpg.Pool, seed: Seed, organization_id: int
) -> None:
    query = aliased(
        5000, f"mailFlow({NINETY_DAYS}) {{ date messages byTls {{ version messages }} }}"
    )
    roomy = Api(await client_with(pool, Settings(max_request_bytes=10_000_000)), api.token)

    too_large = await api.post(query)
    too_many_tokens = only_error(await roomy.post(query))
    await roomy.client.aclose()

    assert too_large.status_code == 413
    assert too_large.json()["errors"][0]["extensions"] == {"code": "REQUEST_TOO_LARGE"}
    assert too_many_tokens["extensions"] == {"code": "TOO_MANY_TOKENS"}
    assert too_many_tokens["message"] == (
        "the query has more than 4000 tokens; the limit is 2000 (MAILFLOW_MAX_QUERY_TOKENS)"
    )


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (aliased(40, "connectors { name }"), "TOO_MANY_ALIASES"),
        (aliased(20, f"connectors {{ volume({NINETY_DAYS}) {{ date }} }}"), "QUERY_TOO_COSTLY"),
        ("{ connectors" + " { insights { connector" * 8 + " { name }" + " } }" * 8 + " }",
         "QUERY_TOO_DEEP"),
    ],
)
async def test_a_refused_query_reaches_neither_the_resolvers_nor_the_database(
    api: Api, seed: Seed, query: str, code: str
) -> None:
    # Were a resolver to run, it would fail on the missing tables with an internal error.
    await seed.pool.execute("DROP TABLE daily_rollups, connectors CASCADE")

    error = only_error(await api.post(query))

    assert error["extensions"] == {"code": code}


async def test_the_standard_introspection_query_and_the_graphiql_query_are_within_limits(
    api: Api,
) -> None:
    introspection = get_introspection_query(
        descriptions=True, specified_by_url=True, directive_is_repeatable=True,
        schema_description=True, input_value_deprecation=True,
    )

    assert "errors" not in (await api.post(introspection)).json()
    assert "errors" not in (await api.post(DASHBOARD)).json()
    for operation in example_operations():
        assert "errors" not in (await api.post(operation)).json(), operation


async def client_with(pool: asyncpg.Pool, settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(pool, settings))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def strict_api(pool: asyncpg.Pool, seed: Seed, organization_id: int) -> AsyncIterator[Api]:
    settings = Settings(
        max_query_depth=5, max_query_aliases=1, max_query_directives=0, max_query_cost=100,
        max_query_tokens=200, max_alias_length=8,
    )
    async with await client_with(pool, settings) as client:
        yield Api(client, await seed.token(organization_id))


async def test_each_limit_is_the_servers_setting(strict_api: Api) -> None:
    cases = {
        '{ __type(name: "Query") { ofType { ofType { ofType { ofType { name } } } } } }':
            "QUERY_TOO_DEEP",
        "{ a: connectors { name } b: connectors { name } }": "TOO_MANY_ALIASES",
        "{ ninechars: connectors { name } }": "ALIAS_TOO_LONG",
        "{ connectors { name @skip(if: false) } }": "TOO_MANY_DIRECTIVES",
        '{ connectors { volume(start: "2025-01-01", end: "2025-01-30") { date } } }':
            "QUERY_TOO_COSTLY",
        "{ " + "__typename " * 200 + "}": "TOO_MANY_TOKENS",
    }
    for query, code in cases.items():
        error = only_error(await strict_api.post(query))
        assert error["extensions"] == {"code": code}, query


async def test_a_range_given_in_variables_costs_its_days(strict_api: Api) -> None:
    query = """query($start: Date, $end: Date) {
        mailFlow(start: $start, end: $end) { date byTls { version } }
    }"""

    five_days = await strict_api.post(query, {"start": "2025-01-01", "end": "2025-01-05"})
    thirty_days = await strict_api.post(query, {"start": "2025-01-01", "end": "2025-01-30"})

    assert "errors" not in five_days.json()
    error = only_error(thirty_days)
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY"}
    # mailFlow 30 days + 30 days x (date 1 + byTls 6 versions + 6 versions x version 1)
    assert error["message"].startswith("the query costs 420 points; the limit is 100")


@pytest.mark.parametrize(
    ("query", "points"),
    [
        # connectors: 10 assumed items, and their names once each.
        ("{ connectors { name } }", 10 + 10 * 1),
        # A list the model has no size for counts 10 items.
        ("{ connectors { senderDomains } }", 10 + 10 * 10),
        # volume: a point per day, and per day the date and byTls (6 versions x version).
        (
            f"{{ connectors {{ volume({NINETY_DAYS}) {{ date byTls {{ version }} }} }} }}",
            10 + 10 * (90 + 90 * (1 + 6 + 6 * 1)),
        ),
        # insights: 20 at the top (2 kinds x 10 connectors), 2 under a connector.
        (f"{{ insights({NINETY_DAYS}) {{ kind }} }}", 90 + 20 * 1),
        (f"{{ connectors {{ insights({NINETY_DAYS}) {{ kind }} }} }}", 10 + 10 * (90 + 2 * 1)),
        # tlsBreakdown returns no list: its days, total, and 6 versions x percent.
        (f"{{ tlsBreakdown({NINETY_DAYS}) {{ total versions {{ percent }} }} }}", 90 + 1 + 6 + 6),
    ],
)
def test_what_is_selected_under_a_list_counts_once_per_item_the_list_is_assumed_to_hold(
    query: str, points: int
) -> None:
    assert cost(query) == points


def test_nested_lists_multiply_and_the_testers_nested_insights_cost_millions() -> None:
    one = cost("{ " + nested_insights(6) + " }")

    assert cost(aliased(4, nested_insights(6))) == 4 * one
    assert one == 3_990_150
    assert cost("{ " + nested_insights(2) + " }") > 2 * cost("{ " + nested_insights(1) + " }")


async def test_the_testers_nested_insights_are_refused_as_too_costly_without_running(
    api: Api, seed: Seed
) -> None:
    # Were a resolver to run, it would fail on the missing tables with an internal error.
    await seed.pool.execute("DROP TABLE daily_rollups, connectors CASCADE")

    error = only_error(await api.post(aliased(4, nested_insights(6))))

    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY"}
    assert error["message"].startswith(
        "the query costs 15960600 points; the limit is 30000 (MAILFLOW_MAX_QUERY_COST)."
    )


def test_every_assumed_list_size_is_for_a_list_field_of_the_schema() -> None:
    for type_name, field_name in [*LIST_SIZES, *REPORT_FIELDS]:
        graphql_type = schema._schema.get_type(type_name)
        field = graphql_type.fields[field_name]  # type: ignore[union-attr]
        unwrapped = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
        if (type_name, field_name) in LIST_SIZES:
            assert isinstance(unwrapped, GraphQLList), (type_name, field_name)


async def test_a_dashboards_queries_are_within_the_default_cost(
    api: Api, seed: Seed, organization_id: int
) -> None:
    connector_id = await seed.connector(organization_id, "Partner")
    await seed.rollup(
        organization_id, date(2021, 1, 2), TlsVersion.NONE, 10, connector_id=connector_id
    )

    for query in (DASHBOARD, EVERY_REPORT_OF_EVERY_CONNECTOR, EVERY_REPORT, EVERY_TLS_REPORT):
        assert "errors" not in (await api.post(query)).json(), query
    assert cost(EVERY_REPORT) <= Settings().max_query_cost
    assert cost(EVERY_TLS_REPORT) <= Settings().max_query_cost


def test_days_nested_in_tls_sessions_count_the_days_of_its_range_also_in_a_fragment() -> None:
    days = "fragment Days on TlsPolicyDomainSessions { days { date } }"
    week = 'start: "2025-01-01", end: "2025-01-07"'

    one_week = cost(f"{{ tlsSessions({week}) {{ ...Days }} }} {days}")
    both = cost(f"{{ a: tlsSessions({NINETY_DAYS}) {{ ...Days }} "
                f"b: tlsSessions({week}) {{ ...Days }} }} {days}")

    # The range's days, then 10 assumed policy domains, each with a list of days of dates.
    assert one_week == 7 + 10 * (7 + 7)
    assert both == one_week + 90 + 10 * (90 + 90)


def test_the_readme_gives_the_costs_the_model_measures() -> None:
    limits = README.split("### Limits", 1)[1].split("\n## ", 1)[0]
    figures = {
        "the example dashboard": cost(DASHBOARD),
        "every report of every connector": cost(EVERY_REPORT_OF_EVERY_CONNECTOR),
        "and the organization's reports": cost(EVERY_REPORT),
        "the nested insights": cost("{ " + nested_insights(6) + " }"),
        "every TLS report field": cost(EVERY_TLS_REPORT),
        "the default limit": Settings().max_query_cost,
        **{f"example operation {number}": cost(operation)
           for number, operation in enumerate(example_operations(), 1)},
    }
    written = {int(number.replace(",", "")) for number in re.findall(r"\d[\d,]*", limits)}
    for what, points in figures.items():
        assert points in written, f"the README's Limits section should give {what}: {points:,}"


@pytest.mark.parametrize(
    ("length", "query"),
    [
        # 99 KB of request; the answer would repeat the alias 540 times (53 MB).
        (99_000, f"{{ mailFlow({NINETY_DAYS}) {{ byTls {{ ALIAS: version messages }} }} }}"),
        # Nested under connectors, the answer would repeat it 5400 times or more.
        (3_000, f"{{ connectors {{ volume({NINETY_DAYS}) {{ byTls {{ ALIAS: version }} }} }} }}"),
        (65, "{ ALIAS: connectors { name } }"),
    ],
)
async def test_an_alias_longer_than_the_limit_is_refused_with_its_length_without_running(
    api: Api, seed: Seed, length: int, query: str
) -> None:
    # Were a resolver to run, it would fail on the missing tables with an internal error.
    await seed.pool.execute("DROP TABLE daily_rollups, connectors CASCADE")

    error = only_error(await api.post(query.replace("ALIAS", "a" * length)))

    assert error["extensions"] == {"code": "ALIAS_TOO_LONG"}
    assert error["message"] == (
        f"the query has an alias of {length} characters; the limit is 64 "
        "(MAILFLOW_MAX_ALIAS_LENGTH)"
    )


async def test_an_alias_of_the_longest_allowed_length_is_answered(api: Api) -> None:
    alias = "a" * 64

    assert await api.data(f"{{ {alias}: connectors {{ name }} }}") == {alias: []}


async def test_a_fragment_behind_aliases_counts_its_own_aliases_under_every_alias(
    api: Api,
) -> None:
    fragment = "fragment Names on Connector { first: name second: name }"
    within = aliased(10, "connectors { ...Names }") + " " + fragment
    over = aliased(11, "connectors { ...Names }") + " " + fragment

    assert "errors" not in (await api.post(within)).json()
    error = only_error(await api.post(over))
    assert error["extensions"] == {"code": "TOO_MANY_ALIASES"}
    assert "uses 33 aliases" in error["message"]


async def test_a_query_fifty_deep_is_refused_with_its_depth(api: Api) -> None:
    query = "{ connectors" + " { insights { connector" * 24 + " { name }" + " } }" * 24 + " }"

    response = await api.post(query)

    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    messages = {error["extensions"]["code"]: error["message"] for error in body["errors"]}
    # Connectors whose insights nest 24 deep are also too costly: both limits say so.
    assert messages.keys() == {"QUERY_TOO_DEEP", "QUERY_TOO_COSTLY"}
    assert messages["QUERY_TOO_DEEP"].startswith("the query nests fields 50 deep;")


async def test_a_thousand_aliases_are_refused_by_token_count_or_else_by_alias_count(
    api: Api, pool: asyncpg.Pool
) -> None:
    query = aliased(1000, "__typename")
    roomy = Api(await client_with(pool, Settings(max_query_tokens=10_000)), api.token)

    by_tokens = only_error(await api.post(query))
    by_aliases = only_error(await roomy.post(query))
    await roomy.client.aclose()

    assert by_tokens["extensions"] == {"code": "TOO_MANY_TOKENS"}
    assert by_tokens["message"].startswith("the query has 3002 tokens;")
    assert by_aliases["extensions"] == {"code": "TOO_MANY_ALIASES"}
    assert by_aliases["message"].startswith("the query uses 1000 aliases,")


def test_a_connections_edges_cost_the_page_it_asks_for_and_nodes_one_per_id() -> None:
    def connectors(arguments: str) -> int:
        return cost(f"query Page($first: Int) {{ allConnectors{arguments} "
                    "{ edges { node { name } } } }")

    # allConnectors 1, then its edges: a point per edge and per edge its node and name.
    assert connectors("(first: 5)") == 1 + 5 + 5 * 2
    assert connectors("(first: 100)") == 1 + 100 + 100 * 2
    assert connectors("") == connectors("(first: $first)") == 1 + 50 + 50 * 2
    assert cost('{ allTlsFailures(start: "2025-01-01", end: "2025-01-07", first: 10) '
                "{ edges { cursor } } }") == 7 + 10 + 10 * 1
    assert cost('{ nodes(ids: ["a", "b", "c"]) { id } }') == 3 + 3 * 1
