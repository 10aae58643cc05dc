"""What the Postfix parser keeps between lines: open messages, TLS handshakes, its clock.

These classes are apart from the parser because the parser is compiled with mypyc, whose
native classes pydantic cannot save and read again; these stay plain Python classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mailflow.domain import TlsVersion
from mailflow.ingest.syslog import ClockState


@dataclass(slots=True)
class Handshake:
    """A TLS handshake logged by one smtpd or smtp process."""

    version: TlsVersion
    cipher: str
    ip: str
    at: datetime


@dataclass(slots=True)
class Delivery:
    """Successful deliveries of one queued message to one external relay."""

    at: datetime
    host: str
    ip: str
    handshake: Handshake | None
    recipients: int = 0
    domains: set[str] = field(default_factory=set)


@dataclass(slots=True)
class OpenMessage:
    """What the log has said so far about one queue id."""

    queue_id: str
    seen_at: datetime
    client_at: datetime | None = None
    inbound: bool = False
    peer_host: str | None = None
    peer_ip: str | None = None
    handshake: Handshake | None = None
    queued: bool = False
    sender_domain: str | None = None
    size: int = 0
    recipients: int = 0
    unusable: str | None = None  # the kind of a value of its queued line read as 0
    recipient_domains: set[str] = field(default_factory=set)
    deliveries: dict[str, Delivery] = field(default_factory=dict)


STATE_VERSION = 1  # raise when the dataclasses of the state change


@dataclass(slots=True)
class ReaderState:
    """What the parser's reader carries from one line to the next."""

    version: int
    clock: ClockState
    next_sweep: datetime
    messages: list[tuple[str, OpenMessage]]
    sessions: list[tuple[str, str, Handshake]]
    connections: list[tuple[str, str, Handshake]]
