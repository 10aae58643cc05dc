"""mailflow's own record format: message facts as newline-delimited JSON or CSV, version 1.

Any log shipper, script or mail server that mailflow has no parser for sends message facts
in this format, to ``mailflow ingest ndjson|csv`` or ``POST /ingest``. One record is one
message crossing the boundary in one direction; its fields are the message fact's, by name:

=================  ========  ====================================================
field              required  value
=================  ========  ====================================================
source_key         yes       unique within the organization, whatever the direction
                             (a message crossing twice needs two keys); the same
                             key and time sent twice are stored once
occurred_at        yes       ISO 8601 time with a UTC offset or ``Z``, from 1990-01-01
                             to 7 days after now (see mailflow.ingest.window)
direction          yes       ``INBOUND`` or ``OUTBOUND``
tls_version        no        ``NONE``, ``TLS1_0``, ``TLS1_1``, ``TLS1_2``, ``TLS1_3``
                             or ``UNKNOWN`` (default); OpenSSL's ``TLSv1.2`` too
tls_cipher         no        cipher name
peer_host          no        host name of the other side of the hop
peer_ip            no        IPv4 or IPv6 address of the other side of the hop
sender_domain      no        domain name of the envelope sender
recipient_domains  no        list of recipient domain names (CSV: separated by spaces)
recipients         no        recipient count, an integer (default: 1)
size_bytes         no        message size, an integer (default: 0)
status             no        ``RECEIVED`` or ``DELIVERED`` (default: by direction)
connector          no        name of the connector the message used; when it names
                             one of the organization's connectors, that connector
                             is chosen, otherwise the connector rules decide
version            no        ``1``, the version of this format (default)
=================  ========  ====================================================

Names of enumerations are read in any letter case; domains and host names are stored in
lower case. A field not in the table, a missing required field or a bad value rejects
the record, naming its line and what would be accepted; the other records still load.
In CSV, the first line names the columns, in any order and letter case, and a record is
one line; a bad first line rejects the file.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest.classify import parse_address
from mailflow.ingest.network import BoundaryPolicy
from mailflow.ingest.report import IngestReport
from mailflow.ingest.sources import LONG_LINE, MAX_LINE_LENGTH
from mailflow.ingest.window import accepted_range, in_window
from mailflow.store.organizations import HOST_NAME
from mailflow.store.rows import MAX_RECIPIENTS, MAX_SIZE_BYTES, MAX_SOURCE_KEY_BYTES

FORMAT_VERSION = 1
FIELDS = (
    "source_key", "occurred_at", "direction", "tls_version", "tls_cipher", "peer_host",
    "peer_ip", "sender_domain", "recipient_domains", "recipients", "size_bytes", "status",
    "connector", "version",
)
REQUIRED = ("source_key", "occurred_at", "direction")
COUNTS = ("recipients", "size_bytes", "version")
_FIELD_SET = frozenset(FIELDS)
MAX_TEXT_LENGTH = 255  # host names, domains, cipher and connector names
MAX_RECIPIENT_DOMAINS = 1000
MAX_REJECTIONS_LISTED = 1000
MAX_SHOWN = 80  # characters of a bad value that a rejection quotes
REJECTED = "rejected record"
UNDER_BAD_HEADER = "line under a bad CSV header"
DOMAIN_RULE = ("a domain name such as 'example.com': labels of letters, digits, '-' and '_' "
               "joined by dots, internationalized names in their xn-- form")
BYTE_ORDER_MARK = "\ufeff"

E = TypeVar("E")

_TLS_SPELLINGS = {
    **{version.value: version for version in TlsVersion},
    "TLSV1": TlsVersion.TLS1_0,
    "TLSV1.0": TlsVersion.TLS1_0,
    "TLSV1.1": TlsVersion.TLS1_1,
    "TLSV1.2": TlsVersion.TLS1_2,
    "TLSV1.3": TlsVersion.TLS1_3,
}
_DIRECTIONS = dict(Direction.__members__)  # __members__ builds a new view at each use
_STATUSES = dict(DeliveryStatus.__members__)
_DEFAULT_STATUS = {Direction.INBOUND: DeliveryStatus.RECEIVED,
                   Direction.OUTBOUND: DeliveryStatus.DELIVERED}


class RejectedRecord(ValueError):
    """A record that cannot be a message fact; the text says which value and what is accepted."""


class RejectedValue(RejectedRecord):
    """A record of the format read (a JSON object, a CSV line under its header) whose values
    cannot be a message fact: the line is one of the format, though not a usable record."""


class UnderBadHeader(RejectedRecord):
    """A CSV line after a header that was rejected: the file is not read, the line not listed."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that was not loaded: its line number in the input and why."""

    line: int
    reason: str


class RecordReader:
    """Reads records of one input, line by line; NDJSON, or CSV after its header line.

    ``read(number, line)`` returns the fact of a record line, None for a blank line or the
    CSV header, and raises RejectedRecord for a line that is not a usable record. A byte
    order mark before the first line (as spreadsheets write) is read past. After a bad CSV
    header every line raises UnderBadHeader: one rejection says why the file is not read.
    """

    def __init__(self, kind: str) -> None:
        if kind not in ("ndjson", "csv"):
            raise ValueError(f"the record format is 'ndjson' or 'csv', not {kind!r}")
        self.kind = kind
        self.columns: tuple[str, ...] | None = None
        self.bad_header = False

    def read(self, number: int, line: str) -> MessageFact | None:
        if self.bad_header:
            raise UnderBadHeader("the CSV header was rejected")
        if line == LONG_LINE:
            raise RejectedRecord(f"the line is longer than {MAX_LINE_LENGTH} characters")
        if number == 1:
            line = line.removeprefix(BYTE_ORDER_MARK)
        if not line or line.isspace():  # blank; isspace stops at the first other character
            return None
        if not line.isascii():
            _check_utf8(line)
        if self.kind == "ndjson":
            return _fact_of(_json_object(line))
        if self.columns is None:
            try:
                self.columns = _csv_header(line)
            except RejectedRecord:
                self.bad_header = True
                raise
            return None
        return _fact_of(_csv_record(self.columns, line))

    def continue_under(self, header: str) -> None:
        """Read CSV lines from the middle of a file, under the file's header line ``header``
        (as read: a byte order mark before the file's first line already removed)."""
        try:
            self.columns = _csv_header(header)
        except RejectedRecord:
            self.bad_header = True


def parse_records(
    lines: Iterable[str], kind: str, report: IngestReport,
    on_rejection: Callable[[Rejection], None], *, first_line: int = 1, header: str | None = None,
) -> Iterator[MessageFact]:
    """The facts of the record lines, in order; each rejected record is counted in ``report``
    and handed to ``on_rejection``.

    Line numbers, and for CSV the header, start again with each file when the lines of
    several files are read as one stream (``report.files_started`` counts them). Lines from
    the middle of a file start at line ``first_line``, under its CSV ``header`` line.
    """
    reader, number, file = RecordReader(kind), first_line - 1, report.files_started
    if header is not None and kind == "csv" and first_line > 1:
        reader.continue_under(header)
    for line in lines:
        if report.files_started != file:
            reader, number, file = RecordReader(kind), 0, report.files_started
        number += 1
        report.lines += 1
        try:
            fact = reader.read(number, line)
        except UnderBadHeader:
            report.skip(UNDER_BAD_HEADER)
            continue
        except RejectedRecord as error:
            report.skip(REJECTED)
            on_rejection(Rejection(number, str(error)))
            if isinstance(error, RejectedValue):  # a line of the format all the same
                report.recognized_lines += 1
            continue
        if fact is None and not line.removeprefix(BYTE_ORDER_MARK).strip():
            continue  # a blank line is of no format
        report.recognized_lines += 1
        if fact is not None:
            report.found(fact.occurred_at)
            yield fact


def record_parser(kind: str) -> Callable[..., Iterator[MessageFact]]:
    """A LogParser (see mailflow.ingest.run) for files of records; rejections are listed in
    ``report.rejections`` up to MAX_REJECTIONS_LISTED, then only counted."""

    def parse(
        lines: Iterable[str], *, policy: BoundaryPolicy, reference_time: datetime | None,
        report: IngestReport,
    ) -> Iterator[MessageFact]:
        def note(rejection: Rejection) -> None:
            if len(report.rejections) < MAX_REJECTIONS_LISTED:
                where = f"{report.current_file}, " if report.current_file else ""
                report.rejections.append(f"{where}line {rejection.line}: {rejection.reason}")

        return parse_records(lines, kind, report, note)

    return parse


def _fact_of(record: dict[str, Any]) -> MessageFact:
    try:
        return fact_from_record(record)
    except RejectedRecord as error:
        raise RejectedValue(str(error)) from None


def fact_from_record(record: dict[str, Any]) -> MessageFact:
    """The message fact a record describes; RejectedRecord naming the first bad field."""
    if not record.keys() <= _FIELD_SET:
        unknown = [name for name in record if name not in _FIELD_SET]
        raise RejectedRecord(
            f"unknown field {unknown[0][:60]!r}; the fields of format version "
            f"{FORMAT_VERSION} are {', '.join(FIELDS)}"
        )
    for name in REQUIRED:
        if record.get(name) in (None, ""):
            what = "is empty" if record.get(name) == "" else "is missing"
            raise RejectedRecord(f"{name} {what}; every record needs {', '.join(REQUIRED)}")
    version = record.get("version", FORMAT_VERSION)
    if type(version) is not int or version != FORMAT_VERSION:
        shown = str(version) if type(version) is int else _shown(version)
        raise RejectedRecord(
            f"version {shown} is not a format this server reads; it reads version "
            f"{FORMAT_VERSION} (the number, or no version field)"
        )

    direction = _choice(record, "direction", _DIRECTIONS, Direction.INBOUND)
    recipient_domains = _domains(record)
    connector = _text(record, "connector", lower=False)
    return MessageFact(
        source_key=_source_key(record),
        occurred_at=_time(record),
        direction=direction,
        tls_version=_tls_version(record),
        tls_cipher=_text(record, "tls_cipher", lower=False),
        peer_host=_text(record, "peer_host"),
        peer_ip=_address(record),
        sender_domain=_sender_domain(record),
        recipient_domains=recipient_domains,
        recipients=_count(record, "recipients", default=1, maximum=MAX_RECIPIENTS),
        size_bytes=_count(record, "size_bytes", default=0, maximum=MAX_SIZE_BYTES),
        status=_choice(record, "status", _STATUSES, _DEFAULT_STATUS[direction]),
        routes=(connector,) if connector else (),
    )


def _json_object(line: str) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise RejectedRecord(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise RejectedRecord(f"a record is a JSON object {{...}}, not {_shown(value)}")
    return value


def _check_utf8(line: str) -> None:
    """RejectedRecord for a line read from bytes that are not UTF-8 (each such byte is read as
    a lone surrogate, U+DC80 to U+DCFF)."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as error:
        byte = ord(line[error.start]) - 0xDC00
        shown = f"byte 0x{byte:02X}" if 0x80 <= byte <= 0xFF else "a lone surrogate"
        raise RejectedRecord(
            f"the line is not UTF-8 text: {shown} at character {error.start + 1}; write "
            "records in UTF-8"
        ) from None


def _csv_error(line: str, error: csv.Error, what: str) -> RejectedRecord:
    """The rejection of a line the csv module cannot read, in words for people."""
    if "\r" in _without_line_end(line):
        return _stray_cr(what)
    return RejectedRecord(f"{what} is not a CSV line ({error})")


def _stray_cr(what: str) -> RejectedRecord:
    return RejectedRecord(f"{what} holds a carriage return (CR) outside quotes; a record is "
                          "one line, ended by LF or CR LF")


def _without_line_end(line: str) -> str:
    """A line without the LF or CR LF that ends it."""
    if line.endswith("\n"):
        return line[:-2] if line.endswith("\r\n") else line[:-1]
    return line


def _csv_header(line: str) -> tuple[str, ...]:
    """The field names of a CSV header line, in any letter case and with spaces around."""
    try:
        names = next(csv.reader([line]))
    except csv.Error as error:
        rejection = _csv_error(line, error, "the CSV header")
        raise RejectedRecord(f"{rejection}; no line of this file is read") from None
    columns = tuple(name.strip().lower() for name in names)
    unknown = [name for name, column in zip(names, columns, strict=True)
               if column not in _FIELD_SET]
    if unknown:
        raise RejectedRecord(
            f"the CSV header names the unknown column {_shown(unknown[0])}, so no line of this "
            f"file is read; the first line names the columns, from {', '.join(FIELDS)}"
        )
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise RejectedRecord(
            f"the CSV header has no {missing[0]} column, so no line of this file is read; "
            f"the first line names the columns and must include {', '.join(REQUIRED)}"
        )
    twice = [name for name in FIELDS if columns.count(name) > 1]
    if twice:
        raise RejectedRecord(
            f"the CSV header names the column {twice[0]} twice, so no line of this file is "
            "read; name each column once"
        )
    return columns


def _csv_record(columns: tuple[str, ...], line: str) -> dict[str, Any]:
    if _without_line_end(line).endswith("\r"):  # read by csv as a line end: a stray CR
        raise _stray_cr("the record")
    try:
        values = next(csv.reader([line]))
    except csv.Error as error:
        raise _csv_error(line, error, "the record") from None
    if len(values) != len(columns):
        raise RejectedRecord(
            f"the record has {len(values)} values for the header's {len(columns)} columns"
        )
    record: dict[str, Any] = {
        name: value for name, value in zip(columns, values, strict=True) if value != ""
    }
    # CSV has only text: read counts and the list of domains as JSON would carry them.
    for name in COUNTS:
        text = record.get(name, "")
        if text.isascii() and text.isdigit() and len(text) <= 40:
            record[name] = int(text)
    if "recipient_domains" in record:
        record["recipient_domains"] = record["recipient_domains"].split()
    return record


def _source_key(record: dict[str, Any]) -> str:
    key = record["source_key"]
    if not isinstance(key, str):
        raise RejectedRecord(f"source_key is a string, not {_shown(key)}")
    if len(key.encode()) > MAX_SOURCE_KEY_BYTES or "\x00" in key:
        raise RejectedRecord(
            f"source_key {_shown(key)} is too long or holds NUL; use at most "
            f"{MAX_SOURCE_KEY_BYTES} bytes of text"
        )
    return key


def _time(record: dict[str, Any]) -> datetime:
    value = record["occurred_at"]
    if not isinstance(value, str):
        raise RejectedRecord(f"occurred_at is an ISO 8601 string, not {_shown(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RejectedRecord(
            f"occurred_at {_shown(value)} is not an ISO 8601 time such as "
            "'2026-01-27T08:15:00Z'"
        ) from None
    if moment.utcoffset() is None:
        raise RejectedRecord(
            f"occurred_at {_shown(value)} has no UTC offset; add one, such as 'Z' or '+01:00'"
        )
    if not in_window(moment):
        raise RejectedRecord(
            f"occurred_at {_shown(value)} is outside the accepted range of times, "
            f"{accepted_range()}"
        )
    return moment


def _tls_version(record: dict[str, Any]) -> TlsVersion:
    value = record.get("tls_version")
    if value is None:
        return TlsVersion.UNKNOWN
    if type(value) is str and (version := _TLS_SPELLINGS.get(value)) is not None:
        return version  # the common case: spelled as the member is
    version = _TLS_SPELLINGS.get(value.upper()) if isinstance(value, str) else None
    if version is None:
        raise RejectedRecord(
            f"tls_version {_shown(value)} is not one of "
            f"{', '.join(version.value for version in TlsVersion)}"
        )
    return version


def _choice(
    record: dict[str, Any], name: str, members: dict[str, E], default: E
) -> E:
    value = record.get(name)
    if value is None:
        return default
    if type(value) is str and (member := members.get(value)) is not None:
        return member  # the common case: spelled as the member is
    member = members.get(value.upper()) if isinstance(value, str) else None
    if member is None:
        raise RejectedRecord(f"{name} {_shown(value)} is not one of {', '.join(members)}")
    return member


def _text(record: dict[str, Any], name: str, *, lower: bool = True) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    if type(value) is str and len(value) <= MAX_TEXT_LENGTH and "\x00" not in value:
        return value.lower() if lower else value  # the common case, checked at once
    if not isinstance(value, str):
        raise RejectedRecord(f"{name} is a string, not {_shown(value)}")
    _check_text(name, value)
    return value.lower() if lower else value


def _check_text(name: str, value: str) -> None:
    if len(value) > MAX_TEXT_LENGTH or "\x00" in value:
        raise RejectedRecord(
            f"{name} {_shown(value)} is too long or holds NUL; use at most "
            f"{MAX_TEXT_LENGTH} characters"
        )


def _sender_domain(record: dict[str, Any]) -> str | None:
    value = _text(record, "sender_domain")
    return _domain("sender_domain", value) if value else None  # "": the null sender


def _domain(name: str, value: str) -> str:
    """A domain name in lower case without a trailing dot; RejectedRecord naming ``name``."""
    domain = _normalized_domain(value)
    if domain is None:
        raise RejectedRecord(f"{name} {_shown(value)} is not {DOMAIN_RULE}")
    return domain


@functools.lru_cache(maxsize=1 << 16)  # domains repeat from record to record
def _normalized_domain(value: str) -> str | None:
    domain = value.lower().removesuffix(".")
    if len(domain) > 253 or HOST_NAME.fullmatch(domain) is None:
        return None
    return domain


def _domains(record: dict[str, Any]) -> tuple[str, ...]:
    value = record.get("recipient_domains")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RejectedRecord(
            f"recipient_domains is a list of domain names such as [\"example.com\"] (in CSV, "
            f"separated by spaces), not {_shown(value)}"
        )
    if len(value) == 1:
        return (_domain("recipient_domains", value[0]),)
    if len(value) > MAX_RECIPIENT_DOMAINS:
        raise RejectedRecord(
            f"recipient_domains lists {len(value)} domains; list at most {MAX_RECIPIENT_DOMAINS}"
        )
    return tuple(dict.fromkeys(_domain("recipient_domains", domain) for domain in value))


def _address(record: dict[str, Any]) -> str | None:
    value = _text(record, "peer_ip")
    if value is None:
        return None
    if not _is_address(value):
        raise RejectedRecord(f"peer_ip {value[:60]!r} is not an IPv4 or IPv6 address")
    return value


@functools.lru_cache(maxsize=1 << 14)  # peers repeat from record to record
def _is_address(value: str) -> bool:
    return parse_address(value) is not None


def _count(record: dict[str, Any], name: str, *, default: int, maximum: int) -> int:
    value = record.get(name)
    if value is None:
        return default
    if type(value) is int and 0 <= value <= maximum:
        return value  # the common case, checked at once
    accepted = f"an integer from 0 to {maximum}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RejectedRecord(f"{name} is {accepted}, not {_shown(value)}")
    number = _number(value)
    if isinstance(value, float) and not value.is_integer():
        raise RejectedRecord(f"{name} {number} is not {accepted}")
    if not 0 <= value <= maximum:
        raise RejectedRecord(f"{name} {number} is out of range; give {accepted}")
    if isinstance(value, float):
        raise RejectedRecord(f"{name} {number} is not {accepted} (write it without a "
                             "decimal point or exponent)")
    return value


def _shown(value: object) -> str:
    """A bad value as a rejection names it: quoted text, or JSON with its type, cut short."""
    if isinstance(value, str):
        return repr(_short(value))
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"a number {_number(value)}"
    text = _short(orjson.dumps(value).decode())
    return f"{'a list' if isinstance(value, list) else 'an object'} {text}"


def _number(value: int | float) -> str:
    """A JSON number as its JSON text (JSON's 1e+20 for a number that large), cut short."""
    return _short(str(value) if isinstance(value, int) else orjson.dumps(value).decode())


def _short(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."
