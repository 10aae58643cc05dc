"""Assign each message fact the connector it crossed the boundary through.

Inbound facts are matched against inbound connectors by client TLS certificate
name (``peer_host``), client IP (``peer_ip`` within ``client_ips``) or sender
domain; outbound facts against outbound connectors by smart host (``peer_host``
or ``peer_ip``) or any of their recipient domains. Facts of either direction also
match by route: when the source named the route it took (``MessageFact.routes``:
an Exim router or transport, an Exchange connector), a connector of the same
direction whose name, or one of whose ``routes``, equals one of those names
(compared without regard to case) is chosen. A fact that matches nothing keeps
``connector_id = None``: it is counted under "no connector", never dropped.

Domain rules are exact names or ``*.example.com``, which matches every
subdomain of example.com at any depth but not example.com itself (as a TLS
wildcard would not); list both to cover both.

When several connectors match, the most specific wins, compared in this order:

1. the kind of evidence: a route beats everything else, since the mail server
   itself says which route it took; then inbound, a certificate name beats a
   client IP, which beats a sender domain (the sender domain is the easiest to
   forge); outbound, a smart host beats a recipient domain (it names the relay);
2. within a kind, an exact name beats a wildcard, a wildcard on a longer suffix
   beats a shorter one, and a longer CIDR prefix beats a shorter one (a route
   matched by a connector's name and one matched by its ``routes`` are equal);
3. remaining ties go to the connector whose name sorts first.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import Sequence
from typing import TypeAlias, TypeVar

from mailflow.domain import Connector, Direction, MessageFact
from mailflow.ingest.network import DEFAULT_INTERNAL_NETWORKS, BoundaryPolicy
from mailflow.store.connection import Connection
from mailflow.store.organizations import load_connectors, load_internal_networks
from mailflow.store.sql import query

# Lower sorts first and wins: (-evidence, -exact, -suffix labels or prefix length, name, id).
Rank: TypeAlias = tuple[int, int, int, str, int]
# An IP address as (version, integer value), parsed without the cost of ipaddress objects.
Address: TypeAlias = tuple[int, int]

# Evidence strength, higher is stronger; a route is the strongest in both directions.
ROUTE = 4
CERTIFICATE, CLIENT_IP, SENDER_DOMAIN = 3, 2, 1
SMART_HOST, RECIPIENT_DOMAIN = 2, 1

CACHE_SIZE = 65_536
_NO_CONNECTOR = -1  # what the cache holds for a fact that matches no connector

Key = TypeVar("Key")


class NameRules:
    """Exact and ``*.`` wildcard names, each mapped to the best-ranked connector listing it."""

    def __init__(self) -> None:
        self.exact: dict[str, Rank] = {}
        self.wildcard: dict[str, Rank] = {}

    def add(self, pattern: str, evidence: int, connector: Connector) -> None:
        name = normalize_name(pattern)
        if name.startswith("*."):
            suffix = name[2:]
            rank = (-evidence, 0, -(suffix.count(".") + 1), connector.name, connector.id)
            _keep_best(self.wildcard, suffix, rank)
        else:
            _keep_best(self.exact, name, (-evidence, -1, 0, connector.name, connector.id))

    def has_rules(self) -> bool:
        return bool(self.exact or self.wildcard)

    def best(self, name: str) -> Rank | None:
        """The best rank among the rules that match ``name`` (already normalized)."""
        found = self.exact.get(name)
        if found is not None or not self.wildcard:
            return found
        dot = name.find(".")
        while dot != -1:
            wildcard = self.wildcard.get(name[dot + 1:])
            if wildcard is not None:
                return wildcard  # the first suffix found is the longest
            dot = name.find(".", dot + 1)
        return None


class NetworkRules:
    """CIDR ranges per prefix length, longest prefix first, mapped to the best-ranked connector."""

    def __init__(self, evidence: int) -> None:
        self.evidence = evidence
        self.by_prefix: dict[tuple[int, int], dict[int, Rank]] = {}
        self.lookups: list[tuple[int, int, dict[int, Rank]]] = []

    def add(self, cidr: str, connector: Connector) -> None:
        network = ipaddress.ip_network(cidr, strict=False)
        table = self.by_prefix.setdefault((network.version, network.prefixlen), {})
        rank = (-self.evidence, 0, -network.prefixlen, connector.name, connector.id)
        _keep_best(table, int(network.network_address), rank)
        self.lookups = sorted(
            ((version, prefix, table) for (version, prefix), table in self.by_prefix.items()),
            key=lambda lookup: -lookup[1],
        )

    def best(self, address: Address) -> Rank | None:
        version, value = address
        width = 32 if version == 4 else 128
        for lookup_version, prefix, table in self.lookups:
            if lookup_version != version:
                continue
            found = table.get(value >> (width - prefix) << (width - prefix))
            if found is not None:
                return found
        return None


class Classifier:
    """Picks the connector of each message fact; build once per ingest, call ``assign`` per fact."""

    def __init__(self, connectors: Sequence[Connector]) -> None:
        self.connectors = {connector.id: connector for connector in connectors}
        self.certificates = NameRules()
        self.client_ips = NetworkRules(CLIENT_IP)
        self.sender_domains = NameRules()
        self.smart_host_names: dict[str, Rank] = {}
        self.smart_host_ips: dict[Address, Rank] = {}
        self.recipient_domains = NameRules()
        self.routes: dict[Direction, dict[str, Rank]] = {direction: {} for direction in Direction}
        self._cache: dict[tuple[object, ...], int] = {}
        for connector in sorted(connectors, key=lambda connector: connector.name):
            self._add_routes(connector)
            if connector.direction is Direction.INBOUND:
                self._add_inbound(connector)
            else:
                self._add_outbound(connector)
        # What the rules of each direction look at: only that goes into a fact's cache key,
        # so facts that differ in what no rule reads share their answer.
        self._inbound_reads = (
            self.certificates.has_rules(),  # peer_host
            bool(self.client_ips.lookups),  # peer_ip
            self.sender_domains.has_rules(),  # sender_domain
            bool(self.routes[Direction.INBOUND]),  # routes
        )
        self._outbound_reads = (
            bool(self.smart_host_names),  # peer_host
            bool(self.smart_host_ips),  # peer_ip
            self.recipient_domains.has_rules(),  # recipient_domains
            bool(self.routes[Direction.OUTBOUND]),  # routes
        )

    def assign(self, fact: MessageFact) -> MessageFact:
        """The fact with ``connector_id`` set to its connector, or to None when none matches."""
        connector_id = self.connector_id(fact)
        if connector_id == fact.connector_id:
            return fact
        return dataclasses.replace(fact, connector_id=connector_id)

    def match(self, fact: MessageFact) -> Connector | None:
        """The connector the fact crossed the boundary through, if any."""
        connector_id = self.connector_id(fact)
        return None if connector_id is None else self.connectors[connector_id]

    def connector_id(self, fact: MessageFact) -> int | None:
        if not self.connectors:
            return None
        key = self._key(fact)
        cached = self._cache.get(key)
        if cached is not None:
            return None if cached == _NO_CONNECTOR else cached
        rank = self._best_route(fact)
        if rank is None and fact.direction is Direction.INBOUND:
            rank = self._best_inbound(fact)
        elif rank is None:
            rank = self._best_outbound(fact)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = _NO_CONNECTOR if rank is None else rank[4]
        return None if rank is None else rank[4]

    def _key(self, fact: MessageFact) -> tuple[object, ...]:
        """What of the fact the rules of its direction read (True and False for the direction:
        an enumeration member hashes slowly)."""
        if fact.direction is Direction.INBOUND:
            host, address, domain, route = self._inbound_reads
            return (True, fact.peer_host if host else None, fact.peer_ip if address else None,
                    fact.sender_domain if domain else None, fact.routes if route else ())
        host, address, domain, route = self._outbound_reads
        return (False, fact.peer_host if host else None, fact.peer_ip if address else None,
                fact.recipient_domains if domain else (), fact.routes if route else ())

    def _best_route(self, fact: MessageFact) -> Rank | None:
        if not fact.routes:
            return None
        routes = self.routes[fact.direction]
        return _min_rank([routes.get(route.casefold()) for route in fact.routes])

    def _best_inbound(self, fact: MessageFact) -> Rank | None:
        found: list[Rank | None] = []
        if fact.peer_host:
            found.append(self.certificates.best(normalize_name(fact.peer_host)))
        address = parse_address(fact.peer_ip) if self.client_ips.lookups else None
        if address is not None:
            found.append(self.client_ips.best(address))
        if fact.sender_domain:
            found.append(self.sender_domains.best(normalize_name(fact.sender_domain)))
        return _min_rank(found)

    def _best_outbound(self, fact: MessageFact) -> Rank | None:
        found: list[Rank | None] = []
        if fact.peer_host:
            found.append(self.smart_host_names.get(normalize_name(fact.peer_host)))
        address = parse_address(fact.peer_ip) if self.smart_host_ips else None
        if address is not None:
            found.append(self.smart_host_ips.get(address))
        for domain in fact.recipient_domains:
            found.append(self.recipient_domains.best(normalize_name(domain)))
        return _min_rank(found)

    def _add_routes(self, connector: Connector) -> None:
        rank = (-ROUTE, -1, 0, connector.name, connector.id)
        for route in (connector.name, *connector.routes):
            _keep_best(self.routes[connector.direction], route.casefold(), rank)

    def _add_inbound(self, connector: Connector) -> None:
        for name in connector.tls_cert_names:
            self.certificates.add(name, CERTIFICATE, connector)
        for cidr in connector.client_ips:
            self.client_ips.add(cidr, connector)
        for domain in connector.sender_domains:
            self.sender_domains.add(domain, SENDER_DOMAIN, connector)

    def _add_outbound(self, connector: Connector) -> None:
        rank = (-SMART_HOST, -1, 0, connector.name, connector.id)
        for host in connector.smart_hosts:
            address = parse_address(host.strip("[]"))
            if address is None:
                _keep_best(self.smart_host_names, normalize_name(host), rank)
            else:
                _keep_best(self.smart_host_ips, address, rank)
        for domain in connector.recipient_domains:
            self.recipient_domains.add(domain, RECIPIENT_DOMAIN, connector)


async def load_classifier(connection: Connection, organization_id: int) -> Classifier:
    """A classifier over the organization's connectors as they are now."""
    return Classifier(await load_connectors(connection, organization_id))


class CurrentClassifier:
    """A classifier that follows changes to the organization's connectors, for an ingest that
    runs for long (a follower): ``refresh`` reads the connectors again once they changed."""

    def __init__(self, organization_id: int) -> None:
        self.organization_id = organization_id
        self.classifier = Classifier(())
        self._version: str | None = None

    async def refresh(self, connection: Connection) -> bool:
        """Read the connectors again if they changed since last read; whether they had.

        The version is read first: a change between the two reads is read again next time.
        """
        version: str = await connection.fetchval(query("connectors_version"), self.organization_id)
        if version == self._version:
            return False
        self.classifier = await load_classifier(connection, self.organization_id)
        self._version = version
        return True

    def assign(self, fact: MessageFact) -> MessageFact:
        """The fact with the connector of the rules last read (see ``Classifier.assign``)."""
        return self.classifier.assign(fact)


def normalize_name(name: str) -> str:
    """A host or domain name as rules compare it: lower case, no trailing dot."""
    return name.lower().rstrip(".")


def parse_address(text: str | None) -> Address | None:
    """The IP address in ``text``, IPv4-mapped IPv6 as IPv4; None when it is not one."""
    if not text:
        return None
    try:
        if ":" not in text:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    except (OSError, ValueError):
        return None
    if value >> 32 == 0xFFFF:
        return 4, value & 0xFFFF_FFFF
    return 6, value


def _keep_best(table: dict[Key, Rank], key: Key, rank: Rank) -> None:
    current = table.get(key)
    if current is None or rank < current:
        table[key] = rank


def _min_rank(ranks: list[Rank | None]) -> Rank | None:
    best: Rank | None = None
    for rank in ranks:
        if rank is not None and (best is None or rank < best):
            best = rank
    return best


async def load_boundary_policy(
    connection: Connection, organization_id: int
) -> BoundaryPolicy:
    """The boundary policy of an organization: the default internal networks plus its own,
    and the routes of its outbound connectors.

    Declared networks add to the defaults (loopback, private and link-local
    ranges) rather than replacing them, so a content filter that re-injects
    mail over loopback is never mistaken for mail arriving from outside.
    """
    declared = await load_internal_networks(connection, organization_id)
    networks = list(DEFAULT_INTERNAL_NETWORKS)
    networks.extend(network for network in declared if network not in networks)
    routes = frozenset(
        route.casefold()
        for connector in await load_connectors(connection, organization_id)
        if connector.direction is Direction.OUTBOUND
        for route in connector.routes
    )
    return BoundaryPolicy(tuple(networks), outbound_routes=routes)
