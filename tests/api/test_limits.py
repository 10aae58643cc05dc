from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from graphql import get_introspection_query

from mailflow.api.app import create_app
from mailflow.api.graphiql import DEFAULT_QUERY
from mailflow.settings import Settings

from .conftest import Api, Seed

NINETY_DAYS = 'start: "2020-11-01", end: "2021-01-29"'


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
    # Each alias: connectors 1 + 10 connectors x (volume 90 days + date 1).
    assert error["message"].startswith(
        "the query costs 27330 points; the limit is 5000 (MAILFLOW_MAX_QUERY_COST)."
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
    assert "errors" not in (await api.post(DEFAULT_QUERY)).json()


async def client_with(pool: asyncpg.Pool, settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(pool, settings))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def strict_api(pool: asyncpg.Pool, seed: Seed, organization_id: int) -> AsyncIterator[Api]:
    settings = Settings(
        max_query_depth=5, max_query_aliases=1, max_query_directives=0, max_query_cost=100,
        max_query_tokens=200,
    )
    async with await client_with(pool, settings) as client:
        yield Api(client, await seed.token(organization_id))


async def test_each_limit_is_the_servers_setting(strict_api: Api) -> None:
    cases = {
        "{ __schema { types { fields { type { ofType { name } } } } } }": "QUERY_TOO_DEEP",
        "{ a: connectors { name } b: connectors { name } }": "TOO_MANY_ALIASES",
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
        connectors { volume(start: $start, end: $end) { date } }
    }"""

    five_days = await strict_api.post(query, {"start": "2025-01-01", "end": "2025-01-05"})
    thirty_days = await strict_api.post(query, {"start": "2025-01-01", "end": "2025-01-30"})

    assert "errors" not in five_days.json()
    error = only_error(thirty_days)
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY"}
    # connectors 1 + 10 connectors x (volume 30 days + date 1)
    assert error["message"].startswith("the query costs 311 points; the limit is 100")
