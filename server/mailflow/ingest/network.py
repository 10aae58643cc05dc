"""Which peer addresses are inside the organization: the boundary a message crosses."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_INTERNAL_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "127.0.0.0/8",  # loopback
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",  # link-local
        "::1/128",
        "fe80::/10",
        "fc00::/7",  # unique local addresses
    )
)


class InvalidNetworkError(ValueError):
    """A network given for the boundary policy is not an IP network in CIDR notation."""

    def __init__(self, value: str) -> None:
        super().__init__(
            f"{value!r} is not an IP network; expected CIDR notation such as "
            "'192.0.2.0/24' or '2001:db8::/32'"
        )
        self.value = value


@dataclass(frozen=True)
class BoundaryPolicy:
    """Decides whether a peer is inside the organization.

    Clients and relays in ``internal_networks`` are internal hops: mail from or
    to them does not cross the boundary. Every other address is external,
    including special ranges that are neither private, loopback nor link-local.

    ``outbound_routes`` are the route names (lower case) that the organization's
    outbound connectors select by: mail a source says left over one of them crossed
    the boundary even when the next hop is internal, such as a smart host or a site
    reached over a VPN that relays it on.
    """

    internal_networks: tuple[Network, ...] = DEFAULT_INTERNAL_NETWORKS
    outbound_routes: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> BoundaryPolicy:
        """A policy whose internal networks are the given CIDR strings."""
        networks = []
        for cidr in cidrs:
            try:
                networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError:
                raise InvalidNetworkError(cidr) from None
        return cls(tuple(networks))

    def is_internal(self, ip: str) -> bool:
        """Whether ``ip`` lies in an internal network; ``ValueError`` if it is no address.

        An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is judged by its IPv4 address.
        """
        address = ipaddress.ip_address(ip.removeprefix("ipv6:").removeprefix("IPv6:"))
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.internal_networks)

    def is_outbound_route(self, routes: Iterable[str]) -> bool:
        """Whether any of ``routes`` is a route of an outbound connector (case-insensitive)."""
        return any(route.casefold() in self.outbound_routes for route in routes)


class InternalAddresses:
    """:meth:`BoundaryPolicy.is_internal` for a parser, remembered per address (peers repeat):
    ``judge(ip)`` is True, False, or None when ``ip`` is no IP address."""

    def __init__(self, policy: BoundaryPolicy, size: int = 4096) -> None:
        self._policy = policy
        self._size = size
        self._known: dict[str, bool | None] = {}

    def __call__(self, ip: str) -> bool | None:
        known = self._known
        if ip in known:
            return known[ip]
        if len(known) >= self._size:
            known.clear()
        try:
            internal: bool | None = self._policy.is_internal(ip)
        except ValueError:
            internal = None
        known[ip] = internal
        return internal
