"""mailflow's own record format: every field read, every bad value named."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailflow.domain import DeliveryStatus, Direction, TlsVersion
from mailflow.ingest.canonical import (
    FIELDS,
    RecordReader,
    RejectedRecord,
    Rejection,
    fact_from_record,
    parse_records,
)
from mailflow.ingest.report import IngestReport

DOCS = Path(__file__).parents[2] / "docs" / "records.md"
MINIMAL = {"source_key": "k", "occurred_at": "2026-01-27T08:15:00Z", "direction": "INBOUND"}


def rejection(**fields: Any) -> str:
    with pytest.raises(RejectedRecord) as raised:
        fact_from_record({**MINIMAL, **fields})
    return str(raised.value)


def test_a_full_record_becomes_the_fact_it_describes() -> None:
    fact = fact_from_record({
        "source_key": "mx1/4Bc9", "occurred_at": "2026-01-27T09:15:00+01:00",
        "direction": "outbound", "tls_version": "TLSv1.3", "tls_cipher": "TLS_AES_256_GCM_SHA384",
        "peer_host": "MX.Partner.example", "peer_ip": "2001:db8::25",
        "sender_domain": "Acme.example",
        "recipient_domains": ["Partner.example", "partner.example", "other.example"],
        "recipients": 3, "size_bytes": 52_000, "status": "delivered", "connector": "Partner",
        "version": 1,
    })

    assert fact.source_key == "mx1/4Bc9"
    assert fact.occurred_at == datetime(2026, 1, 27, 8, 15, tzinfo=UTC)
    assert fact.direction is Direction.OUTBOUND
    assert fact.tls_version is TlsVersion.TLS1_3
    assert fact.tls_cipher == "TLS_AES_256_GCM_SHA384"
    assert (fact.peer_host, fact.peer_ip) == ("mx.partner.example", "2001:db8::25")
    assert fact.sender_domain == "acme.example"
    assert fact.recipient_domains == ("partner.example", "other.example")
    assert (fact.recipients, fact.size_bytes) == (3, 52_000)
    assert fact.status is DeliveryStatus.DELIVERED
    assert fact.routes == ("Partner",)


@pytest.mark.parametrize(
    ("direction", "status"),
    [("INBOUND", DeliveryStatus.RECEIVED), ("OUTBOUND", DeliveryStatus.DELIVERED)],
)
def test_a_minimal_record_takes_the_documented_defaults(
    direction: str, status: DeliveryStatus
) -> None:
    fact = fact_from_record({**MINIMAL, "direction": direction})

    assert fact.tls_version is TlsVersion.UNKNOWN
    assert (fact.recipients, fact.size_bytes, fact.recipient_domains) == (1, 0, ())
    assert fact.status is status
    assert fact.routes == ()


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"recipents": 2}, "unknown field 'recipents'"),
        ({"direction": None}, "direction is missing"),
        ({"occurred_at": "2026-01-27 08:15"}, "has no UTC offset"),
        ({"occurred_at": "yesterday"}, "'yesterday' is not an ISO 8601 time"),
        ({"occurred_at": 1769501700}, "occurred_at is an ISO 8601 string, not a number"),
        ({"direction": "SIDEWAYS"}, "direction 'SIDEWAYS' is not one of INBOUND, OUTBOUND"),
        ({"tls_version": "SSLv3"}, "tls_version 'SSLv3' is not one of NONE, TLS1_0"),
        ({"status": "BOUNCED"}, "status 'BOUNCED' is not one of RECEIVED, DELIVERED"),
        ({"peer_ip": "300.1.2.3"}, "peer_ip '300.1.2.3' is not an IPv4 or IPv6 address"),
        ({"recipients": -1}, "recipients -1 is out of range; give an integer from 0 to"),
        ({"recipients": True}, "recipients is an integer from 0 to 2147483647, not a boolean"),
        ({"size_bytes": 1.5}, "size_bytes 1.5 is not an integer from 0 to"),
        ({"size_bytes": 2**63}, "out of range; give an integer from 0 to 1099511627776"),
        ({"size_bytes": 2**40 + 1}, "out of range; give an integer from 0 to 1099511627776"),
        ({"recipients": "3"}, "recipients is an integer from 0 to 2147483647, not '3'"),
        ({"recipients": 1e20}, "recipients 1e+20 is out of range; give an integer from 0"),
        ({"recipients": 2.0}, "recipients 2.0 is not an integer from 0 to 2147483647 (write"),
        ({"recipient_domains": "a.example"},
         "recipient_domains is a list of domain names such as [\"example.com\"] (in CSV, "
         "separated by spaces), not 'a.example'"),
        ({"recipient_domains": [1, 2]}, "not a list [1,2]"),
        ({"recipient_domains": ["ok.example", "no good"]},
         "recipient_domains 'no good' is not a domain name such as 'example.com'"),
        ({"sender_domain": "not a domain!"},
         "sender_domain 'not a domain!' is not a domain name such as 'example.com'"),
        ({"sender_domain": "a" * 200}, f"sender_domain '{'a' * 77}...' is not a domain name"),
        ({"peer_host": "h" * 300}, f"peer_host '{'h' * 77}...' is too long"),
        ({"sender_domain": {"a": 1}}, "sender_domain is a string, not an object"),
        ({"version": 2}, "version 2 is not a format this server reads; it reads version 1"),
        ({"version": "1"}, "version '1' is not a format this server reads; it reads version 1 "
                           "(the number, or no version field)"),
        ({"version": True}, "version a boolean true is not a format this server reads"),
        ({"source_key": ""}, "source_key is empty; every record needs source_key, "),
        ({"source_key": "k" * 2000}, "use at most 1024 bytes"),
    ],
)
def test_a_bad_value_is_named_with_what_would_be_accepted(
    fields: dict[str, Any], named: str
) -> None:
    assert named in rejection(**fields)


def test_an_empty_sender_domain_is_the_null_sender_and_a_trailing_dot_is_dropped() -> None:
    fact = fact_from_record({**MINIMAL, "sender_domain": "", "recipient_domains": ["B.example."]})

    assert (fact.sender_domain, fact.recipient_domains) == (None, ("b.example",))


@pytest.mark.parametrize(
    ("line", "named"),
    [("null", "null"), ("[1]", "a list [1]"), ('"text"', "'text'"), ("3", "a number 3"),
     ("true", "a boolean true")],
)
def test_a_line_that_is_no_json_object_is_named_by_its_json_type(line: str, named: str) -> None:
    with pytest.raises(RejectedRecord) as raised:
        RecordReader("ndjson").read(1, line)

    assert str(raised.value) == f"a record is a JSON object {{...}}, not {named}"


@pytest.mark.parametrize(
    "occurred_at",
    ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00", "9999-12-31T23:59:59Z",
     "1989-12-31T23:59:59Z", "2999-01-01T00:00:00+01:00"],
)
def test_a_time_outside_the_window_is_rejected_naming_the_value_and_the_range(
    occurred_at: str,
) -> None:
    reason = rejection(occurred_at=occurred_at)

    assert reason.startswith(f"occurred_at '{occurred_at}' is outside the accepted range")
    assert "from 1990-01-01T00:00:00Z to 7 days after now (" in reason


def test_the_window_takes_its_first_moment_and_a_week_ahead_of_now() -> None:
    soon = (datetime.now(UTC) + timedelta(days=6)).isoformat()

    assert fact_from_record({**MINIMAL, "occurred_at": "1990-01-01T00:00:00Z"})
    assert fact_from_record({**MINIMAL, "occurred_at": soon})
    assert "outside" in rejection(occurred_at="1990-01-01T00:59:59+01:00")


def test_csv_reads_its_header_then_one_record_a_line_in_any_column_order() -> None:
    reader = RecordReader("csv")

    assert reader.read(1, "direction,occurred_at,source_key,recipients,recipient_domains") is None
    fact = reader.read(2, 'OUTBOUND,2026-01-27T08:15:00Z,c-1,2,"a.example b.example"')

    assert fact is not None
    assert (fact.source_key, fact.recipients) == ("c-1", 2)
    assert fact.recipient_domains == ("a.example", "b.example")
    with pytest.raises(RejectedRecord, match="3 values for the header's 5 columns"):
        reader.read(3, "OUTBOUND,2026-01-27T08:15:00Z,c-2")


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("source_key,occurred_at,direction,recipents", "unknown column 'recipents'"),
        ("source_key,occurred_at", "has no direction column"),
        ("source_key,occurred_at,direction,Direction", "names the column direction twice"),
    ],
)
def test_a_bad_csv_header_is_named(header: str, named: str) -> None:
    with pytest.raises(RejectedRecord, match=named):
        RecordReader("csv").read(1, header)


def test_csv_columns_are_named_in_any_case_with_spaces_around_after_a_byte_order_mark() -> None:
    reader = RecordReader("csv")

    assert reader.read(1, "\ufeffSource_Key, OCCURRED_AT ,Direction,Recipients") is None
    fact = reader.read(2, "c-1,2026-01-27T08:15:00Z,inbound,3")

    assert fact is not None
    assert (fact.source_key, fact.recipients) == ("c-1", 3)


def test_a_byte_order_mark_before_the_first_json_record_is_read_past() -> None:
    fact = RecordReader("ndjson").read(1, "\ufeff" + json.dumps(MINIMAL))

    assert fact is not None
    assert fact.source_key == "k"


def test_a_bad_csv_header_rejects_its_file_once_naming_the_column_and_the_accepted_ones() -> None:
    report = IngestReport()
    rejections: list[Rejection] = []

    def lines() -> Any:
        report.files_started += 1
        yield from ["source_key,occurred_at,direction,sorce", "k1,2026-01-27T08:15:00Z,IN,x",
                    "source_key,occurred_at,direction", "k2,2026-01-27T08:15:00Z,INBOUND,x"]
        report.files_started += 1
        yield from ["source_key,occurred_at,direction", "k3,2026-01-27T08:15:00Z,INBOUND"]

    facts = list(parse_records(lines(), "csv", report, rejections.append))

    assert [fact.source_key for fact in facts] == ["k3"]
    assert [rejection.line for rejection in rejections] == [1]
    assert rejections[0].reason.startswith(
        "the CSV header names the unknown column 'sorce', so no line of this file is read; "
        f"the first line names the columns, from {', '.join(FIELDS)}"
    )
    assert report.skipped == {"rejected record": 1, "line under a bad CSV header": 3}


def test_parse_records_counts_and_numbers_rejections_per_file_and_skips_blank_lines() -> None:
    report = IngestReport()
    rejections: list[Rejection] = []
    good = json.dumps(MINIMAL)

    def lines() -> Any:
        report.files_started += 1
        yield from [good, "", "[]"]
        report.files_started += 1
        yield from ["nope", good.replace('"k"', '"k2"')]

    facts = list(parse_records(lines(), "ndjson", report, rejections.append))

    assert [fact.source_key for fact in facts] == ["k", "k2"]
    assert [rejection.line for rejection in rejections] == [3, 1]
    assert report.lines == 5
    assert report.facts == 2
    assert report.skipped["rejected record"] == 2


def test_the_documented_fields_are_the_fields_read() -> None:
    table = DOCS.read_text()
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)

    assert documented == list(FIELDS)


@pytest.mark.parametrize("kind", ["ndjson", "csv"])
def test_the_documented_examples_load_without_rejections(kind: str) -> None:
    example = re.search(rf"```{kind}\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert example is not None, f"docs/records.md has no {kind} example"
    rejections: list[Rejection] = []

    facts = list(parse_records(example.group(1).splitlines(), kind, IngestReport(),
                               rejections.append))

    assert rejections == []
    assert len(facts) >= 2
