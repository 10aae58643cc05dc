"""POST /ingest: records pushed by log shippers, counted and stored like any ingest."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from mailflow.domain import Direction
from mailflow.ingest.sources import MAX_LINE_LENGTH
from mailflow.store.tokens import TokenRole

from .conftest import Seed

NDJSON = {"Content-Type": "application/x-ndjson"}
START = datetime(2026, 3, 1, 9, tzinfo=UTC)


def record(number: int, **fields: Any) -> dict[str, Any]:
    return {
        "source_key": f"push-{number}",
        "occurred_at": (START + timedelta(hours=number)).isoformat(),
        "direction": "INBOUND" if number % 3 else "OUTBOUND",
        "tls_version": ["TLS1_2", "TLS1_3", "NONE"][number % 3],
        "recipients": 1 + number % 4,
        "size_bytes": 1000 + number,
        **fields,
    }


def ndjson(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in records)


@pytest.fixture
async def ingest_token(seed: Seed, organization_id: int) -> str:
    return await seed.token(organization_id, TokenRole.INGEST)


async def push(
    client: httpx.AsyncClient, token: str, body: bytes | AsyncIterator[bytes],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post("/ingest", content=body, headers={
        **NDJSON, "Authorization": f"Bearer {token}", **(headers or {})})


async def totals(pool: asyncpg.Pool, organization_id: int) -> list[tuple[Any, ...]]:
    """Daily rollups next to the same sums over the facts, for one organization."""
    rows = await pool.fetch(
        """
        SELECT day, direction, tls_version, messages, recipients, bytes
        FROM daily_rollups WHERE organization_id = $1 ORDER BY 1, 2, 3
        """, organization_id)
    return [tuple(row) for row in rows]


async def fact_totals(pool: asyncpg.Pool, organization_id: int) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        """
        SELECT (occurred_at AT TIME ZONE 'UTC')::date, direction, tls_version, count(*),
               sum(recipients), sum(size_bytes)
        FROM message_facts WHERE organization_id = $1 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        """, organization_id)
    return [tuple(row) for row in rows]


async def test_pushed_records_are_stored_and_counted_in_the_rollups(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, ingest_token: str,
) -> None:
    records = [record(number) for number in range(50)]

    response = await push(client, ingest_token, ndjson(records))

    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 50, "duplicates": 0, "rejected": 0, "rejections": []}
    assert response.headers["x-request-id"]
    rollups = await totals(seed.pool, organization_id)
    assert sum(row[3] for row in rollups) == 50
    assert rollups == await fact_totals(seed.pool, organization_id)


async def test_pushing_the_same_records_again_stores_nothing_new(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, ingest_token: str,
) -> None:
    body = ndjson([record(number) for number in range(10)])
    await push(client, ingest_token, body)
    before = await totals(seed.pool, organization_id)

    again = await push(client, ingest_token, body)

    assert again.json()["accepted"] == 0
    assert again.json()["duplicates"] == 10
    assert await totals(seed.pool, organization_id) == before


async def test_a_gzip_body_in_many_small_chunks_is_read_as_it_arrives(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, ingest_token: str,
) -> None:
    compressed = gzip.compress(ndjson([record(number) for number in range(300)]))

    async def trickle() -> AsyncIterator[bytes]:
        for start in range(0, len(compressed), 97):
            yield compressed[start:start + 97]

    response = await push(client, ingest_token, trickle(), {"Content-Encoding": "gzip"})

    assert response.json()["accepted"] == 300
    assert sum(row[3] for row in await totals(seed.pool, organization_id)) == 300


async def test_rejected_records_are_named_by_line_and_the_rest_are_stored(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, ingest_token: str,
) -> None:
    lines = [
        json.dumps(record(1)),
        json.dumps(record(2, direction="SIDEWAYS")),
        "",
        "{not json",
        json.dumps(record(3, occurred_at="2026-03-01T10:00:00")),
        "é" * (MAX_LINE_LENGTH + 1),  # characters are counted, not bytes
        json.dumps(record(4)),
    ]

    response = await push(client, ingest_token, "\n".join(lines).encode())

    body = response.json()
    assert response.status_code == 200
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 0, 4)
    reasons = {item["line"]: item["reason"] for item in body["rejections"]}
    assert sorted(reasons) == [2, 4, 5, 6]
    assert "'SIDEWAYS' is not one of INBOUND, OUTBOUND" in reasons[2]
    assert reasons[4].startswith("not JSON")
    assert "has no UTC offset" in reasons[5]
    assert reasons[6] == f"the line is longer than {MAX_LINE_LENGTH} characters"


@pytest.mark.parametrize(
    "occurred_at", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00", "9999-12-31T23:59:59Z"])
async def test_a_time_at_the_edge_of_the_calendar_is_rejected_and_the_rest_stored(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, ingest_token: str,
    occurred_at: str,
) -> None:
    records = [record(1), record(2, occurred_at=occurred_at), record(3)]

    response = await push(client, ingest_token, ndjson(records))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["rejections"][0]["line"] == 2
    assert body["rejections"][0]["reason"].startswith(
        f"occurred_at '{occurred_at}' is outside the accepted range of times, from 1990-01-01")
    rollups = await totals(seed.pool, organization_id)
    assert sum(row[3] for row in rollups) == 2
    assert rollups == await fact_totals(seed.pool, organization_id)


async def test_a_csv_body_with_a_bad_header_is_rejected_once_and_nothing_stored(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, ingest_token: str,
) -> None:
    body = (b"source_key,occurred_at,direction,colour\n"
            b"csv-1,2026-03-02T08:00:00Z,OUTBOUND,red\n"
            b"csv-2,2026-03-02T09:00:00Z,OUTBOUND,blue\n")

    response = await push(client, ingest_token, body, {"Content-Type": "text/csv"})

    assert (response.json()["accepted"], response.json()["rejected"]) == (0, 3)
    [rejection] = response.json()["rejections"]
    assert rejection["line"] == 1
    assert rejection["reason"].startswith("the CSV header names the unknown column 'colour'")


async def test_a_csv_body_as_a_spreadsheet_writes_it_is_read(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, ingest_token: str,
) -> None:
    body = ("\ufeffSource_Key,Occurred_At,Direction\r\n"
            "csv-1,2026-03-02T08:00:00Z,OUTBOUND\r\n").encode()

    response = await push(client, ingest_token, body, {"Content-Type": "text/csv"})

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": 0, "rejections": []}


async def test_a_record_names_its_connector_or_one_of_its_routes_in_any_letter_case(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, ingest_token: str,
) -> None:
    suppliers = await seed.connector(organization_id, "Suppliers", Direction.OUTBOUND)
    vpn = await seed.connector(organization_id, "VPN", Direction.OUTBOUND)
    await seed.pool.execute("UPDATE connectors SET routes = '{Remote_SMTP_VPN}' WHERE id = $1",
                            vpn)
    records = [record(0, direction="OUTBOUND", connector="SUPPLIERS"),
               record(3, direction="OUTBOUND", connector="remote_smtp_vpn"),
               record(6, direction="OUTBOUND", connector="Nobody")]

    response = await push(client, ingest_token, ndjson(records))

    assert response.json()["accepted"] == 3
    rows = await seed.pool.fetch(
        "SELECT source_key, connector_id FROM message_facts WHERE organization_id = $1 "
        "ORDER BY source_key", organization_id)
    assert [tuple(row) for row in rows] == [
        ("push-0", suppliers), ("push-3", vpn), ("push-6", None)]


async def test_a_source_key_is_one_message_fact_whichever_direction_a_second_record_says(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, ingest_token: str,
) -> None:
    inbound = record(1, direction="INBOUND")
    # As docs/records.md says: a key is unique per organization, so a message crossing twice
    # needs the direction in its key.
    records = [inbound, {**inbound, "direction": "OUTBOUND"},
               {**inbound, "direction": "OUTBOUND", "source_key": "push-1/out"}]

    response = await push(client, ingest_token, ndjson(records))

    assert (response.json()["accepted"], response.json()["duplicates"]) == (2, 1)
    directions = await seed.pool.fetch(
        "SELECT source_key, direction FROM message_facts WHERE organization_id = $1 "
        "ORDER BY source_key", organization_id)
    assert [tuple(row) for row in directions] == [
        ("push-1", "INBOUND"), ("push-1/out", "OUTBOUND")]


async def test_csv_records_are_read_after_their_header(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, ingest_token: str,
) -> None:
    body = (
        b"occurred_at,source_key,direction,tls_version,recipient_domains\n"
        b"2026-03-02T08:00:00Z,csv-1,OUTBOUND,TLSv1.2,a.example b.example\n"
        b"2026-03-02T09:00:00Z,csv-2,OUTBOUND,NONE,\n"
    )

    response = await push(client, ingest_token, body, {"Content-Type": "text/csv"})

    assert response.json()["accepted"] == 2
    domains = await seed.pool.fetchval(
        "SELECT recipient_domains FROM message_facts WHERE source_key = 'csv-1'")
    assert domains == ["a.example", "b.example"]


async def test_a_cut_off_gzip_body_keeps_the_batches_committed_and_says_it_was_cut(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, ingest_token: str,
) -> None:
    compressed = gzip.compress(ndjson([record(number) for number in range(20)]))

    response = await push(client, ingest_token, compressed[:-12], {"Content-Encoding": "gzip"})

    assert response.status_code == 400
    body = response.json()
    assert body["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}
    assert "cut off" in body["errors"][0]["message"]
    assert body["accepted"] == 0  # all 20 records were in the one unfinished batch


@pytest.mark.parametrize(
    ("headers", "status", "named"),
    [
        ({"Content-Type": "application/xml"}, 415, '"application/xml"'),
        ({"Content-Encoding": "br"}, 415, '"br"'),
        ({"Content-Encoding": "gzip"}, 400, "not valid gzip"),
    ],
)
async def test_a_body_that_cannot_be_read_is_refused_with_the_reason(
    client: httpx.AsyncClient, ingest_token: str, headers: dict[str, str], status: int,
    named: str,
) -> None:
    response = await push(client, ingest_token, ndjson([record(1)]), headers)

    assert response.status_code == status
    assert named in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("role", [TokenRole.VIEWER, TokenRole.ADMIN])
async def test_only_an_ingest_token_may_push(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, role: TokenRole,
) -> None:
    token = await seed.token(organization_id, role)

    response = await push(client, token, ndjson([record(1)]))

    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
    assert await seed.pool.fetchval("SELECT count(*) FROM message_facts") == 0


async def test_a_push_without_a_token_is_unauthenticated(client: httpx.AsyncClient) -> None:
    response = await client.post("/ingest", content=ndjson([record(1)]), headers=NDJSON)

    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}


async def test_pushed_records_belong_to_the_token_organization_only(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, ingest_token: str,
) -> None:
    other = await seed.organization("org-b")
    await push(client, ingest_token, ndjson([record(number) for number in range(5)]))

    assert await totals(seed.pool, other) == []
    assert sum(row[3] for row in await totals(seed.pool, organization_id)) == 5
