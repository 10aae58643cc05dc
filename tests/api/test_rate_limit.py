from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette

from mailflow.api.app import create_app
from mailflow.settings import Settings, describe_errors
from mailflow.store.tokens import TokenRole

from .conftest import Seed

QUERY = {"query": "{ __typename }"}
ClientOf = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def client_of(pool: asyncpg.Pool) -> AsyncIterator[ClientOf]:
    """Clients of one application with the given rate, each from a client address of its own."""
    clients: list[httpx.AsyncClient] = []
    apps: dict[str, Starlette] = {}

    def client_of(rate: str, address: str = "192.0.2.1", *, demo: int | None = None) -> \
            httpx.AsyncClient:
        key = f"{rate}/{demo}"
        if key not in apps:
            apps[key] = create_app(pool, Settings(rate_limit=rate), demo_organization_id=demo)
        transport = httpx.ASGITransport(app=apps[key], client=(address, 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(client)
        return client

    yield client_of
    for client in clients:
        await client.aclose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_token_over_its_rate_gets_429_with_retry_after_and_others_are_answered(
    client_of: ClientOf, seed: Seed, organization_id: int
) -> None:
    client = client_of("3/minute")
    token, other = await seed.token(organization_id), await seed.token(organization_id)

    within = [await client.post("/graphql", json=QUERY, headers=bearer(token)) for _ in range(3)]
    over = await client.post("/graphql", json=QUERY, headers=bearer(token))
    other_token = await client.post("/graphql", json=QUERY, headers=bearer(other))

    assert [response.status_code for response in within] == [200, 200, 200]
    assert over.status_code == 429
    retry_after = int(over.headers["retry-after"])
    assert 1 <= retry_after <= 60
    (error,) = over.json()["errors"]
    assert error["extensions"] == {"code": "RATE_LIMITED", "retryAfter": retry_after}
    assert error["message"] == (
        "too many requests: the limit is 3/minute per token (per client address without one); "
        f"retry in {retry_after} s"
    )
    assert len(over.headers["x-request-id"]) == 32
    assert other_token.json() == {"data": {"__typename": "Query"}}


async def test_a_refused_request_reaches_neither_authentication_nor_the_database(
    client_of: ClientOf, seed: Seed, organization_id: int
) -> None:
    client = client_of("1/minute")
    token = await seed.token(organization_id)
    await client.post("/graphql", json=QUERY, headers=bearer(token))
    await seed.pool.execute("DROP TABLE api_tokens")

    over = await client.post("/graphql", json=QUERY, headers=bearer(token))

    assert over.status_code == 429


async def test_without_a_token_requests_are_counted_per_client_address(
    client_of: ClientOf, organization_id: int
) -> None:
    first = client_of("2/minute", "192.0.2.1", demo=organization_id)
    second = client_of("2/minute", "192.0.2.2", demo=organization_id)

    statuses = [(await first.post("/graphql", json=QUERY)).status_code for _ in range(3)]
    other_address = await second.post("/graphql", json=QUERY)

    assert statuses == [200, 200, 429]
    assert other_address.status_code == 200


async def test_an_ipv6_client_is_counted_by_its_64_network(
    client_of: ClientOf, organization_id: int
) -> None:
    def client(address: str) -> httpx.AsyncClient:
        return client_of("2/minute", address, demo=organization_id)

    same_network = [
        (await client(address).post("/graphql", json=QUERY)).status_code
        for address in ("2001:db8:0:7::1", "2001:db8:0:7::2", "2001:db8:0:7:ffff::3")
    ]
    next_network = await client("2001:db8:0:8::1").post("/graphql", json=QUERY)

    assert same_network == [200, 200, 429]
    assert next_network.status_code == 200


async def test_pushes_to_ingest_are_limited_per_token_too(
    client_of: ClientOf, seed: Seed, organization_id: int
) -> None:
    client = client_of("1/minute")
    headers = {**bearer(await seed.token(organization_id, TokenRole.INGEST)),
               "Content-Type": "application/x-ndjson"}

    first = await client.post("/ingest", content=b"", headers=headers)
    over = await client.post("/ingest", content=b"", headers=headers)

    assert first.status_code == 200
    assert over.status_code == 429
    assert over.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert over.headers["retry-after"]
    assert over.headers["x-request-id"]


async def test_a_token_is_answered_again_once_its_retry_after_has_passed(
    client_of: ClientOf, seed: Seed, organization_id: int
) -> None:
    client = client_of("2/second")
    headers = bearer(await seed.token(organization_id))
    statuses = [
        (await client.post("/graphql", json=QUERY, headers=headers)).status_code
        for _ in range(3)
    ]
    over = await client.post("/graphql", json=QUERY, headers=headers)

    await asyncio.sleep(int(over.headers["retry-after"]) + 1)
    again = await client.post("/graphql", json=QUERY, headers=headers)

    assert statuses == [200, 200, 429]
    assert over.status_code == 429
    assert again.status_code == 200


async def test_several_rates_each_apply(
    client_of: ClientOf, seed: Seed, organization_id: int
) -> None:
    client = client_of("100/second;2/minute")
    headers = bearer(await seed.token(organization_id))

    statuses = [
        (await client.post("/graphql", json=QUERY, headers=headers)).status_code
        for _ in range(3)
    ]

    assert statuses == [200, 200, 429]


async def test_a_rate_limit_switched_off_refuses_nothing(
    client_of: ClientOf, seed: Seed, organization_id: int
) -> None:
    client = client_of("off")
    headers = bearer(await seed.token(organization_id))

    statuses = {
        (await client.post("/graphql", json=QUERY, headers=headers)).status_code
        for _ in range(60)
    }

    assert statuses == {200}


def test_the_default_rate_is_20_a_second_and_600_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MAILFLOW_RATE_LIMIT", raising=False)

    assert Settings().rate_limit == "20/second;600/minute"


@pytest.mark.parametrize("value", ["fast", "0/minute", "10/fortnight", "5/second;0/minute"])
def test_a_rate_that_cannot_be_read_names_the_value_and_the_accepted_form(value: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(rate_limit=value)

    assert describe_errors(raised.value) == (
        f"MAILFLOW_RATE_LIMIT: {value!r} is not a rate: write AMOUNT/UNIT (AMOUNT 1 or more, "
        "UNIT second, minute, hour or day), several separated by ';' (such as "
        "20/second;600/minute), or off"
    )


async def test_made_up_tokens_count_against_the_address_and_spare_a_known_token(
    client_of: ClientOf, seed: Seed, organization_id: int
) -> None:
    client = client_of("3/minute")
    known = bearer(await seed.token(organization_id))
    await client.post("/graphql", json=QUERY, headers=known)

    made_up = [
        await client.post("/graphql", json=QUERY, headers=bearer(f"mf_1_{n:043d}"))
        for n in range(4)
    ]
    still_known = await client.post("/graphql", json=QUERY, headers=known)

    assert [response.status_code for response in made_up] == [401, 401, 401, 429]
    (error,) = made_up[-1].json()["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["message"].startswith(
        "too many requests with tokens this server refused (401) from this address: the "
        "limit is 3/minute; retry in "
    )
    assert still_known.status_code == 200


async def test_a_revoked_token_counts_against_the_address_again(
    client_of: ClientOf, seed: Seed, organization_id: int
) -> None:
    client = client_of("2/minute")
    token = await seed.token(organization_id)
    await client.post("/graphql", json=QUERY, headers=bearer(token))
    await seed.pool.execute("UPDATE api_tokens SET revoked_at = now()")

    statuses = [
        (await client.post("/graphql", json=QUERY, headers=bearer(token))).status_code
        for _ in range(3)
    ]

    # Refused once on its own count, then counted against the address, which already holds
    # the token's first request: refused once more, then over the rate.
    assert statuses == [401, 401, 429]
