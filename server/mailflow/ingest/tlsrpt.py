"""Read SMTP TLS reports (RFC 8460): JSON, gzip JSON, or the email a reporter mails them in.

Field names follow RFC 8460, section 4.4. Reporters spell a few of them differently, and
both spellings are read: the MX host patterns of a policy as ``mx-host`` (the RFC's JSON) or
``mx-host-pattern`` (the name parsedmarc reads), as a string or a list; a failure's extra
information as ``additional-information`` (the RFC) or ``additional-info-uri``; policy
strings as a list or a single string. Everything else must have the type the RFC gives it:
a report that does not is refused whole, with an error naming the file, the field and what
would be accepted.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import io
import ipaddress
import json
import logging
import sys
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import asyncpg

from mailflow.domain import TlsFailureDetail, TlsPolicy, TlsPolicyType, TlsReport
from mailflow.errors import MailflowError
from mailflow.ingest.report import plural
from mailflow.ingest.sources import GZIP_MAGIC, STDIN, display_name
from mailflow.ingest.window import accepted_range, in_window
from mailflow.store.isolation import owner_transaction
from mailflow.store.organizations import ensure_organization
from mailflow.store.tls_reports import store_tls_report

log = logging.getLogger("mailflow.ingest")

MAX_REPORT_BYTES = 32 * 1024 * 1024  # far above any real report; stops a gzip bomb
MAX_REPORT_ID_BYTES = 1024  # far inside the 2704 bytes a primary key's index row may hold
MAX_COUNT = 2**40  # sessions of one policy in one report; a day's sum stays within a bigint

REPORT_CONTENT_TYPES = ("application/tlsrpt+gzip", "application/tlsrpt+json")
ATTACHMENT_CONTENT_TYPES = ("application/gzip", "application/x-gzip", "application/json")
ATTACHMENT_SUFFIXES = (".json", ".json.gz", ".gz")

MX_HOST_FIELDS = ("mx-host", "mx-host-pattern")
ADDITIONAL_INFORMATION_FIELDS = ("additional-information", "additional-info-uri")
POLICY_TYPES = ", ".join(repr(policy_type.value) for policy_type in TlsPolicyType)


class InvalidTlsReportError(MailflowError):
    """A file holds no SMTP TLS report that can be stored as given."""

    code = "INVALID_TLS_REPORT"


@dataclass(frozen=True, slots=True)
class ReportDocument:
    """The bytes of one JSON report and where they came from, for error messages."""

    source: str
    data: bytes


def read_report_file(name: str) -> list[ReportDocument]:
    """The JSON reports in one file ('-' is stdin): plain or gzip JSON, or an email.

    Gzip is detected by its magic bytes, whatever the file is named. An email may carry
    several reports; each is one document. Raises InvalidTlsReportError or OSError.
    """
    source = display_name(name)
    if name == STDIN:
        raw = sys.stdin.buffer.read(MAX_REPORT_BYTES + 1)
    else:
        with open(name, "rb") as file:
            raw = file.read(MAX_REPORT_BYTES + 1)
    data = _decompressed(raw, source)
    if _looks_like_json(data):
        return [ReportDocument(source, data)]
    message = email.message_from_bytes(data, policy=email.policy.default)
    if not message.keys():
        return [ReportDocument(source, data)]  # neither JSON nor mail: parse_report says why
    assert isinstance(message, EmailMessage)
    return list(_email_reports(message, source))


def _decompressed(raw: bytes, source: str) -> bytes:
    if len(raw) > MAX_REPORT_BYTES:
        raise InvalidTlsReportError(
            f"{source}: larger than {MAX_REPORT_BYTES} bytes; a TLS report is far smaller"
        )
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            data = stream.read(MAX_REPORT_BYTES + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise InvalidTlsReportError(
            f"{source}: the gzip data cannot be read ({error or 'truncated'}); "
            "expected a complete gzip-compressed JSON report"
        ) from None
    if len(data) > MAX_REPORT_BYTES:
        raise InvalidTlsReportError(
            f"{source}: unpacks to more than {MAX_REPORT_BYTES} bytes; "
            "a TLS report is far smaller"
        )
    return data


def _looks_like_json(data: bytes) -> bool:
    return data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[")


def _email_reports(message: EmailMessage, source: str) -> Iterator[ReportDocument]:
    """The report parts of an email: tlsrpt media types first, else JSON or gzip attachments."""
    parts = [part for part in message.walk() if not part.is_multipart()]
    chosen = [part for part in parts if part.get_content_type() in REPORT_CONTENT_TYPES]
    if not chosen:
        chosen = [part for part in parts if _is_report_attachment(part)]
    if not chosen:
        raise InvalidTlsReportError(
            f"{source}: an email without a TLS report; expected a part of type "
            f"{' or '.join(REPORT_CONTENT_TYPES)}, or a .json or .json.gz attachment"
        )
    for number, part in enumerate(chosen, start=1):
        name = part.get_filename() or f"part {number} ({part.get_content_type()})"
        part_source = f"{source}, attachment {name}"
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload:
            raise InvalidTlsReportError(f"{part_source}: the attachment is empty")
        yield ReportDocument(part_source, _decompressed(payload, part_source))


def _is_report_attachment(part: Any) -> bool:
    filename = (part.get_filename() or "").lower()
    return bool(
        filename.endswith(ATTACHMENT_SUFFIXES)
        or part.get_content_type() in ATTACHMENT_CONTENT_TYPES
    )


def parse_report(document: ReportDocument) -> TlsReport:
    """The report in ``document``; InvalidTlsReportError names the field that is wrong."""
    try:
        value = json.loads(document.data.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise InvalidTlsReportError(
            f"{document.source}: not UTF-8 text (byte {error.start}); "
            "expected a JSON TLS report, gzip-compressed or not, or an email carrying one"
        ) from None
    except json.JSONDecodeError as error:
        raise InvalidTlsReportError(
            f"{document.source}: not JSON ({error.msg} at line {error.lineno}, column "
            f"{error.colno}); expected a JSON TLS report, gzip-compressed or not, "
            "or an email carrying one"
        ) from None
    except RecursionError:
        raise InvalidTlsReportError(
            f"{document.source}: JSON nested too deeply to be a TLS report; expected a JSON "
            "TLS report, gzip-compressed or not, or an email carrying one"
        ) from None
    try:
        return _report(_Fields(value, ""))
    except _FieldError as error:
        raise InvalidTlsReportError(f"{document.source}: {error}") from None


class _FieldError(ValueError):
    """One field of a report is missing or wrong: ``str()`` names it and what is accepted."""


class _Fields:
    """A JSON object of a report and its path, with typed reads that name the path on error."""

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, dict):
            where = path or "the report"
            raise _FieldError(f"{where}: {_shown(value)} is not a JSON object; expected {{...}}")
        self.value: Mapping[str, object] = value
        self.path = path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return self.value.get(key) is not None

    def child(self, key: str) -> _Fields:
        return _Fields(self.required(key, "a JSON object"), self.at(key))

    def required(self, key: str, expected: str) -> object:
        if key not in self.value or self.value[key] is None:
            raise _FieldError(f"{self.at(key)}: missing; expected {expected}")
        return self.value[key]

    def text(self, key: str, what: str = "a string") -> str:
        return _text(self.required(key, what), self.at(key), what)

    def optional_text(self, *keys: str) -> str | None:
        for key in keys:
            if self.has(key):
                return _text(self.value[key], self.at(key), "a string")
        return None

    def count(self, key: str) -> int:
        value = self.required(key, "a whole number of sessions")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            raise _FieldError(
                f"{self.at(key)}: {_shown(value)} is not a session count; "
                f"expected a whole number from 0 to {MAX_COUNT}"
            )
        return value

    def moment(self, key: str) -> datetime:
        what = 'an RFC 3339 date-time with a time zone, such as "2024-01-09T00:00:00Z"'
        text = self.text(key, what)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _FieldError(f"{self.at(key)}: {_shown(text)} is not {what}") from None
        if moment.tzinfo is None:
            raise _FieldError(f"{self.at(key)}: {_shown(text)} has no time zone; expected {what}")
        if not in_window(moment):
            raise _FieldError(f"{self.at(key)}: {_shown(text)} is outside the accepted range of "
                              f"times, {accepted_range()}")
        return moment

    def strings(self, *keys: str) -> tuple[str, ...]:
        """A list of strings (or one string) under any of ``keys``, merged in order."""
        found: list[str] = []
        for key in keys:
            if not self.has(key):
                continue
            value = self.value[key]
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list):
                raise _FieldError(
                    f"{self.at(key)}: {_shown(value)} is not a list; expected a list of strings"
                )
            for index, item in enumerate(items):
                text = _text(item, f"{self.at(key)}[{index}]", "a string")
                if text not in found:
                    found.append(text)
        return tuple(found)

    def objects(self, key: str, *, required: bool) -> list[_Fields]:
        if not required and not self.has(key):
            return []
        value = self.required(key, "a list of JSON objects")
        if not isinstance(value, list):
            raise _FieldError(
                f"{self.at(key)}: {_shown(value)} is not a list; expected a list of JSON objects"
            )
        return [_Fields(item, f"{self.at(key)}[{index}]") for index, item in enumerate(value)]

    def ip(self, key: str) -> str | None:
        text = self.optional_text(key)
        if text is None:
            return None
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise _FieldError(
                f"{self.at(key)}: {_shown(text)} is not an IP address; "
                "expected an IPv4 or IPv6 address"
            ) from None


def _report(fields: _Fields) -> TlsReport:
    report_id = fields.text("report-id", "a string, the report's unique id")
    if not report_id.strip() or len(report_id.encode()) > MAX_REPORT_ID_BYTES:
        raise _FieldError(
            f"report-id: {_shown(report_id)} is not a usable report id; expected a "
            f"non-empty string of at most {MAX_REPORT_ID_BYTES} bytes"
        )
    date_range = fields.child("date-range")
    start = date_range.moment("start-datetime")
    end = date_range.moment("end-datetime")
    if end < start:
        raise _FieldError(
            f"date-range: end-datetime {end.isoformat()} is before start-datetime "
            f"{start.isoformat()}; expected a range that runs forward"
        )
    return TlsReport(
        report_id=report_id,
        reporting_organization=fields.text("organization-name"),
        contact_info=fields.optional_text("contact-info"),
        start=start,
        end=end,
        policies=tuple(_policy(item) for item in fields.objects("policies", required=True)),
    )


def _policy(fields: _Fields) -> TlsPolicy:
    policy = fields.child("policy")
    policy_type = policy.text("policy-type", f"one of {POLICY_TYPES}")
    if policy_type not in {member.value for member in TlsPolicyType}:
        raise _FieldError(
            f"{policy.at('policy-type')}: {_shown(policy_type)} is not a policy type; "
            f"expected one of {POLICY_TYPES}"
        )
    summary = fields.child("summary")
    return TlsPolicy(
        policy_type=TlsPolicyType(policy_type),
        policy_domain=_domain(policy),
        successful_sessions=summary.count("total-successful-session-count"),
        failed_sessions=summary.count("total-failure-session-count"),
        policy_strings=policy.strings("policy-string"),
        mx_host_patterns=policy.strings(*MX_HOST_FIELDS),
        failure_details=tuple(
            _failure(item) for item in fields.objects("failure-details", required=False)
        ),
    )


def _domain(policy: _Fields) -> str:
    text = policy.text("policy-domain", "a domain name")
    domain = text.strip().lower().rstrip(".")
    if (not domain or len(domain) > 253 or not domain.isascii()
            or any(character.isspace() for character in domain)):
        raise _FieldError(
            f"{policy.at('policy-domain')}: {_shown(text)} is not a domain name; "
            'expected a name such as "example.com", internationalized names in their xn-- form'
        )
    return domain


def _failure(fields: _Fields) -> TlsFailureDetail:
    return TlsFailureDetail(
        result_type=fields.text("result-type", 'a string such as "validation-failure"'),
        failed_sessions=fields.count("failed-session-count"),
        sending_mta_ip=fields.ip("sending-mta-ip"),
        receiving_mx_hostname=fields.optional_text("receiving-mx-hostname"),
        receiving_mx_helo=fields.optional_text("receiving-mx-helo"),
        receiving_ip=fields.ip("receiving-ip"),
        additional_information=fields.optional_text(*ADDITIONAL_INFORMATION_FIELDS),
        failure_reason_code=fields.optional_text("failure-reason-code"),
    )


def _text(value: object, path: str, what: str) -> str:
    if not isinstance(value, str):
        raise _FieldError(f"{path}: {_shown(value)} is not a string; expected {what}")
    if "\x00" in value:
        raise _FieldError(f"{path}: holds a NUL character, which cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _FieldError(
            f"{path}: holds an unpaired surrogate escape (such as \\ud800), which is no "
            "character; expected Unicode text"
        ) from None
    return value


def _shown(value: object) -> str:
    """A JSON value as an error shows it, cut short."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class TlsIngestResult:
    """What an ingest of TLS report files found and stored, and the reports it refused."""

    files: int = 0
    reports: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejections: list[str] = field(default_factory=list)


async def ingest_tls_report_files(
    pool: asyncpg.Pool, organization: str, files: Sequence[str]
) -> TlsIngestResult:
    """Read, check and store the reports of ``files`` for ``organization`` (created if new).

    Each report is stored in its own transaction; a file that cannot be read or holds a bad
    report is named in ``rejections`` and the next one is read.
    """
    result = TlsIngestResult()
    async with pool.acquire() as connection:
        organization_id = await ensure_organization(connection, organization)
        for name in files:
            result.files += 1
            for report in _readable_reports(name, result.rejections):
                result.reports += 1
                async with owner_transaction(connection, organization_id):
                    stored = await store_tls_report(connection, organization_id, report)
                if stored:
                    result.inserted += 1
                else:
                    result.duplicates += 1

    log.info(
        "TLS report ingest finished",
        extra={"organization_id": organization_id, "files": result.files,
               "reports": result.reports, "inserted": result.inserted,
               "duplicates": result.duplicates, "rejected": len(result.rejections)},
    )
    return result


def _readable_reports(name: str, rejections: list[str]) -> Iterator[TlsReport]:
    try:
        documents = read_report_file(name)
    except InvalidTlsReportError as error:
        rejections.append(str(error))
        return
    except OSError as error:
        rejections.append(f"{display_name(name)}: cannot be read ({error.strerror or error})")
        return
    for document in documents:
        try:
            yield parse_report(document)
        except InvalidTlsReportError as error:
            rejections.append(str(error))


def tls_ingest_summary(organization: str, result: TlsIngestResult) -> str:
    """What the command tells people: reports found, new and already loaded, and refusals."""
    lines = [
        f"{organization}: read {plural(result.files, 'file')}, found "
        f"{plural(result.reports, 'TLS report')}: {result.inserted} new, "
        f"{result.duplicates} already loaded"
    ]
    if result.rejections:
        lines.append(f"error: {plural(len(result.rejections), 'report')} not loaded:")
        lines.extend(f"  {rejection}" for rejection in result.rejections)
    return "\n".join(lines)
