"""mailflow's own record format: every field read, every bad value named."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
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
        ({"source_key": ""}, "source_key is missing"),
        ({"occurred_at": "2026-01-27 08:15"}, "has no UTC offset"),
        ({"occurred_at": "yesterday"}, "'yesterday' is not an ISO 8601 time"),
        ({"occurred_at": 1769501700}, "occurred_at is an ISO 8601 string, not a number"),
        ({"direction": "SIDEWAYS"}, "direction 'SIDEWAYS' is not one of INBOUND, OUTBOUND"),
        ({"tls_version": "SSLv3"}, "tls_version 'SSLv3' is not one of NONE, TLS1_0"),
        ({"status": "BOUNCED"}, "status 'BOUNCED' is not one of RECEIVED, DELIVERED"),
        ({"peer_ip": "300.1.2.3"}, "peer_ip '300.1.2.3' is not an IPv4 or IPv6 address"),
        ({"recipients": -1}, "recipients a number -1 is not a whole number from 0"),
        ({"recipients": True}, "recipients a boolean true is not a whole number"),
        ({"size_bytes": 1.5}, "size_bytes a number 1.5 is not a whole number"),
        ({"size_bytes": 2**63}, "is not a whole number from 0 to 9223372036854775807"),
        ({"recipient_domains": "a.example"}, None),
        ({"recipient_domains": [1, 2]}, "recipient_domains is a list of strings"),
        ({"peer_host": "h" * 300}, "peer_host 'hhhh"),
        ({"sender_domain": {"a": 1}}, "sender_domain is a string, not an object"),
        ({"version": 2}, "version 2 is not a format this server reads; it reads version 1"),
        ({"source_key": "k" * 2000}, "use at most 1024 bytes"),
    ],
)
def test_a_bad_value_is_named_with_what_would_be_accepted(
    fields: dict[str, Any], named: str | None
) -> None:
    if named is None:  # a string of domains is accepted, as CSV carries them
        assert fact_from_record({**MINIMAL, **fields}).recipient_domains == ("a.example",)
        return
    assert named in rejection(**fields)


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
        ("source_key,occurred_at,direction,direction", "names a column twice"),
    ],
)
def test_a_bad_csv_header_is_named(header: str, named: str) -> None:
    with pytest.raises(RejectedRecord, match=named):
        RecordReader("csv").read(1, header)


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
