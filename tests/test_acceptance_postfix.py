"""Real Postfix logs in, GraphQL reports out: the commands a mail team runs, end to end.

The figures were verified by reading the two log files (27-28 January 2021, one
Postfix + amavis relay): an inbound message is one queued from an external,
unauthenticated client, with the TLS version of that client's session; an
outbound fact is one message delivered to one external relay, with the TLS
version of that smtp session. amavis re-injection over 127.0.0.1 is not counted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import realdata
from tests.test_readme import free_port, wait_for_http

BIN = Path(sys.executable).parent

# (day, direction) -> {TLS version: messages}, from reading the log.
EXPECTED = {
    ("2021-01-27", "INBOUND"): {"TLS1_2": 34, "TLS1_3": 26},
    ("2021-01-27", "OUTBOUND"): {"NONE": 3, "TLS1_2": 19, "TLS1_3": 2},
    ("2021-01-28", "INBOUND"): {"TLS1_2": 10, "TLS1_3": 36},
    ("2021-01-28", "OUTBOUND"): {"TLS1_2": 19},
}

MAIL_FLOW = """
query Flow($direction: Direction) {
  mailFlow(start: "2021-01-27", end: "2021-01-28", direction: $direction) {
    date messages byTls { version messages }
  }
}
"""

BREAKDOWN = """
{ tlsBreakdown(start: "2021-01-27", end: "2021-01-28") {
    total versions { version messages percent } } }
"""


def mailflow(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([str(BIN / "mailflow"), *args], env=env, capture_output=True,
                            text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


@contextlib.contextmanager
def serving(env: dict[str, str]) -> Iterator[str]:
    """``mailflow serve`` on a free port until the block ends; the URL of its /graphql."""
    port = free_port()
    # The log goes to a file: a pipe nobody reads would stop the server once it is full.
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen([str(BIN / "mailflow"), "serve", "--port", str(port)],
                                  env=env, text=True, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}/graphql"
        try:
            wait_for_http(url, server, log=log)
            yield url
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)


@pytest.fixture
def relay_logs() -> list[str]:
    return [str(realdata("postfix", "relay-2021-mail.log.1")),
            str(realdata("postfix", "relay-2021-mail.log"))]


@pytest.fixture
def served(database_url: str, relay_logs: list[str]) -> Iterator[tuple[str, str]]:
    """migrate, ingest (twice), token create, serve: the README's commands on DATABASE_URL."""
    env = {**os.environ, "DATABASE_URL": database_url}
    mailflow(env, "migrate")
    for _ in range(2):
        mailflow(env, "ingest", "postfix", "--org", "acme", "--year", "2021", *relay_logs)
    output = mailflow(env, "token", "create", "--org", "acme")
    assert output.count("\n") == 1, "the token is printed alone on stdout"
    token = output.strip()

    with serving(env) as url:
        yield url, token


def ask(url: str, token: str, query: str, **variables: object) -> dict[str, object]:
    response = httpx.post(url, json={"query": query, "variables": variables},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    data: dict[str, object] = body["data"]
    return data


def test_daily_messages_by_tls_version_match_the_log(served: tuple[str, str]) -> None:
    url, token = served
    for direction in ("INBOUND", "OUTBOUND"):
        points = ask(url, token, MAIL_FLOW, direction=direction)["mailFlow"]
        assert isinstance(points, list)
        assert [point["date"] for point in points] == ["2021-01-27", "2021-01-28"]
        for point in points:
            expected = EXPECTED[(point["date"], direction)]
            by_tls = {row["version"]: row["messages"] for row in point["byTls"] if row["messages"]}
            assert by_tls == expected, (point["date"], direction)
            assert point["messages"] == sum(expected.values())


def test_the_tls_breakdown_of_both_days_adds_up_to_one_hundred(served: tuple[str, str]) -> None:
    url, token = served
    breakdown = ask(url, token, BREAKDOWN)["tlsBreakdown"]
    assert isinstance(breakdown, dict)
    assert breakdown["total"] == 149
    shares = {row["version"]: (row["messages"], row["percent"]) for row in breakdown["versions"]}
    # 3, 82 and 64 of 149: tenths 20.1, 550.3 and 429.5 round to 2.0, 55.0 and 43.0.
    assert shares == {"NONE": (3, 2.0), "TLS1_0": (0, 0.0), "TLS1_1": (0, 0.0),
                      "TLS1_2": (82, 55.0), "TLS1_3": (64, 43.0), "UNKNOWN": (0, 0.0)}


def test_a_request_without_a_token_is_refused(served: tuple[str, str]) -> None:
    url, _ = served
    response = httpx.post(url, json={"query": BREAKDOWN})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
