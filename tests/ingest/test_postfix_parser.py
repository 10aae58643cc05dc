"""The Postfix parser, on small hand-written logs in fixtures/."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest import postfix
from mailflow.ingest.network import BoundaryPolicy
from mailflow.ingest.postfix import parse_postfix
from mailflow.ingest.report import IngestReport
from mailflow.store.facts import fact_record

FIXTURES = Path(__file__).parent / "fixtures"


def lines_of(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines(keepends=True)


def parse(
    name: str, *, year: int | None = 2021, reference_time: datetime | None = None,
    policy: BoundaryPolicy | None = None,
) -> tuple[list[MessageFact], IngestReport]:
    report = IngestReport()
    facts = parse_postfix(
        lines_of(name), policy=policy or BoundaryPolicy(), year=year,
        reference_time=reference_time, report=report,
    )
    return list(facts), report


def parse_lines(
    lines: list[str], *, year: int | None = 2021, reference_time: datetime | None = None
) -> tuple[list[MessageFact], IngestReport]:
    report = IngestReport()
    facts = parse_postfix(
        lines, policy=BoundaryPolicy(), year=year, reference_time=reference_time, report=report
    )
    return list(facts), report


def one_inbound_message(
    *, size: str = "4622", nrcpt: str = "2", queue_id: str = "A1B2C3D4E5", stamp: str = "Jan 27"
) -> list[str]:
    """The lines of one message from an external client, as qmgr and smtpd log them."""
    return [
        f"{stamp} 10:00:01 mx1 postfix/smtpd[206]: {queue_id}: "
        "client=mx.example.net[203.0.113.5]\n",
        f"{stamp} 10:00:01 mx1 postfix/qmgr[50]: {queue_id}: from=<alice@example.net>, "
        f"size={size}, nrcpt={nrcpt} (queue active)\n",
        f"{stamp} 10:00:02 mx1 postfix/qmgr[50]: {queue_id}: removed\n",
    ]


def inbound(facts: list[MessageFact]) -> list[MessageFact]:
    return [fact for fact in facts if fact.direction is Direction.INBOUND]


def outbound(facts: list[MessageFact]) -> list[MessageFact]:
    return [fact for fact in facts if fact.direction is Direction.OUTBOUND]


def utc(
    year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


# Content filters and the boundary


def test_a_message_through_amavis_is_counted_once_in_each_direction() -> None:
    facts, report = parse("amavis_reinjection.log")

    assert len(facts) == 2
    assert report.facts == 2
    [received] = inbound(facts)
    [delivered] = outbound(facts)
    assert received == MessageFact(
        source_key="postfix:mx1:1A2B3C4D5E:2021-01-27T10:00:02+00:00:in",
        occurred_at=utc(2021, 1, 27, 10, 0, 2),
        direction=Direction.INBOUND,
        tls_version=TlsVersion.TLS1_3,
        tls_cipher="TLS_AES_256_GCM_SHA384",
        peer_host="mx.example.net",
        peer_ip="203.0.113.5",
        sender_domain="example.net",
        recipient_domains=("example.com", "sales.example.com"),
        recipients=2,
        size_bytes=2048,
        status=DeliveryStatus.RECEIVED,
    )
    assert delivered == MessageFact(
        source_key=(
            "postfix:mx1:3C4D5E6F70:2021-01-27T11:00:04+00:00:out:mx.example.org[198.51.100.25]:25"
        ),
        occurred_at=utc(2021, 1, 27, 11, 0, 4),
        direction=Direction.OUTBOUND,
        tls_version=TlsVersion.TLS1_2,
        tls_cipher="ECDHE-RSA-AES256-GCM-SHA384",
        peer_host="mx.example.org",
        peer_ip="198.51.100.25",
        sender_domain="example.com",
        recipient_domains=("example.org",),
        recipients=1,
        size_bytes=1500,
        status=DeliveryStatus.DELIVERED,
    )


def test_a_reinjection_that_names_the_original_client_is_not_inbound_again() -> None:
    facts, _ = parse("xforward_reinjection.log")

    assert [(fact.direction, fact.source_key.split(":")[2]) for fact in facts] == [
        (Direction.INBOUND, "1A2B3C4D5E"),
    ]


def test_sasl_authenticated_submission_is_not_inbound() -> None:
    facts, _ = parse("amavis_reinjection.log")

    assert [fact.peer_ip for fact in inbound(facts)] == ["203.0.113.5"]
    assert "198.51.100.7" not in {fact.peer_ip for fact in facts}


def test_clients_in_internal_networks_are_not_inbound() -> None:
    facts, _ = parse("internal_clients.log")

    assert [(fact.direction, fact.peer_ip) for fact in facts] == [
        (Direction.INBOUND, "203.0.113.5"),
    ]


def test_the_policy_decides_which_clients_are_internal() -> None:
    policy = BoundaryPolicy.from_cidrs(["203.0.113.0/24"])

    facts, _ = parse("internal_clients.log", policy=policy)

    assert sorted(str(fact.peer_ip) for fact in inbound(facts)) == ["192.168.1.20", "fd12:3456::7"]


def test_local_delivery_and_internal_relays_are_not_outbound() -> None:
    facts, _ = parse("local_delivery.log")

    assert [(fact.direction, fact.peer_host, fact.recipients) for fact in facts] == [
        (Direction.OUTBOUND, "mx.example.org", 1),
    ]


# Deliveries


def test_a_delivery_deferred_then_sent_counts_once_on_the_day_it_was_sent() -> None:
    facts, _ = parse("deferred_then_sent.log")

    [fact] = facts
    assert fact.occurred_at == utc(2021, 1, 28, 0, 20, 8)
    assert (fact.peer_host, fact.peer_ip) == ("mx2.example.org", "198.51.100.26")
    assert fact.tls_version is TlsVersion.TLS1_3
    assert (fact.recipients, fact.size_bytes, fact.sender_domain) == (1, 4096, "example.com")


def test_recipients_delivered_to_one_relay_are_one_fact() -> None:
    facts, _ = parse("grouped_recipients.log")

    summary = [
        (f.peer_host, f.recipients, f.recipient_domains, f.tls_version, f.occurred_at)
        for f in facts
    ]
    assert summary == [
        ("mx.example.org", 2, ("example.org", "lists.example.org"), TlsVersion.TLS1_2,
         utc(2021, 1, 27, 12, 0, 2)),
        ("mx.example.net", 1, ("example.net",), TlsVersion.TLS1_3, utc(2021, 1, 27, 12, 0, 2)),
    ]
    assert {fact.size_bytes for fact in facts} == {5000}


def test_a_handshake_with_another_relay_does_not_lend_its_tls() -> None:
    facts, _ = parse("tls_other_relay.log")

    assert [(fact.peer_host, fact.tls_version, fact.tls_cipher) for fact in facts] == [
        ("mx.example.org", TlsVersion.TLS1_2, "ECDHE-RSA-AES256-GCM-SHA384"),
        ("mx.example.net", TlsVersion.NONE, None),
    ]


def test_a_delivery_whose_arrival_is_before_the_log_is_still_a_fact() -> None:
    facts, report = parse("arrival_before_log.log")

    [fact] = facts
    assert fact.direction is Direction.OUTBOUND
    assert fact.tls_version is TlsVersion.TLS1_2
    assert (fact.sender_domain, fact.size_bytes, fact.recipients) == (None, 0, 1)
    assert fact.recipient_domains == ("example.org",)
    assert not report.skipped


def delivered(relay: str, recipient: str = "bob@example.org") -> str:
    """An smtp line: the message A1B2C3D4E5 was sent to ``recipient`` through ``relay``."""
    return (f"Jan 27 10:00:02 mx1 postfix/smtp[207]: A1B2C3D4E5: to=<{recipient}>, "
            f"relay={relay}, delay=1, dsn=2.0.0, status=sent (250 ok)\n")


@pytest.mark.parametrize("address", ["198.51.100.300", "mx.example.org", "", "ipv6:2001:db8::zz"])
def test_a_delivery_to_a_relay_address_that_is_no_ip_is_counted_not_stored(address: str) -> None:
    lines = one_inbound_message(nrcpt="2")
    lines[2:2] = [
        delivered(f"mx.example.org[{address}]:25"),
        delivered("mx.example.net[198.51.100.30]:25", "carol@example.net"),
    ]

    facts, report = parse_lines(lines)

    # Its direction cannot be judged: the line gives no fact, the message's others count.
    assert [(fact.direction, fact.peer_ip) for fact in facts] == [
        (Direction.INBOUND, "203.0.113.5"), (Direction.OUTBOUND, "198.51.100.30"),
    ]
    assert report.skipped == {postfix.NO_PEER_ADDRESS: 1}
    assert report.summary() == (
        "5 lines, 2 message facts, skipped lines: "
        "postfix line whose client or relay address is not an IP address: 1"
    )


def test_a_client_address_that_is_no_ip_is_counted_and_the_deliveries_out_still_count() -> None:
    lines = one_inbound_message()
    lines[0] = lines[0].replace("[203.0.113.5]", "[203.0.113.500]")
    lines[2:2] = [delivered("mx.example.org[198.51.100.25]:25")]

    facts, report = parse_lines(lines)

    assert [(fact.direction, fact.peer_ip) for fact in facts] == [
        (Direction.OUTBOUND, "198.51.100.25"),
    ]
    assert report.skipped == {postfix.NO_PEER_ADDRESS: 1}


@pytest.mark.parametrize("relay", [
    "mx1.example.com[private/dovecot-lmtp]", "mx1.example.com[/var/run/dovecot/lmtp]",
    "none", "local",
])
def test_an_smtp_delivery_to_a_socket_or_no_host_is_neither_outbound_nor_skipped(
    relay: str
) -> None:
    lines = one_inbound_message()
    lines[2:2] = [delivered(relay)]

    facts, report = parse_lines(lines)

    assert [fact.direction for fact in facts] == [Direction.INBOUND]
    assert report.skipped == {}


def test_messages_still_open_at_the_end_are_flushed_and_unqueued_ones_are_not_messages() -> None:
    facts, _ = parse("open_at_end.log")

    assert [(f.direction, f.recipients, f.recipient_domains, f.tls_version) for f in facts] == [
        (Direction.INBOUND, 2, ("example.net", "example.org"), TlsVersion.NONE),
        (Direction.OUTBOUND, 1, ("example.org",), TlsVersion.NONE),
    ]


# Log variants


def test_every_tls_line_variant_and_trust_level_maps_to_its_version() -> None:
    facts, report = parse("tls_variants.log")

    assert [(fact.peer_ip, fact.tls_version, fact.tls_cipher) for fact in facts] == [
        ("203.0.113.11", TlsVersion.TLS1_3, "TLS_AES_256_GCM_SHA384"),
        ("203.0.113.12", TlsVersion.TLS1_2, "ECDHE-RSA-AES256-GCM-SHA384"),
        ("203.0.113.13", TlsVersion.TLS1_3, "TLS_AES_128_GCM_SHA256"),
        ("203.0.113.14", TlsVersion.TLS1_1, "ECDHE-RSA-AES256-SHA"),
        ("203.0.113.15", TlsVersion.TLS1_0, "DHE-RSA-AES256-SHA"),
        ("203.0.113.16", TlsVersion.UNKNOWN, "DES-CBC3-SHA"),
        ("203.0.113.17", TlsVersion.NONE, None),
        ("198.51.100.25", TlsVersion.TLS1_3, "TLS_AES_256_GCM_SHA384"),
    ]
    assert not report.skipped


def test_client_ports_and_ipv6_addresses_are_read_without_port_or_prefix() -> None:
    facts, report = parse("addresses.log")

    assert [(f.direction, f.peer_host, f.peer_ip, f.tls_version) for f in facts] == [
        (Direction.INBOUND, "mx.example.net", "203.0.113.5", TlsVersion.TLS1_3),
        (Direction.INBOUND, "mx6.example.net", "2001:db8::25", TlsVersion.TLS1_2),
        (Direction.INBOUND, "mx7.example.net", "2001:db8::26", TlsVersion.NONE),
        (Direction.OUTBOUND, "mx6.example.org", "2001:db8::1:25", TlsVersion.TLS1_3),
        (Direction.OUTBOUND, "mx7.example.org", "2001:db8::1:26", TlsVersion.TLS1_2),
    ]
    assert not report.skipped


def test_long_queue_ids_are_followed_like_short_ones() -> None:
    facts, _ = parse("long_queue_ids.log")

    assert [(fact.direction, fact.source_key.split(":")[2], fact.size_bytes) for fact in facts] == [
        (Direction.INBOUND, "4DQZH96tZczdZLP", 1234),
        (Direction.OUTBOUND, "4DQZH96tZczdZLP", 1234),
    ]


def test_multi_instance_program_names_are_followed_per_instance() -> None:
    facts, _ = parse("multi_instance.log")

    assert [(f.direction, f.peer_host, f.tls_version, f.size_bytes) for f in facts] == [
        (Direction.INBOUND, "mx.example.net", TlsVersion.TLS1_2, 800),
        (Direction.OUTBOUND, "mx.example.org", TlsVersion.TLS1_3, 900),
    ]


def test_iso_and_rfc5424_timestamps_carry_their_own_year_and_become_utc() -> None:
    facts, report = parse("iso_timestamps.log", year=1999)

    assert [(fact.direction, fact.occurred_at, fact.tls_version) for fact in facts] == [
        (Direction.INBOUND, utc(2021, 1, 26, 23, 30, 2, 500000), TlsVersion.TLS1_3),
        (Direction.OUTBOUND, utc(2021, 1, 27, 23, 59, 59, 999000), TlsVersion.NONE),
        (Direction.OUTBOUND, utc(2021, 1, 28, 13, 0, 1, 500000), TlsVersion.TLS1_2),
    ]
    assert all(fact.occurred_at.tzinfo is UTC for fact in facts)
    assert not report.skipped


def test_the_year_turns_from_december_to_january_with_the_year_given() -> None:
    facts, _ = parse("year_rollover.log", year=2020)

    assert [fact.occurred_at for fact in facts] == [
        utc(2020, 12, 31, 23, 59, 59), utc(2021, 1, 1, 0, 10, 1),
    ]


def test_the_year_turns_from_december_to_january_with_a_reference_time() -> None:
    facts, _ = parse("year_rollover.log", year=None, reference_time=utc(2021, 1, 1, 8, 0, 0))

    assert [fact.occurred_at for fact in facts] == [
        utc(2020, 12, 31, 23, 59, 59), utc(2021, 1, 1, 0, 10, 1),
    ]


# Keys, streaming and bad input


def test_parsing_the_same_log_twice_gives_the_same_keys() -> None:
    first, _ = parse("amavis_reinjection.log")
    second, _ = parse("amavis_reinjection.log")

    assert [fact.source_key for fact in first] == [fact.source_key for fact in second]
    assert first == second


def test_a_reused_queue_id_gives_distinct_keys_even_when_a_removal_was_lost() -> None:
    facts, _ = parse("queue_id_reuse.log")

    assert [(fact.peer_ip, fact.size_bytes) for fact in facts] == [
        ("203.0.113.5", 100), ("203.0.113.6", 200), ("203.0.113.7", 300),
    ]
    assert len({fact.source_key for fact in facts}) == 3


def test_keys_are_unique_within_every_fixture() -> None:
    for path in sorted(FIXTURES.glob("*.log")):
        keys = [fact.source_key for fact in parse(path.name)[0]]

        assert len(keys) == len(set(keys)), path.name


def test_facts_stream_out_as_soon_as_qmgr_removes_the_message() -> None:
    lines = lines_of("amavis_reinjection.log")
    consumed = 0

    def feed() -> Iterator[str]:
        nonlocal consumed
        for line in lines:
            consumed += 1
            yield line

    report = IngestReport()
    facts = parse_postfix(
        feed(), policy=BoundaryPolicy(), year=2021, reference_time=None, report=report
    )
    first = next(facts)

    removed_at = lines.index("Jan 27 10:00:03 mx1 postfix/qmgr[50]: 1A2B3C4D5E: removed\n") + 1
    assert first.direction is Direction.INBOUND
    assert consumed == removed_at
    assert report.lines == removed_at


def test_unusable_lines_are_counted_by_kind_and_do_not_stop_the_parse() -> None:
    facts, report = parse("unusable_lines.log")

    assert report.skipped == {
        "unparseable timestamp": 1,
        "malformed postfix line": 3,
        "postfix line whose client or relay address is not an IP address": 1,
        "postfix line without syslog header": 1,
    }
    assert report.stored_as_zero == {}  # size=big of a message that expired: no fact holds it
    assert [fact.source_key for fact in facts] == [
        "postfix:mx1:F607182939:2021-01-27T10:00:11+00:00:in",
    ]
    assert report.lines == len(lines_of("unusable_lines.log"))
    assert report.facts == 1


def test_the_report_summary_names_counts_and_kinds() -> None:
    _, report = parse("unusable_lines.log")

    assert report.summary() == (
        "22 lines, 1 message fact, skipped lines: malformed postfix line: 3, "
        "postfix line whose client or relay address is not an IP address: 1, "
        "postfix line without syslog header: 1, unparseable timestamp: 1"
    )


# Values no real log holds


def test_a_recipient_count_beyond_an_integer_loses_that_count_not_the_message() -> None:
    facts, report = parse_lines(one_inbound_message(nrcpt="99999999999"))

    assert [(fact.recipients, fact.size_bytes, fact.sender_domain) for fact in facts] == [
        (0, 4622, "example.net"),
    ]
    assert (report.skipped, report.stored_as_zero) == ({}, {"recipient count out of range": 1})
    assert report.facts == 1


ABSURD_SIZES = [
    str(2**40 + 1), str(2**63), "9" * 5000, "-1", "-" + "9" * 5000, "+5", "12kB", "1.5e9",
    "1,5", "0x10", "", " 7", "\u0661\u0662", "9" * 100_000,
]


@pytest.mark.parametrize("size", ABSURD_SIZES)
def test_an_absurd_size_loses_that_size_not_the_message(size: str) -> None:
    facts, report = parse_lines(one_inbound_message(size=size))

    assert [(fact.recipients, fact.size_bytes, fact.sender_domain) for fact in facts] == [
        (2, 0, "example.net"),
    ]
    assert (report.skipped, report.stored_as_zero) == ({}, {"size out of range": 1})


@pytest.mark.parametrize("size", ["-1", "9" * 5000, "big"])
def test_an_absurd_size_loses_that_size_not_the_outbound_message(size: str) -> None:
    lines = [
        "Jan 27 10:00:01 mx1 postfix/smtpd[206]: A1B2C3D4E5: client=app.example.com[10.0.0.7]\n",
        "Jan 27 10:00:01 mx1 postfix/qmgr[50]: A1B2C3D4E5: from=<app@example.com>, "
        f"size={size}, nrcpt=1 (queue active)\n",
        "Jan 27 10:00:02 mx1 postfix/smtp[207]: A1B2C3D4E5: to=<bob@example.org>, "
        "relay=mx.example.org[198.51.100.25]:25, delay=1, dsn=2.0.0, status=sent (250 ok)\n",
        "Jan 27 10:00:02 mx1 postfix/qmgr[50]: A1B2C3D4E5: removed\n",
    ]

    facts, report = parse_lines(lines)

    assert [(fact.direction, fact.size_bytes, fact.sender_domain, fact.recipients)
            for fact in facts] == [(Direction.OUTBOUND, 0, "example.com", 1)]
    assert (report.skipped, report.stored_as_zero) == ({}, {"size out of range": 1})


def test_an_absurd_size_and_recipient_count_on_one_line_count_as_one_line() -> None:
    facts, report = parse_lines(one_inbound_message(size="-1", nrcpt="-1"))

    assert [(fact.recipients, fact.size_bytes) for fact in facts] == [(0, 0)]
    assert (report.skipped, report.stored_as_zero) == ({}, {"size out of range": 1})


def test_an_absurd_value_of_a_message_that_stays_inside_is_not_counted_as_stored() -> None:
    lines = [
        "Jan 27 10:00:01 mx1 postfix/smtpd[206]: A1B2C3D4E5: client=app.example.com[10.0.0.7]\n",
        "Jan 27 10:00:01 mx1 postfix/qmgr[50]: A1B2C3D4E5: from=<app@example.com>, "
        "size=-1, nrcpt=1 (queue active)\n",
        "Jan 27 10:00:02 mx1 postfix/qmgr[50]: A1B2C3D4E5: removed\n",
    ]

    facts, report = parse_lines(lines)

    assert (facts, report.skipped, report.stored_as_zero) == ([], {}, {})


def test_an_absurd_recipient_count_is_not_counted_as_stored_when_only_outbound_is() -> None:
    lines = [
        "Jan 27 10:00:01 mx1 postfix/smtpd[206]: A1B2C3D4E5: client=app.example.com[10.0.0.7]\n",
        "Jan 27 10:00:01 mx1 postfix/qmgr[50]: A1B2C3D4E5: from=<app@example.com>, "
        "size=10, nrcpt=-1 (queue active)\n",
        "Jan 27 10:00:02 mx1 postfix/smtp[207]: A1B2C3D4E5: to=<bob@example.org>, "
        "relay=mx.example.org[198.51.100.25]:25, delay=1, dsn=2.0.0, status=sent (250 ok)\n",
        "Jan 27 10:00:02 mx1 postfix/qmgr[50]: A1B2C3D4E5: removed\n",
    ]

    facts, report = parse_lines(lines)

    assert [(fact.direction, fact.recipients) for fact in facts] == [(Direction.OUTBOUND, 1)]
    assert report.stored_as_zero == {}


@pytest.mark.parametrize(
    ("size", "nrcpt", "read"),
    [(str(2**40), str(2**31 - 1), (2**31 - 1, 2**40)), ("0" * 40 + "7", "0" * 30 + "3", (3, 7))],
)
def test_sizes_and_counts_within_range_are_read_as_logged(
    size: str, nrcpt: str, read: tuple[int, int]
) -> None:
    facts, report = parse_lines(one_inbound_message(size=size, nrcpt=nrcpt))

    assert [(fact.recipients, fact.size_bytes) for fact in facts] == [read]
    assert not report.skipped


def test_nul_characters_a_crash_left_in_the_log_are_dropped() -> None:
    client, queued, removed = one_inbound_message()
    padded = "\x00" * 300 + client
    queued = queued.replace("example.net", "exam\x00ple.net")

    facts, report = parse_lines([padded, queued, removed])

    assert [(fact.peer_host, fact.sender_domain) for fact in facts] == [
        ("mx.example.net", "example.net"),
    ]
    assert not report.skipped


def message_at(stamp: str, queue_id: str = "A1B2C3D4E5") -> list[str]:
    """One inbound message whose lines carry this full time stamp: connect, client=, queued."""
    return [
        f"{stamp} mx1 postfix/smtpd[206]: connect from mx.example.net[203.0.113.5]\n",
        f"{stamp} mx1 postfix/smtpd[206]: {queue_id}: client=mx.example.net[203.0.113.5]\n",
        f"{stamp} mx1 postfix/qmgr[50]: {queue_id}: from=<a@example.net>, size=1, nrcpt=1\n",
    ]


@pytest.mark.parametrize(
    "stamp",
    [
        "0001-01-01T00:00:00+01:00",  # before the year 1 in UTC
        "0001-01-01T00:00:00+00:00",  # the first instant: the sweep would look a week before it
        "0001-01-07T23:59:59Z",
        "9999-12-31T23:59:59+00:00",  # the sweep would be due after the last instant
        "9999-12-31T23:50:00Z",
        "9999-12-31T23:30:00-01:00",  # after the year 9999 in UTC
    ],
)
def test_a_time_stamp_at_the_ends_of_the_calendar_is_out_of_range_and_the_parse_goes_on(
    stamp: str,
) -> None:
    lines = [*message_at("2021-01-27T10:00:00Z", "F1"), *message_at(stamp), "\n",
             *message_at("2021-01-27T10:00:01Z", "F2")]

    facts, report = parse_lines(lines)

    assert [fact.source_key.split(":")[2] for fact in facts] == ["F1", "F2"]
    assert report.skipped == {"timestamp out of range": 2}
    assert report.lines == len(lines)


@pytest.mark.parametrize("stamp", ["0001-01-08T00:00:00Z", "9999-12-31T23:49:59Z"])
def test_a_time_stamp_just_within_the_range_gives_its_fact(stamp: str) -> None:
    facts, report = parse_lines([*message_at("2021-01-27T10:00:00Z", "F1"), *message_at(stamp)])

    assert [fact.occurred_at for fact in facts] == [
        utc(2021, 1, 27, 10, 0, 0), datetime.fromisoformat(stamp),
    ]
    assert not report.skipped


def test_classic_time_stamps_turning_past_the_year_9999_are_out_of_range() -> None:
    lines = [
        *message_at("Dec 31 10:00:00", "Y9998"),
        *message_at("Jan  1 10:00:00", "Y9999"),
        *message_at("Jul  1 10:00:00", "JULY"),
        *message_at("Dec 31 23:49:59", "LAST"),
        *message_at("Dec 31 23:50:00", "LATE"),
        *message_at("Jan  1 00:00:00", "Y10000"),
        "Jan  1 00:00:01 mx1 postfix/qmgr[50]: JULY: removed\n",
    ]

    facts, report = parse_lines(lines, year=9998)

    assert [fact.occurred_at for fact in facts] == [
        utc(9998, 12, 31, 10, 0, 0), utc(9999, 1, 1, 10, 0, 0), utc(9999, 7, 1, 10, 0, 0),
        utc(9999, 12, 31, 23, 49, 59),
    ]
    assert report.skipped == {"timestamp out of range": 4}


def test_classic_time_stamps_before_the_year_1_are_out_of_range() -> None:
    lines = [
        *message_at("Jan 10 10:00:00", "Y1"),
        *message_at("Dec 31 10:00:00", "Y0"),  # a late line: the year before the first
    ]

    facts, report = parse_lines(lines, year=1)

    assert [fact.occurred_at for fact in facts] == [utc(1, 1, 10, 10, 0, 0)]
    assert report.skipped == {"timestamp out of range": 2}


def test_an_empty_time_stamp_is_unparseable_not_the_first_instant() -> None:
    lines = [
        "<22>1  mx1 postfix/smtpd 206 - - A1B2C3D4E5: client=mx.example.net[203.0.113.5]\n",
        "<22>1  mx1 postfix/qmgr 50 - - A1B2C3D4E5: from=<a@example.net>, size=1, nrcpt=1\n",
    ]

    facts, report = parse_lines(lines)

    assert facts == []
    assert report.skipped == {"unparseable timestamp": 2}


def test_a_message_whose_key_would_be_too_long_to_index_is_skipped() -> None:
    facts, report = parse_lines(
        one_inbound_message(queue_id="Q" * 2000) + one_inbound_message(queue_id="F00D")
    )

    assert [fact.source_key.split(":")[2] for fact in facts] == ["F00D"]
    assert report.skipped == {"host, queue id or relay too long": 1}
    assert report.facts == 1


def test_every_fact_parsed_from_every_fixture_can_be_stored() -> None:
    facts = [fact for path in sorted(FIXTURES.glob("*.log")) for fact in parse(path.name)[0]]
    absurd = [
        *one_inbound_message(nrcpt="9" * 12, queue_id="B1"),
        *one_inbound_message(size="9" * 30, queue_id="B2"),
    ]
    facts += parse_lines(absurd)[0]

    assert len(facts) > 20
    for fact in facts:
        fact_record(1, fact)  # raises for a value that PostgreSQL would reject


# What the report tells about the log


def test_the_report_spans_the_facts_found_and_counts_the_postfix_daemon_lines() -> None:
    lines = [
        "Jan 27 09:00:00 mx1 dovecot: imap-login: Login: user=<bob@example.com>\n",
        "Jan 27 09:00:00 mx1 postfix/anvil[70]: statistics: max connection rate 1/60s\n",
        *one_inbound_message(queue_id="C1", stamp="Jan 27"),
        *one_inbound_message(queue_id="C2", stamp="Jan 29"),
    ]

    facts, report = parse_lines(lines)

    assert len(facts) == 2
    assert (report.first_fact_at, report.last_fact_at) == (
        utc(2021, 1, 27, 10, 0, 1), utc(2021, 1, 29, 10, 0, 1),
    )
    assert report.recognized_lines == 6


def test_a_log_of_no_postfix_daemon_has_no_recognized_lines_and_no_span() -> None:
    _, report = parse_lines([
        "Jan 27 09:00:00 mx1 dovecot: imap-login: Login: user=<bob@example.com>\n",
        "\x8f\ufffd binary \x00 noise\n",
    ])

    assert (report.lines, report.recognized_lines, report.facts) == (2, 0, 0)
    assert report.first_fact_at is None


def test_the_report_names_the_year_assumed_only_when_none_was_given() -> None:
    reference = datetime(2026, 3, 4, tzinfo=UTC)

    facts, assumed = parse_lines(one_inbound_message(), year=None, reference_time=reference)
    _, given = parse_lines(one_inbound_message(), year=2021, reference_time=reference)
    _, iso = parse("iso_timestamps.log", year=None, reference_time=reference)

    assert facts[0].occurred_at.year == 2026
    assert (assumed.assumed_year, given.assumed_year, iso.assumed_year) == (2026, None, None)
