"""The boundary policy: which peer addresses are inside the organization."""

from __future__ import annotations

import ipaddress

import pytest

from mailflow.ingest.network import DEFAULT_INTERNAL_NETWORKS, BoundaryPolicy, InvalidNetworkError


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "10.20.30.40",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.20",
        "169.254.10.1",
        "::1",
        "fe80::1",
        "fd12:3456::7",
        "fc00::1",
        "::ffff:10.1.2.3",
        "ipv6:fd00::25",
    ],
)
def test_loopback_private_link_local_and_unique_local_addresses_are_internal(ip: str) -> None:
    assert BoundaryPolicy().is_internal(ip)


@pytest.mark.parametrize(
    "ip",
    [
        "203.0.113.5",
        "198.51.100.25",
        "192.0.2.1",
        "172.32.0.1",
        "172.15.255.255",
        "100.64.0.1",
        "224.73.110.132",
        "2001:db8::25",
        "::ffff:203.0.113.5",
    ],
)
def test_every_other_address_is_external_even_special_ranges(ip: str) -> None:
    assert not BoundaryPolicy().is_internal(ip)


def test_the_default_networks_are_the_documented_ones() -> None:
    assert {str(network) for network in DEFAULT_INTERNAL_NETWORKS} == {
        "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
        "169.254.0.0/16", "::1/128", "fe80::/10", "fc00::/7",
    }


def test_an_organization_can_name_its_own_internal_networks() -> None:
    policy = BoundaryPolicy.from_cidrs(["192.0.2.0/24", " 2001:db8:1::/48 "])

    assert policy.is_internal("192.0.2.77")
    assert policy.is_internal("2001:db8:1::5")
    assert not policy.is_internal("127.0.0.1")
    assert policy.internal_networks[0] == ipaddress.ip_network("192.0.2.0/24")


def test_a_bad_network_is_named_in_the_error() -> None:
    with pytest.raises(InvalidNetworkError, match=r"'192\.0\.2\.0/33'.*CIDR"):
        BoundaryPolicy.from_cidrs(["192.0.2.0/33"])


def test_something_that_is_no_address_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="private/dovecot-lmtp"):
        BoundaryPolicy().is_internal("private/dovecot-lmtp")
