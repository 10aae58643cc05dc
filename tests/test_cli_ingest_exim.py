"""`mailflow ingest exim`: gzip and stdin in, facts stored once, connectors chosen by route."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

MAILFLOW = str(Path(sys.executable).parent / "mailflow")
FIXTURES = Path(__file__).parent / "ingest" / "fixtures" / "exim"

ORGANIZATION = """\
organization: acme
accepted_domains: [example.com]
connectors:
  - name: Internet
    direction: outbound
    kind: partner
    routes: [remote_smtp]
  - name: VPN
    direction: outbound
    kind: on_premises
    routes: [dnslookup_vpn]
"""


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "MAILFLOW_LOG_LEVEL": "warning"}


def mailflow(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAILFLOW, *args], env=env, input=stdin, capture_output=True,
                          text=True, check=False, timeout=300)


async def facts_by_connector(database_url: str) -> dict[tuple[str, str | None], int]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            """
            SELECT facts.direction, connectors.name, count(*) AS messages
            FROM message_facts AS facts
            LEFT JOIN connectors
                ON connectors.organization_id = facts.organization_id
                AND connectors.id = facts.connector_id
            GROUP BY 1, 2
            """
        )
        return {(row["direction"], row["name"]): row["messages"] for row in rows}
    finally:
        await connection.close()


async def test_exim_logs_from_gzip_and_stdin_load_once_with_connectors_chosen_by_route(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    organization = tmp_path / "acme.yaml"
    organization.write_text(ORGANIZATION)
    compressed = tmp_path / "mainlog.1.gz"
    compressed.write_bytes(gzip.compress((FIXTURES / "outbound.log").read_bytes()))
    assert mailflow(env, "org", "apply", str(organization)).returncode == 0

    first = mailflow(env, "ingest", "exim", "--org", "acme", str(compressed))
    second = mailflow(env, "ingest", "exim", "--org", "acme", "-",
                      stdin=(FIXTURES / "outbound.log").read_text())
    inbound = mailflow(env, "ingest", "exim", "--org", "acme", str(FIXTURES / "inbound.log"))

    assert first.returncode == 0, first.stderr
    assert "acme: read 17 lines, found 5 message facts on 2021-03-01 (UTC): 5 new" in (
        first.stderr)
    assert second.returncode == 0, second.stderr
    assert "5 already loaded" in second.stderr
    assert inbound.returncode == 0, inbound.stderr
    # The VPN relay is internal (192.168.120.5), outbound only because a connector lists
    # its route; the others are external relays whose transport the Internet connector lists.
    assert await facts_by_connector(database_url) == {
        ("OUTBOUND", "Internet"): 4, ("OUTBOUND", "VPN"): 1, ("INBOUND", None): 4,
    }


def test_a_postfix_log_given_to_ingest_exim_is_named_with_its_command_and_exits_1(
    env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "mail.log"
    log.write_text("Mar  1 10:00:00 mx1 postfix/smtpd[200]: connect from x[192.0.2.1]\n")

    result = mailflow(env, "ingest", "exim", "--org", "acme", str(log))

    assert result.returncode == 1, result.stderr
    assert "exim line without time stamp: 1" in result.stderr
    assert (f"warning: no Exim log lines found in {log}: it looks like a Postfix log: "
            "load it with `mailflow ingest postfix`") in result.stderr


def test_a_file_of_no_known_format_is_named_in_a_warning_and_exits_1(
    env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "notes.txt"
    log.write_text("shopping list\n")

    result = mailflow(env, "ingest", "exim", "--org", "acme", str(log))

    assert result.returncode == 1, result.stderr
    assert f"warning: no Exim log lines found in {log}: is this an Exim log?" in result.stderr


def test_bad_values_of_an_exim_log_are_summarised_as_stored_or_skipped_and_exit_0(
    env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "mainlog"
    log.write_text(
        "2021-03-01 10:00:00 1lGqaA-0001aB-Cd <= a@example.net H=mx.example.net "
        "[999.19.109.247] P=esmtp S=100\n"
        "2021-03-01 10:00:01 1lGqbB-0001aB-Cd <= b@example.net H=mx.example.net "
        "[203.0.113.5] P=esmtp S=-5\n"
        "9999-12-31 23:59:59 -0100 1lGqcC-0001aB-Cd <= c@example.net H=mx.example.net "
        "[203.0.113.5] P=esmtp S=100\n"
    )

    result = mailflow(env, "ingest", "exim", "--org", "acme", str(log))

    assert result.returncode == 0, result.stderr
    assert ("3 lines, 1 message fact, skipped lines: exim line whose H= address is not an "
            "IP address: 1, timestamp out of range: 1; values stored as 0: "
            "size out of range: 1") in result.stderr
