from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import asyncpg
from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow.domain import (
    Connector,
    ConnectorKind,
    DeliveryStatus,
    Direction,
    MessageFact,
    TlsVersion,
)
from mailflow.ingest.classify import Classifier, load_classifier
from mailflow.store.organizations import apply_organization, parse_organization

INBOUND, OUTBOUND = Direction.INBOUND, Direction.OUTBOUND
_ids = iter(range(1, 10_000))


def connector(
    name: str, direction: Direction = INBOUND, *, sender_domains: tuple[str, ...] = (),
    recipient_domains: tuple[str, ...] = (), client_ips: tuple[str, ...] = (),
    smart_hosts: tuple[str, ...] = (), tls_cert_names: tuple[str, ...] = (),
    routes: tuple[str, ...] = (),
) -> Connector:
    return Connector(
        id=next(_ids), name=name, direction=direction, kind=ConnectorKind.PARTNER,
        sender_domains=sender_domains, recipient_domains=recipient_domains,
        client_ips=client_ips, smart_hosts=smart_hosts, tls_cert_names=tls_cert_names,
        routes=routes,
    )


def fact(
    direction: Direction = INBOUND, *, sender_domain: str | None = None,
    recipient_domains: tuple[str, ...] = (), peer_host: str | None = None,
    peer_ip: str | None = None, connector_id: int | None = None, routes: tuple[str, ...] = (),
) -> MessageFact:
    return MessageFact(
        source_key="k", occurred_at=datetime(2025, 4, 1, tzinfo=UTC), direction=direction,
        tls_version=TlsVersion.TLS1_2, tls_cipher=None, peer_host=peer_host, peer_ip=peer_ip,
        sender_domain=sender_domain, recipient_domains=recipient_domains, recipients=1,
        size_bytes=100, status=DeliveryStatus.RECEIVED, connector_id=connector_id,
        routes=routes,
    )


def matched(classifier: Classifier, message: MessageFact) -> str | None:
    found = classifier.match(message)
    return None if found is None else found.name


def test_a_fact_matching_nothing_keeps_no_connector_and_everything_else() -> None:
    classifier = Classifier([connector("Fabrikam", sender_domains=("fabrikam.com",))])
    message = fact(sender_domain="tailspintoys.com", peer_ip="203.0.113.9", connector_id=99)

    assigned = classifier.assign(message)

    assert assigned.connector_id is None
    assert dataclasses.replace(assigned, connector_id=99) == message


def test_assign_sets_the_connector_id_of_the_matching_connector() -> None:
    fabrikam = connector("Fabrikam", sender_domains=("fabrikam.com",))
    classifier = Classifier([fabrikam])

    assert classifier.assign(fact(sender_domain="Fabrikam.COM")).connector_id == fabrikam.id


def test_an_exact_sender_domain_beats_a_wildcard_whatever_the_order() -> None:
    wildcard = connector("A wildcard", sender_domains=("*.fabrikam.com",))
    exact = connector("Z exact", sender_domains=("mail.fabrikam.com",))

    for connectors in ([wildcard, exact], [exact, wildcard]):
        classifier = Classifier(connectors)
        assert matched(classifier, fact(sender_domain="mail.fabrikam.com")) == "Z exact"
        assert matched(classifier, fact(sender_domain="eu.fabrikam.com")) == "A wildcard"


def test_a_wildcard_matches_subdomains_at_any_depth_but_not_the_domain_itself() -> None:
    classifier = Classifier([connector("Fabrikam", sender_domains=("*.fabrikam.com",))])

    assert matched(classifier, fact(sender_domain="eu.fabrikam.com")) == "Fabrikam"
    assert matched(classifier, fact(sender_domain="a.b.eu.fabrikam.com")) == "Fabrikam"
    assert matched(classifier, fact(sender_domain="fabrikam.com")) is None
    assert matched(classifier, fact(sender_domain="notfabrikam.com")) is None
    assert matched(classifier, fact(sender_domain="fabrikam.com.evil.example")) is None


def test_a_wildcard_on_a_longer_suffix_beats_a_shorter_one() -> None:
    classifier = Classifier([
        connector("A broad", sender_domains=("*.fabrikam.com",)),
        connector("B narrow", sender_domains=("*.eu.fabrikam.com",)),
    ])

    assert matched(classifier, fact(sender_domain="mail.eu.fabrikam.com")) == "B narrow"
    assert matched(classifier, fact(sender_domain="mail.us.fabrikam.com")) == "A broad"


def test_the_longest_matching_cidr_prefix_wins() -> None:
    classifier = Classifier([
        connector("A wide", client_ips=("203.0.0.0/8",)),
        connector("B narrow", client_ips=("203.0.113.0/24",)),
        connector("C host", client_ips=("203.0.113.7/32",)),
    ])

    assert matched(classifier, fact(peer_ip="203.0.113.7")) == "C host"
    assert matched(classifier, fact(peer_ip="203.0.113.8")) == "B narrow"
    assert matched(classifier, fact(peer_ip="203.9.9.9")) == "A wide"
    assert matched(classifier, fact(peer_ip="198.51.100.1")) is None


def test_ipv6_client_ranges_match_and_ipv4_mapped_peers_match_ipv4_ranges() -> None:
    classifier = Classifier([
        connector("IPv6 relay", client_ips=("2001:db8:2::/48",)),
        connector("IPv4 relay", client_ips=("192.0.2.0/24",)),
    ])

    assert matched(classifier, fact(peer_ip="2001:db8:2:ffff::25")) == "IPv6 relay"
    assert matched(classifier, fact(peer_ip="2001:db8:3::25")) is None
    assert matched(classifier, fact(peer_ip="::ffff:192.0.2.9")) == "IPv4 relay"
    assert matched(classifier, fact(peer_ip="not an address")) is None


def test_inbound_certificate_beats_client_ip_which_beats_sender_domain() -> None:
    by_domain = connector("A by domain", sender_domains=("fabrikam.com",))
    by_ip = connector("B by ip", client_ips=("203.0.113.0/24",))
    by_cert = connector("C by certificate", tls_cert_names=("*.fabrikam.com",))
    classifier = Classifier([by_domain, by_ip, by_cert])

    everything = fact(sender_domain="fabrikam.com", peer_ip="203.0.113.5",
                      peer_host="mx1.fabrikam.com")
    assert matched(classifier, everything) == "C by certificate"
    assert matched(classifier, dataclasses.replace(everything, peer_host="other.example")) == (
        "B by ip")
    assert matched(classifier, fact(sender_domain="fabrikam.com", peer_ip="192.0.2.1")) == (
        "A by domain")


def test_equally_specific_connectors_tie_by_name() -> None:
    beta = connector("Beta", sender_domains=("fabrikam.com",))
    alpha = connector("Alpha", sender_domains=("fabrikam.com",))

    for connectors in ([beta, alpha], [alpha, beta]):
        assert matched(Classifier(connectors), fact(sender_domain="fabrikam.com")) == "Alpha"


def test_inbound_facts_only_match_inbound_connectors_and_outbound_only_outbound() -> None:
    classifier = Classifier([
        connector("Out", OUTBOUND, recipient_domains=("fabrikam.com",)),
        connector("In", INBOUND, sender_domains=("fabrikam.com",)),
    ])

    assert matched(classifier, fact(INBOUND, sender_domain="fabrikam.com",
                                    recipient_domains=("fabrikam.com",))) == "In"
    assert matched(classifier, fact(OUTBOUND, sender_domain="fabrikam.com",
                                    recipient_domains=("fabrikam.com",))) == "Out"
    assert matched(classifier, fact(OUTBOUND, sender_domain="fabrikam.com")) is None


def test_outbound_facts_match_by_any_of_their_recipient_domains() -> None:
    classifier = Classifier([
        connector("Fabrikam", OUTBOUND, recipient_domains=("fabrikam.com",)),
        connector("Tailspin", OUTBOUND, recipient_domains=("*.tailspintoys.com",)),
    ])

    assert matched(classifier, fact(OUTBOUND, recipient_domains=(
        "example.org", "FABRIKAM.com"))) == "Fabrikam"
    assert matched(classifier, fact(OUTBOUND, recipient_domains=(
        "eu.tailspintoys.com", "fabrikam.com"))) == "Fabrikam"
    assert matched(classifier, fact(OUTBOUND, recipient_domains=(
        "example.org", "eu.tailspintoys.com"))) == "Tailspin"
    assert matched(classifier, fact(OUTBOUND, recipient_domains=("example.org",))) is None


def test_smart_hosts_match_by_host_name_case_insensitively_or_by_ip() -> None:
    classifier = Classifier([
        connector("Relay", OUTBOUND, smart_hosts=("smtp.fabrikam.com", "2001:db8::25")),
        connector("By domain", OUTBOUND, recipient_domains=("fabrikam.com",)),
    ])

    assert matched(classifier, fact(OUTBOUND, peer_host="SMTP.Fabrikam.com.",
                                    recipient_domains=("fabrikam.com",))) == "Relay"
    assert matched(classifier, fact(OUTBOUND, peer_host="mx.elsewhere.example",
                                    peer_ip="2001:DB8:0::25")) == "Relay"
    assert matched(classifier, fact(OUTBOUND, peer_host="mx.fabrikam.com",
                                    recipient_domains=("fabrikam.com",))) == "By domain"


def test_a_route_named_by_the_source_selects_the_connector_listing_it_or_named_so() -> None:
    classifier = Classifier([
        connector("VPN", OUTBOUND, routes=("dnslookup_vpn", "Remote_SMTP_Smarthost")),
        connector("Internet", OUTBOUND, routes=("remote_smtp",)),
        connector("Partner connector", INBOUND, client_ips=("192.0.2.0/24",)),
    ])

    assert matched(classifier, fact(OUTBOUND, routes=("dnslookup_vpn", "x"))) == "VPN"
    assert matched(classifier, fact(OUTBOUND, routes=("router", "remote_smtp_smarthost"))) == (
        "VPN")
    assert matched(classifier, fact(OUTBOUND, routes=("dnslookup", "REMOTE_SMTP"))) == (
        "Internet")
    assert matched(classifier, fact(INBOUND, routes=("partner CONNECTOR",))) == (
        "Partner connector")
    assert matched(classifier, fact(OUTBOUND, routes=("dnslookup", "other_smtp"))) is None


def test_a_route_beats_every_other_kind_of_evidence() -> None:
    classifier = Classifier([
        connector("By certificate", tls_cert_names=("mx.fabrikam.com",)),
        connector("By route", routes=("fabrikam_in",)),
        connector("Smart host", OUTBOUND, smart_hosts=("smtp.fabrikam.com",)),
        connector("Zeta route", OUTBOUND, routes=("vpn",)),
    ])

    assert matched(classifier, fact(INBOUND, peer_host="mx.fabrikam.com",
                                    routes=("fabrikam_in",))) == "By route"
    assert matched(classifier, fact(INBOUND, peer_host="mx.fabrikam.com")) == "By certificate"
    assert matched(classifier, fact(OUTBOUND, peer_host="smtp.fabrikam.com",
                                    routes=("vpn",))) == "Zeta route"
    assert matched(classifier, fact(OUTBOUND, peer_host="smtp.fabrikam.com",
                                    routes=("unknown",))) == "Smart host"


def test_a_route_selects_only_a_connector_of_the_facts_direction() -> None:
    classifier = Classifier([connector("Relay", INBOUND, routes=("remote_smtp",),
                                       client_ips=("192.0.2.0/24",))])

    assert matched(classifier, fact(OUTBOUND, routes=("remote_smtp",))) is None
    assert matched(classifier, fact(OUTBOUND, routes=("Relay",))) is None


def test_two_connectors_listing_one_route_tie_by_name() -> None:
    beta = connector("Beta", OUTBOUND, routes=("remote_smtp",))
    alpha = connector("Alpha", OUTBOUND, routes=("remote_smtp",))

    for connectors in ([beta, alpha], [alpha, beta]):
        assert matched(Classifier(connectors), fact(OUTBOUND, routes=("remote_smtp",))) == "Alpha"


def test_repeated_facts_keep_getting_the_same_answer() -> None:
    classifier = Classifier([connector("Relay", client_ips=("192.0.2.0/24",))])
    answers = {
        classifier.assign(fact(peer_ip=f"192.0.2.{i % 300}")).connector_id is not None
        for i in range(1000)
    }

    assert answers == {True, False}
    assert classifier.match(fact(peer_ip="192.0.2.255")) is not None
    assert classifier.match(fact(peer_ip="192.0.3.0")) is None


async def test_load_classifier_uses_the_organizations_stored_connectors(
    pool: asyncpg.Pool,
) -> None:
    config = parse_organization(
        "organization: contoso\n"
        "connectors:\n"
        "  - {name: Relay, direction: inbound, kind: on_premises,"
        " client_ips: ['2001:db8:2::/48']}\n"
        "  - {name: Fabrikam, direction: outbound, kind: partner,"
        " recipient_domains: ['*.fabrikam.com']}\n"
        "  - {name: VPN, direction: outbound, kind: on_premises, routes: [dnslookup_vpn]}\n"
    )
    async with pool.acquire() as connection:
        applied = await apply_organization(connection, config)
        classifier = await load_classifier(connection, applied.organization_id)

    assert matched(classifier, fact(peer_ip="2001:db8:2::1")) == "Relay"
    assert matched(classifier, fact(OUTBOUND, recipient_domains=("eu.fabrikam.com",))) == (
        "Fabrikam")
    assert matched(classifier, fact(OUTBOUND, recipient_domains=("fabrikam.com",))) is None
    assert matched(classifier, fact(OUTBOUND, recipient_domains=("eu.fabrikam.com",),
                                    routes=("DNSLookup_VPN",))) == "VPN"


_PARTNER_CONNECTORS = [
    connector("Certificates", tls_cert_names=("mx.fabrikam.com",)),
    connector("Client IPs", client_ips=("203.0.113.0/28",)),
    connector("Senders", sender_domains=("*.fabrikam.com", "contoso.com")),
    connector("Inbound route", routes=("amavis",)),
    connector("Smart host", OUTBOUND, smart_hosts=("relay.contoso.com", "[192.0.2.7]")),
    connector("Recipients", OUTBOUND, recipient_domains=("fabrikam.com",)),
    connector("Outbound route", OUTBOUND, routes=("remote_smtp",)),
]
_HOSTS = (None, "mx.fabrikam.com", "relay.contoso.com", "mail.example.net")
_ADDRESSES = (None, "203.0.113.5", "203.0.113.99", "192.0.2.7")
_DOMAINS = (None, "fabrikam.com", "eu.fabrikam.com", "contoso.com", "example.net")
_ROUTES = ((), ("amavis",), ("remote_smtp",), ("dovecot",))


@settings(max_examples=60, deadline=None)
@given(
    rules=st.sets(st.sampled_from(range(len(_PARTNER_CONNECTORS)))),
    facts=st.lists(
        st.builds(
            lambda direction, host, address, domain, routes: fact(
                direction, peer_host=host, peer_ip=address,
                sender_domain=domain if direction is INBOUND else None,
                recipient_domains=(domain,) if direction is OUTBOUND and domain else (),
                routes=routes,
            ),
            st.sampled_from([INBOUND, OUTBOUND]), st.sampled_from(_HOSTS),
            st.sampled_from(_ADDRESSES), st.sampled_from(_DOMAINS), st.sampled_from(_ROUTES),
        ),
        min_size=1, max_size=40,
    ),
)
def test_a_classifier_answers_each_fact_as_a_new_one_would_whatever_it_answered_before(
    rules: set[int], facts: list[MessageFact]
) -> None:
    connectors = [_PARTNER_CONNECTORS[index] for index in sorted(rules)]
    classifier = Classifier(connectors)

    answers = [classifier.connector_id(message) for message in facts]

    assert answers == [Classifier(connectors).connector_id(message) for message in facts]
