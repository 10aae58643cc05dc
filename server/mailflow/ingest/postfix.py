"""Postfix logs -> message facts for the mail that crossed the organization's boundary.

Postfix logs each hop of a message on its own line, tied together by the queue id,
and logs TLS once per connection, tied to the message only by the process id:

- Inbound: ``smtpd[PID]: QID: client=host[ip]`` from an external client that did
  not authenticate (no ``sasl_username=``), once qmgr queued it (``QID: from=<...>,
  size=N, nrcpt=N``). It happened at the ``client=`` line, with the TLS handshake
  that the same smtpd process logged in that session (none: ``NONE``).
- Outbound: ``smtp[PID]: QID: to=<...>, relay=host[ip]:port, ..., status=sent`` to
  a relay outside the internal networks. One fact per queue id and relay, counting
  the recipients sent there, at the first successful delivery to it, with the TLS
  handshake that process logged to that relay's address. Deferred attempts do not
  count; the later ``status=sent`` does. Local delivery (lmtp, local, virtual,
  pipe; relay=local, relay=none, a socket path) is never outbound.
- A ``client=`` or delivered ``relay=`` whose address in brackets is no IP address (a
  corrupt ``[198.51.100.300]``) cannot be judged internal or external: that line is
  counted in ``report.skipped`` and gives no fact; the message's other facts still count.
- Content filters (amavis on 127.0.0.1:10024, re-injecting on :10025) hand the
  message back under a new queue id: the hop into the filter goes to an internal
  relay (not outbound), the re-injection comes from an internal client or carries
  ``orig_queue_id=``/``orig_client=`` (not inbound). So the original queue id holds
  the inbound fact and the re-injected one the outbound facts: each message is
  counted once per direction it crossed, with the TLS of the hop that crossed.
- A ``status=sent`` to an external relay for a queue id whose arrival is not in the
  log (it began earlier) is still a real delivery: its fact is emitted with what
  the log says, ``sender_domain`` None and ``size_bytes`` 0.

Facts are emitted when qmgr logs ``QID: removed`` and at the end of input; state is
kept per open queue id and per live smtpd session or smtp connection only.
:class:`PostfixParser` reads a log that is still being written: input ending is not the
log ending, and its state (the open messages, sessions and connections, and the clock)
can be saved with the position it belongs to and taken up again by a later run.
Classic syslog timestamps have no zone and are taken as UTC (see
:class:`~mailflow.ingest.syslog.SyslogClock`); every datetime emitted is UTC.

A value no real log holds never stops a parse: a ``size=`` that is not a number of bytes
up to 1 TiB (thousands of digits, ``-1``, ``12kB``, empty) or an ``nrcpt=`` that is not a
count up to a PostgreSQL integer is read as 0 (unknown, as for a delivery whose arrival is
not in the log), and the message still counts, inbound and outbound, so one corrupt number
loses one number rather than a message; the line is counted in
``report.stored_as_zero`` when a fact stored holds that 0. A time stamp
within a week of the first instant a datetime holds (0001-01-01) or ten minutes of its
last (9999-12-31) is counted as out of range and its line not used: the parser looks that
far back and ahead. NUL characters, which a crash can leave in a log file, are dropped;
a fact whose key would be too long to index is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.errors import ParserStateError
from mailflow.ingest.network import BoundaryPolicy, InternalAddresses
from mailflow.ingest.postfix_state import (
    STATE_VERSION,
    Delivery,
    Handshake,
    OpenMessage,
    ReaderState,
)
from mailflow.ingest.report import IngestReport
from mailflow.ingest.syslog import (
    SyslogClock,
    TimestampOutOfRangeError,
    split_syslog_line,
)
from mailflow.store.rows import MAX_RECIPIENTS, MAX_SIZE_BYTES, MAX_SOURCE_KEY_BYTES

MALFORMED = "malformed postfix line"
UNPARSEABLE_TIMESTAMP = "unparseable timestamp"
TIMESTAMP_OUT_OF_RANGE = "timestamp out of range"
NO_HEADER = "postfix line without syslog header"
NO_PEER_ADDRESS = "postfix line whose client or relay address is not an IP address"
SIZE_OUT_OF_RANGE = "size out of range"
RECIPIENTS_OUT_OF_RANGE = "recipient count out of range"
KEY_TOO_LONG = "host, queue id or relay too long"

# No mail system queues a terabyte; the bound also keeps a day's byte total in a bigint.
MAX_MESSAGE_SIZE = MAX_SIZE_BYTES

_TLS_HANDSHAKE = re.compile(
    r"(?:\w+ )?TLS connection (?:established|reused) (?:from|to) "
    r"\S*?\[([^\]]*)\](?::\d+)?: (\S+) with cipher (\S+)"
)
_QUEUED = re.compile(r"from=<(.*)>, size=(.*?), nrcpt=([^ ,]*)")
_TLS_VERSIONS = {
    "TLSv1": TlsVersion.TLS1_0,
    "TLSv1.1": TlsVersion.TLS1_1,
    "TLSv1.2": TlsVersion.TLS1_2,
    "TLSv1.3": TlsVersion.TLS1_3,
}
_LOCAL_AGENTS = ("lmtp", "local", "virtual", "pipe", "error", "retry", "discard")  # not outbound

# State is kept per open message and per live connection. These bound it when the
# log loses the line that would close it (syslog drops lines under load).
_SWEEP_EVERY = timedelta(minutes=10)
_CONNECTION_IDLE = timedelta(hours=1)  # a handshake unused this long belongs to no delivery
_UNQUEUED_IDLE = timedelta(hours=1)  # client= without qmgr: the client gave up, nothing queued
_QUEUED_IDLE = timedelta(days=7)  # past Postfix's default 5-day queue lifetime: flush it
# The instants the windows above can be added to and taken from: time stamps outside are
# out of range (only a corrupt log holds them).
_EARLIEST = datetime.min.replace(tzinfo=UTC) + max(_CONNECTION_IDLE, _UNQUEUED_IDLE, _QUEUED_IDLE)
_LATEST = datetime.max.replace(tzinfo=UTC) - _SWEEP_EVERY


def parse_postfix(
    lines: Iterable[str],
    *,
    policy: BoundaryPolicy,
    year: int | None,
    reference_time: datetime | None,
    report: IngestReport,
) -> Iterator[MessageFact]:
    """Message facts from Postfix syslog lines, streamed in the order they complete.

    ``year`` is the year of the first classic syslog line; when None it is inferred
    from ``reference_time`` (see :class:`~mailflow.ingest.syslog.SyslogClock`).
    Memory is bounded by the messages still in the queue, not by the input.
    Lines that look like mail events but cannot be used are counted in
    ``report.skipped``; nothing in the input raises. Every fact is storable as it is.
    ``report`` also gets the lines of Postfix daemons, the span of the facts, and
    the year assumed for classic time stamps (when ``year`` is None).
    """
    clock = SyslogClock(year=year, reference_time=reference_time)
    yield from _PostfixReader(policy, clock, report).stream(lines)


class PostfixParser:
    """Postfix lines to message facts, fed as the log grows, with a state to save and restore.

    Unlike :func:`parse_postfix`, running out of lines does not end the log: a message still
    open stays open, in :meth:`state`, until later lines (fed now or after a restart with
    ``state=``) complete it. Feeding the lines after a saved state to a parser restored from
    it gives the facts a parser fed every line would have given.
    """

    def __init__(
        self, *, policy: BoundaryPolicy, year: int | None, reference_time: datetime | None,
        report: IngestReport, state: Mapping[str, Any] | None = None,
    ) -> None:
        clock = SyslogClock(year=year, reference_time=reference_time)
        self._reader = _PostfixReader(policy, clock, report)
        if state is not None:
            self._reader.restore(_read_state(state))

    def feed(self, line: str) -> list[MessageFact]:
        """The facts that this line completes."""
        return list(self._reader.stream((line,), finish=False))

    def state(self) -> dict[str, Any]:
        """Everything the parser holds about messages not yet complete, as JSON values."""
        state: dict[str, Any] = _STATE.dump_python(self._reader.snapshot(), mode="json")
        return state

    @property
    def open_messages(self) -> int:
        """Queue ids whose facts wait for more lines."""
        return self._reader.open_messages


_STATE = TypeAdapter(ReaderState)


def _read_state(state: Mapping[str, Any]) -> ReaderState:
    version = state.get("version")
    if version != STATE_VERSION:
        raise ParserStateError(
            f"the saved Postfix parser state is of version {version!r}; "
            f"this parser reads version {STATE_VERSION}"
        )
    try:
        return _STATE.validate_python(state)
    except ValidationError as error:
        raise ParserStateError(f"the saved Postfix parser state is unreadable: {error}") from None


class _PostfixReader:
    """Follows messages, sessions and connections through the lines of one log stream."""

    def __init__(self, policy: BoundaryPolicy, clock: SyslogClock, report: IngestReport) -> None:
        self._policy = policy
        self._clock = clock
        self._report = report
        self._messages: dict[tuple[str, str], OpenMessage] = {}
        self._sessions: dict[tuple[str, str], Handshake] = {}  # smtpd, until disconnect
        self._connections: dict[tuple[str, str], Handshake] = {}  # smtp, latest per process
        self._is_internal = InternalAddresses(policy)
        self._next_sweep = _EARLIEST
        self._stamp: str | None = None
        self._stamp_time = _EARLIEST
        self._lines = 0  # added to report.lines so far by the current stream()
        self._ready: list[MessageFact] = []
        self._handlers: dict[str, Callable[[str, str, str, str], None]] = {
            "smtpd": self._smtpd,
            "qmgr": self._qmgr,
            "postsuper": self._qmgr,
            "smtp": self._smtp,
            **{agent: self._local_agent for agent in _LOCAL_AGENTS},
        }

    def stream(self, lines: Iterable[str], *, finish: bool = True) -> Iterator[MessageFact]:
        """Facts in the order the lines complete them, then (``finish``) those still open."""
        handlers = self._handlers
        report = self._report
        month_name = self._clock.month_name
        count = self._lines = 0
        try:
            for count, line in enumerate(lines, 1):
                if "\x00" in line:
                    line = line.replace("\x00", "")
                if line[:3] == month_name and line[15:16] == " ":
                    # Fast path: a classic line of the current month, so the year cannot
                    # turn here; only the lines of daemons that matter are cut further.
                    tag_end = line.find(": ", 16)
                    slash = line.rfind("/", 16, tag_end)
                    if slash < 0 or tag_end < 0:
                        continue
                    bracket = line.find("[", slash, tag_end)
                    handler = handlers.get(line[slash + 1 : bracket if bracket > 0 else tag_end])
                    if handler is None:
                        continue
                    report.recognized_lines += 1
                    host_end = line.find(" ", 16)
                    text = line[tag_end + 2 :].rstrip("\r\n")
                    handler(line[:15], line[16:host_end], line[host_end + 1 : tag_end], text)
                else:
                    self._read(line)
                    month_name = self._clock.month_name
                if self._ready:
                    self._count_lines(count)
                    ready, self._ready = self._ready, []
                    yield from ready
            self._count_lines(count)
            if finish:
                yield from self._finish()
        finally:
            self._count_lines(count)
            report.assumed_year = self._clock.assumed_year

    @property
    def open_messages(self) -> int:
        return len(self._messages)

    def snapshot(self) -> ReaderState:
        """The state to take up again with :meth:`restore`."""
        return ReaderState(
            version=STATE_VERSION,
            clock=self._clock.state(),
            next_sweep=self._next_sweep,
            messages=[(host, message) for (host, _), message in self._messages.items()],
            sessions=[(*key, handshake) for key, handshake in self._sessions.items()],
            connections=[(*key, handshake) for key, handshake in self._connections.items()],
        )

    def restore(self, state: ReaderState) -> None:
        """Go on from ``state``; a handshake shared by a session and a message becomes two
        equal ones, which changes no fact (only a session's copy is ever updated)."""
        self._clock = SyslogClock.restored(state.clock)
        self._next_sweep = state.next_sweep
        self._messages = {(host, message.queue_id): message for host, message in state.messages}
        self._sessions = {(host, tag): handshake for host, tag, handshake in state.sessions}
        self._connections = {(host, tag): handshake for host, tag, handshake in state.connections}

    def _count_lines(self, count: int) -> None:
        """Bring ``report.lines`` up to date: others may count lines there too."""
        self._report.lines += count - self._lines
        self._lines = count

    def _read(self, line: str) -> None:
        """Any line: split its header and follow the calendar, then hand it on."""
        header = split_syslog_line(line)
        if header is None:
            if "postfix" in line:
                self._report.skip(NO_HEADER)
            return
        stamp, host, tag, text = header
        self._clock.observe(stamp)
        slash = tag.rfind("/")
        bracket = tag.find("[", slash)
        handler = self._handlers.get(tag[slash + 1 : bracket] if bracket > 0 else tag[slash + 1 :])
        if slash >= 0 and handler is not None:
            self._report.recognized_lines += 1
            handler(stamp, host, tag, text)

    def _finish(self) -> list[MessageFact]:
        """Flush the messages still open at the end of input."""
        for message_key, message in self._messages.items():
            self._emit(message_key[0], message)
        self._messages.clear()
        ready, self._ready = self._ready, []
        return ready

    # smtpd: sessions, their TLS handshakes, and the clients of the messages they accept

    def _smtpd(self, stamp: str, host: str, tag: str, text: str) -> None:
        if text.startswith(("connect from ", "disconnect from ")):
            self._sessions.pop((host, tag), None)
        elif "TLS connection " in text:
            handshake = self._handshake(stamp, text)
            if handshake is not None:
                self._sessions[(host, tag)] = handshake
        else:
            colon = text.find(": client=")
            if colon > 0:
                self._client(stamp, host, tag, text[:colon], text[colon + 9 :])

    def _client(self, stamp: str, host: str, tag: str, queue_id: str, client: str) -> None:
        at = self._time(stamp)
        if at is None:
            return
        open_bracket = client.find("[")
        close_bracket = client.find("]", open_bracket + 1)
        if not 0 <= open_bracket < close_bracket or not queue_id.isalnum():
            self._report.skip(MALFORMED)
            return
        ip = _bare_ip(client[open_bracket + 1 : close_bracket])
        internal = self._is_internal(ip)
        if internal is None:
            self._report.skip(NO_PEER_ADDRESS)
            return

        message_key = (host, queue_id)
        previous = self._messages.pop(message_key, None)
        if previous is not None:  # client= begins a queue id's life: Postfix reused this one
            self._emit(host, previous)
        message = self._messages[message_key] = OpenMessage(queue_id, at, client_at=at)

        message.inbound = not (
            internal
            or "sasl_username=" in client  # authenticated submission
            or "orig_queue_id=" in client  # re-injected by a content filter
            or "orig_client=" in client
        )
        if message.inbound:
            message.peer_host = client[:open_bracket]
            message.peer_ip = ip
            message.handshake = self._sessions.get((host, tag))
            if message.handshake is not None:
                message.handshake.at = at

    # qmgr: queued, removed

    def _qmgr(self, stamp: str, host: str, tag: str, text: str) -> None:
        colon = text.find(": ")
        if colon <= 0:
            return
        if text.startswith("removed", colon + 2):
            message = self._messages.pop((host, text[:colon]), None)
            if message is not None:
                self._emit(host, message)
        elif text.startswith("from=<", colon + 2):
            self._queued(stamp, host, text[:colon], text, colon + 2)
        elif text.startswith("to=<", colon + 2):
            self._recipient(stamp, host, tag, text[:colon], text, colon + 2, outbound=False)

    def _queued(self, stamp: str, host: str, queue_id: str, text: str, start: int) -> None:
        match = _QUEUED.match(text, start)
        if match is None:
            if ", size=" in text:
                self._report.skip(MALFORMED)
            return  # e.g. "from=<...>, status=expired, returned to sender"
        at = self._time(stamp)
        if at is None:
            return
        message = self._messages.get((host, queue_id))
        if message is None:
            message = self._messages[(host, queue_id)] = OpenMessage(queue_id, at)
        message.seen_at = at
        if not message.queued:  # qmgr logs this again each time a deferred message returns
            message.queued = True
            message.sender_domain = _domain(match[1])
            size = _number(match[2], MAX_MESSAGE_SIZE)
            recipients = _number(match[3], MAX_RECIPIENTS)
            if size is None:
                message.unusable = SIZE_OUT_OF_RANGE
            elif recipients is None:
                message.unusable = RECIPIENTS_OUT_OF_RANGE
            message.size = size or 0
            message.recipients = recipients or 0

    # delivery agents: TLS handshakes to relays, and each recipient's outcome

    def _smtp(self, stamp: str, host: str, tag: str, text: str) -> None:
        colon = text.find(": to=<")
        if colon > 0:
            self._recipient(stamp, host, tag, text[:colon], text, colon + 2, outbound=True)
        elif "TLS connection " in text:
            handshake = self._handshake(stamp, text)
            if handshake is not None:
                self._connections[(host, tag)] = handshake

    def _local_agent(self, stamp: str, host: str, tag: str, text: str) -> None:
        colon = text.find(": to=<")
        if colon > 0:
            self._recipient(stamp, host, tag, text[:colon], text, colon + 2, outbound=False)

    def _recipient(
        self, stamp: str, host: str, tag: str, queue_id: str, text: str, start: int, *,
        outbound: bool,
    ) -> None:
        address_end = text.find(">", start)
        relay_at = text.find(", relay=", address_end)
        status_at = text.find(", status=", relay_at)
        at = self._time(stamp)
        if at is None:
            return
        if not queue_id.isalnum() or address_end < 0 or relay_at < 0 or status_at < 0:
            self._report.skip(MALFORMED)
            return

        domain = _domain(text[start + 4 : address_end])
        message = self._messages.get((host, queue_id))
        if message is not None:
            message.seen_at = at
            if message.inbound and domain:
                message.recipient_domains.add(domain)
        if not outbound or not text.startswith("sent", status_at + 9):
            return

        relay = text[relay_at + 8 : text.find(", ", relay_at + 8)]
        open_bracket = relay.find("[")
        close_bracket = relay.find("]", open_bracket + 1)
        if open_bracket < 0 or close_bracket < 0:
            return  # relay=none, relay=local, relay=private/...: not a network hop
        ip = _bare_ip(relay[open_bracket + 1 : close_bracket])
        if "/" in ip:
            return  # a socket path such as [private/dovecot-lmtp]: not a network hop
        internal = self._is_internal(ip)
        if internal is None:
            self._report.skip(NO_PEER_ADDRESS)
            return
        if internal:
            return  # an internal relay, such as a content filter on 127.0.0.1

        if message is None:  # arrived before the log began
            message = self._messages[(host, queue_id)] = OpenMessage(queue_id, at, queued=True)
        delivery = message.deliveries.get(relay)
        if delivery is None:
            handshake = self._connections.get((host, tag))
            if handshake is not None and handshake.ip != ip:
                handshake = None  # that process's TLS was with another relay
            delivery = message.deliveries[relay] = Delivery(
                at, relay[:open_bracket], ip, handshake
            )
        delivery.recipients += 1
        if domain:
            delivery.domains.add(domain)

    # shared steps

    def _handshake(self, stamp: str, text: str) -> Handshake | None:
        match = _TLS_HANDSHAKE.match(text)
        if match is None:
            if "connection established" in text or "connection reused" in text:
                self._report.skip(MALFORMED)
            return None
        at = self._time(stamp)
        if at is None:
            return None
        version = _TLS_VERSIONS.get(match[2], TlsVersion.UNKNOWN)
        return Handshake(version, match[3], _bare_ip(match[1]), at)

    def _time(self, stamp: str) -> datetime | None:
        if stamp == self._stamp:  # lines come in bursts within one second
            return self._stamp_time
        try:
            at = self._clock.parse(stamp)
        except TimestampOutOfRangeError:
            self._report.skip(TIMESTAMP_OUT_OF_RANGE)
            return None
        except ValueError:
            self._report.skip(UNPARSEABLE_TIMESTAMP)
            return None
        if not _EARLIEST <= at <= _LATEST:  # the sweep's arithmetic would leave the calendar
            self._report.skip(TIMESTAMP_OUT_OF_RANGE)
            return None
        self._stamp, self._stamp_time = stamp, at
        if at >= self._next_sweep:
            self._sweep(at)
        return at

    def _sweep(self, now: datetime) -> None:
        """Forget state whose closing line the log lost; flush long-idle messages."""
        self._next_sweep = now + _SWEEP_EVERY
        stale = now - _CONNECTION_IDLE
        for connections in (self._sessions, self._connections):
            for key in [key for key, handshake in connections.items() if handshake.at < stale]:
                del connections[key]
        for key, message in list(self._messages.items()):
            if message.queued and message.seen_at < now - _QUEUED_IDLE:
                self._emit(key[0], self._messages.pop(key))
            elif not message.queued and message.seen_at < now - _UNQUEUED_IDLE:
                del self._messages[key]

    def _emit(self, host: str, message: OpenMessage) -> None:
        facts = []
        if message.inbound and message.queued and message.client_at is not None:
            facts.append(_inbound_fact(host, message, message.client_at))
        for relay, delivery in message.deliveries.items():
            facts.append(_outbound_fact(host, message, relay, delivery))
        kept_unusable = False  # a fact stored holds the value read as 0
        for fact in facts:
            if len(fact.source_key.encode()) > MAX_SOURCE_KEY_BYTES:
                self._report.skip(KEY_TOO_LONG)
                continue
            self._ready.append(fact)
            self._report.found(fact.occurred_at)
            # Only the inbound fact counts the queued recipients; every fact has the size.
            kept_unusable |= (message.unusable == SIZE_OUT_OF_RANGE
                              or fact.direction is Direction.INBOUND)
        if message.unusable is not None and kept_unusable:
            self._report.store_as_zero(message.unusable)


def _inbound_fact(host: str, message: OpenMessage, arrived: datetime) -> MessageFact:
    handshake = message.handshake
    return MessageFact(
        source_key=f"postfix:{host}:{message.queue_id}:{arrived.isoformat()}:in",
        occurred_at=arrived,
        direction=Direction.INBOUND,
        tls_version=handshake.version if handshake else TlsVersion.NONE,
        tls_cipher=handshake.cipher if handshake else None,
        peer_host=message.peer_host,
        peer_ip=message.peer_ip,
        sender_domain=message.sender_domain,
        recipient_domains=tuple(sorted(message.recipient_domains)),
        recipients=message.recipients,
        size_bytes=message.size,
        status=DeliveryStatus.RECEIVED,
    )


def _outbound_fact(host: str, message: OpenMessage, relay: str, delivery: Delivery) -> MessageFact:
    """The key holds the first delivery's time, not the arrival: the arrival may lie
    before the log, and the key must not change with where the log starts."""
    handshake = delivery.handshake
    return MessageFact(
        source_key=f"postfix:{host}:{message.queue_id}:{delivery.at.isoformat()}:out:{relay}",
        occurred_at=delivery.at,
        direction=Direction.OUTBOUND,
        tls_version=handshake.version if handshake else TlsVersion.NONE,
        tls_cipher=handshake.cipher if handshake else None,
        peer_host=delivery.host,
        peer_ip=delivery.ip,
        sender_domain=message.sender_domain,
        recipient_domains=tuple(sorted(delivery.domains)),
        recipients=delivery.recipients,
        size_bytes=message.size,
        status=DeliveryStatus.DELIVERED,
    )


def _number(digits: str, maximum: int) -> int | None:
    """The value of a string of ASCII digits, or None for another string or above ``maximum``.

    The length is checked first: int() refuses (or takes long over) thousands of digits.
    """
    if not (digits.isascii() and digits.isdecimal()):
        return None  # "", "-1", "12kB", "١٢" ...
    digits = digits.lstrip("0") or "0"
    if len(digits) > len(str(maximum)):
        return None
    value = int(digits)
    return value if value <= maximum else None


def _bare_ip(address: str) -> str:
    """``"ipv6:2001:db8::25"`` -> ``"2001:db8::25"``; other addresses unchanged."""
    if address[:5].lower() == "ipv6:":
        return address[5:]
    return address


def _domain(address: str) -> str | None:
    """Lowercased domain of an address; None for the null sender or a bare local part."""
    at = address.rfind("@")
    if at < 0:
        return None
    return address[at + 1 :].lower() or None
