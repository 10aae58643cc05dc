"""A real Exim main log in, GraphQL reports out: org apply, ingest exim (twice), serve.

The log is one day (22 February 2020) of a small Exim 4 server. Reading it gives:

- its accepted domains: those whose unknown recipients it rejects after checking them
  itself ("Unrouteable address", or a callout to the server it relays them to), and its
  own host name, the domain of its local senders (root, logcheck, www-data). The one
  domain refused with "relay not permitted" is not its own;
- two routes out: R=dnslookup T=remote_smtp to the Internet, and R=dnslookup_vpn
  T=remote_smtp_smarthost to 192.168.120.5, a server reached over a VPN. That address is
  internal (RFC 1918): its mail counts as outbound because the VPN connector lists the
  route, as a connector to an on-premises server would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import realdata
from tests.test_acceptance_postfix import ask, mailflow, serving

ORGANIZATION = """\
organization: exim-acceptance
accepted_domains:
  - h-07a91367a3.example
  - h-424a4a686d.example
  - h-4edcd751e6.example
  - h-5db4a18c1a.example
  - h-62fbbe31fa.example
  - h-691662f86d.example
  - h-c65f2d62e3.example
connectors:
  - name: Internet
    direction: outbound
    kind: partner
    routes: [remote_smtp]
  - name: VPN
    direction: outbound
    kind: on_premises
    routes: [dnslookup_vpn, remote_smtp_smarthost]
"""

# Inbound: arrivals (<=) over the network from a host outside the internal networks that
# did not authenticate; none of them used TLS (no X=). Verified with
#   grep ' <= ' mainlog-2020-02-22 | grep ' H=' \
#     | grep -vE '\[(127\.|10\.|192\.168\.|172\.(1[6-9]|2[0-9]|3[01])\.)' \
#     | grep -vE ' A=| P=esmtps?a ' | grep -c ' X='        -> 0
#   (the same with grep -vc ' X=')                          -> 22
# Outbound: one fact per message id and relay of the => and -> lines, by route and TLS:
#   grep -E ' (=>|->) ' mainlog-2020-02-22 | awk '{id=$3; r=""; t=""; h=""; x="NONE";
#     for (i = 4; i <= NF; i++) { if ($i ~ /^R=/) r=$i; if ($i ~ /^T=/) t=$i;
#       if ($i ~ /^\[/ && h == "") h=$i; if ($i ~ /^X=/) { split(substr($i, 3), a, ":");
#       x=a[1] } } print id, h, r, t, x}' | sort -u | awk '{print $3, $4, $5}' | sort | uniq -c
#   -> 11 R=dnslookup T=remote_smtp TLS1.2, 30 R=dnslookup_vpn T=remote_smtp_smarthost NONE
# Each of those 41 deliveries has one recipient (grep -cE ' (=>|->) .* H=' gives 41, no ->
# lines); deferrals (==): none; failures (**): 6, not counted.
DAY = "2020-02-22"
EXPECTED_BY_TLS = {"INBOUND": {"NONE": 22}, "OUTBOUND": {"NONE": 30, "TLS1_2": 11}}
EXPECTED_BY_CONNECTOR = {"Internet": ("OUTBOUND", 11, 11, {"TLS1_2": 11}),
                         "VPN": ("OUTBOUND", 30, 30, {"NONE": 30})}

MAIL_FLOW = """
query Flow($direction: Direction) {
  mailFlow(start: "2020-02-22", end: "2020-02-22", direction: $direction) {
    date messages byTls { version messages }
  }
}
"""

CONNECTORS = """
{ connectors {
    name direction routes
    volume(start: "2020-02-22", end: "2020-02-22") {
      date messages recipients byTls { version messages } } } }
"""

NO_CONNECTOR = """
query NoConnector($direction: Direction) {
  tlsBreakdown(start: "2020-02-22", end: "2020-02-22", direction: $direction,
               noConnector: true) { total }
}
"""


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    log = str(realdata("exim", "mainlog-2020-02-22"))
    organization = tmp_path / "organization.yaml"
    organization.write_text(ORGANIZATION)
    env = {**os.environ, "DATABASE_URL": database_url}
    mailflow(env, "migrate")
    mailflow(env, "org", "apply", str(organization))
    for _ in range(2):
        mailflow(env, "ingest", "exim", "--org", "exim-acceptance", log)
    token = mailflow(env, "token", "create", "--org", "exim-acceptance").strip()

    with serving(env) as url:
        yield url, token


def test_daily_inbound_and_outbound_messages_by_tls_version_match_the_log(
    served: tuple[str, str],
) -> None:
    url, token = served
    for direction, expected in EXPECTED_BY_TLS.items():
        points = ask(url, token, MAIL_FLOW, direction=direction)["mailFlow"]
        assert isinstance(points, list)
        [point] = points
        by_tls = {row["version"]: row["messages"] for row in point["byTls"] if row["messages"]}
        assert (point["date"], by_tls) == (DAY, expected), direction
        assert point["messages"] == sum(expected.values())


def test_each_route_is_counted_under_the_connector_that_lists_it(
    served: tuple[str, str],
) -> None:
    url, token = served
    connectors = ask(url, token, CONNECTORS)["connectors"]
    assert isinstance(connectors, list)

    found = {}
    for connector in connectors:
        [point] = connector["volume"]
        by_tls = {row["version"]: row["messages"] for row in point["byTls"] if row["messages"]}
        found[connector["name"]] = (connector["direction"], point["messages"],
                                    point["recipients"], by_tls)

    assert found == EXPECTED_BY_CONNECTOR
    for direction, routed in (("OUTBOUND", 0), ("INBOUND", 22)):
        breakdown = ask(url, token, NO_CONNECTOR, direction=direction)["tlsBreakdown"]
        assert breakdown == {"total": routed}, direction
