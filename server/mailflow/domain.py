"""Domain values shared by ingest, store, reports and the API."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Direction(enum.Enum):
    """Which way a message crossed the organization's boundary."""

    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


class TlsVersion(enum.Enum):
    """TLS version of the hop that crossed the boundary."""

    NONE = "NONE"
    TLS1_0 = "TLS1_0"
    TLS1_1 = "TLS1_1"
    TLS1_2 = "TLS1_2"
    TLS1_3 = "TLS1_3"
    UNKNOWN = "UNKNOWN"


class ConnectorKind(enum.Enum):
    """What sits on the far side of a connector."""

    PARTNER = "PARTNER"
    ON_PREMISES = "ON_PREMISES"


class DeliveryStatus(enum.Enum):
    """What happened to a message at the boundary hop."""

    RECEIVED = "RECEIVED"
    DELIVERED = "DELIVERED"


@dataclass(frozen=True, slots=True)
class MessageFact:
    """One message crossing the boundary in one direction.

    A parser fills everything except ``connector_id``, which classification
    assigns from the organization's connectors (``None`` is "no connector").
    ``source_key`` is stable for the same input, so loading twice changes nothing.
    ``routes`` are the names the source itself gave the route (a router, transport or
    connector name); a connector of that name, or listing it, is chosen first.
    """

    source_key: str
    occurred_at: datetime
    direction: Direction
    tls_version: TlsVersion
    tls_cipher: str | None
    peer_host: str | None
    peer_ip: str | None
    sender_domain: str | None
    recipient_domains: tuple[str, ...]
    recipients: int
    size_bytes: int
    status: DeliveryStatus
    connector_id: int | None = field(default=None)
    routes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Connector:
    """A named route across the boundary and the rules that select it.

    Inbound connectors match by sender domain, client IP range (CIDR) or client
    TLS certificate name; outbound ones by recipient domain or smart host.
    Domains may start with ``*.`` to match any subdomain. Either direction also
    matches by route: a fact whose ``routes`` hold the connector's name or one of
    its ``routes`` (compared without regard to case) took this connector.
    """

    id: int
    name: str
    direction: Direction
    kind: ConnectorKind
    sender_domains: tuple[str, ...] = ()
    recipient_domains: tuple[str, ...] = ()
    client_ips: tuple[str, ...] = ()
    smart_hosts: tuple[str, ...] = ()
    tls_cert_names: tuple[str, ...] = ()
    require_tls: bool = False
    routes: tuple[str, ...] = ()
