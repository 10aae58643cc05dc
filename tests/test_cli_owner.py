"""An operator's database: owned by a role that is no superuser, served by a login that holds
only the service role. Forced row security binds the owner too, and every command works."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from mailflow.api.app import create_app
from mailflow.ingest.follow import follow_postfix_file
from mailflow.settings import Settings
from mailflow.store.db import DatabaseUnavailableError, open_database
from mailflow.store.embedded import EmbeddedPostgres
from mailflow.store.isolation import SERVICE_ROLE
from tests.conftest import SERVICE_LOGIN, as_user
from tests.ingest.follow_helpers import eventually, tls_messages

MAILFLOW = str(Path(sys.executable).parent / "mailflow")
TLS_REPORT = Path(__file__).parent / "ingest" / "fixtures" / "tlsrpt" / "rfc_spelling.json"
OWNER = "mailflow_test_owner"
_numbers = itertools.count()

ORGANIZATION_FILE = """\
organization: acme
accepted_domains: [acme.example]
connectors:
  - name: Partner
    direction: inbound
    kind: partner
    sender_domains: [partner.example]
"""
RECORDS = [
    {"source_key": f"mx1/{number}", "occurred_at": f"2025-03-0{1 + number % 3}T10:00:00Z",
     "direction": "INBOUND", "tls_version": "TLS1_2",
     "sender_domain": "partner.example" if number % 2 else "other.example"}
    for number in range(6)
]
REPORT_QUERY = """{
    connectors { name volume(start: "2025-03-01", end: "2025-03-03") { messages } }
    tlsBreakdown(start: "2025-03-01", end: "2025-03-03") { total }
    tlsSessions(start: "2025-03-01", end: "2025-03-01") { policyDomain }
}"""


@pytest.fixture
async def owner_database(
    postgres: EmbeddedPostgres, template_database: str
) -> AsyncIterator[str]:
    """An empty database owned by a plain role, which a superuser let switch to the service
    role (the role itself exists: the template's migration made it, as a first one would)."""
    name = f"mailflow_owned_{os.getpid()}_{next(_numbers)}"
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    try:
        await admin.execute(f"CREATE ROLE {OWNER} LOGIN")
        await admin.execute(f"GRANT {SERVICE_ROLE} TO {OWNER}")
        await admin.execute(f"CREATE DATABASE {name} OWNER {OWNER}")
        yield as_user(postgres.dsn(name), OWNER)
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {OWNER}")
        await admin.close()


def mailflow(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAILFLOW, *args], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "DATABASE_URL": database_url,
                                            "MAILFLOW_LOG_LEVEL": "warning"})


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_every_command_works_for_an_owner_held_to_row_security(
    owner_database: str, tmp_path: Path
) -> None:
    organization_file = tmp_path / "acme.yaml"
    organization_file.write_text(ORGANIZATION_FILE)
    records = tmp_path / "records.ndjson"
    records.write_text("".join(json.dumps(record) + "\n" for record in RECORDS))

    succeeded(mailflow(owner_database, "migrate"))
    succeeded(mailflow(owner_database, "org", "apply", str(organization_file)))
    succeeded(mailflow(owner_database, "ingest", "ndjson", "--org", "acme", "--workers", "2",
                       str(records)))
    succeeded(mailflow(owner_database, "ingest", "tlsrpt", "--org", "acme", str(TLS_REPORT)))
    token = succeeded(mailflow(owner_database, "token", "create", "--org", "acme")).strip()
    spare = succeeded(mailflow(owner_database, "token", "create", "--org", "acme")).strip()
    listed = succeeded(mailflow(owner_database, "token", "list", "--org", "acme"))
    succeeded(mailflow(owner_database, "token", "revoke", "2", "--org", "acme"))
    applied_again = mailflow(owner_database, "org", "apply", str(organization_file))
    reclassified = mailflow(owner_database, "reclassify", "--org", "acme",
                            "--from", "2025-03-01", "--to", "2025-03-03")

    assert len(listed.splitlines()) == 3  # a header and two tokens
    assert "updated 0, unchanged 1, removed 0" in succeeded(applied_again) + applied_again.stderr
    succeeded(reclassified)
    assert "6 message facts classified again, 0 given another connector" in reclassified.stderr
    connection = await asyncpg.connect(owner_database)
    try:
        # Without an organization named, the owner sees nothing of it: the tables are forced.
        assert await connection.fetchval("SELECT count(*) FROM message_facts") == 0
        assert await connection.fetchval("SELECT count(*) FROM organizations") == 1
        async with connection.transaction():
            await connection.execute("SELECT set_config('mailflow.organization_id', "
                                     "id::text, true) FROM organizations")
            assert await connection.fetchval("SELECT count(*) FROM message_facts") == 6
            assert await connection.fetchval(
                "SELECT count(*) FROM message_facts WHERE connector_id IS NOT NULL") == 3
    finally:
        await connection.close()

    async with open_database(Settings(database_url=owner_database), server=True) as pool:
        app = create_app(pool, Settings())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://testserver") as client:
            answer = await client.post("/graphql", json={"query": REPORT_QUERY},
                                       headers={"Authorization": f"Bearer {token}"})
            revoked = await client.post("/graphql", json={"query": REPORT_QUERY},
                                        headers={"Authorization": f"Bearer {spare}"})
    assert answer.json() == {"data": {
        "connectors": [{"name": "Partner", "volume": [{"messages": 1}] * 3}],
        "tlsBreakdown": {"total": 6},
        "tlsSessions": [{"policyDomain": "example.com"}, {"policyDomain": "example.org"}],
    }}
    assert revoked.status_code == 401


async def test_following_a_log_works_for_an_owner_held_to_row_security(
    owner_database: str, tmp_path: Path
) -> None:
    succeeded(mailflow(owner_database, "migrate"))
    log = tmp_path / "mail.log"
    log.write_text(tls_messages(0, 3))

    async def stored() -> int:
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT set_config('mailflow.organization_id', "
                                     "id::text, true) FROM organizations")
            count: int = await connection.fetchval("SELECT count(*) FROM message_facts")
            return count

    async def follow_until(count: int) -> int:
        stop = asyncio.Event()
        follower = asyncio.create_task(
            follow_postfix_file(pool, "acme", str(log), year=2021, stop=stop))
        await eventually(stored, lambda stored_count: stored_count == count)
        stop.set()
        report, _ = await asyncio.wait_for(follower, 10)
        return report.lines

    async with open_database(Settings(database_url=owner_database)) as pool:
        assert await follow_until(3) == 15
        # The owner sees the saved position only with acme named.
        assert await pool.fetchval("SELECT count(*) FROM follow_positions") == 0
        with log.open("a") as file:
            file.write(tls_messages(3, 2))
        assert await follow_until(5) == 10  # resumed at the saved position


async def test_a_server_whose_login_holds_only_the_service_role_serves_a_current_database(
    database_url: str, pool: asyncpg.Pool,
) -> None:
    service_url = as_user(database_url, SERVICE_LOGIN)
    organization_id = await pool.fetchval("INSERT INTO organizations (name) VALUES ('acme') "
                                          "RETURNING id")

    async with open_database(Settings(database_url=service_url), server=True) as service:
        app = create_app(service, Settings())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://testserver") as client:
            answer = await client.post("/graphql", json={"query": REPORT_QUERY})
    assert answer.status_code == 401
    assert organization_id is not None

    await pool.execute("DELETE FROM schema_migrations WHERE version = 9")
    with pytest.raises(DatabaseUnavailableError, match="may not create mailflow's tables"):
        async with open_database(Settings(database_url=service_url), server=True):
            pass


async def test_an_owner_that_may_not_switch_to_the_service_role_is_told_what_to_grant(
    owner_database: str, postgres: EmbeddedPostgres,
) -> None:
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    try:
        await admin.execute(f"REVOKE {SERVICE_ROLE} FROM {OWNER}")
    finally:
        await admin.close()

    result = mailflow(owner_database, "migrate")

    assert result.returncode == 2
    assert f"GRANT {SERVICE_ROLE} TO {OWNER}" in result.stderr
    assert "Traceback" not in result.stderr
