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


class TlsPolicyType(enum.Enum):
    """The policy an SMTP TLS report's sessions were evaluated against (RFC 8460, 4.3)."""

    STS = "sts"
    TLSA = "tlsa"
    NO_POLICY_FOUND = "no-policy-found"


@dataclass(frozen=True, slots=True)
class TlsFailureDetail:
    """Sessions of one policy that failed in the same way, as the reporter grouped them."""

    result_type: str
    failed_sessions: int
    sending_mta_ip: str | None = None
    receiving_mx_hostname: str | None = None
    receiving_mx_helo: str | None = None
    receiving_ip: str | None = None
    additional_information: str | None = None
    failure_reason_code: str | None = None


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """One policy of an SMTP TLS report with its session counts and failure details."""

    policy_type: TlsPolicyType
    policy_domain: str
    successful_sessions: int
    failed_sessions: int
    policy_strings: tuple[str, ...] = ()
    mx_host_patterns: tuple[str, ...] = ()
    failure_details: tuple[TlsFailureDetail, ...] = ()


@dataclass(frozen=True, slots=True)
class TlsReport:
    """An SMTP TLS report (RFC 8460) that a sending organization mailed to the organization.

    It counts TLS *sessions* the reporter attempted to the organization's MX hosts, not
    messages. ``report_id`` identifies it within the organization; ``start`` and ``end``
    are aware datetimes.
    """

    report_id: str
    reporting_organization: str
    contact_info: str | None
    start: datetime
    end: datetime
    policies: tuple[TlsPolicy, ...]
