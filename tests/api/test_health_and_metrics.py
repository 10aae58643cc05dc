"""Health checks and Prometheus metrics."""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailflow.api.app import create_app
from mailflow.api.metrics import MAX_OPERATION_NAMES
from mailflow.settings import Settings
from mailflow.store.tokens import TokenRole

from .conftest import Api, Seed


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def client_of(pool: asyncpg.Pool, settings: Settings) -> httpx.AsyncClient:
    app = create_app(pool, settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def limited_client(service_pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_of(service_pool, Settings(rate_limit="1/minute")) as client:
        yield client


async def test_healthz_and_readyz_answer_200_and_skip_the_rate_limit(
    limited_client: httpx.AsyncClient,
) -> None:
    answers = [await limited_client.get(path) for path in ["/healthz", "/readyz"] * 3]

    assert [answer.status_code for answer in answers] == [200] * 6
    assert answers[0].json() == {"status": "ok"}
    assert answers[1].json() == {"status": "ready"}


async def test_readyz_is_503_naming_a_migration_not_applied(
    pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    await pool.execute("DELETE FROM schema_migrations WHERE version = 11")

    answer = await client.get("/readyz")

    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable"
    assert "0011_message_facts_keyed_by_time" in answer.json()["reason"]
    assert "mailflow migrate" in answer.json()["reason"]
    assert (await client.get("/healthz")).status_code == 200


async def test_readyz_is_503_when_an_applied_migration_was_changed(
    pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    await pool.execute("UPDATE schema_migrations SET checksum = 'changed' WHERE version = 1")

    answer = await client.get("/readyz")

    assert answer.status_code == 503
    assert "0001_initial was changed after it was applied" in answer.json()["reason"]


async def test_readyz_is_503_when_the_database_cannot_be_reached() -> None:
    # Nothing listens on port 9 of this machine: connections are refused.
    pool = await asyncpg.create_pool("postgresql://nobody@127.0.0.1:9/none", min_size=0)
    assert pool is not None
    try:
        async with await client_of(pool, Settings(rate_limit="off")) as client:
            ready = await client.get("/readyz")
            alive = await client.get("/healthz")
    finally:
        await pool.close()

    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable",
                            "reason": "the database is unavailable (ConnectionRefusedError)"}
    assert "127.0.0.1" not in ready.text
    assert alive.status_code == 200


async def test_metrics_count_requests_by_operation_and_outcome_after_a_few_requests(
    api: Api,
) -> None:
    for _ in range(3):
        await api.data("query Dashboard { connectors { name } }")
    await api.error("query Broken { mailFlow(start: $nope) { date } }")
    await api.post("{ connectors { name } }", token="not-a-token")
    await api.client.get("/export/tls-usage.csv", headers={"Authorization": f"Bearer {api.token}"})

    text = (await api.client.get("/metrics")).text
    found = samples(text)

    assert found[("mailflow_graphql_requests_total",
                  (("operation", "Dashboard"), ("outcome", "ok")))] == 3
    assert found[("mailflow_graphql_requests_total",
                  (("operation", "Broken"), ("outcome", "error")))] == 1
    assert found[("mailflow_graphql_requests_total",
                  (("operation", "unknown"), ("outcome", "refused")))] == 1
    assert found[("mailflow_graphql_request_duration_seconds_count",
                  (("operation", "Dashboard"),))] == 3
    assert found[("mailflow_http_requests_total",
                  (("route", "graphql"), ("status", "200")))] == 4
    assert found[("mailflow_http_requests_total",
                  (("route", "export/tls-usage"), ("status", "200")))] == 1
    assert found[("mailflow_db_pool_max_size", ())] == 4
    assert found[("mailflow_db_pool_in_use", ())] == 0
    assert found[("mailflow_db_pool_size", ())] >= 1
    assert found[("mailflow_ingest_records_total", (("result", "accepted"),))] == 0
    assert math.isnan(found[("mailflow_rollup_lag_seconds", ())]), "unknown before a push"
    for name in ("mailflow_rollup_lag_seconds", "mailflow_rollup_last_commit_timestamp_seconds",
                 "process_cpu_seconds_total"):
        assert re.search(rf"^{name}\b", text, re.M), name


async def test_operation_names_beyond_the_limit_count_as_other(api: Api) -> None:
    for number in range(MAX_OPERATION_NAMES + 5):
        await api.post(f"query Q{number} {{ __typename }}")

    found = samples((await api.client.get("/metrics")).text)
    operations = {dict(labels)["operation"] for name, labels in found
                  if name == "mailflow_graphql_requests_total"}

    assert len(operations) == MAX_OPERATION_NAMES + 1
    assert found[("mailflow_graphql_requests_total",
                  (("operation", "other"), ("outcome", "ok")))] == 5


async def test_pushed_records_are_counted_with_the_rollup_lag(
    api: Api, seed: Seed, organization_id: int
) -> None:
    token = await seed.token(organization_id, role=TokenRole.INGEST)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    record = {"source_key": "k1", "occurred_at": an_hour_ago.isoformat(),
              "direction": "INBOUND", "tls_version": "TLS1_2",
              "sender_domain": "partner.example", "recipient_domains": ["acme.example"]}
    body = (json.dumps(record) + "\n" + json.dumps(record) + "\n{broken\n").encode()

    answer = await api.client.post("/ingest", content=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
    found = samples((await api.client.get("/metrics")).text)

    assert answer.json()["accepted"] == 1
    assert found[("mailflow_ingest_records_total", (("result", "accepted"),))] == 1
    assert found[("mailflow_ingest_records_total", (("result", "duplicate"),))] == 1
    assert found[("mailflow_ingest_records_total", (("result", "rejected"),))] == 1
    assert 3600 <= found[("mailflow_rollup_lag_seconds", ())] < 3660
    committed = found[("mailflow_rollup_last_commit_timestamp_seconds", ())]
    assert abs(committed - datetime.now(UTC).timestamp()) < 60


async def test_metrics_ask_for_the_metrics_token_when_one_is_set(
    service_pool: asyncpg.Pool,
) -> None:
    settings = Settings(rate_limit="off", metrics_token="s3cret-scrape")
    async with await client_of(service_pool, settings) as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})

    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert right.status_code == 200
    assert "mailflow_db_pool_size" in right.text


async def test_metrics_switched_off_are_not_served(service_pool: asyncpg.Pool) -> None:
    async with await client_of(service_pool, Settings(rate_limit="off", metrics=False)) as client:
        assert (await client.get("/metrics")).status_code == 404
