"""Exchange Server message tracking logs -> message facts for the mail that crossed the boundary.

A message tracking log is CSV, one event per row, under ``#Software``, ``#Version``,
``#Log-type``, ``#Date`` and ``#Fields:`` lines. The row's columns are read in the order
``#Fields:`` names them, anew each time it appears (files written one after another can be
read as one stream); before any ``#Fields:`` line, in the order Exchange 2013 and later
write (:data:`DEFAULT_FIELDS`). Each row is read with :mod:`csv`: quoted values hold commas.

Which rows are boundary mail, and which way they crossed:

- Inbound: ``RECEIVE`` with source ``SMTP`` from a client outside the internal networks
  of the organization's :class:`~mailflow.ingest.network.BoundaryPolicy`, unless its
  ``directionality`` is ``Originating`` (Exchange says so of mail its own organization
  sent, as an authenticated submission, like a Postfix client with ``sasl_username=``).
  The client is the one that crossed: when the Front End Transport service proxied the
  session, ``client-ip`` is the front end itself and ``custom-data`` names the real
  client in ``S:ProxiedClientIPAddress`` (and ``S:ProxiedClientHostname``), which is
  then taken. ``original-client-ip`` is not: it can name a client several hops back,
  in front of a relay that another organization runs.
- Outbound: ``SEND`` or ``SENDEXTERNAL`` (the front end relaying for the mailbox server)
  with source ``SMTP`` to a ``server-ip`` outside the internal networks. ``directionality``
  does not matter here: mail that came in and is relayed out again did cross outward.
  ``DELIVER`` is delivery to a local mailbox and never outbound; so is a ``SEND`` to an
  internal server (another Exchange server, a smart host inside), which is an internal hop.
  Recipients whose ``recipient-status`` is a 4xx or 5xx reply are not counted.
- Every other event (``HAREDIRECTFAIL``, ``NOTIFYMAPI``, ``SUBMIT``, ``FAIL``, ...) and
  ``RECEIVE`` from ``STOREDRIVER`` (submission from a mailbox) carry no boundary hop.

As in the Postfix parser, direction is decided by the network the peer is in, not by the
accepted domains: a sender domain is the easiest thing to forge, and mail between two
accepted domains through the internet did cross the boundary twice.

Exchange sends one message to one next hop in one ``SEND`` row, or in several when it
splits the recipients; those rows make one fact (keyed by the sending server, the
``internal-message-id``, the ``message-id`` and the next hop's address) at the time of the
first, with the recipients of all. Rows of the same message and hop more than an hour
apart (a retry after a deferral) are outside the window kept in memory: the later row has
the same key and adds nothing, so the message is counted once but the retried recipients
are not. An inbound fact is keyed by the receiving server, ``internal-message-id``,
``message-id`` and client address. Loading the same log twice changes nothing.

``connector-id`` (``SERVER\\Default SERVER``, ``Outbound to partner``) names the route, and
is given to the fact in ``routes``. The recipients are those of ``recipient-address``
(separated by ``;``), or ``recipient-count`` when it lists none; the size is ``total-bytes``.
``recipient-count`` is not read beside listed addresses, which say more than a number: a
value there that is no count changes nothing and is not reported.

TLS: message tracking rows do not say which TLS version a hop used. A row whose
``source-context`` or ``custom-data`` names one (``TlsVersion=TLS1.2``, ``tls=TLSv1.3``)
gets it; every other row is ``UNKNOWN``, including those whose ``custom-data`` gives a TLS
authentication level (``EffectiveTlsAuthLevel=DomainValidation`` says TLS was used, not
which version, and a required level says nothing of what happened).

Time stamps are ISO 8601; one without a zone is taken as UTC, and every datetime emitted
is UTC. Rows that cannot be used are counted by kind in the report, never fatal.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest.network import BoundaryPolicy, InternalAddresses
from mailflow.ingest.report import IngestReport
from mailflow.store.rows import MAX_RECIPIENTS, MAX_SIZE_BYTES, MAX_SOURCE_KEY_BYTES

# The columns of Exchange 2013, 2016 and 2019, in the order they are written.
DEFAULT_FIELDS: tuple[str, ...] = (
    "date-time", "client-ip", "client-hostname", "server-ip", "server-hostname",
    "source-context", "connector-id", "source", "event-id", "internal-message-id",
    "message-id", "network-message-id", "recipient-address", "recipient-status",
    "total-bytes", "recipient-count", "related-recipient-address", "reference",
    "message-subject", "sender-address", "return-path", "message-info", "directionality",
    "tenant-id", "original-client-ip", "original-server-ip", "custom-data",
    "transport-traffic-type", "log-id", "schema-version",
)
REQUIRED_FIELDS = ("date-time", "event-id", "source")

MALFORMED = "malformed exchange row"
WRONG_FIELD_COUNT = "exchange row with the wrong number of fields"
BAD_FIELDS_HEADER = "#Fields header without date-time, event-id and source"
UNPARSEABLE_TIMESTAMP = "unparseable timestamp"
TIMESTAMP_OUT_OF_RANGE = "timestamp out of range"
NO_PEER_ADDRESS = "exchange row without a valid peer address"
NO_MESSAGE_ID = "exchange row without a message id"
SIZE_OUT_OF_RANGE = "size out of range"
RECIPIENTS_OUT_OF_RANGE = "recipient count out of range"
KEY_TOO_LONG = "host, message id or next hop too long"

# No mail system queues a terabyte; the bound also keeps a day's byte total in a bigint.
MAX_MESSAGE_SIZE = MAX_SIZE_BYTES

_SEND_EVENTS = frozenset({"SEND", "SENDEXTERNAL"})
# Rows of one message to one next hop this close in time make one fact.
_SEND_WINDOW = timedelta(hours=1)
_MAX_OPEN_SENDS = 100_000
_EARLIEST = datetime.min.replace(tzinfo=UTC) + _SEND_WINDOW
_LATEST = datetime.max.replace(tzinfo=UTC) - _SEND_WINDOW

_TLS_NAMED = re.compile(r"(?:^|[;,\s:])(?:TlsVersion|tls)\s*=\s*([^;,\s]+)", re.IGNORECASE)
# TLS1.2, TLSv1.2, Tls12, TLS1_2, SP_PROT_TLS1_2_SERVER, 1.2; a bare "1" may mean "yes".
_TLS_VALUE = re.compile(
    r"(?:SP_PROT_)?(?:TLS\s*v?1(?:[._]?([0-3]))?|1[._]([0-3]))(?:_SERVER|_CLIENT)?$",
    re.IGNORECASE,
)
_TLS_MINOR = {"0": TlsVersion.TLS1_0, "1": TlsVersion.TLS1_1, "2": TlsVersion.TLS1_2,
              "3": TlsVersion.TLS1_3}


def parse_exchange(
    lines: Iterable[str],
    *,
    policy: BoundaryPolicy,
    reference_time: datetime | None,
    report: IngestReport,
) -> Iterator[MessageFact]:
    """Message facts from the lines of Exchange message tracking logs.

    ``reference_time`` is not needed (every row carries its full date) and is ignored.
    Memory is bounded by the sends of the last hour. Rows that are Exchange events but
    cannot be used are counted in ``report.skipped``; nothing in the input raises. A size, or
    a recipient count read for a row that lists no recipient, that is no number in range is
    read as 0, and counted in ``report.stored_as_zero`` once a fact holding it is stored.
    """
    del reference_time
    yield from _ExchangeReader(policy, report).stream(lines)


@dataclass(frozen=True, slots=True)
class _Columns:
    """How many columns a row has and where each is, for one ``#Fields:`` order."""

    count: int
    index: dict[str, int]

    @classmethod
    def of(cls, names: Sequence[str]) -> _Columns:
        return cls(len(names), {name: position for position, name in enumerate(names)})


class _Row:
    """One data row, read by column name; a column the header lacks reads as empty."""

    __slots__ = ("_index", "_values")

    def __init__(self, columns: _Columns, values: list[str]) -> None:
        self._index = columns.index
        self._values = values

    def __getitem__(self, name: str) -> str:
        position = self._index.get(name)
        return "" if position is None else self._values[position].strip()


@dataclass(slots=True)
class _Send:
    """The ``SEND`` rows of one message to one next hop, read so far."""

    key: str
    at: datetime
    row: _Row
    recipients: set[str] = field(default_factory=set)
    counted: int = 0  # from recipient-count, for rows that list no address
    unusable: list[str] = field(default_factory=list)  # kinds of values read as 0


class _ExchangeReader:
    """Reads rows under the current ``#Fields:`` order and follows sends to each next hop."""

    def __init__(self, policy: BoundaryPolicy, report: IngestReport) -> None:
        self._policy = policy
        self._report = report
        self._columns = _Columns.of(DEFAULT_FIELDS)
        self._sends: dict[str, _Send] = {}
        self._ready: list[MessageFact] = []
        self._is_internal = InternalAddresses(policy)

    def stream(self, lines: Iterable[str]) -> Iterator[MessageFact]:
        for line in lines:
            self._report.lines += 1
            self._read(line.replace("\x00", "").strip("\ufeff\r\n"))
            if self._ready:
                ready, self._ready = self._ready, []
                yield from ready
        for send in list(self._sends.values()):
            self._emit_send(send)
        self._sends.clear()
        yield from self._ready
        self._ready = []

    def _read(self, line: str) -> None:
        if line.startswith("#"):
            self._header(line)
        elif line.strip():
            values = _split(line)
            if values is None:
                self._report.skip(MALFORMED)
            elif len(values) != self._columns.count:
                self._report.skip(WRONG_FIELD_COUNT)
            else:
                self._report.recognized_lines += 1
                self._event(_Row(self._columns, values))

    def _header(self, line: str) -> None:
        name, _, value = line[1:].partition(":")
        if name.strip().lower() != "fields":
            if name.strip().lower() in ("software", "version", "log-type", "date"):
                self._report.recognized_lines += 1
            return
        names = [column.strip().lower() for column in value.split(",")]
        if not all(required in names for required in REQUIRED_FIELDS):
            self._report.skip(BAD_FIELDS_HEADER)
            return
        self._report.recognized_lines += 1
        self._columns = _Columns.of(names)

    def _event(self, row: _Row) -> None:
        if row["source"].upper() != "SMTP":
            return
        event = row["event-id"].upper()
        if event == "RECEIVE":
            self._receive(row)
        elif event in _SEND_EVENTS:
            self._send(row)

    def _receive(self, row: _Row) -> None:
        if row["directionality"].lower() == "originating":
            return  # submitted by the organization itself
        at = self._time(row)
        if at is None:
            return
        custom = _custom_data(row["custom-data"])
        proxied = custom.get("ProxiedClientIPAddress")
        ip = proxied or row["client-ip"]
        host = custom.get("ProxiedClientHostname") if proxied else row["client-hostname"]
        internal = self._is_internal(ip)
        if internal is None:
            self._report.skip(NO_PEER_ADDRESS)
            return
        if internal:
            return
        identity = _identity(row)
        if identity is None:
            self._report.skip(NO_MESSAGE_ID)
            return

        recipients = _addresses(row["recipient-address"])
        unusable: list[str] = []
        count = len({address.lower() for address in recipients}) or self._count(row, unusable)
        key = f"exchange:{row['server-hostname'].lower()}:{identity}:in:{ip}"
        self._add(MessageFact(
            source_key=key,
            occurred_at=at,
            direction=Direction.INBOUND,
            tls_version=_tls_version(row),
            tls_cipher=None,
            peer_host=host or None,
            peer_ip=ip,
            sender_domain=_domain(row["sender-address"]),
            recipient_domains=_domains(recipients),
            recipients=count,
            size_bytes=self._size(row, unusable),
            status=DeliveryStatus.RECEIVED,
            routes=_routes(row),
        ), unusable)

    def _send(self, row: _Row) -> None:
        at = self._time(row)
        if at is None:
            return
        ip = row["server-ip"]
        internal = self._is_internal(ip)
        if internal is None:
            self._report.skip(NO_PEER_ADDRESS)
            return
        if internal:
            return
        identity = _identity(row)
        if identity is None:
            self._report.skip(NO_MESSAGE_ID)
            return

        self._flush_before(at - _SEND_WINDOW)
        key = f"exchange:{row['client-hostname'].lower()}:{identity}:out:{ip}"
        send = self._sends.get(key)
        if send is None:
            if len(self._sends) >= _MAX_OPEN_SENDS:
                self._emit_send(self._sends.pop(next(iter(self._sends))))
            send = self._sends[key] = _Send(key, at, row)
        delivered = _delivered(row["recipient-address"], row["recipient-status"])
        if delivered:
            send.recipients.update(address.lower() for address in delivered)
        elif not row["recipient-address"]:
            send.counted += self._count(row, send.unusable)

    def _flush_before(self, cutoff: datetime) -> None:
        """Emit the sends whose first row is older than ``cutoff``, oldest first."""
        while self._sends:
            send = next(iter(self._sends.values()))
            if send.at >= cutoff:
                return
            self._emit_send(self._sends.pop(send.key))

    def _emit_send(self, send: _Send) -> None:
        if not send.recipients and not send.counted:
            for kind in send.unusable:  # no count to go by: the rows are not used
                self._report.skip(kind)
            return  # every recipient was refused: nothing was delivered across
        row = send.row
        self._add(MessageFact(
            source_key=send.key,
            occurred_at=send.at,
            direction=Direction.OUTBOUND,
            tls_version=_tls_version(row),
            tls_cipher=None,
            peer_host=row["server-hostname"] or None,
            peer_ip=row["server-ip"],
            sender_domain=_domain(row["sender-address"]),
            recipient_domains=_domains(send.recipients),
            recipients=min(len(send.recipients) + send.counted, MAX_RECIPIENTS),
            size_bytes=self._size(row, send.unusable),
            status=DeliveryStatus.DELIVERED,
            routes=_routes(row),
        ), send.unusable)

    def _add(self, fact: MessageFact, unusable: list[str]) -> None:
        """Store ``fact``, and count the ``unusable`` values it holds as 0 once it is."""
        if len(fact.source_key.encode()) > MAX_SOURCE_KEY_BYTES:
            self._report.skip(KEY_TOO_LONG)
            return
        self._ready.append(fact)
        self._report.found(fact.occurred_at)
        for kind in unusable:
            self._report.store_as_zero(kind)

    def _time(self, row: _Row) -> datetime | None:
        try:
            at = datetime.fromisoformat(row["date-time"])
        except ValueError:
            self._report.skip(UNPARSEABLE_TIMESTAMP)
            return None
        try:
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        except OverflowError:  # an offset that takes it off the calendar
            at = datetime.min.replace(tzinfo=UTC)
        if not _EARLIEST <= at <= _LATEST:
            self._report.skip(TIMESTAMP_OUT_OF_RANGE)
            return None
        return at

    def _size(self, row: _Row, unusable: list[str]) -> int:
        """The row's size; 0 when it is none, its kind noted in ``unusable``."""
        size = _number(row["total-bytes"], MAX_MESSAGE_SIZE)
        if size is None:
            unusable.append(SIZE_OUT_OF_RANGE)
        return size or 0

    def _count(self, row: _Row, unusable: list[str]) -> int:
        """The row's recipient count; 0 when it is none, its kind noted in ``unusable``."""
        count = _number(row["recipient-count"], MAX_RECIPIENTS)
        if count is None:
            unusable.append(RECIPIENTS_OUT_OF_RANGE)
        return count or 0


def _split(line: str) -> list[str] | None:
    """The values of one CSV line; None when it is not one (a quote left open)."""
    try:
        return next(csv.reader((line,), strict=True))
    except (csv.Error, StopIteration):
        return None


def _identity(row: _Row) -> str | None:
    """``internal-message-id:message-id``, None when the row has neither."""
    internal_id, message_id = row["internal-message-id"], row["message-id"]
    if not internal_id and not message_id:
        return None
    return f"{internal_id}:{message_id}"


def _custom_data(text: str) -> dict[str, str]:
    """``S:Key=Value;S:Other=...`` as a mapping of keys (without ``S:``) to values."""
    values = {}
    for item in text.split(";"):
        name, equals, value = item.partition("=")
        if equals:
            values[name.strip().removeprefix("S:")] = value.strip()
    return values


def _tls_version(row: _Row) -> TlsVersion:
    """The TLS version the row names in source-context or custom-data, else UNKNOWN."""
    for text in (row["source-context"], row["custom-data"]):
        for named in _TLS_NAMED.finditer(text):
            version = _TLS_VALUE.match(named[1])
            if version is not None:
                return _TLS_MINOR[version[1] or version[2] or "0"]
    return TlsVersion.UNKNOWN


def _routes(row: _Row) -> tuple[str, ...]:
    connector = row["connector-id"]
    return (connector,) if connector else ()


def _addresses(text: str) -> list[str]:
    return [address.strip() for address in text.split(";") if address.strip()]


def _delivered(addresses: str, statuses: str) -> list[str]:
    """The addresses of a send row, less those whose status is a 4xx or 5xx reply.

    Statuses are matched to addresses by position when there is one for each.
    """
    recipients = _addresses(addresses)
    replies = [reply.strip() for reply in statuses.split(";")] if statuses else []
    if len(replies) != len(recipients):
        return recipients
    return [address for address, reply in zip(recipients, replies, strict=True)
            if not reply.startswith(("4", "5"))]


def _domains(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({domain for domain in map(_domain, addresses) if domain}))


def _domain(address: str) -> str | None:
    """Lowercased domain of an address; None for the null sender or a bare local part."""
    at = address.rfind("@")
    if at < 0:
        return None
    return address[at + 1 :].strip().rstrip(">").lower() or None


def _number(digits: str, maximum: int) -> int | None:
    """The value of a string of ASCII digits up to ``maximum``; None for anything else.

    The length is checked first: int() refuses (or takes long over) thousands of digits.
    """
    if not (digits.isascii() and digits.isdecimal()):
        return None
    digits = digits.lstrip("0") or "0"
    if len(digits) > len(str(maximum)):
        return None
    value = int(digits)
    return value if value <= maximum else None
