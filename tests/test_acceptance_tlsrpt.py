"""Real SMTP TLS reports in through the command, GraphQL figures out.

The two reports (parsedmarc's samples) were read by hand and with grep:

    grep -h -o '"[a-z-]*-count": *[0-9]*\\|"start-datetime": *"[^"]*"\\|"result-type": *"[^"]*"' \\
        smtp_tls.json mail.ru.json

smtp_tls.json starts 2024-01-09T00:00:00Z, policy domain example.com (sts): summary 0
successful and 3 failed sessions; failure details validation-failure 2 (sending MTA
209.85.222.201) and validation-failure 1 (209.85.208.176), both to receiving IP
173.212.201.41, MX example.com. mail.ru.json runs from 2024-02-22T00:00:00Z to
2024-02-23T00:00:00Z (so it counts on 22 February only), example.com (sts): summary 0
successful and 1 failed session, while its two sts-policy-fetch-error details count 1
each (reason codes "bad https response code: 404" and "... 500"): the details add up to 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from mailflow.api.app import create_app
from mailflow.settings import Settings
from mailflow.store.organizations import find_organization
from mailflow.store.tokens import create_token
from tests.conftest import realdata

MAILFLOW = str(Path(sys.executable).parent / "mailflow")

QUERY = """{
  tlsSessions(start: "2024-01-09", end: "2024-02-23") {
    policyDomain successfulSessions failedSessions
    days { date reports successfulSessions failedSessions
           failedSessionsByResultType { resultType failedSessions } }
  }
  tlsFailures(start: "2024-01-09", end: "2024-02-23") {
    date reportingOrganization resultType failedSessions sendingMtaIp receivingIp
    receivingMxHostname failureReasonCode
  }
}"""


def ingest(database_url: str, *files: str) -> str:
    result = subprocess.run(
        [MAILFLOW, "ingest", "tlsrpt", "--org", "acme", *files],
        env={**os.environ, "DATABASE_URL": database_url}, capture_output=True, text=True,
        check=False, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.fixture
async def client(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(pool, Settings(max_range_days=90)))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_the_real_reports_answer_with_the_figures_read_from_the_files(
    database_url: str, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    files = [str(realdata("tlsrpt", "smtp_tls.json")), str(realdata("tlsrpt", "mail.ru.json"))]
    assert "found 2 TLS reports: 2 new, 0 already loaded" in ingest(database_url, *files)
    assert "found 2 TLS reports: 0 new, 2 already loaded" in ingest(database_url, *files)
    async with pool.acquire() as connection:
        organization_id = await find_organization(connection, "acme")
        assert organization_id is not None
        token = await create_token(connection, organization_id, description="acceptance")

    response = await client.post("/graphql", json={"query": QUERY},
                                 headers={"Authorization": f"Bearer {token}"})

    body = response.json()
    assert "errors" not in body, body
    [domain] = body["data"]["tlsSessions"]
    assert (domain["policyDomain"], domain["successfulSessions"], domain["failedSessions"]) == (
        "example.com", 0, 4)
    days = {day["date"]: day for day in domain["days"] if day["reports"]}
    assert len(domain["days"]) == 46  # 9 January to 23 February, zeros included
    assert days == {
        "2024-01-09": {
            "date": "2024-01-09", "reports": 1, "successfulSessions": 0, "failedSessions": 3,
            "failedSessionsByResultType": [
                {"resultType": "validation-failure", "failedSessions": 3}],
        },
        "2024-02-22": {
            "date": "2024-02-22", "reports": 1, "successfulSessions": 0, "failedSessions": 1,
            "failedSessionsByResultType": [
                {"resultType": "sts-policy-fetch-error", "failedSessions": 2}],
        },
    }
    assert [
        (f["date"], f["resultType"], f["failedSessions"], f["sendingMtaIp"], f["receivingIp"],
         f["receivingMxHostname"], f["failureReasonCode"])
        for f in body["data"]["tlsFailures"]
    ] == [
        ("2024-01-09", "validation-failure", 2, "209.85.222.201", "173.212.201.41",
         "example.com", None),
        ("2024-01-09", "validation-failure", 1, "209.85.208.176", "173.212.201.41",
         "example.com", None),
        ("2024-02-22", "sts-policy-fetch-error", 1, None, None, None,
         "bad https response code: 404"),
        ("2024-02-22", "sts-policy-fetch-error", 1, None, None, None,
         "bad https response code: 500"),
    ]
