"""The demo organization: a month of realistic traffic ending today.

Loaded through the same path as real logs (classification, COPY, rollup
refresh). Each day's facts have stable source keys, so loading again only adds
the days that are missing and never doubles a count.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest.classify import load_classifier
from mailflow.ingest.pipeline import load_facts
from mailflow.store.isolation import owner_transaction
from mailflow.store.organizations import OrganizationConfig, apply_organization

log = logging.getLogger("mailflow.demo")

DEMO_ORGANIZATION = "demo"
DEMO_DAYS = 30

ACCEPTED_DOMAINS = ("contoso.example", "contoso-mail.example")

DEMO_CONFIG: dict[str, object] = {
    "organization": DEMO_ORGANIZATION,
    "accepted_domains": list(ACCEPTED_DOMAINS),
    "internal_networks": ["198.51.100.0/26"],
    "connectors": [
        {"name": "Fabrikam partner (inbound)", "direction": "inbound", "kind": "partner",
         "sender_domains": ["fabrikam.example", "*.fabrikam.example"]},
        {"name": "Litware bank (inbound)", "direction": "inbound", "kind": "partner",
         "sender_domains": ["litware.example"], "require_tls": True},
        {"name": "On-premises Exchange (inbound)", "direction": "inbound",
         "kind": "on_premises", "client_ips": ["203.0.113.0/28"]},
        {"name": "Fabrikam partner (outbound)", "direction": "outbound", "kind": "partner",
         "recipient_domains": ["fabrikam.example", "*.fabrikam.example"]},
        {"name": "Litware bank (outbound)", "direction": "outbound", "kind": "partner",
         "recipient_domains": ["litware.example"], "require_tls": True},
        {"name": "Smart host (outbound)", "direction": "outbound", "kind": "on_premises",
         "smart_hosts": ["relay.contoso-mail.example"]},
    ],
}

_CIPHERS = {
    TlsVersion.TLS1_3: "TLS_AES_256_GCM_SHA384",
    TlsVersion.TLS1_2: "ECDHE-RSA-AES256-GCM-SHA384",
    TlsVersion.TLS1_1: "ECDHE-RSA-AES128-SHA",
    TlsVersion.TLS1_0: "AES128-SHA",
}


@dataclass(frozen=True)
class _Route:
    """One stream of demo traffic: who, how much on a weekday, with which TLS mix."""

    name: str
    direction: Direction
    weekday_messages: int
    tls_mix: dict[TlsVersion, float]
    peer_domains: tuple[str, ...]
    peer_ip_prefix: str
    peer_host: str


_ROUTES = (
    # Fires both insights: over 25% without TLS and over 50% on TLS 1.0.
    _Route("fabrikam-in", Direction.INBOUND, 140,
           {TlsVersion.NONE: 0.32, TlsVersion.TLS1_0: 0.56, TlsVersion.TLS1_2: 0.12},
           ("fabrikam.example", "sales.fabrikam.example"), "192.0.2.", "mx.fabrikam.example"),
    _Route("litware-in", Direction.INBOUND, 90,
           {TlsVersion.TLS1_3: 0.7, TlsVersion.TLS1_2: 0.3},
           ("litware.example",), "192.0.2.", "mail.litware.example"),
    _Route("onprem-in", Direction.INBOUND, 260,
           {TlsVersion.TLS1_2: 0.9, TlsVersion.TLS1_1: 0.1},
           ("contoso.example",), "203.0.113.", "exchange.contoso.example"),
    _Route("internet-in", Direction.INBOUND, 900,
           {TlsVersion.TLS1_3: 0.55, TlsVersion.TLS1_2: 0.33, TlsVersion.NONE: 0.12},
           ("adatum.example", "tailspin.example", "wingtip.example", "northwind.example"),
           "198.18.0.", "mx.internet.example"),
    _Route("fabrikam-out", Direction.OUTBOUND, 120,
           {TlsVersion.TLS1_2: 0.8, TlsVersion.TLS1_1: 0.2},
           ("fabrikam.example",), "192.0.2.", "mx.fabrikam.example"),
    _Route("litware-out", Direction.OUTBOUND, 70,
           {TlsVersion.TLS1_3: 1.0},
           ("litware.example",), "192.0.2.", "mail.litware.example"),
    _Route("smarthost-out", Direction.OUTBOUND, 180,
           {TlsVersion.TLS1_2: 0.95, TlsVersion.TLS1_3: 0.05},
           ("relay-partners.example", "archive.example"), "203.0.113.",
           "relay.contoso-mail.example"),
    _Route("internet-out", Direction.OUTBOUND, 650,
           {TlsVersion.TLS1_3: 0.6, TlsVersion.TLS1_2: 0.3, TlsVersion.NONE: 0.1},
           ("adatum.example", "tailspin.example", "gmail.example", "outlook.example"),
           "198.18.1.", "mx.internet.example"),
)


def demo_facts(day: date, *, until: datetime | None = None) -> Iterator[MessageFact]:
    """A day of demo traffic, up to ``until`` if given; the same day yields the same facts."""
    rng = random.Random(f"mailflow-demo:{day.isoformat()}")
    weekend = day.weekday() >= 5
    for route in _ROUTES:
        count = int(route.weekday_messages * (0.35 if weekend else 1.0) * rng.uniform(0.85, 1.15))
        versions = list(route.tls_mix)
        weights = list(route.tls_mix.values())
        for number in range(count):
            tls = rng.choices(versions, weights)[0]
            # Office hours carry most of the mail.
            hour = min(23, max(0, int(rng.gauss(13, 4))))
            moment = datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)), UTC)
            peer_domain = rng.choice(route.peer_domains)
            ours = rng.choice(ACCEPTED_DOMAINS)
            inbound = route.direction is Direction.INBOUND
            recipients = 1 if rng.random() < 0.8 else rng.randint(2, 6)
            size = int(rng.lognormvariate(10, 1.1))
            peer_ip = f"{route.peer_ip_prefix}{rng.randint(1, 14)}"
            if until is not None and moment > until:
                continue  # after every draw, so later messages come out the same either way
            yield MessageFact(
                source_key=f"demo:{day.isoformat()}:{route.name}:{number}",
                occurred_at=moment,
                direction=route.direction,
                tls_version=tls,
                tls_cipher=_CIPHERS.get(tls),
                peer_host=route.peer_host,
                peer_ip=peer_ip,
                sender_domain=peer_domain if inbound else ours,
                recipient_domains=(ours,) if inbound else (peer_domain,),
                recipients=recipients,
                size_bytes=size,
                status=DeliveryStatus.RECEIVED if inbound else DeliveryStatus.DELIVERED,
            )


async def load_demo(pool: asyncpg.Pool, *, now: datetime | None = None) -> int:
    """Declare the demo organization and load the days of the last month it lacks.

    Today is loaded up to now, and topped up at every start; its later traffic
    has the same source keys, so nothing is counted twice.
    """
    now = now or datetime.now(UTC)
    today = now.date()
    days = [today - timedelta(days=offset) for offset in range(DEMO_DAYS - 1, -1, -1)]
    async with pool.acquire() as connection:
        applied = await apply_organization(
            connection, OrganizationConfig.model_validate(DEMO_CONFIG)
        )
        organization_id = applied.organization_id
        async with owner_transaction(connection, organization_id):
            loaded = {
                row["day"]
                for row in await connection.fetch(
                    "SELECT DISTINCT day FROM daily_rollups "
                    "WHERE organization_id = $1 AND day >= $2",
                    organization_id, days[0],
                )
            }
            classifier = await load_classifier(connection, organization_id)
    missing = [day for day in days if day not in loaded or day == today]
    if missing:
        facts = (fact for day in missing
                 for fact in demo_facts(day, until=now if day == today else None))
        result = await load_facts(pool, organization_id, facts, classify=classifier.assign)
        log.info("demo organization loaded",
                 extra={"organization_id": organization_id, "days": len(missing),
                        "facts": result.inserted})
    return organization_id
