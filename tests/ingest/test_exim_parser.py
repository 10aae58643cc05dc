"""The Exim parser, on small hand-written main logs in fixtures/exim/."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest.exim import parse_exim
from mailflow.ingest.network import BoundaryPolicy
from mailflow.ingest.report import IngestReport

FIXTURES = Path(__file__).parent / "fixtures" / "exim"


def parse(
    name: str, *, policy: BoundaryPolicy | None = None
) -> tuple[list[MessageFact], IngestReport]:
    return parse_lines((FIXTURES / name).read_text().splitlines(keepends=True), policy=policy)


def parse_lines(
    lines: list[str], *, policy: BoundaryPolicy | None = None
) -> tuple[list[MessageFact], IngestReport]:
    report = IngestReport()
    facts = parse_exim(lines, policy=policy or BoundaryPolicy(), reference_time=None,
                       report=report)
    return list(facts), report


def by_key(facts: list[MessageFact]) -> dict[str, MessageFact]:
    return {fact.source_key: fact for fact in facts}


def utc(day: int, hour: int, minute: int, second: int, micro: int = 0) -> datetime:
    return datetime(2021, 3, day, hour, minute, second, micro, tzinfo=UTC)


# Arrivals


def test_an_arrival_from_an_external_host_is_one_inbound_fact_with_its_sessions_tls() -> None:
    facts, report = parse("inbound.log")
    fact = by_key(facts)["exim:1lGkaA-0001aB-Cd:in"]

    assert fact.direction is Direction.INBOUND
    assert fact.occurred_at == utc(1, 10, 0, 1)
    assert (fact.tls_version, fact.tls_cipher) == (TlsVersion.TLS1_3, "TLS_AES_256_GCM_SHA384")
    assert (fact.peer_host, fact.peer_ip) == ("mx.example.net", "203.0.113.5")
    assert fact.sender_domain == "example.net"
    assert (fact.recipients, fact.recipient_domains) == (2, ("example.com",))
    assert fact.size_bytes == 4622
    assert fact.status is DeliveryStatus.RECEIVED
    assert fact.routes == ()
    assert report.facts == 4
    assert sum(report.skipped.values()) == 0


def test_plaintext_arrivals_are_none_and_tls_versions_are_read_in_each_spelling() -> None:
    facts = by_key(parse("inbound.log")[0])

    plain = facts["exim:1lGkbB-0002bC-De:in"]
    assert (plain.tls_version, plain.tls_cipher) == (TlsVersion.NONE, None)
    assert (plain.peer_host, plain.peer_ip) == (None, "198.51.100.9")  # no name, only a helo
    old = facts["exim:1lGkcC-0003cD-Ef:in"]
    assert (old.tls_version, old.tls_cipher) == (TlsVersion.TLS1_0, "AES256-SHA")
    assert old.peer_ip == "2001:db8:5::25"
    tls12 = facts["exim:1lGkdD-0004dE-Fg:in"]
    assert (tls12.tls_version, tls12.tls_cipher) == (
        TlsVersion.TLS1_2, "ECDHE-RSA-AES256-GCM-SHA384")


def test_local_mailbox_pipe_and_lmtp_deliveries_are_not_outbound() -> None:
    facts, _ = parse("inbound.log")

    assert {fact.direction for fact in facts} == {Direction.INBOUND}


def test_local_submissions_loopback_authenticated_and_internal_clients_are_not_inbound() -> None:
    facts, report = parse("internal.log")

    assert facts == []
    assert report.recognized_lines == 13
    assert sum(report.skipped.values()) == 0


# Deliveries


def test_a_message_to_one_relay_is_one_outbound_fact_counting_the_recipients_sent_there() -> None:
    facts = by_key(parse("outbound.log")[0])
    fact = facts["exim:1lGmaA-0001aB-Cd:out:mx.example.org[198.51.100.25]"]

    assert fact.direction is Direction.OUTBOUND
    assert fact.occurred_at == utc(1, 12, 0, 2)
    assert fact.recipients == 3  # the => line and its two -> lines
    assert fact.recipient_domains == ("example.org", "sub.example.org")
    assert (fact.tls_version, fact.tls_cipher) == (
        TlsVersion.TLS1_2, "ECDHE_RSA_AES_128_GCM_SHA256")
    assert (fact.peer_host, fact.peer_ip) == ("mx.example.org", "198.51.100.25")
    assert fact.routes == ("dnslookup", "remote_smtp")
    assert (fact.sender_domain, fact.size_bytes) == ("example.com", 5000)
    assert fact.status is DeliveryStatus.DELIVERED
    other = facts["exim:1lGmaA-0001aB-Cd:out:mx.example.net[203.0.113.25]"]
    assert (other.recipients, other.tls_version) == (1, TlsVersion.NONE)
    assert "exim:1lGmaA-0001aB-Cd:in" not in facts  # authenticated submission


def test_deferrals_and_failures_do_not_count_and_a_deferred_delivery_counts_once() -> None:
    facts = [fact for fact in parse("outbound.log")[0]
             if fact.source_key.startswith("exim:1lGmbB-0002bC-De")]

    assert len(facts) == 1
    [fact] = facts
    assert fact.source_key == "exim:1lGmbB-0002bC-De:out:mx2.example.org[198.51.100.26]"
    assert fact.occurred_at == utc(1, 13, 10, 1)
    assert (fact.recipients, fact.tls_version) == (1, TlsVersion.TLS1_3)


def test_a_delivery_whose_arrival_is_not_in_the_log_still_counts_with_its_f_sender() -> None:
    fact = by_key(parse("outbound.log")[0])[
        "exim:1lGmdD-0004dE-Fg:out:mx.example.org[198.51.100.25]"]

    assert (fact.sender_domain, fact.size_bytes, fact.recipients) == ("example.com", 0, 1)


def test_an_internal_relay_is_outbound_only_over_a_route_an_outbound_connector_lists() -> None:
    vpn = "exim:1lGmcC-0003cD-Ef:out:vpn-relay.example.com[192.168.120.5]"

    assert vpn not in by_key(parse("outbound.log")[0])
    for route in ("DNSLookup_VPN", "remote_smtp_smarthost"):
        policy = BoundaryPolicy(outbound_routes=frozenset({route.casefold()}))
        fact = by_key(parse("outbound.log", policy=policy)[0])[vpn]
        assert fact.routes == ("dnslookup_vpn", "remote_smtp_smarthost")
        assert (fact.tls_version, fact.peer_ip) == (TlsVersion.NONE, "192.168.120.5")

    internal = BoundaryPolicy(outbound_routes=frozenset({"dnslookup_vpn"}))
    assert parse("internal.log", policy=internal)[0] == []  # its smart host route is not listed


def test_the_same_log_gives_the_same_source_keys_so_loading_twice_changes_nothing() -> None:
    first, _ = parse("outbound.log")
    second, _ = parse("outbound.log")

    assert [fact.source_key for fact in first] == [fact.source_key for fact in second]
    assert len({fact.source_key for fact in first}) == len(first) == 4


# Time stamps and unusable lines


def test_time_stamps_with_a_zone_milliseconds_or_a_process_id_are_read_as_utc() -> None:
    facts = by_key(parse("timestamps.log")[0])

    assert facts["exim:1lGnaA-0001aB-Cd:in"].occurred_at == utc(1, 22, 30, 0)
    assert facts["exim:1lGnbB-0002bC-De:in"].occurred_at == utc(1, 23, 30, 0, 250_000)
    assert facts["exim:1lGncC-0003cD-Ef:in"].occurred_at == utc(2, 4, 30, 0)


def test_unusable_lines_are_counted_by_kind_and_the_rest_is_loaded() -> None:
    facts, report = parse("timestamps.log")

    assert report.skipped == {
        "unparseable timestamp": 1, "timestamp out of range": 1,
        "exim line without time stamp": 1, "malformed exim line": 1,
        "exim line whose H= address is not an IP address": 1,
    }
    assert report.stored_as_zero == {"size out of range": 1}
    assert len(facts) == report.facts == 4
    assert by_key(facts)["exim:1lGngG-0007gH-Ij:in"].size_bytes == 0
    assert report.lines == 10


ARRIVAL = ("2021-03-01 10:00:00 1lGpaA-0001aB-Cd <= a@example.net H=mx.example.net "
           "[{ip}] P=esmtps X=TLS1.3:TLS_AES_256_GCM_SHA384:256 S={size}\n")
DELIVERY = ("2021-03-01 10:00:01 1lGpaA-0001aB-Cd => b@example.org R=dnslookup T=remote_smtp "
            "H=mx.example.org [198.51.100.9] X=TLS1.2:ECDHE_RSA_AES_256_GCM_SHA384:256\n")
COMPLETED = "2021-03-01 10:00:02 1lGpaA-0001aB-Cd Completed\n"


def test_an_arrival_whose_address_is_no_ip_is_counted_and_its_deliveries_out_still_count() -> None:
    facts, report = parse_lines([ARRIVAL.format(ip="999.19.109.247", size=4622), DELIVERY,
                                 COMPLETED])

    [outbound] = facts
    assert (outbound.direction, outbound.peer_ip) == (Direction.OUTBOUND, "198.51.100.9")
    assert (outbound.sender_domain, outbound.size_bytes) == ("example.net", 4622)
    assert report.skipped == {"exim line whose H= address is not an IP address": 1}
    assert "skipped lines: exim line whose H= address is not an IP address: 1" in report.summary()


def test_an_authenticated_arrival_is_internal_whatever_its_address_says() -> None:
    submitted = ARRIVAL.format(ip="999.19.109.247", size=10).replace(" P=esmtps", " P=esmtpsa")

    facts, report = parse_lines([submitted, COMPLETED])

    assert (facts, sum(report.skipped.values())) == ([], 0)


def test_a_size_out_of_range_is_stored_as_0_and_the_summary_says_so_not_skipped() -> None:
    lines = [ARRIVAL.format(ip="203.0.113.5", size="-5"), DELIVERY, COMPLETED,
             *(line.replace("1lGpaA", "1lGpbB") for line in
               (ARRIVAL.format(ip="203.0.113.5", size="9" * 40), COMPLETED))]

    facts, report = parse_lines(lines)

    assert sorted(fact.source_key for fact in facts) == [
        "exim:1lGpaA-0001aB-Cd:in", "exim:1lGpaA-0001aB-Cd:out:mx.example.org[198.51.100.9]",
        "exim:1lGpbB-0001aB-Cd:in",
    ]
    assert {fact.size_bytes for fact in facts} == {0}
    assert (report.skipped, report.stored_as_zero) == ({}, {"size out of range": 2})
    assert report.summary() == (
        "5 lines, 3 message facts, no lines skipped; values stored as 0: size out of range: 2"
    )


def test_a_size_out_of_range_of_a_message_that_stays_inside_is_not_counted() -> None:
    facts, report = parse_lines([ARRIVAL.format(ip="10.0.0.5", size="-5"), COMPLETED])

    assert (facts, report.stored_as_zero, report.skipped) == ([], {}, {})


def test_a_time_stamp_outside_the_calendar_is_out_of_range_and_an_impossible_date_unparseable(
) -> None:
    stamps = ["9999-12-31 23:59:59", "9999-12-31 23:59:59 -0100", "0001-01-01 00:00:00 +0100",
              "0000-01-01 00:00:00", "2021-02-30 10:00:00", "2021-03-01 25:00:00"]
    lines = [ARRIVAL.format(ip="203.0.113.5", size=1).replace("2021-03-01 10:00:00", stamp)
             for stamp in stamps]

    facts, report = parse_lines(lines)

    assert facts == []
    assert report.skipped == {"timestamp out of range": 4, "unparseable timestamp": 2}


def test_a_message_is_emitted_when_exim_logs_it_completed() -> None:
    lines = (FIXTURES / "inbound.log").read_text().splitlines(keepends=True)
    report = IngestReport()
    stream = parse_exim(iter(lines), policy=BoundaryPolicy(), reference_time=None, report=report)

    first = next(stream)

    assert first.source_key == "exim:1lGkaA-0001aB-Cd:in"
    assert report.lines == 5  # read up to its Completed line, not further
