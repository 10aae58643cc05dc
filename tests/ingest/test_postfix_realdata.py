"""The Postfix parser on real logs from ../shared/realdata (skipped when absent).

The expected figures were counted from the logs by hand with grep and awk,
independently of the parser.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest.network import BoundaryPolicy
from mailflow.ingest.postfix import parse_postfix
from mailflow.ingest.report import IngestReport

pytestmark = pytest.mark.realdata

POSTFIX_DATA = (Path(__file__).parents[2] / ".." / "shared" / "realdata" / "postfix").resolve()
RELAY_LOGS = ("relay-2021-mail.log.1", "relay-2021-mail.log")  # read as one stream, oldest first

Key = tuple[str, Direction, TlsVersion]

# (UTC day, direction, TLS version) -> (messages, recipients, bytes)
RELAY_FIGURES: dict[Key, tuple[int, int, int]] = {
    ("2021-01-27", Direction.INBOUND, TlsVersion.TLS1_2): (34, 56, 777_843),
    ("2021-01-27", Direction.INBOUND, TlsVersion.TLS1_3): (26, 26, 351_343),
    ("2021-01-27", Direction.OUTBOUND, TlsVersion.NONE): (3, 3, 71_197),
    ("2021-01-27", Direction.OUTBOUND, TlsVersion.TLS1_2): (19, 19, 29_605),
    ("2021-01-27", Direction.OUTBOUND, TlsVersion.TLS1_3): (2, 2, 25_392),
    ("2021-01-28", Direction.INBOUND, TlsVersion.TLS1_2): (10, 18, 109_576),
    ("2021-01-28", Direction.INBOUND, TlsVersion.TLS1_3): (36, 36, 298_736),
    ("2021-01-28", Direction.OUTBOUND, TlsVersion.TLS1_2): (19, 19, 43_127),
}


def data_file(name: str) -> Path:
    path = POSTFIX_DATA / name
    if not path.is_file():
        pytest.skip(f"real Postfix logs not available: {path} is absent (../shared/realdata)")
    return path


def read(*names: str) -> Iterator[str]:
    paths = [data_file(name) for name in names]
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as lines:
            yield from lines


def parse(*names: str, year: int) -> tuple[list[MessageFact], IngestReport]:
    report = IngestReport()
    facts = parse_postfix(
        read(*names), policy=BoundaryPolicy(), year=year, reference_time=None, report=report
    )
    return list(facts), report


@pytest.fixture(scope="module")
def relay() -> tuple[list[MessageFact], IngestReport]:
    return parse(*RELAY_LOGS, year=2021)


def figures(facts: list[MessageFact]) -> dict[Key, tuple[int, int, int]]:
    messages: Counter[Key] = Counter()
    recipients: Counter[Key] = Counter()
    size: Counter[Key] = Counter()
    for fact in facts:
        key = (fact.occurred_at.date().isoformat(), fact.direction, fact.tls_version)
        messages[key] += 1
        recipients[key] += fact.recipients
        size[key] += fact.size_bytes
    return {key: (messages[key], recipients[key], size[key]) for key in messages}


def test_the_relay_logs_give_the_hand_counted_daily_figures(
    relay: tuple[list[MessageFact], IngestReport],
) -> None:
    facts, _ = relay

    assert figures(facts) == RELAY_FIGURES


def test_the_relay_logs_are_read_whole_with_nothing_skipped(
    relay: tuple[list[MessageFact], IngestReport],
) -> None:
    facts, report = relay

    assert report.lines == 5282 + 2252
    assert report.facts == len(facts) == 149
    assert not report.skipped
    assert len({fact.source_key for fact in facts}) == 149


def test_the_plaintext_deliveries_are_the_relay_that_offered_no_starttls(
    relay: tuple[list[MessageFact], IngestReport],
) -> None:
    facts, _ = relay

    plaintext = [fact for fact in facts if fact.tls_version is TlsVersion.NONE]

    assert {fact.peer_ip for fact in plaintext} == {"254.172.157.8"}
    assert sorted(fact.source_key.split(":")[2] for fact in plaintext) == [
        "C66C73012028", "CD36E3012027", "EC7C03012027",
    ]


def test_no_relay_fact_comes_from_the_content_filter_or_local_delivery(
    relay: tuple[list[MessageFact], IngestReport],
) -> None:
    facts, _ = relay

    assert not {fact.peer_ip for fact in facts} & {"127.0.0.1", None}
    assert {fact.status for fact in facts if fact.direction is Direction.INBOUND} == {
        DeliveryStatus.RECEIVED
    }


def test_loading_the_relay_logs_twice_gives_the_same_facts(
    relay: tuple[list[MessageFact], IngestReport],
) -> None:
    again, _ = parse(*RELAY_LOGS, year=2021)

    assert again == relay[0]


def test_the_mixed_december_log_has_two_outbound_deliveries_and_no_inbound() -> None:
    facts, report = parse("mixed-messages.log", year=2020)

    assert [
        (f.occurred_at.isoformat(), f.direction, f.tls_version, f.tls_cipher, f.peer_host,
         f.recipients, f.recipient_domains, f.sender_domain, f.size_bytes)
        for f in facts
    ] == [
        ("2020-12-09T10:18:25+00:00", Direction.OUTBOUND, TlsVersion.TLS1_3,
         "TLS_AES_256_GCM_SHA384", "gmail-smtp-in.l.google.com", 1, ("dst1.example.com",),
         "mydomain.com", 1188),
        ("2020-12-09T10:18:26+00:00", Direction.OUTBOUND, TlsVersion.TLS1_2,
         "ECDHE-RSA-AES256-SHA", "mx.zoho.com", 1, ("dst2.example.com",), "mydomain.com", 1188),
    ]
    assert report.lines == 61
    assert not report.skipped
