"""The Exchange message tracking parser, on a hand-written log in fixtures/ and rows built here."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest import exchange
from mailflow.ingest.exchange import DEFAULT_FIELDS, parse_exchange
from mailflow.ingest.network import BoundaryPolicy
from mailflow.ingest.report import IngestReport
from mailflow.store.facts import fact_record

FIXTURES = Path(__file__).parent / "fixtures"

FIELDS_HEADER = "#Fields: " + ",".join(DEFAULT_FIELDS) + "\n"


def parse(lines: list[str]) -> tuple[list[MessageFact], IngestReport]:
    report = IngestReport()
    facts = list(parse_exchange(lines, policy=BoundaryPolicy(), reference_time=None,
                                report=report))
    for fact in facts:
        fact_record(1, fact)  # raises for a value that PostgreSQL would reject
    return facts, report


def fixture() -> list[str]:
    return (FIXTURES / "exchange_tracking.log").read_text().splitlines(keepends=True)


def row(values: dict[str, str], fields: tuple[str, ...] = DEFAULT_FIELDS) -> str:
    """One CSV line in the order of ``fields``; names in ``values`` use ``_`` for ``-``."""
    named = {"source": "SMTP", "internal_message_id": "7001", "message_id": "<r@example.net>",
             "total_bytes": "1000", "recipient_count": "1", **values}
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(
        [named.get(name.replace("-", "_"), "") for name in fields])
    return out.getvalue()


def receive(**values: str) -> str:
    """A RECEIVE from an external client."""
    return row({"date_time": "2026-03-02T08:00:00.000Z", "event_id": "RECEIVE",
                  "client_ip": "203.0.113.25", "client_hostname": "mx.example.net",
                  "server_hostname": "EX1", "connector_id": "EX1\\Default EX1",
                  "recipient_address": "ann@example.com", "sender_address": "x@example.net",
                  "directionality": "Incoming", **values})


def send(**values: str) -> str:
    """A SEND to an external server."""
    return row({"date_time": "2026-03-02T08:00:00.000Z", "event_id": "SEND",
                  "client_hostname": "EX1", "server_ip": "198.51.100.80",
                  "server_hostname": "mx.example.net", "connector_id": "Outbound to partner",
                  "recipient_address": "dan@example.net", "sender_address": "ann@example.com",
                  "recipient_status": "250 2.1.5 Recipient OK", **values})


def of(facts: list[MessageFact], direction: Direction) -> list[MessageFact]:
    return [fact for fact in facts if fact.direction is direction]


def test_the_fixture_holds_three_inbound_and_two_outbound_messages() -> None:
    facts, report = parse(fixture())

    # Inbound: the external client (1001) and the proxied one (1002); not the internal
    # monitoring host (1003), not the authenticated submission (1004).
    assert [fact.source_key for fact in of(facts, Direction.INBOUND)] == [
        "exchange:ex1:1001:<m1@example.net>:in:203.0.113.25",
        "exchange:ex1:1002:<m2@example.org>:in:192.0.2.44",
    ]
    # Outbound: 1004 to the partner (two rows, one fact), 1005 to the internet; not the
    # SEND to the other Exchange server, not the local DELIVER.
    assert [fact.source_key for fact in of(facts, Direction.OUTBOUND)] == [
        "exchange:ex1:1004:<m4@example.com>:out:198.51.100.80",
        "exchange:ex1:1005:<m5@example.com>:out:2001:db8:2::25",
    ]
    assert report.lines == 14
    assert report.recognized_lines == 14  # five header lines and nine rows
    assert not report.skipped
    assert report.facts == 4


def test_an_inbound_fact_carries_what_the_receive_row_says() -> None:
    facts, _ = parse(fixture())
    first = of(facts, Direction.INBOUND)[0]

    assert first == MessageFact(
        source_key="exchange:ex1:1001:<m1@example.net>:in:203.0.113.25",
        occurred_at=datetime(2026, 3, 2, 8, 15, 30, 120000, tzinfo=UTC),
        direction=Direction.INBOUND,
        tls_version=TlsVersion.UNKNOWN,
        tls_cipher=None,
        peer_host="mx.example.net",
        peer_ip="203.0.113.25",
        sender_domain="example.net",
        recipient_domains=("example.com",),
        recipients=2,
        size_bytes=5120,
        status=DeliveryStatus.RECEIVED,
        routes=("EX1\\Default EX1",),
    )


def test_a_session_proxied_by_the_front_end_is_the_real_clients() -> None:
    facts, _ = parse(fixture())
    proxied = of(facts, Direction.INBOUND)[1]

    assert (proxied.peer_ip, proxied.peer_host) == ("192.0.2.44", "mail.example.org")
    assert proxied.tls_version is TlsVersion.TLS1_3  # S:TlsVersion=TLS1.3 in custom-data


def test_sends_of_one_message_to_one_hop_are_one_fact_without_refused_recipients() -> None:
    facts, _ = parse(fixture())
    partner, internet = of(facts, Direction.OUTBOUND)

    assert partner.occurred_at == datetime(2026, 3, 2, 10, 0, 2, tzinfo=UTC)
    assert partner.recipients == 2  # dan and fay; eve got 550 5.1.1
    assert partner.recipient_domains == ("example.net", "example.org")
    assert partner.routes == ("Outbound to partner",)
    assert (partner.peer_host, partner.peer_ip) == ("mx.example.net", "198.51.100.80")
    assert partner.status is DeliveryStatus.DELIVERED
    # An EffectiveTlsAuthLevel says TLS was used, not which version.
    assert partner.tls_version is TlsVersion.UNKNOWN
    assert internet.routes == ("Internet",)
    assert internet.sender_domain == "example.com"


def test_rows_without_a_fields_header_are_read_in_the_default_order() -> None:
    facts, report = parse([receive(), send()])

    assert [fact.direction for fact in facts] == [Direction.INBOUND, Direction.OUTBOUND]
    assert facts[0].peer_ip == "203.0.113.25"
    assert facts[1].peer_ip == "198.51.100.80"
    assert report.recognized_lines == 2


def test_a_quoted_value_keeps_its_commas_and_the_columns_after_it_their_place() -> None:
    facts, report = parse([receive(message_subject='Offer, "final", today',
                                   sender_address="sales@example.org")])

    assert not report.skipped
    assert facts[0].sender_domain == "example.org"


def test_a_fields_header_again_mid_stream_changes_the_order_from_there_on() -> None:
    reordered = ("event-id", "date-time", "source", "server-ip", "server-hostname",
                 "client-hostname", "internal-message-id", "message-id", "recipient-address",
                 "recipient-count", "total-bytes", "connector-id")
    lines = [
        FIELDS_HEADER,
        send(),
        "#Fields: " + ",".join(reordered) + "\n",
        row({"event_id": "SEND", "date_time": "2026-03-02T09:00:00Z",
             "server_ip": "198.51.100.81", "server_hostname": "mx2.example.net",
             "client_hostname": "EX2", "recipient_address": "kim@example.net",
             "connector_id": "Relay"}, reordered),
        FIELDS_HEADER,
        receive(),
    ]
    facts, report = parse(lines)

    # Sends wait for more rows of their message and hop: they come after the receive.
    assert [(fact.direction, fact.peer_ip) for fact in facts] == [
        (Direction.INBOUND, "203.0.113.25"),
        (Direction.OUTBOUND, "198.51.100.80"),
        (Direction.OUTBOUND, "198.51.100.81"),
    ]
    assert facts[2].routes == ("Relay",)
    assert not report.skipped


@pytest.mark.parametrize(("line", "kind"), [
    ("2026-03-02T08:00:00Z,203.0.113.25,too,few\n", exchange.WRONG_FIELD_COUNT),
    ('2026-03-02T08:00:00Z,"an open quote\n', exchange.MALFORMED),
    (receive(date_time="yesterday"), exchange.UNPARSEABLE_TIMESTAMP),
    (receive(date_time="0001-01-01T00:10:00Z"), exchange.TIMESTAMP_OUT_OF_RANGE),
    (receive(client_ip="unknown"), exchange.NO_PEER_ADDRESS),
    (send(server_ip=""), exchange.NO_PEER_ADDRESS),
    (receive(internal_message_id="", message_id=""), exchange.NO_MESSAGE_ID),
    ("#Fields: time,client,server\n", exchange.BAD_FIELDS_HEADER),
])
def test_an_unusable_row_is_counted_by_kind_and_the_next_one_is_read(line: str, kind: str) -> None:
    facts, report = parse([line, receive(internal_message_id="7002")])

    assert report.skipped == {kind: 1}
    assert [fact.source_key for fact in facts] == [
        "exchange:ex1:7002:<r@example.net>:in:203.0.113.25"]


def test_a_size_that_is_no_number_loses_the_size_not_the_message() -> None:
    facts, report = parse([receive(total_bytes="12kB")])

    assert (report.skipped, report.stored_as_zero) == ({}, {exchange.SIZE_OUT_OF_RANGE: 1})
    assert facts[0].size_bytes == 0


def test_a_send_whose_only_count_is_no_number_is_a_skipped_row_not_a_value_stored() -> None:
    facts, report = parse([send(recipient_address="", recipient_count="-1")])

    assert facts == []
    assert (report.skipped, report.stored_as_zero) == ({exchange.RECIPIENTS_OUT_OF_RANGE: 1}, {})


@pytest.mark.parametrize("count", ["many", "x", "-3", "", str(2**31)])
def test_a_receive_whose_count_is_no_number_is_stored_with_0_recipients_and_says_so(
    count: str
) -> None:
    facts, report = parse([receive(recipient_address="", recipient_count=count)])

    assert [fact.recipients for fact in facts] == [0]
    assert (report.skipped, report.stored_as_zero) == ({}, {exchange.RECIPIENTS_OUT_OF_RANGE: 1})


@pytest.mark.parametrize("count", ["x", "-3", "5"])
def test_the_recipients_listed_are_counted_whatever_the_recipient_count_says(count: str) -> None:
    facts, report = parse([
        receive(recipient_address="ann@example.com;bob@example.com", recipient_count=count),
        send(recipient_count=count),
    ])

    # The count is not read beside addresses: no value is stored as 0, none is summarised.
    assert [fact.recipients for fact in facts] == [2, 1]
    assert (report.skipped, report.stored_as_zero) == ({}, {})


def test_the_recipient_count_stands_in_when_no_address_is_listed() -> None:
    facts, _ = parse([receive(recipient_address="", recipient_count="4")])

    assert facts[0].recipients == 4
    assert facts[0].recipient_domains == ()


@pytest.mark.parametrize(("text", "version"), [
    ("S:TlsVersion=TLS1.2", TlsVersion.TLS1_2),
    ("S:Foo=1;tls=TLSv1.3", TlsVersion.TLS1_3),
    ("TlsVersion=Tls11", TlsVersion.TLS1_1),
    ("TlsVersion=SP_PROT_TLS1_0_SERVER", TlsVersion.TLS1_0),
    ("tls=1", TlsVersion.UNKNOWN),  # a flag, not a version
    ("S:EffectiveTlsAuthLevel=DomainValidation", TlsVersion.UNKNOWN),
    ("S:RequiredTlsAuthLevel=Opportunistic", TlsVersion.UNKNOWN),
])
def test_the_tls_version_is_only_what_the_row_names(text: str, version: TlsVersion) -> None:
    facts, _ = parse([receive(custom_data=text), send(source_context=text)])

    assert [fact.tls_version for fact in facts] == [version, version]


@pytest.mark.parametrize("values", [
    {"directionality": "Originating"},  # an authenticated submission
    {"client_ip": "10.1.2.3"},  # an internal client
    {"source": "STOREDRIVER"},  # submitted from a mailbox
    {"event_id": "DELIVER"},  # local delivery
    {"event_id": "HAREDIRECTFAIL"},
])
def test_a_receive_that_is_no_boundary_crossing_makes_no_fact(values: dict[str, str]) -> None:
    facts, report = parse([receive(**values)])

    assert facts == []
    assert not report.skipped


def test_a_send_to_an_internal_server_or_a_local_delivery_is_not_outbound() -> None:
    facts, _ = parse([send(server_ip="10.0.0.6"), send(event_id="DELIVER"),
                      send(server_ip="192.168.1.9")])

    assert facts == []


def test_sends_more_than_an_hour_apart_keep_one_key_for_the_message_and_hop() -> None:
    facts, _ = parse([send(), send(date_time="2026-03-02T09:30:00Z",
                                   recipient_address="lee@example.net")])

    # The retry is a fact of the same key, which the store keeps only once.
    assert len({fact.source_key for fact in facts}) == 1
    assert facts[0].recipients == 1


def test_parsing_the_same_log_twice_gives_the_same_facts() -> None:
    assert parse(fixture())[0] == parse(fixture())[0]


def test_time_stamps_with_an_offset_or_none_are_utc() -> None:
    facts, _ = parse([receive(date_time="2026-03-02T09:00:00+01:00", internal_message_id="1"),
                      receive(date_time="2026-03-02T08:00:00", internal_message_id="2")])

    assert [fact.occurred_at for fact in facts] == [
        datetime(2026, 3, 2, 8, 0, tzinfo=UTC), datetime(2026, 3, 2, 8, 0, tzinfo=UTC)]


def test_a_send_whose_every_recipient_was_refused_is_no_outbound_message() -> None:
    refused = send(recipient_status="550 5.1.1 User unknown")
    delivered = send(internal_message_id="7002", message_id="<s@example.com>")

    facts, _ = parse([refused, delivered])

    [fact] = facts
    assert ":7002:" in fact.source_key
