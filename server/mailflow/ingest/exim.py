"""Exim main logs -> message facts for the mail that crossed the organization's boundary.

Exim writes one line per event of a message, each starting with its time stamp and the
message id; the second word says what happened:

- ``<=`` an arrival: ``<= sender H=name (helo) [ip] P=esmtps X=TLS1.3:cipher:256
  A=authenticator:user S=size``. It is inbound when it came over the network (``H=``
  with an IP address) from a host outside the internal networks, and the client did
  not authenticate (``A=``, or ``P=esmtpa``/``esmtpsa``: submission, internal). One
  fact per arrival, at the arrival, with the TLS of that session (no ``X=``: ``NONE``);
  its recipients are those the later delivery lines name (by their original address).
- ``=>`` a delivery, ``->`` a further recipient of the same delivery, ``>>`` a
  cutthrough delivery: ``=> address <original> R=router T=transport H=host [ip]
  X=TLS1.2:cipher:128 C="250 OK"``. It is outbound when it went over the network to a
  host outside the internal networks, or over a route an outbound connector lists
  (``routes``: a smart host or a site behind a VPN that relays it on). One fact per
  message and relay, counting its recipients, at the first delivery to it, with
  ``routes=(router, transport)`` so that connectors can select it by route. The sender
  is the arrival's, or the ``F=`` of the delivery when the arrival is not in the log.
  Local deliveries (no ``H=``, or a local transport: appendfile, pipe, LMTP) are not.
- ``==`` deferrals, ``**`` failures and ``*>`` suppressed deliveries never count; a
  deferred recipient delivered later counts once, by its ``=>`` line.

Facts are emitted when Exim logs ``Completed`` for the message, or at the end of input.
Time stamps carry the date (``2020-02-22 00:00:01``), maybe milliseconds, a zone
(``+0100``) and a process id (``[1234]``); without a zone they are taken as UTC.
Unusable lines are counted by kind in the report; nothing in the input raises. An arrival
whose ``H=`` address is no IP address has no direction (inbound is judged by it): it is
counted, and its deliveries out still count. The facts of a message whose ``S=`` is no
size up to 1 TiB are stored with size 0, as the Postfix parser does, and the arrival is
counted in ``report.stored_as_zero``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest.network import BoundaryPolicy, InternalAddresses
from mailflow.ingest.report import IngestReport
from mailflow.ingest.window import TIMESTAMP_OUT_OF_RANGE
from mailflow.store.rows import MAX_SIZE_BYTES, MAX_SOURCE_KEY_BYTES

NO_TIMESTAMP = "exim line without time stamp"
UNPARSEABLE_TIMESTAMP = "unparseable timestamp"
MALFORMED = "malformed exim line"
NO_PEER_ADDRESS = "exim line whose H= address is not an IP address"
SIZE_OUT_OF_RANGE = "size out of range"
KEY_TOO_LONG = "host, message id or relay too long"

# No mail system queues a terabyte; the bound also keeps a day's byte total in a bigint.
MAX_MESSAGE_SIZE = MAX_SIZE_BYTES

_STAMP = re.compile(
    r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
    r"(?: ([+-])(\d\d)(\d\d))?(?: \[\d+\])? "
)
_LOOKS_STAMPED = re.compile(r"\d{4}-\d\d-\d\d ")
_MESSAGE_ID = re.compile(r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}")
# A field KEY=value; a quoted value runs to its closing quote, with backslash escapes.
_FIELD = re.compile(r'(?<!\S)([A-Za-z][A-Za-z0-9]*)=("(?:[^"\\]|\\.)*"|\S*)')
# H=name (helo) [ip]:port: the name or the helo may be missing, the address too (a socket).
_HOST = re.compile(r"(?<!\S)H=([^\s()\[\]]*)(?: ?\(([^)]*)\))?(?: ?\[([^\]\s]+)\])?")
_TLS_VERSIONS = {
    "TLS1": TlsVersion.TLS1_0, "TLS1.0": TlsVersion.TLS1_0, "TLSV1": TlsVersion.TLS1_0,
    "TLSV1.0": TlsVersion.TLS1_0, "TLS1.1": TlsVersion.TLS1_1, "TLSV1.1": TlsVersion.TLS1_1,
    "TLS1.2": TlsVersion.TLS1_2, "TLSV1.2": TlsVersion.TLS1_2, "TLS1.3": TlsVersion.TLS1_3,
    "TLSV1.3": TlsVersion.TLS1_3,
}
_DELIVERIES = ("=>", "->", ">>")
_OUTCOMES = ("=>", "->", ">>", "**", "==", "*>")
# Transports that deliver on this host, whatever the H= says: mailboxes, pipes, LMTP.
_LOCAL_TRANSPORTS = frozenset({
    "local_delivery", "appendfile", "address_pipe", "address_file", "address_directory",
    "address_reply", "maildir_home", "maildir_delivery", "mail_spool", "procmail_pipe",
})

_SWEEP_EVERY = timedelta(minutes=10)
_QUEUED_IDLE = timedelta(days=8)  # past Exim's usual retry and bounce times: flush it
_EARLIEST = datetime.min.replace(tzinfo=UTC) + _QUEUED_IDLE + timedelta(days=1)
_LATEST = datetime.max.replace(tzinfo=UTC) - _SWEEP_EVERY - timedelta(days=1)


def parse_exim(
    lines: Iterable[str],
    *,
    policy: BoundaryPolicy,
    reference_time: datetime | None,
    report: IngestReport,
) -> Iterator[MessageFact]:
    """Message facts from the lines of Exim main logs, streamed as messages complete.

    ``reference_time`` is not needed: Exim time stamps carry the year. Memory is
    bounded by the messages still open, not by the input.
    """
    del reference_time
    yield from _EximReader(policy, report).stream(lines)


@dataclass(slots=True)
class _Delivery:
    """Deliveries of one message to one relay outside the boundary."""

    at: datetime
    host: str | None
    ip: str | None
    tls: tuple[TlsVersion, str | None]
    routes: tuple[str, ...]
    recipients: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Message:
    """What the log has said so far about one message id."""

    message_id: str
    seen_at: datetime
    arrived_at: datetime | None = None
    inbound: bool = False
    peer_host: str | None = None
    peer_ip: str | None = None
    tls: tuple[TlsVersion, str | None] = (TlsVersion.NONE, None)
    sender_domain: str | None = None
    size: int = 0
    size_unusable: bool = False  # S= was no size up to MAX_MESSAGE_SIZE: its facts say 0
    recipients: set[str] = field(default_factory=set)  # original addresses, any outcome
    deliveries: dict[str, _Delivery] = field(default_factory=dict)
    relay: str | None = None  # of the last => line, which the -> lines after it share


class _EximReader:
    """Follows messages through the lines of one log stream."""

    def __init__(self, policy: BoundaryPolicy, report: IngestReport) -> None:
        self._policy = policy
        self._report = report
        self._messages: dict[str, _Message] = {}
        self._is_internal = InternalAddresses(policy)
        self._next_sweep = _EARLIEST
        self._stamp: str | None = None
        self._stamp_time = _EARLIEST
        self._ready: list[MessageFact] = []

    def stream(self, lines: Iterable[str]) -> Iterator[MessageFact]:
        count = counted = 0
        try:
            for count, line in enumerate(lines, 1):
                self._read(line.replace("\x00", "").rstrip("\r\n"))
                if self._ready:
                    self._report.lines += count - counted
                    counted = count
                    ready, self._ready = self._ready, []
                    yield from ready
            for message in self._messages.values():
                self._emit(message)
            self._messages.clear()
            self._report.lines += count - counted
            counted = count
            ready, self._ready = self._ready, []
            yield from ready
        finally:
            self._report.lines += count - counted

    def _read(self, line: str) -> None:
        match = _STAMP.match(line)
        if match is None:
            if _LOOKS_STAMPED.match(line):
                self._report.skip(UNPARSEABLE_TIMESTAMP)
            elif line.strip():
                self._report.skip(NO_TIMESTAMP)
            return
        self._report.recognized_lines += 1
        words = line[match.end():].split(" ", 2)
        if len(words) < 2 or _MESSAGE_ID.fullmatch(words[0]) is None:
            return  # a line about a connection or the daemon, not a message
        marker, rest = words[1], words[2] if len(words) > 2 else ""
        if marker == "<=":
            at = self._time(match)
            if at is not None:
                self._arrival(words[0], at, rest)
        elif marker in _OUTCOMES:
            at = self._time(match)
            if at is not None:
                self._outcome(words[0], at, marker, rest)
        elif marker == "Completed":
            message = self._messages.pop(words[0], None)
            if message is not None:
                self._emit(message)

    # arrivals

    def _arrival(self, message_id: str, at: datetime, rest: str) -> None:
        sender, _, fields_text = rest.partition(" ")
        fields = _fields(fields_text)
        host = _HOST.search(fields_text) if "H" in fields else None
        size = _number(fields.get("S", "0"), MAX_MESSAGE_SIZE)
        if not sender or (host is not None and host[3] is None):
            self._report.skip(MALFORMED)
            return

        previous = self._messages.pop(message_id, None)
        if previous is not None:  # an arrival begins a message: this id was reused
            self._emit(previous)
        message = self._messages[message_id] = _Message(message_id, at, arrived_at=at)
        message.sender_domain = _domain(sender)
        message.size = size or 0
        message.size_unusable = size is None
        if host is None:
            return  # submitted on this host (P=local, U=user): internal
        ip = host[3]
        authenticated = "A" in fields or fields.get("P", "").lower() in ("esmtpa", "esmtpsa")
        internal = self._is_internal(ip)
        if internal is None and not authenticated:
            # Without an address its direction is unknown: counted, as the other parsers do;
            # the message's deliveries out still count, with its sender and size.
            self._report.skip(NO_PEER_ADDRESS)
        message.inbound = internal is False and not authenticated
        if message.inbound:
            message.peer_host = host[1] or None  # the name Exim verified, not the helo
            message.peer_ip = ip
            message.tls = _tls(fields.get("X"))

    # deliveries and other outcomes

    def _outcome(self, message_id: str, at: datetime, marker: str, rest: str) -> None:
        address, _, fields_text = rest.partition(" ")
        address = address.rstrip(":")
        original = address
        if fields_text.startswith("<"):
            end = fields_text.find(">")
            if end > 0:
                original, fields_text = fields_text[1:end], fields_text[end + 1:]
        if not address:
            self._report.skip(MALFORMED)
            return
        message = self._messages.get(message_id)
        if message is None:  # arrived before the log began
            message = self._messages[message_id] = _Message(message_id, at)
        message.seen_at = at
        message.recipients.add(original.lower())
        if marker not in _DELIVERIES:
            return
        self._delivery(message, at, marker, address, fields_text)

    def _delivery(
        self, message: _Message, at: datetime, marker: str, address: str, fields_text: str
    ) -> None:
        fields = _fields(fields_text)
        if message.arrived_at is None and fields.get("F"):  # log_selector +sender_on_delivery
            message.sender_domain = _domain(fields["F"])
        if marker == "->" and "H" not in fields and message.relay is not None:
            # the short form: another recipient of the delivery the => line before logged
            message.deliveries[message.relay].recipients.add(address.lower())
            return
        routes = tuple(fields[key] for key in ("R", "T") if fields.get(key))
        transport = fields.get("T", "").lower()
        host = _HOST.search(fields_text) if "H" in fields else None
        if host is None or transport in _LOCAL_TRANSPORTS or "lmtp" in transport:
            message.relay = None
            return  # delivered on this host
        ip = host[3]
        if ip is None:
            message.relay = None
            return  # a socket path rather than a network host
        internal = self._is_internal(ip)
        if internal is None:
            self._report.skip(NO_PEER_ADDRESS)
            message.relay = None
            return
        if internal and not self._policy.is_outbound_route(routes):
            message.relay = None
            return  # an internal relay, not a route out
        relay = f"{host[1]}[{ip}]"
        delivery = message.deliveries.get(relay)
        if delivery is None:
            delivery = message.deliveries[relay] = _Delivery(
                at, host[1] or None, ip, _tls(fields.get("X")), routes)
        delivery.recipients.add(address.lower())
        message.relay = relay

    # shared steps

    def _time(self, match: re.Match[str]) -> datetime | None:
        stamp = match[0]
        if stamp == self._stamp:  # lines come in bursts within one second
            return self._stamp_time
        at = self._parse_time(match)
        if at is not None:
            self._stamp, self._stamp_time = stamp, at
        return at

    def _parse_time(self, match: re.Match[str]) -> datetime | None:
        year, month, day, hour, minute, second, fraction, sign, zone_h, zone_m = match.groups()
        try:
            zone = UTC
            if sign is not None:
                offset = timedelta(hours=int(zone_h), minutes=int(zone_m))
                zone = timezone(-offset if sign == "-" else offset)
            at = datetime(int(year), int(month), int(day), int(hour), int(minute),
                          int(second), int((fraction or "0").ljust(6, "0")), tzinfo=zone)
            at = at.astimezone(UTC)
        except OverflowError:  # its zone takes it off the calendar
            self._report.skip(TIMESTAMP_OUT_OF_RANGE)
            return None
        except ValueError:  # year 0000 is a date, outside the calendar; 02-30 is none
            self._report.skip(TIMESTAMP_OUT_OF_RANGE if year == "0000" else UNPARSEABLE_TIMESTAMP)
            return None
        if not _EARLIEST <= at <= _LATEST:
            self._report.skip(TIMESTAMP_OUT_OF_RANGE)
            return None
        if at >= self._next_sweep:
            self._sweep(at)
        return at

    def _sweep(self, now: datetime) -> None:
        """Flush messages the log has said nothing of for longer than Exim keeps them."""
        self._next_sweep = now + _SWEEP_EVERY
        for message_id, message in list(self._messages.items()):
            if message.seen_at < now - _QUEUED_IDLE:
                self._emit(self._messages.pop(message_id))

    def _emit(self, message: _Message) -> None:
        facts = []
        if message.inbound and message.arrived_at is not None:
            facts.append(_inbound_fact(message, message.arrived_at))
        for relay, delivery in message.deliveries.items():
            facts.append(_outbound_fact(message, relay, delivery))
        stored = 0
        for fact in facts:
            if len(fact.source_key.encode()) > MAX_SOURCE_KEY_BYTES:
                self._report.skip(KEY_TOO_LONG)
                continue
            self._ready.append(fact)
            self._report.found(fact.occurred_at)
            stored += 1
        if stored and message.size_unusable:
            self._report.store_as_zero(SIZE_OUT_OF_RANGE)


def _inbound_fact(message: _Message, arrived: datetime) -> MessageFact:
    version, cipher = message.tls
    return MessageFact(
        source_key=f"exim:{message.message_id}:in",
        occurred_at=arrived,
        direction=Direction.INBOUND,
        tls_version=version,
        tls_cipher=cipher,
        peer_host=message.peer_host,
        peer_ip=message.peer_ip,
        sender_domain=message.sender_domain,
        recipient_domains=_domains(message.recipients),
        recipients=len(message.recipients),
        size_bytes=message.size,
        status=DeliveryStatus.RECEIVED,
    )


def _outbound_fact(message: _Message, relay: str, delivery: _Delivery) -> MessageFact:
    version, cipher = delivery.tls
    return MessageFact(
        source_key=f"exim:{message.message_id}:out:{relay}",
        occurred_at=delivery.at,
        direction=Direction.OUTBOUND,
        tls_version=version,
        tls_cipher=cipher,
        peer_host=delivery.host,
        peer_ip=delivery.ip,
        sender_domain=message.sender_domain,
        recipient_domains=_domains(delivery.recipients),
        recipients=len(delivery.recipients),
        size_bytes=message.size,
        status=DeliveryStatus.DELIVERED,
        routes=delivery.routes,
    )


def _fields(text: str) -> dict[str, str]:
    """The ``KEY=value`` fields of a line's text, quotes removed; the first of a key wins."""
    fields: dict[str, str] = {}
    for match in _FIELD.finditer(text):
        value = match[2]
        if value.startswith('"'):
            value = value[1:-1]
        fields.setdefault(match[1], value)
    return fields


def _tls(text: str | None) -> tuple[TlsVersion, str | None]:
    """``TLS1.2:ECDHE_RSA_AES_256_GCM_SHA384:256`` -> (TLS1_2, the cipher); none: NONE."""
    if not text:
        return TlsVersion.NONE, None
    version, _, rest = text.partition(":")
    cipher = rest.rpartition(":")[0] or rest or None
    return _TLS_VERSIONS.get(version.upper(), TlsVersion.UNKNOWN), cipher


def _number(digits: str, maximum: int) -> int | None:
    """The value of a string of ASCII digits up to ``maximum``; None for anything else."""
    if not (digits.isascii() and digits.isdecimal()):
        return None
    digits = digits.lstrip("0") or "0"
    if len(digits) > len(str(maximum)):
        return None
    value = int(digits)
    return value if value <= maximum else None


def _domain(address: str) -> str | None:
    """Lowercased domain of an address; None for the null sender ``<>`` or a bare local part."""
    at = address.rfind("@")
    if at < 0:
        return None
    return address[at + 1:].strip("<>").lower() or None


def _domains(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({domain for domain in map(_domain, addresses) if domain}))
