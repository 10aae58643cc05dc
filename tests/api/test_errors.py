from __future__ import annotations

import logging
from datetime import date

import httpx
import pytest

from mailflow.domain import TlsVersion
from mailflow.store.tokens import TokenRole

from .conftest import Api, Seed


async def test_a_database_failure_is_an_internal_error_that_reveals_nothing(
    api: Api, seed: Seed, organization_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    await seed.rollup(organization_id, date(2025, 1, 1), TlsVersion.NONE, 1)
    await seed.pool.execute("DROP TABLE daily_organization_rollups")  # what mailFlow reads

    with caplog.at_level(logging.ERROR, logger="mailflow.api"):
        response = await api.post('{ mailFlow(start: "2025-01-01", end: "2025-01-01") { date } }')

    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    body = response.json()
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
    text = response.text.lower()
    for leak in ("daily_rollups", "select", "traceback", "asyncpg", ".py", "relation", "org-a"):
        assert leak not in text

    (record,) = [r for r in caplog.records if r.name == "mailflow.api"]
    assert request_id in record.getMessage()
    assert record.exc_info is not None
    assert "daily_organization_rollups" in str(record.exc_info[1])


async def test_a_failure_before_the_query_runs_is_an_internal_error_with_status_500(
    api: Api, seed: Seed, caplog: pytest.LogCaptureFixture
) -> None:
    await seed.pool.execute("DROP TABLE api_tokens")

    with caplog.at_level(logging.ERROR, logger="mailflow.api"):
        response = await api.post("{ connectors { name } }")

    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert response.json() == {
        "errors": [{
            "message": "Internal server error",
            "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        }]
    }
    assert any(request_id in record.getMessage() for record in caplog.records)


async def test_a_query_that_does_not_fit_the_schema_fails_validation(api: Api) -> None:
    error = await api.error("{ connectors { colour } }")

    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert error["message"] == "Cannot query field 'colour' on type 'Connector'."


async def test_a_bad_literal_argument_fails_validation(api: Api) -> None:
    error = await api.error('{ mailFlow(start: "yesterday") { date } }')

    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "yesterday" in error["message"]


async def test_a_date_that_is_no_calendar_day_names_the_value_and_the_accepted_form(
    api: Api,
) -> None:
    literal = await api.error('{ mailFlow(start: "2021-13-45") { date } }')
    variable = await api.error(
        "query($start: Date) { mailFlow(start: $start) { date } }", {"start": "2021-02-30"}
    )

    assert literal["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert literal["message"] == (
        'Date cannot represent "2021-13-45": month must be in 1..12; write a day as '
        'YYYY-MM-DD, such as "2025-01-31"'
    )
    assert variable["extensions"] == {"code": "BAD_USER_INPUT"}
    assert variable["message"] == (
        "Variable '$start' has invalid value: Date cannot represent \"2021-02-30\": day is "
        'out of range for month; write a day as YYYY-MM-DD, such as "2025-01-31"'
    )


async def test_a_query_that_does_not_parse_fails_parsing(api: Api) -> None:
    error = await api.error("{ connectors { name }")

    assert error["extensions"] == {"code": "GRAPHQL_PARSE_FAILED"}
    assert error["message"].startswith("Syntax Error")


async def test_a_variable_of_the_wrong_type_is_bad_user_input(api: Api) -> None:
    error = await api.error(
        "query($start: Date) { mailFlow(start: $start) { date } }", {"start": "2025-13-01"}
    )

    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert "$start" in error["message"]


async def test_every_response_carries_a_request_id(api: Api, client: httpx.AsyncClient) -> None:
    ok = await api.post("{ connectors { name } }")
    unauthenticated = await client.post("/graphql", json={"query": "{ connectors { name } }"})

    assert len(ok.headers["x-request-id"]) == 32
    assert unauthenticated.headers["x-request-id"] != ok.headers["x-request-id"]


async def test_a_plain_request_id_from_a_load_balancer_is_kept(client: httpx.AsyncClient) -> None:
    kept = await client.get("/graphql", headers={"X-Request-ID": "lb-1234-abcd"})
    replaced = await client.get("/graphql", headers={"X-Request-ID": "<script>"})

    assert kept.headers["x-request-id"] == "lb-1234-abcd"
    assert replaced.headers["x-request-id"] != "<script>"


async def test_a_body_that_is_no_graphql_request_is_a_bad_request(api: Api) -> None:
    not_json = await api.client.post(
        "/graphql", content=b"{not json", headers={
            "Authorization": f"Bearer {api.token}", "Content-Type": "application/json",
        },
    )
    no_query = await api.client.post(
        "/graphql", json={"variables": {}}, headers={"Authorization": f"Bearer {api.token}"}
    )

    assert not_json.status_code == 400
    (error,) = not_json.json()["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert error["message"].startswith("the request body is not valid JSON (Expecting ")
    assert 'must be a JSON object with a "query" string' in error["message"]
    assert no_query.status_code == 400
    assert no_query.json()["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}


async def test_a_null_variable_for_an_argument_that_cannot_be_null_is_bad_user_input(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    query = "query ($t: Float) { insights(noTlsThreshold: $t) { kind } }"

    with caplog.at_level(logging.ERROR, logger="mailflow.api"):
        error = await api.error(query, {"t": None})

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "noTlsThreshold" in error["message"]
    assert "null" in error["message"] or "None" in error["message"]
    assert not [record for record in caplog.records if record.name == "mailflow.api"]


async def test_a_document_too_repetitive_to_validate_says_so(api: Api) -> None:
    error = await api.error("{ " + " ".join(["__typename"] * 710) + " }")

    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "ask for each field once" in error["message"]


async def test_a_total_too_large_to_send_is_an_internal_error_not_the_clients(
    api: Api, seed: Seed, organization_id: int
) -> None:
    for version in (TlsVersion.NONE, TlsVersion.TLS1_2):
        await seed.pool.execute(
            "INSERT INTO daily_rollups VALUES ($1, '2025-01-01', 'INBOUND', NULL, $2, $3, 0, 0)",
            organization_id, version.value, 2**62,
        )

    response = await api.post('{ mailFlow(start: "2025-01-01", end: "2025-01-01") { messages } }')

    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


async def test_a_failed_push_is_an_internal_error_with_the_request_id_and_no_internals(
    api: Api, seed: Seed, organization_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    token = await seed.token(organization_id, TokenRole.INGEST)
    await seed.pool.execute("DROP TABLE connectors CASCADE")
    record = (b'{"source_key": "k", "occurred_at": "2025-01-01T00:00:00Z", '
              b'"direction": "INBOUND", "tls_version": "NONE"}\n')

    with caplog.at_level(logging.ERROR, logger="mailflow.api"):
        response = await api.client.post("/ingest", content=record, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson",
            "X-Request-ID": "lb-push-0001",
        })

    assert response.status_code == 500
    assert response.headers["x-request-id"] == "lb-push-0001"
    assert response.json() == {
        "errors": [{
            "message": "Internal server error",
            "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": "lb-push-0001"},
        }],
        "accepted": 0, "duplicates": 0, "rejected": 0,
    }
    (logged,) = [r for r in caplog.records if r.name == "mailflow.api"]
    assert "lb-push-0001" in logged.getMessage()
    assert logged.exc_info is not None
    assert "connectors" in str(logged.exc_info[1])


async def test_a_request_id_from_a_load_balancer_is_the_one_an_internal_error_names(
    api: Api, seed: Seed, caplog: pytest.LogCaptureFixture
) -> None:
    await seed.pool.execute("DROP TABLE api_tokens")

    with caplog.at_level(logging.ERROR, logger="mailflow.api"):
        response = await api.client.post(
            "/graphql", json={"query": "{ connectors { name } }"},
            headers={"Authorization": f"Bearer {api.token}", "X-Request-ID": "lb-1234-abcd"},
        )

    assert response.json()["errors"][0]["extensions"]["requestId"] == "lb-1234-abcd"
    (logged,) = [r for r in caplog.records if r.name == "mailflow.api"]
    assert "lb-1234-abcd" in logged.getMessage()
    assert getattr(logged, "request_id", None) == "lb-1234-abcd"


async def test_a_token_naming_another_organization_is_refused_without_naming_it(
    api: Api, seed: Seed
) -> None:
    other = await seed.organization("org-b-secret-name")
    real = await seed.token(other)
    forged = real[: -4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")

    forged_answer = await api.post("{ connectors { name } }", token=forged)
    made_up = await api.post("{ connectors { name } }", token="mf_999999_" + "x" * 43)

    assert forged_answer.status_code == made_up.status_code == 401
    assert forged_answer.json() == made_up.json()
    assert "org-b" not in forged_answer.text
