"""`mailflow ingest exchange`, end to end: files, gzip and stdin in, facts by connector stored."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

MAILFLOW = str(Path(sys.executable).parent / "mailflow")
FIXTURE = Path(__file__).parent / "ingest" / "fixtures" / "exchange_tracking.log"

# Connectors named as the log's connector-id, or listing it in routes. By recipient domain
# the partner's message (to example.net and example.org) would go to "Other partner".
ORGANIZATION = """\
organization: acme
accepted_domains: [example.com]
connectors:
  - name: Outbound to partner
    direction: outbound
    kind: partner
    recipient_domains: [partner.example]
  - name: Other partner
    direction: outbound
    kind: partner
    recipient_domains: [example.org]
  - name: Internet mail
    direction: inbound
    kind: partner
    routes: ['EX1\\Default EX1']
"""


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "MAILFLOW_LOG_LEVEL": "warning"}


def mailflow(env: dict[str, str], *args: str, stdin: bytes | None = None
             ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([MAILFLOW, *args], env=env, input=stdin, capture_output=True,
                            check=False, timeout=300)
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(), result.stderr.decode())


async def facts_by_connector(database_url: str) -> list[tuple[str, str | None, int]]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT f.direction, c.name, f.recipients FROM message_facts AS f"
            " LEFT JOIN connectors AS c"
            " ON c.organization_id = f.organization_id AND c.id = f.connector_id"
            " ORDER BY f.occurred_at")
        return [(row["direction"], row["name"], row["recipients"]) for row in rows]
    finally:
        await connection.close()


async def test_the_connector_named_as_the_connector_id_is_selected(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    declaration = tmp_path / "acme.yaml"
    declaration.write_text(ORGANIZATION)
    assert mailflow(env, "org", "apply", str(declaration)).returncode == 0

    result = mailflow(env, "ingest", "exchange", "--org", "acme", str(FIXTURE))

    assert result.returncode == 0, result.stderr
    assert "read 14 lines, found 4 message facts on 2026-03-02 (UTC): 4 new" in result.stderr
    assert await facts_by_connector(database_url) == [
        ("INBOUND", "Internet mail", 2),  # its routes list EX1\Default EX1
        ("INBOUND", "Internet mail", 1),
        ("OUTBOUND", "Outbound to partner", 2),  # named as the connector-id
        ("OUTBOUND", "Other partner", 1),  # no connector "Internet": by recipient domain
    ]


async def test_gzip_and_stdin_load_the_same_facts_once(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    packed = tmp_path / "MSGTRK2026030208-1.LOG.gz"
    packed.write_bytes(gzip.compress(FIXTURE.read_bytes()))

    first = mailflow(env, "ingest", "exchange", "--org", "acme", str(packed))
    again = mailflow(env, "ingest", "exchange", "--org", "acme", "-", stdin=FIXTURE.read_bytes())

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert "0 new, 4 already loaded" in again.stderr
    assert len(await facts_by_connector(database_url)) == 4


async def test_a_file_that_is_no_tracking_log_is_named_and_its_rows_counted(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    other = tmp_path / "mail.log"
    other.write_text("Jan 27 10:00:01 mx1 postfix/smtpd[206]: connect from x[203.0.113.5]\n")

    result = mailflow(env, "ingest", "exchange", "--org", "acme", str(other))

    assert result.returncode == 1, result.stderr
    assert "exchange row with the wrong number of fields: 1" in result.stderr
    assert (f"no Exchange message tracking log lines found in {other}: "
            "it looks like a Postfix log: load it with `mailflow ingest postfix`"
            ) in result.stderr
    assert await facts_by_connector(database_url) == []


async def test_a_recipient_count_that_is_no_number_is_summarised_only_where_it_is_stored(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "MSGTRK2026030208-1.LOG"
    log.write_text(
        "#Fields: date-time,client-ip,server-hostname,source,event-id,internal-message-id,"
        "message-id,recipient-address,recipient-count,total-bytes\n"
        "2026-03-02T08:00:00.000Z,203.0.113.25,EX1,SMTP,RECEIVE,1,<a@example.net>,"
        "ann@example.com,x,1000\n"
        "2026-03-02T08:00:01.000Z,203.0.113.25,EX1,SMTP,RECEIVE,2,<b@example.net>,,-3,1000\n"
    )

    result = mailflow(env, "ingest", "exchange", "--org", "acme", str(log))

    assert result.returncode == 0, result.stderr
    assert ("3 lines, 2 message facts, no lines skipped; "
            "values stored as 0: recipient count out of range: 1\n") in result.stderr
    assert await facts_by_connector(database_url) == [("INBOUND", None, 1), ("INBOUND", None, 0)]
