"""A real Exchange message tracking log in, GraphQL reports out: the commands, end to end.

The six rows of the sample (no #Fields header: the default Exchange 2013+ column order,
which all six rows fill with their 30 values) were read by hand, and the event ids checked
with ``grep -o ',SMTP,[A-Z]*,\\|,STOREDRIVER,[A-Z]*,'`` and the proxied clients with
``grep -o 'ProxiedClientIPAddress=[^;]*'``:

1. HAREDIRECTFAIL (2024-01-25): no hop, no fact.
2. and 3. RECEIVE over SMTP (2024-01-25), directionality Incoming, but from 10.11.12.14,
   the server's own front end, proxying clients 10.11.12.13 and 10.11.12.15: all RFC 1918,
   internal, so not inbound.
4. SEND (2024-01-07) on the Intra-Organization SMTP Send Connector to 192.168.0.2: an
   internal hop, not outbound.
5. SENDEXTERNAL (2025-01-14) to 175.16.199.1, outside the internal networks: one outbound
   message. It names TLS authentication levels (DomainValidation), never a TLS version
   (``grep -ic 'tlsversion\\|tls='`` finds none), so its version is UNKNOWN.
6. NOTIFYMAPI from STOREDRIVER (2025-01-14): no hop, no fact.

So: no inbound mail at all, one outbound message on 2025-01-14 with TLS version UNKNOWN,
through the connector named as its connector-id.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import realdata
from tests.test_acceptance_postfix import ask, serving

BIN = Path(sys.executable).parent

FLOW = """
query Flow($start: Date!, $end: Date!, $direction: Direction) {
  mailFlow(start: $start, end: $end, direction: $direction) {
    date messages recipients byTls { version messages }
  }
}
"""

CONNECTORS = """
{ connectors { name volume(start: "2025-01-14", end: "2025-01-14") { messages } } }
"""


def mailflow(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([str(BIN / "mailflow"), *args], env=env, capture_output=True,
                            text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stderr


def connector_id_of_the_external_send(log: Path) -> str:
    """The connector-id (seventh column) of the sample's SENDEXTERNAL row, read at run time
    so that nothing of the real file is written into this repository."""
    with log.open(newline="") as rows:
        return next(row[6] for row in csv.reader(rows) if row[8] == "SENDEXTERNAL")


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """org apply, ingest (twice), token create, serve."""
    log = realdata("exchange", "messagetracking-sample.log")
    declaration = tmp_path / "acme.yaml"
    declaration.write_text(
        "organization: acme\n"
        "connectors:\n"
        f"  - name: '{connector_id_of_the_external_send(log).lower()}'\n"
        "    direction: outbound\n"
        "    kind: on_premises\n"
        "    recipient_domains: [partner.example]\n"
    )
    env = {**os.environ, "DATABASE_URL": database_url}
    mailflow(env, "migrate")
    mailflow(env, "org", "apply", str(declaration))
    summaries = [mailflow(env, "ingest", "exchange", "--org", "acme", str(log))
                 for _ in range(2)]
    assert "read 6 lines, found 1 message fact on 2025-01-14 (UTC): 1 new" in summaries[0]
    assert "0 new, 1 already loaded" in summaries[1]
    token = subprocess.run([str(BIN / "mailflow"), "token", "create", "--org", "acme"],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()

    with serving(env) as url:
        yield url, token


def counts(points: object) -> dict[str, dict[str, int]]:
    """Days with mail -> {TLS version: messages}."""
    assert isinstance(points, list)
    return {point["date"]: {row["version"]: row["messages"]
                            for row in point["byTls"] if row["messages"]}
            for point in points if point["messages"]}


def test_one_outbound_message_with_an_unknown_tls_version_and_no_inbound_mail(
    served: tuple[str, str],
) -> None:
    url, token = served
    for start, end in (("2024-01-01", "2024-01-31"), ("2025-01-01", "2025-01-31")):
        inbound = ask(url, token, FLOW, start=start, end=end, direction="INBOUND")
        assert counts(inbound["mailFlow"]) == {}, start

    outbound = ask(url, token, FLOW, start="2024-01-01", end="2024-01-31",
                   direction="OUTBOUND")
    assert counts(outbound["mailFlow"]) == {}  # the January 2024 SEND was an internal hop
    outbound = ask(url, token, FLOW, start="2025-01-01", end="2025-01-31",
                   direction="OUTBOUND")
    assert counts(outbound["mailFlow"]) == {"2025-01-14": {"UNKNOWN": 1}}


def test_the_outbound_message_went_through_the_connector_named_as_its_connector_id(
    served: tuple[str, str],
) -> None:
    url, token = served
    connectors = ask(url, token, CONNECTORS)["connectors"]
    assert isinstance(connectors, list)
    assert [connector["volume"][0]["messages"] for connector in connectors] == [1]
