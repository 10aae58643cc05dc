"""Subscriptions over a real WebSocket: pushed after a commit, to its organization alone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from mailflow.api.app import create_app
from mailflow.domain import Direction
from mailflow.rollups.changes import RollupChanges
from mailflow.server import listen_url
from mailflow.settings import Settings
from mailflow.store.tokens import TokenRole

from .conftest import Seed

PROTOCOL = "graphql-transport-ws"
DAY = datetime(2026, 3, 2, 9, tzinfo=UTC)
MAIL_FLOW = """
subscription Flow($connectorId: ID) {
  mailFlowUpdates(start: "2026-03-01", end: "2026-03-03", connectorId: $connectorId) {
    start end points { date messages recipients byTls { version messages } }
  }
}
"""
INSIGHTS = """
subscription Insights {
  insightsUpdates(start: "2026-03-01", end: "2026-03-03") {
    insights { kind value messages connector { name } }
  }
}
"""
PUSH_SECONDS = 5.0
"""How long a push may take to arrive: a commit, a notification and one read."""
QUIET_SECONDS = 1.5
"""How long a subscription is watched to stay silent, after pushes to others arrived."""


@pytest.fixture
async def changes(database_url: str) -> AsyncIterator[RollupChanges]:
    async with RollupChanges(database_url, check_seconds=0.5, retry_seconds=0.1) as changes:
        async with asyncio.timeout(10):
            await changes.listening.wait()
        yield changes


@contextlib.asynccontextmanager
async def serving(
    pool: asyncpg.Pool, settings: Settings, changes: RollupChanges
) -> AsyncIterator[str]:
    """The application under a real uvicorn; yields its ws:// URL of /graphql."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    app = create_app(pool, settings, changes=changes)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
    serve = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                await asyncio.sleep(0.01)
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serve
        listener.close()


@pytest.fixture
async def address(
    service_pool: asyncpg.Pool, settings: Settings, changes: RollupChanges
) -> AsyncIterator[str]:
    async with serving(service_pool, settings, changes) as address:
        yield address


@contextlib.asynccontextmanager
async def subscriber(address: str, token: str | None) -> AsyncIterator[ClientConnection]:
    """A WebSocket to /graphql whose connection_init carried ``token`` and was acknowledged."""
    async with connect(f"ws://{address}/graphql", subprotocols=[PROTOCOL]) as socket_:
        payload = {} if token is None else {"Authorization": f"Bearer {token}"}
        await socket_.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert await receive(socket_) == {"type": "connection_ack"}
        yield socket_


async def subscribe(
    socket_: ClientConnection, query: str, variables: dict[str, Any] | None = None,
    operation_id: str = "1",
) -> dict[str, Any]:
    """Subscribe; the first message the subscription answers with."""
    await socket_.send(json.dumps({"id": operation_id, "type": "subscribe",
                                   "payload": {"query": query, "variables": variables or {}}}))
    return await receive(socket_)


async def receive(socket_: ClientConnection, seconds: float = PUSH_SECONDS) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        message: dict[str, Any] = json.loads(await socket_.recv())
    return message


async def stays_silent(socket_: ClientConnection) -> bool:
    try:
        message = await receive(socket_, QUIET_SECONDS)
    except TimeoutError:
        return True
    pytest.fail(f"expected no message, got {message}")


async def ingest(
    address: str, token: str, count: int, *, tls_version: str = "TLS1_2", first: int = 0,
    **fields: Any,
) -> None:
    """Push ``count`` inbound records of DAY through POST /ingest."""
    records = [
        {"source_key": f"live-{first + number}",
         "occurred_at": (DAY + timedelta(minutes=first + number)).isoformat(),
         "direction": "INBOUND", "tls_version": tls_version, "recipients": 2,
         "size_bytes": 1000, **fields}
        for number in range(count)
    ]
    body = b"".join(json.dumps(record).encode() + b"\n" for record in records)
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        response = await client.post("/ingest", content=body, headers={
            "Content-Type": "application/x-ndjson", "Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


def points(message: dict[str, Any]) -> list[dict[str, Any]]:
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    found: list[dict[str, Any]] = message["payload"]["data"]["mailFlowUpdates"]["points"]
    return found


async def test_a_subscription_answers_at_once_and_receives_the_changed_day_after_an_ingest(
    address: str, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    ingest_token = await seed.token(organization_id, TokenRole.INGEST)

    async with subscriber(address, token) as socket_:
        first = await subscribe(socket_, MAIL_FLOW)
        await ingest(address, ingest_token, 3, tls_version="NONE")
        pushed = await receive(socket_)

    assert [(point["date"], point["messages"]) for point in points(first)] == [
        ("2026-03-01", 0), ("2026-03-02", 0), ("2026-03-03", 0)]
    assert first["payload"]["data"]["mailFlowUpdates"]["start"] == "2026-03-01"
    [point] = points(pushed)
    assert (point["date"], point["messages"], point["recipients"]) == ("2026-03-02", 3, 6)
    assert {"version": "NONE", "messages": 3} in point["byTls"]


async def test_an_ingest_that_changes_nothing_of_the_filter_pushes_nothing(
    address: str, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    ingest_token = await seed.token(organization_id, TokenRole.INGEST)
    await seed.connector(organization_id, "Partner", Direction.INBOUND)
    variables = {"connectorId": await connector_id(address, token, "Partner")}

    async with subscriber(address, token) as filtered, subscriber(address, token) as everything:
        await subscribe(filtered, MAIL_FLOW, variables)
        await subscribe(everything, MAIL_FLOW)
        await ingest(address, ingest_token, 2)  # no connector
        assert points(await receive(everything))[0]["messages"] == 2
        assert await stays_silent(filtered)

        await ingest(address, ingest_token, 1, first=10, connector="Partner")
        assert points(await receive(filtered))[0]["messages"] == 1


async def connector_id(address: str, token: str, name: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        response = await client.post("/graphql", json={"query": "{ connectors { id name } }"},
                                     headers={"Authorization": f"Bearer {token}"})
    [found] = [item["id"] for item in response.json()["data"]["connectors"]
               if item["name"] == name]
    assert isinstance(found, str)
    return found


async def test_another_organizations_ingest_reaches_only_its_own_subscribers(
    address: str, seed: Seed, organization_id: int
) -> None:
    other = await seed.organization("org-b")
    token, other_token = await seed.token(organization_id), await seed.token(other)
    other_ingest = await seed.token(other, TokenRole.INGEST)

    async with subscriber(address, token) as mine, subscriber(address, other_token) as theirs:
        await subscribe(mine, MAIL_FLOW)
        await subscribe(theirs, MAIL_FLOW)
        await ingest(address, other_ingest, 4)

        assert points(await receive(theirs))[0]["messages"] == 4
        assert await stays_silent(mine)


async def test_insights_are_pushed_when_an_ingest_makes_one_fire(
    address: str, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    ingest_token = await seed.token(organization_id, TokenRole.INGEST)
    await seed.connector(organization_id, "Partner", Direction.INBOUND)

    async with subscriber(address, token) as socket_:
        first = await subscribe(socket_, INSIGHTS)
        await ingest(address, ingest_token, 2, connector="Partner")  # TLS 1.2: nothing fires
        assert await stays_silent(socket_)
        await ingest(address, ingest_token, 2, first=10, connector="Partner", tls_version="NONE")
        pushed = await receive(socket_)

    assert first["payload"]["data"]["insightsUpdates"]["insights"] == []
    assert pushed["payload"]["data"]["insightsUpdates"]["insights"] == [{
        "kind": "NO_TLS_OVER_THRESHOLD", "value": 50.0, "messages": 4,
        "connector": {"name": "Partner"},
    }]


async def close_code(address: str, payload: dict[str, Any] | None, *messages: Any) -> int:
    """The code the server closes a socket with after connection_init (if given) and
    ``messages``."""
    async with connect(f"ws://{address}/graphql", subprotocols=[PROTOCOL]) as socket_:
        if payload is not None:
            await socket_.send(json.dumps({"type": "connection_init", "payload": payload}))
        for message in messages:
            await socket_.send(json.dumps(message))
        with pytest.raises(ConnectionClosed) as closed:
            await read_until_closed(socket_)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def read_until_closed(socket_: ClientConnection) -> None:
    async with asyncio.timeout(PUSH_SECONDS):
        while True:
            await socket_.recv()


async def test_a_connection_without_a_valid_reader_token_is_closed_with_4403(
    address: str, seed: Seed, organization_id: int
) -> None:
    ingest_token = await seed.token(organization_id, TokenRole.INGEST)
    subscription = {"id": "1", "type": "subscribe", "payload": {"query": MAIL_FLOW}}

    assert await close_code(address, {}) == 4403
    assert await close_code(address, {"Authorization": "Bearer mf_1_unknown"}) == 4403
    assert await close_code(address, {"Authorization": f"Bearer {ingest_token}"}) == 4403
    assert await close_code(address, None, subscription) == 4401


@pytest.mark.parametrize("message", [
    [1], 5,
    {"id": [1], "type": "subscribe", "payload": {"query": MAIL_FLOW}},
    {"id": 1, "type": "subscribe", "payload": {"query": MAIL_FLOW}},
    {"id": {}, "type": "complete"},
], ids=["array", "number", "subscribe-id-an-array", "subscribe-id-a-number",
        "complete-id-an-object"])
async def test_a_message_that_is_no_object_or_has_no_string_id_closes_the_socket_with_4400(
    address: str, seed: Seed, organization_id: int, message: Any
) -> None:
    token = await seed.token(organization_id)

    assert await close_code(address, {"Authorization": f"Bearer {token}"}, message) == 4400


async def test_the_token_may_come_with_the_handshake_instead(
    address: str, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    async with connect(f"ws://{address}/graphql", subprotocols=[PROTOCOL],
                       additional_headers={"Authorization": f"Bearer {token}"}) as socket_:
        await socket_.send(json.dumps({"type": "connection_init"}))
        assert await receive(socket_) == {"type": "connection_ack"}
        assert len(points(await subscribe(socket_, MAIL_FLOW))) == 3


async def test_a_token_revoked_while_subscribed_ends_the_subscription_at_the_next_change(
    address: str, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    ingest_token = await seed.token(organization_id, TokenRole.INGEST)

    async with subscriber(address, token) as socket_:
        await subscribe(socket_, MAIL_FLOW)
        await seed.pool.execute("UPDATE api_tokens SET revoked_at = now() "
                                "WHERE organization_id = $1 AND role = 'viewer'", organization_id)
        await ingest(address, ingest_token, 1)
        ended = await receive(socket_)

    assert ended["type"] == "next"
    assert ended["payload"]["data"] is None
    assert ended["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_the_query_limits_apply_to_subscriptions(
    service_pool: asyncpg.Pool, changes: RollupChanges, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    deep = """subscription Deep { insightsUpdates { insights { connector {
      volume { byTls { version } } } } } }"""
    settings = Settings(max_range_days=90, rate_limit="off", max_query_depth=5)

    async with serving(service_pool, settings, changes) as address, \
            subscriber(address, token) as socket_:
        refused = await subscribe(socket_, deep)

    assert refused["type"] == "error"
    assert refused["payload"][0]["extensions"]["code"] == "QUERY_TOO_DEEP"


async def test_a_document_over_the_token_limit_and_one_subscription_too_many_get_coded_errors(
    service_pool: asyncpg.Pool, changes: RollupChanges, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    settings = Settings(max_range_days=90, rate_limit="off", max_query_tokens=200,
                        max_subscriptions_per_connection=1)
    first = "subscription { insightsUpdates { insights { kind } } }"

    async with serving(service_pool, settings, changes) as address, \
            subscriber(address, token) as socket_:
        long = await subscribe(socket_, "subscription { " + "a " * 500 + "}", operation_id="1")
        started = await subscribe(socket_, first, operation_id="2")
        second = await subscribe(socket_, first, operation_id="3")

    assert long["type"] == "error"
    assert long["payload"][0]["extensions"]["code"] == "TOO_MANY_TOKENS"
    assert started["type"] == "next"
    assert second["type"] == "error"
    assert second["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
    assert "MAILFLOW_MAX_SUBSCRIPTIONS_PER_CONNECTION" in second["payload"][0]["message"]


async def test_subscriptions_over_the_rate_limit_are_refused_with_an_error(
    service_pool: asyncpg.Pool, changes: RollupChanges, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    settings = Settings(max_range_days=90, rate_limit="2/minute")

    async with serving(service_pool, settings, changes) as address, \
            subscriber(address, token) as socket_:
        answers = [await subscribe(socket_, MAIL_FLOW, operation_id=str(number))
                   for number in range(3)]

    assert [answer["type"] for answer in answers] == ["next", "next", "error"]
    assert answers[2]["payload"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_queries_over_the_websocket_and_subscriptions_over_http_are_pointed_elsewhere(
    address: str, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    async with subscriber(address, token) as socket_:
        query = await subscribe(socket_, "{ connectors { name } }")
    over_http = await post(address, token, {"query": MAIL_FLOW})

    assert query["type"] == "error"
    assert query["payload"][0]["extensions"] == {"code": "BAD_REQUEST"}
    assert "send queries by POST or GET /graphql" in query["payload"][0]["message"]
    assert over_http.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(("document", "operation_name"), [
    ("{ __typename }", None),
    ("mutation { __typename }", None),
    ("query A { __typename } " + INSIGHTS, "A"),
], ids=["query", "mutation", "query-picked-from-a-document-with-a-subscription"])
async def test_an_operation_that_is_no_subscription_is_refused_over_the_websocket_unrun(
    address: str, seed: Seed, organization_id: int, document: str, operation_name: str | None
) -> None:
    token = await seed.token(organization_id)
    async with subscriber(address, token) as socket_:
        refused = await send_subscribe(socket_, {"query": document,
                                                 "operationName": operation_name})
        # The socket still serves subscriptions, the refused id free again.
        started = await subscribe(socket_, INSIGHTS)

    assert refused == {"id": "1", "type": "error", "payload": [{
        "message": refused["payload"][0]["message"], "extensions": {"code": "BAD_REQUEST"}}]}
    assert refused["payload"][0]["message"] == (
        "this WebSocket answers subscriptions only: send queries by POST or GET /graphql, "
        "mutations by POST /graphql")
    assert started["type"] == "next"


@pytest.mark.parametrize(("field", "value"), [
    ("variables", [1, 2]), ("variables", "x"), ("variables", 5), ("variables", True),
    ("operationName", 7), ("extensions", [1]),
])
async def test_a_subscribe_payload_field_of_the_wrong_json_type_is_refused_as_over_post(
    address: str, seed: Seed, organization_id: int, field: str, value: Any
) -> None:
    token = await seed.token(organization_id)
    async with subscriber(address, token) as socket_:
        refused = await send_subscribe(socket_, {"query": MAIL_FLOW, field: value})
    over_post = await post(address, token, {"query": MAIL_FLOW, field: value})

    assert over_post.status_code == 400
    assert refused == {"id": "1", "type": "error", "payload": over_post.json()["errors"]}
    assert refused["payload"][0]["extensions"] == {"code": "BAD_REQUEST"}
    assert f'"{field}" field must be' in refused["payload"][0]["message"]


@pytest.mark.parametrize("payload", [[1], "x", {}, {"query": 5}, {"query": " "}],
                         ids=["array", "string", "no-query", "query-a-number", "query-blank"])
async def test_a_subscribe_payload_that_is_no_object_or_has_no_query_is_refused_with_a_reason(
    address: str, seed: Seed, organization_id: int, payload: Any
) -> None:
    token = await seed.token(organization_id)
    async with subscriber(address, token) as socket_:
        await socket_.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        refused = await receive(socket_)
        started = await subscribe(socket_, INSIGHTS)

    assert refused["type"] == "error"
    (error,) = refused["payload"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert 'payload must be a JSON object with a "query" string' in error["message"]
    assert started["type"] == "next"


async def test_an_unknown_operation_name_is_refused_as_over_post(
    address: str, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    body = {"query": MAIL_FLOW + INSIGHTS, "operationName": "Nowhere"}
    async with subscriber(address, token) as socket_:
        refused = await send_subscribe(socket_, body)
    over_post = await post(address, token, body)

    assert over_post.status_code == 400
    assert refused == {"id": "1", "type": "error", "payload": over_post.json()["errors"]}
    assert refused["payload"][0]["extensions"] == {"code": "BAD_REQUEST"}
    assert '"Nowhere"' in refused["payload"][0]["message"]


async def send_subscribe(socket_: ClientConnection, payload: dict[str, Any]) -> dict[str, Any]:
    """Subscribe with ``payload`` as given; the first message the server answers with."""
    await socket_.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    return await receive(socket_)


async def post(address: str, token: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        return await client.post("/graphql", json=body,
                                 headers={"Authorization": f"Bearer {token}"})


async def test_a_dropped_listen_connection_is_opened_again_and_pushes_resume(
    address: str, seed: Seed, organization_id: int, pool: asyncpg.Pool, changes: RollupChanges
) -> None:
    token = await seed.token(organization_id)
    ingest_token = await seed.token(organization_id, TokenRole.INGEST)

    async with subscriber(address, token) as socket_:
        await subscribe(socket_, MAIL_FLOW)
        listening = changes.backend_pid
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", listening)
        async with asyncio.timeout(PUSH_SECONDS):
            while changes.listening.is_set():  # noqa: ASYNC110 - the listener has no drop event
                await asyncio.sleep(0.01)
            await changes.listening.wait()
        await ingest(address, ingest_token, 2)
        pushed = await receive(socket_)

    assert points(pushed)[0]["messages"] == 2
    assert changes.backend_pid not in (None, listening)


async def test_a_page_on_an_origin_the_settings_do_not_allow_cannot_open_the_socket(
    service_pool: asyncpg.Pool, changes: RollupChanges, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    settings = Settings(rate_limit="off", cors_origins="https://portal.example.com")

    async with serving(service_pool, settings, changes) as address:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://{address}/graphql", subprotocols=[PROTOCOL],
                          origin=Origin("https://elsewhere.example"))
        async with connect(f"ws://{address}/graphql", subprotocols=[PROTOCOL],
                           origin=Origin("https://portal.example.com")) as socket_:
            await socket_.send(json.dumps({"type": "connection_init",
                                           "payload": {"Authorization": f"Bearer {token}"}}))
            assert await receive(socket_) == {"type": "connection_ack"}

    assert refused.value.response.status_code == 403


async def test_a_handshake_over_the_rate_limit_is_answered_429(
    service_pool: asyncpg.Pool, changes: RollupChanges
) -> None:
    settings = Settings(rate_limit="1/minute")

    async with serving(service_pool, settings, changes) as address:
        async with connect(f"ws://{address}/graphql", subprotocols=[PROTOCOL]):
            pass
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://{address}/graphql", subprotocols=[PROTOCOL])

    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"]


async def test_a_connection_that_cannot_reach_the_database_is_closed_with_try_again_later(
    settings: Settings, changes: RollupChanges, unused_tcp_port: int
) -> None:
    unreachable = await asyncpg.create_pool(f"postgresql://nobody@127.0.0.1:{unused_tcp_port}/x",
                                            min_size=0)
    assert unreachable is not None
    try:
        async with serving(unreachable, settings, changes) as address:
            code = await close_code(address, {"Authorization": "Bearer mf_1_x"})
    finally:
        await unreachable.close()

    assert code == 1013


def test_live_updates_listen_on_their_own_url_and_warn_when_a_pooler_is_likely(
    caplog: pytest.LogCaptureFixture,
) -> None:
    direct, pooled = "postgresql://mailflow@db/mailflow", "postgresql://mailflow@pooler/mailflow"
    behind_pooler = Settings(database_url=pooled, database_statement_cache=False)

    assert listen_url(Settings(database_url=pooled, listen_url=direct), pooled) == direct
    assert listen_url(Settings(database_url=direct), direct) == direct
    assert not caplog.records
    assert listen_url(behind_pooler, pooled) == pooled
    assert "MAILFLOW_LISTEN_URL" in caplog.records[0].getMessage()



FLOW_QUERY = """
query Flow($connectorId: ID) {
  mailFlow(start: "2026-03-01", end: "2026-03-03", connectorId: $connectorId) { date messages }
}
"""


async def test_a_variable_that_does_not_fit_its_type_has_the_code_and_message_it_has_over_post(
    address: str, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id)
    variables = {"connectorId": {"not": "an id"}}
    async with subscriber(address, token) as socket_:
        refused = await subscribe(socket_, MAIL_FLOW, variables)
    over_post = await post(address, token, {"query": FLOW_QUERY, "variables": variables})

    assert refused["type"] == "error"
    (error,) = refused["payload"]
    (posted,) = over_post.json()["errors"]
    assert posted["extensions"] == {"code": "BAD_USER_INPUT"}
    assert error["extensions"] == posted["extensions"]
    assert error["message"] == posted["message"]
    assert "$connectorId" in error["message"]
