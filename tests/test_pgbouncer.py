"""mailflow behind PgBouncer in transaction pooling mode: commands, POST /ingest and reports.

PgBouncer gives each transaction whichever server session is free, so nothing may outlive
a transaction: no prepared statement by name (asyncpg's statement cache is switched off by
MAILFLOW_DATABASE_STATEMENT_CACHE=false), no session lock, setting or temporary table. Its
pool here holds two server sessions for the server's eight connections, so that concurrent
requests share them.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.sync.client import connect as connect_websocket
from websockets.typing import Subprotocol

from mailflow.settings import Settings
from mailflow.store.db import open_database
from mailflow.store.embedded import EmbeddedPostgres
from tests.api.test_limits import EVERY_REPORT
from tests.test_acceptance_postfix import mailflow, serving
from tests.test_readme import free_port

REPO = Path(__file__).resolve().parents[1]
SERVER_SESSIONS = 2
START = datetime(2021, 1, 1, 8, tzinfo=UTC)  # within EVERY_REPORT's 90 days

ORGANIZATION = """\
organization: acme
accepted_domains: [acme.example]
connectors:
  - name: Fabrikam
    direction: inbound
    kind: partner
    sender_domains: [fabrikam.example]
  - name: Relay
    direction: outbound
    kind: on_premises
    recipient_domains: [relay.example]
"""


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/sbin")


@dataclass(frozen=True)
class PgBouncer:
    port: int

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def _as_postgres_when_root() -> dict[str, Any]:
    """PgBouncer refuses to run as root, as PostgreSQL does: run it as the postgres user."""
    if os.geteuid() != 0:
        return {}
    owner = pwd.getpwnam("postgres")
    return {"user": owner.pw_uid, "group": owner.pw_gid, "cwd": "/"}


@pytest.fixture(scope="session")
def pgbouncer(postgres: EmbeddedPostgres) -> Iterator[PgBouncer]:
    """PgBouncer in transaction pooling mode in front of the test server, any database."""
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip("the pgbouncer binary is absent (Debian: apt-get install pgbouncer)")
    directory = Path(tempfile.mkdtemp(prefix="mailflow-pgbouncer-"))
    port = free_port()
    (directory / "userlist.txt").write_text('"postgres" ""\n')
    (directory / "pgbouncer.ini").write_text(f"""\
[databases]
* = host={postgres.socket_dir}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/userlist.txt
pool_mode = transaction
default_pool_size = {SERVER_SESSIONS}
max_client_conn = 200
server_round_robin = 1
logfile = {directory}/pgbouncer.log
""")
    owner = _as_postgres_when_root()
    if owner:
        for path in [directory, *directory.iterdir()]:
            os.chown(path, owner["user"], owner["group"])
    process = subprocess.Popen([binary, str(directory / "pgbouncer.ini")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **owner)
    try:
        _wait_for_port(port, process, directory / "pgbouncer.log")
        yield PgBouncer(port)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"pgbouncer exited: {log.read_text() if log.exists() else ''}")
        try:
            httpx.get(f"http://127.0.0.1:{port}", timeout=1)
        except httpx.RemoteProtocolError:
            return  # something listens there, and it is not HTTP
        except httpx.TransportError:
            time.sleep(0.1)
        else:
            return
    raise AssertionError(f"pgbouncer did not listen on port {port} within 30 s")


def record(number: int) -> dict[str, Any]:
    """One of the pushed records: inbound from Fabrikam, outbound to the relay, or neither."""
    route = number % 3
    return {
        "source_key": f"pushed-{number}",
        "occurred_at": (START + timedelta(minutes=29 * number)).isoformat(),
        "direction": "OUTBOUND" if route == 1 else "INBOUND",
        "sender_domain": "fabrikam.example" if route == 0 else "acme.example",
        "recipient_domains": ["relay.example" if route == 1 else "acme.example"],
        "tls_version": ["TLS1_2", "NONE", "TLS1_3", "TLS1_0", "NONE"][number % 5],
        "recipients": 1 + number % 3,
        "size_bytes": 1000 + number,
    }


def push(url: str, token: str, numbers: range) -> dict[str, Any]:
    body = "".join(json.dumps(record(number)) + "\n" for number in numbers)
    response = httpx.post(url.removesuffix("/graphql") + "/ingest", content=body.encode(),
                          headers={"Authorization": f"Bearer {token}",
                                   "Content-Type": "application/x-ndjson"}, timeout=60)
    assert response.status_code == 200, response.text
    summary: dict[str, Any] = response.json()
    return summary


def ask(url: str, token: str, query: str) -> dict[str, Any]:
    response = httpx.post(url, json={"query": query},
                          headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body["errors"]
    return body


def export(url: str, token: str) -> str:
    """The connector report CSV of January 2021, read over several statements."""
    response = httpx.get(url.removesuffix("/graphql") + "/export/connector-report.csv",
                         params={"start": "2021-01-01", "end": "2021-01-31"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert response.status_code == 200, response.text
    return response.text


def test_the_server_behind_pgbouncer_ingests_and_answers_as_when_connected_directly(
    pgbouncer: PgBouncer, database_url: str, tmp_path: Path
) -> None:
    database = urlsplit(database_url).path.removeprefix("/")
    # Every query runs (no cached answers) and none waits for the rate limit: 30 at once.
    every_query = {"MAILFLOW_RESPONSE_CACHE": "false", "MAILFLOW_RATE_LIMIT": "off"}
    pooled = {**os.environ, "DATABASE_URL": pgbouncer.dsn(database), **every_query,
              "MAILFLOW_DATABASE_STATEMENT_CACHE": "false", "MAILFLOW_POOL_MAX_SIZE": "8"}
    direct = {**os.environ, "DATABASE_URL": database_url, **every_query}
    (tmp_path / "acme.yaml").write_text(ORGANIZATION)

    # Every command migrates first: twice through PgBouncer, then ingest and serve.
    mailflow(pooled, "org", "apply", str(tmp_path / "acme.yaml"))
    ingest_token = mailflow(pooled, "token", "create", "--org", "acme", "--role", "ingest").strip()
    viewer_token = mailflow(pooled, "token", "create", "--org", "acme").strip()
    with serving(pooled) as url, ThreadPoolExecutor(max_workers=12) as threads:
        pushes = list(threads.map(lambda part: push(url, ingest_token, range(part, 1200, 6)),
                                  range(6)))
        pushed_again = push(url, ingest_token, range(0, 1200, 5))
        answers = list(threads.map(lambda _: ask(url, viewer_token, EVERY_REPORT), range(24)))
        exports = list(threads.map(lambda _: export(url, viewer_token), range(6)))
    with serving(direct) as url:
        answer_direct = ask(url, viewer_token, EVERY_REPORT)
        export_direct = export(url, viewer_token)

    assert [summary["accepted"] for summary in pushes] == [200] * 6
    assert pushed_again == {"accepted": 0, "duplicates": 240, "rejected": 0, "rejections": []}
    assert all(answer == answer_direct for answer in answers)
    assert all(csv == export_direct for csv in exports)
    assert sum(int(line.rsplit(",", 1)[1]) for line in export_direct.splitlines()[1:]) == 1200
    data = answer_direct["data"]
    assert sum(point["messages"] for point in data["mailFlow"]) == 1200
    assert data["tlsBreakdown"]["total"] == 1200
    assert {connector["name"]: sum(day["messages"] for day in connector["volume"])
            for connector in data["connectors"]} == {"Fabrikam": 400, "Relay": 400}
    assert {(insight["kind"], insight["connector"]["name"]) for insight in data["insights"]} == {
        ("NO_TLS_OVER_THRESHOLD", "Fabrikam"), ("NO_TLS_OVER_THRESHOLD", "Relay")}


def test_behind_pgbouncer_a_subscription_hears_an_ingest_on_the_direct_listen_url(
    pgbouncer: PgBouncer, database_url: str, tmp_path: Path
) -> None:
    database = urlsplit(database_url).path.removeprefix("/")
    pooled = {**os.environ, "DATABASE_URL": pgbouncer.dsn(database),
              "MAILFLOW_DATABASE_STATEMENT_CACHE": "false", "MAILFLOW_LISTEN_URL": database_url}
    (tmp_path / "acme.yaml").write_text(ORGANIZATION)
    mailflow(pooled, "org", "apply", str(tmp_path / "acme.yaml"))
    ingest_token = mailflow(pooled, "token", "create", "--org", "acme", "--role", "ingest").strip()
    viewer_token = mailflow(pooled, "token", "create", "--org", "acme").strip()
    first, last = START.date(), START.date() + timedelta(days=1)
    subscription = (f'subscription {{ mailFlowUpdates(start: "{first}", end: "{last}") '
                    "{ points { date messages } } }")

    with serving(pooled) as url, connect_websocket(
            url.replace("http://", "ws://", 1), subprotocols=[Subprotocol("graphql-transport-ws")],
    ) as socket_:
        socket_.send(json.dumps({"type": "connection_init",
                                 "payload": {"Authorization": f"Bearer {viewer_token}"}}))
        assert json.loads(socket_.recv(timeout=10)) == {"type": "connection_ack"}
        socket_.send(json.dumps({"id": "1", "type": "subscribe",
                                 "payload": {"query": subscription}}))
        answer = json.loads(socket_.recv(timeout=10))
        push(url, ingest_token, range(40))
        pushed = json.loads(socket_.recv(timeout=10))

    def messages(message: dict[str, Any]) -> int:
        points = message["payload"]["data"]["mailFlowUpdates"]["points"]
        return sum(point["messages"] for point in points)

    assert (messages(answer), messages(pushed)) == (0, 40)


async def test_without_the_statement_cache_no_session_keeps_a_prepared_statement(
    database_url: str,
) -> None:
    cached, uncached = (Settings(database_url=database_url, database_statement_cache=cache)
                        for cache in (True, False))
    counts = []
    for settings in (cached, uncached):
        async with open_database(settings) as pool, pool.acquire() as connection:
            await connection.fetchval("SELECT count(*) FROM organizations WHERE id = $1", 1)
            counts.append(await connection.fetchval(
                "SELECT count(*) FROM pg_prepared_statements"))

    assert counts[0] > 0, "asyncpg keeps statements by name when its cache is on"
    assert counts[1] == 0


# What would outlive a transaction, in an SQL statement or in Python that sends one.
SESSION_STATE = {
    "a SET that outlives its transaction": re.compile(
        r"""\A\s*SET\s+(?!LOCAL\b)|(?:execute|fetch\w*)\(\s*f?["']+\s*SET\s+(?!LOCAL\b)""",
        re.IGNORECASE),
    "set_config for the session": re.compile(r"set_config\([^)]*,\s*false\s*\)", re.IGNORECASE),
    "a session advisory lock": re.compile(r"pg_(?:try_)?advisory_lock(?:_shared)?\s*\(", re.I),
    "a prepared statement by name": re.compile(r"^\s*PREPARE\s+\w+|\.prepare\(", re.I | re.M),
    "LISTEN": re.compile(r"^\s*LISTEN\s|add_listener\(", re.I | re.M),
    "a cursor held past its transaction": re.compile(r"\bWITH\s+HOLD\b", re.I),
    "a temporary table kept past its transaction": re.compile(
        r"CREATE\s+TEMP(?:ORARY)?\s+TABLE(?![^;]*ON\s+COMMIT\s+DROP)", re.I),
}


def statements(text: str) -> list[str]:
    """The statements of an SQL text, without comments."""
    text = re.sub(r"--[^\n]*", "", text)
    return [statement for statement in text.split(";") if statement.strip()]


# The one session that LISTENs for live updates is opened on its own, on MAILFLOW_LISTEN_URL
# (a direct connection), never taken from the pool.
OWN_SESSIONS = {("server/mailflow/rollups/changes.py", "LISTEN")}


def test_no_sql_of_mailflow_relies_on_session_state() -> None:
    found = []
    sources = [*sorted((REPO / "sql").rglob("*.sql")),
               *sorted((REPO / "server" / "mailflow").rglob("*.py"))]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for statement in statements(text) if path.suffix == ".sql" else [text]:
            found += [f"{path.relative_to(REPO)}: {what}"
                      for what, pattern in SESSION_STATE.items() if pattern.search(statement)
                      and (str(path.relative_to(REPO)), what) not in OWN_SESSIONS]

    assert found == []


@pytest.mark.parametrize(("text", "kind"), [
    ("SET search_path TO elsewhere", "a SET that outlives its transaction"),
    ('await connection.execute("SET statement_timeout = 0")',
     "a SET that outlives its transaction"),
    ("SELECT set_config('mailflow.organization_id', $1, false)", "set_config for the session"),
    ("SELECT pg_advisory_lock($1)", "a session advisory lock"),
    ("PREPARE totals AS SELECT 1", "a prepared statement by name"),
    ("statement = await connection.prepare(text)", "a prepared statement by name"),
    ("LISTEN facts", "LISTEN"),
    ("DECLARE facts CURSOR WITH HOLD FOR SELECT 1", "a cursor held past its transaction"),
    ("CREATE TEMPORARY TABLE batch (id bigint)", "a temporary table kept past its transaction"),
    ("SET LOCAL statement_timeout = 0", None),
    ("UPDATE api_tokens\nSET revoked_at = now()", None),
    ("SELECT set_config('mailflow.organization_id', $1, true)", None),
    ("SELECT pg_advisory_xact_lock($1)", None),
    ("CREATE TEMPORARY TABLE batch (id bigint)\nON COMMIT DROP", None),
])
def test_the_session_state_check_tells_each_kind_from_its_transaction_scoped_form(
    text: str, kind: str | None
) -> None:
    found = [what for what, pattern in SESSION_STATE.items() if pattern.search(text)]

    assert found == ([kind] if kind else [])
