"""SMTP TLS reports read from JSON, gzip and email, in both spellings; bad reports named."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mailflow.domain import TlsFailureDetail, TlsPolicyType, TlsReport
from mailflow.ingest.tlsrpt import (
    InvalidTlsReportError,
    ReportDocument,
    parse_report,
    read_report_file,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tlsrpt"


def read_reports(path: Path) -> list[TlsReport]:
    return [parse_report(document) for document in read_report_file(str(path))]


def report_json(**changes: Any) -> dict[str, Any]:
    """The RFC-spelling fixture as a dict, top-level keys replaced (None removes one)."""
    report: dict[str, Any] = json.loads((FIXTURES / "rfc_spelling.json").read_text())
    for key, value in changes.items():
        key = key.replace("_", "-")
        if value is None:
            del report[key]
        else:
            report[key] = value
    return report


def error_of(report: object, source: str = "bad.json") -> str:
    document = ReportDocument(source, json.dumps(report).encode())
    with pytest.raises(InvalidTlsReportError) as raised:
        parse_report(document)
    return str(raised.value)


def mail(*parts: tuple[bytes, str, str, str]) -> bytes:
    """An email from a reporter with the given (data, maintype, subtype, filename) parts."""
    message = EmailMessage()
    message["From"] = "tlsrpt@sender.example.net"
    message["To"] = "tls-reports@example.com"
    message["Subject"] = "Report Domain: example.com Submitter: sender.example.net"
    message["TLS-Report-Domain"] = "example.com"
    message.set_content("This is an aggregate TLS report from sender.example.net")
    for data, maintype, subtype, filename in parts:
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def test_a_report_in_the_rfc_spelling_keeps_every_field() -> None:
    [report] = read_reports(FIXTURES / "rfc_spelling.json")

    assert report.report_id == "2025-03-01T00:00:00Z_example.com@sender.example.net"
    assert report.reporting_organization == "Sender Example Ltd"
    assert report.contact_info == "tlsrpt@sender.example.net"
    assert report.start == datetime(2025, 3, 1, tzinfo=UTC)
    assert report.end == datetime(2025, 3, 1, 23, 59, 59, tzinfo=UTC)
    sts, none = report.policies
    assert sts.policy_type is TlsPolicyType.STS
    assert sts.policy_domain == "example.com"  # lower case, no trailing dot
    assert sts.policy_strings == (
        "version: STSv1", "mode: enforce", "mx: *.mail.example.com", "max_age: 604800")
    assert sts.mx_host_patterns == ("*.mail.example.com",)
    assert (sts.successful_sessions, sts.failed_sessions) == (120, 5)
    assert sts.failure_details == (
        TlsFailureDetail(
            result_type="certificate-expired", failed_sessions=4,
            sending_mta_ip="192.0.2.10", receiving_mx_hostname="mx1.mail.example.com",
            receiving_mx_helo="mx1.mail.example.com", receiving_ip="198.51.100.25",
            additional_information="https://sender.example.net/tlsrpt/details/1",
            failure_reason_code="X509_V_ERR_CERT_HAS_EXPIRED",
        ),
        TlsFailureDetail(
            result_type="starttls-not-supported", failed_sessions=1,
            sending_mta_ip="2001:db8::10", receiving_ip="2001:db8::25",
        ),
    )
    assert none.policy_type is TlsPolicyType.NO_POLICY_FOUND
    assert (none.policy_domain, none.successful_sessions, none.failure_details) == (
        "example.org", 7, ())


def test_the_other_spellings_and_single_strings_are_read_too() -> None:
    [report] = read_reports(FIXTURES / "pattern_spelling.json")

    [policy] = report.policies
    assert policy.policy_type is TlsPolicyType.TLSA
    assert policy.mx_host_patterns == ("mx1.mail.example.com",)
    assert policy.policy_strings == ("3 1 1 0123456789abcdef",)
    assert policy.failure_details[0].additional_information == "https://other.example.net/why"
    assert report.contact_info is None
    assert report.start == datetime(2025, 3, 2, 3, 0, tzinfo=UTC)


def test_both_spellings_in_one_policy_are_merged_without_repeats() -> None:
    report = report_json()
    report["policies"][0]["policy"]["mx-host-pattern"] = ["*.mail.example.com", "mx9.example.com"]
    document = ReportDocument("both.json", json.dumps(report).encode())

    assert parse_report(document).policies[0].mx_host_patterns == (
        "*.mail.example.com", "mx9.example.com")


def test_gzip_is_recognized_by_its_bytes_whatever_the_file_is_called(tmp_path: Path) -> None:
    packed = tmp_path / "sender.example.net!example.com!1740787200!1740873599.json"
    packed.write_bytes(gzip.compress((FIXTURES / "rfc_spelling.json").read_bytes()))

    [report] = read_reports(packed)

    assert report.policies[0].failed_sessions == 5


def test_a_report_mailed_as_a_tlsrpt_gzip_part_is_found(tmp_path: Path) -> None:
    data = gzip.compress((FIXTURES / "rfc_spelling.json").read_bytes())
    message = tmp_path / "report.eml"
    message.write_bytes(mail((data, "application", "tlsrpt+gzip", "report.json.gz")))

    [report] = read_reports(message)

    assert report.reporting_organization == "Sender Example Ltd"


def test_an_email_with_two_report_attachments_yields_both(tmp_path: Path) -> None:
    message = tmp_path / "reports.eml"
    message.write_bytes(mail(
        (gzip.compress((FIXTURES / "rfc_spelling.json").read_bytes()),
         "application", "octet-stream", "one.json.gz"),
        ((FIXTURES / "pattern_spelling.json").read_bytes(), "application", "json", "two.json"),
    ))

    reports = read_reports(message)

    assert [report.report_id for report in reports] == [
        "2025-03-01T00:00:00Z_example.com@sender.example.net", "other-sender-0001"]


def test_an_email_without_a_report_is_refused_by_name(tmp_path: Path) -> None:
    message = tmp_path / "hello.eml"
    message.write_bytes(mail((b"%PDF-1.4", "application", "octet-stream", "invoice.pdf")))

    with pytest.raises(InvalidTlsReportError, match=r"hello\.eml: an email without a TLS report; "
                       r"expected a part of type application/tlsrpt\+gzip"):
        read_report_file(str(message))


def test_a_bad_report_inside_an_email_names_the_attachment(tmp_path: Path) -> None:
    message = tmp_path / "bad.eml"
    message.write_bytes(mail((b'{"report-id": 7}', "application", "tlsrpt+json", "r.json")))

    [document] = read_report_file(str(message))
    with pytest.raises(InvalidTlsReportError, match=r"bad\.eml, attachment r\.json: report-id: "
                       r"7 is not a string"):
        parse_report(document)


def test_a_truncated_gzip_file_is_refused_by_name(tmp_path: Path) -> None:
    packed = tmp_path / "cut.json.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "rfc_spelling.json").read_bytes())[:40])

    with pytest.raises(InvalidTlsReportError, match=r"cut\.json\.gz: the gzip data cannot be "
                       r"read .*expected a complete gzip-compressed JSON report"):
        read_report_file(str(packed))


def test_text_that_is_neither_json_nor_mail_is_refused_as_not_json(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("just some notes\n")

    [document] = read_report_file(str(text))
    with pytest.raises(InvalidTlsReportError, match=r"notes\.txt: not JSON \(.*line 1, column 1\); "
                       r"expected a JSON TLS report"):
        parse_report(document)


def test_json_nested_too_deeply_is_refused_by_name(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)

    [document] = read_report_file(str(deep))
    with pytest.raises(InvalidTlsReportError, match=r"deep\.json: JSON nested too deeply"):
        parse_report(document)


@pytest.mark.parametrize(
    ("report", "message"),
    [
        (report_json(report_id=None), "report-id: missing; expected a string"),
        (report_json(report_id=12), "report-id: 12 is not a string"),
        (report_json(report_id=" "), 'report-id: " " is not a usable report id'),
        (report_json(date_range=None), "date-range: missing; expected a JSON object"),
        (report_json(date_range="2025-03-01"), 'date-range: "2025-03-01" is not a JSON object'),
        (report_json(date_range={"start-datetime": "2025-03-01T00:00:00Z"}),
         "date-range.end-datetime: missing; expected an RFC 3339 date-time"),
        (report_json(date_range={"start-datetime": "yesterday",
                                 "end-datetime": "2025-03-01T00:00:00Z"}),
         'date-range.start-datetime: "yesterday" is not an RFC 3339 date-time'),
        (report_json(date_range={"start-datetime": "2025-03-01T00:00:00",
                                 "end-datetime": "2025-03-01T23:00:00Z"}),
         'date-range.start-datetime: "2025-03-01T00:00:00" has no time zone'),
        (report_json(date_range={"start-datetime": "2025-03-02T00:00:00Z",
                                 "end-datetime": "2025-03-01T00:00:00Z"}),
         "date-range: end-datetime 2025-03-01T00:00:00+00:00 is before start-datetime"),
        (report_json(date_range={"start-datetime": "0001-01-01T00:00:00Z",
                                 "end-datetime": "2025-03-01T00:00:00Z"}),
         'date-range.start-datetime: "0001-01-01T00:00:00Z" is outside the accepted range of '
         "times, from 1990-01-01T00:00:00Z to 7 days after now"),
        (report_json(date_range={"start-datetime": "2025-03-01T00:00:00Z",
                                 "end-datetime": "9999-12-31T23:59:59Z"}),
         'date-range.end-datetime: "9999-12-31T23:59:59Z" is outside the accepted range'),
        (report_json(organization_name=None), "organization-name: missing; expected a string"),
        (report_json(policies={}), "policies: {} is not a list; expected a list of JSON objects"),
        (report_json(policies=[[]]), "policies[0]: [] is not a JSON object"),
        ([], "the report: [] is not a JSON object"),
    ],
)
def test_a_report_missing_a_field_or_of_the_wrong_type_names_the_field(
    report: object, message: str
) -> None:
    error = error_of(report)

    assert error.startswith(f"bad.json: {message}")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("policy", "policy-type"), "dane",
         "policies[0].policy.policy-type: \"dane\" is not a policy type; "
         "expected one of 'sts', 'tlsa', 'no-policy-found'"),
        (("policy", "policy-domain"), "not a domain",
         'policies[0].policy.policy-domain: "not a domain" is not a domain name'),
        (("policy", "mx-host"), 5, "policies[0].policy.mx-host: 5 is not a list"),
        (("summary", "total-failure-session-count"), "5",
         'policies[0].summary.total-failure-session-count: "5" is not a session count; '
         "expected a whole number from 0 to"),
        (("summary", "total-successful-session-count"), -1,
         "policies[0].summary.total-successful-session-count: -1 is not a session count"),
        (("summary", "total-successful-session-count"), 1.5,
         "policies[0].summary.total-successful-session-count: 1.5 is not a session count"),
        (("failure-details", 0, "sending-mta-ip"), "192.0.2.999",
         'policies[0].failure-details[0].sending-mta-ip: "192.0.2.999" is not an IP address'),
        (("failure-details", 1, "failed-session-count"), True,
         "policies[0].failure-details[1].failed-session-count: true is not a session count"),
        (("failure-details", 1, "result-type"), None,
         "policies[0].failure-details[1].result-type: missing; expected a string"),
        (("failure-details", 0, "failure-reason-code"), "a\x00b",
         "policies[0].failure-details[0].failure-reason-code: holds a NUL character"),
        (("failure-details", 0, "receiving-mx-helo"), "mx\ud800",
         "policies[0].failure-details[0].receiving-mx-helo: holds an unpaired surrogate"),
        (("policy", "policy-domain"), "bücher.example",
         'policies[0].policy.policy-domain: "bücher.example" is not a domain name; '
         'expected a name such as "example.com", internationalized names in their xn-- form'),
    ],
)
def test_a_bad_policy_field_is_named_with_its_path(
    path: tuple[str | int, ...], value: object, message: str
) -> None:
    report = report_json()
    parent: Any = report["policies"][0]
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value

    assert error_of(report).startswith(f"bad.json: {message}")
