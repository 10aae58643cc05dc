"""Generate a realistic load: many organizations, their connectors, and a year of message facts
with daily and weekly cycles and a TLS mix of each organization's own, loaded through the
normal store path into DATABASE_URL (an embedded PostgreSQL when it is unset).

    python bench/generate.py                                  # 200 organizations, 10,000,000 facts
    python bench/generate.py --organizations 20 --facts 100000 --days 90 --seed 7 --end 2026-12-03

The same arguments load the same facts: every choice comes from ``--seed``, and the last day is
``--end`` (default: today, UTC). Organizations are called ``PREFIX000``, ``PREFIX001``, ... and
declared with the organization file code (``apply_organization``); the first has 100
connectors, the most an organization may have, the others 2 to 20. Their facts go through
``load_facts``: classified by the organization's connectors, COPY into a temporary table,
inserted, and added to the daily rollups, one transaction per batch, as ``mailflow ingest``
stores them. Running it again with the same arguments stores nothing new (the facts are
duplicates). Facts are made one batch at a time, so memory stays flat whatever ``--facts``.

It prints a line per organization on stderr and a JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import random
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest.classify import load_classifier
from mailflow.ingest.pipeline import DEFAULT_BATCH_SIZE, load_facts
from mailflow.store.isolation import owner_transaction
from mailflow.store.organizations import apply_organization, parse_organization

BIGGEST_ORGANIZATION_CONNECTORS = 100  # the most an organization may declare
# Share of an organization's mail per weekday, Monday first, and a curve over the UTC hour.
WEEKDAY_WEIGHTS = (1.0, 1.05, 1.05, 1.0, 0.9, 0.35, 0.3)
TLS_VERSIONS = tuple(TlsVersion)
CIPHERS = {
    TlsVersion.TLS1_3: "TLS_AES_256_GCM_SHA384",
    TlsVersion.TLS1_2: "ECDHE-RSA-AES256-GCM-SHA384",
    TlsVersion.TLS1_1: "ECDHE-RSA-AES128-SHA",
    TlsVersion.TLS1_0: "AES128-SHA",
}


@dataclass(frozen=True)
class Route:
    """A connector as the generator sends mail over it: its domains and TLS mix."""

    direction: Direction
    domains: tuple[str, ...]
    tls_weights: tuple[float, ...]  # cumulative, over TLS_VERSIONS


@dataclass(frozen=True)
class Organization:
    """One generated organization: its name, file, routes and share of the facts."""

    number: int
    name: str
    domain: str
    file: str
    routes: tuple[Route, ...]
    facts: int
    utc_peak_hour: float


def organization_name(prefix: str, number: int) -> str:
    return f"{prefix}{number:03d}"


def plan(organizations: int, facts: int, seed: int, prefix: str) -> list[Organization]:
    """Every organization with its connectors and number of facts (they add up to ``facts``)."""
    pick = random.Random(f"{seed}/sizes")
    sizes = [pick.lognormvariate(0, 1.0) for _ in range(organizations)]
    shares = _split(facts, sizes)
    return [_organization(number, shares[number], seed, prefix) for number in range(organizations)]


def _split(total: int, weights: list[float]) -> list[int]:
    """``total`` split in proportion to ``weights``, in whole numbers that add up to it."""
    scale = sum(weights)
    cumulative = itertools.accumulate(weights)
    bounds = [0, *(round(total * running / scale) for running in cumulative)]
    return [high - low for low, high in itertools.pairwise(bounds)]


def _organization(number: int, facts: int, seed: int, prefix: str) -> Organization:
    pick = random.Random(f"{seed}/organization/{number}")
    name = organization_name(prefix, number)
    domain = f"{name}.example.com"
    connectors = BIGGEST_ORGANIZATION_CONNECTORS if number == 0 else pick.randint(2, 20)
    base = _tls_mix(pick)
    lines = [f"organization: {name}", f"accepted_domains: [{domain}]", "connectors:"]
    routes = []
    for index in range(connectors):
        direction = Direction.INBOUND if index % 2 == 0 else Direction.OUTBOUND
        domains = tuple(f"p{index}-{n}.{name}.example.net" for n in range(pick.randint(1, 3)))
        require_tls = pick.random() < 0.15
        weights = _route_mix(pick, base, require_tls)
        rule = "sender_domains" if direction is Direction.INBOUND else "recipient_domains"
        lines += [
            f"  - name: Partner {index:03d}",
            f"    direction: {direction.value.lower()}",
            "    kind: partner",
            f"    {rule}: [{', '.join(domains)}]",
            f"    require_tls: {'true' if require_tls else 'false'}",
        ]
        routes.append(Route(direction, domains, weights))
    # Mail to and from everyone else: no connector.
    for direction in Direction:
        others = tuple(f"other{n}.example.org" for n in range(40))
        routes.append(Route(direction, others, tuple(itertools.accumulate(base))))
    return Organization(number, name, domain, "\n".join(lines) + "\n", tuple(routes), facts,
                        utc_peak_hour=pick.uniform(4, 20))


def _tls_mix(pick: random.Random) -> tuple[float, ...]:
    """Weights over TLS_VERSIONS: mostly TLS 1.2 and 1.3, some plaintext, a legacy tail."""
    legacy = pick.random() < 0.1
    return (
        pick.uniform(1, 12),                                   # NONE
        pick.uniform(20, 45) if legacy else pick.uniform(0, 3),  # TLS1_0
        pick.uniform(0, 2),                                    # TLS1_1
        pick.uniform(30, 60),                                  # TLS1_2
        pick.uniform(10, 60),                                  # TLS1_3
        pick.uniform(0, 2),                                    # UNKNOWN
    )


def _route_mix(
    pick: random.Random, base: tuple[float, ...], require_tls: bool
) -> tuple[float, ...]:
    """A connector's cumulative TLS weights: its organization's, with some routes off the norm."""
    weights = list(base)
    oddity = pick.random()
    if require_tls:
        weights[0] = 0.0
    elif oddity < 0.08:
        weights[0] = sum(base) * 0.5  # a partner that often sends in plaintext
    elif oddity < 0.16:
        weights[1] = sum(base) * 1.5  # a partner stuck on TLS 1.0
    return tuple(itertools.accumulate(weights))


def day_counts(organization: Organization, days: list[date], seed: int) -> list[int]:
    """The organization's facts per day: weekly cycle, slow growth, daily noise."""
    pick = random.Random(f"{seed}/days/{organization.number}")
    growth = pick.uniform(0.0, 0.4)
    weights = [
        WEEKDAY_WEIGHTS[day.weekday()] * (1 + growth * index / len(days))
        * max(0.2, pick.gauss(1.0, 0.12))
        for index, day in enumerate(days)
    ]
    return _split(organization.facts, weights)


def facts_of_day(
    organization: Organization, day: date, count: int, seed: int, first_number: int
) -> list[MessageFact]:
    """``count`` facts of one day, in time order, numbered from ``first_number``."""
    pick = random.Random(f"{seed}/facts/{organization.number}/{day.isoformat()}")
    hours = _hour_weights(organization.utc_peak_hour)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    seconds = sorted(
        hour * 3600 + pick.random() * 3600
        for hour in pick.choices(range(24), cum_weights=hours, k=count)
    )
    routes = organization.routes
    route_weights = _route_weights(routes)
    chosen = pick.choices(routes, cum_weights=route_weights, k=count)
    return [
        _fact(organization, pick, midnight + timedelta(seconds=second), route,
              f"bench-{seed}/{organization.number}/{first_number + index}")
        for index, (second, route) in enumerate(zip(seconds, chosen, strict=True))
    ]


def _hour_weights(peak: float) -> list[float]:
    """Cumulative weights of the 24 UTC hours: office hours around ``peak``, a quiet night."""
    weights = [0.12 + math.exp(-(((hour + 0.5 - peak + 12) % 24 - 12) ** 2) / 18)
               for hour in range(24)]
    return list(itertools.accumulate(weights))


def _route_weights(routes: tuple[Route, ...]) -> list[float]:
    """Cumulative weights of the routes: a few busy connectors, a long tail, 30% no connector."""
    connectors = len(routes) - 2
    weights = [1.0 / (index + 1) for index in range(connectors)]
    rest = sum(weights) * 0.3 / 0.7 / 2 if weights else 1.0
    return list(itertools.accumulate([*weights, rest, rest]))


def _fact(
    organization: Organization, pick: random.Random, at: datetime, route: Route, key: str
) -> MessageFact:
    tls = pick.choices(TLS_VERSIONS, cum_weights=route.tls_weights)[0]
    partner = route.domains[int(pick.random() * len(route.domains))]
    inbound = route.direction is Direction.INBOUND
    recipients = 1 if pick.random() < 0.8 else pick.randint(2, 6)
    return MessageFact(
        source_key=key,
        occurred_at=at,
        direction=route.direction,
        tls_version=tls,
        tls_cipher=CIPHERS.get(tls),
        peer_host=f"mx.{partner}",
        peer_ip=f"198.51.100.{1 + int(pick.random() * 254)}",
        sender_domain=partner if inbound else organization.domain,
        recipient_domains=(organization.domain,) if inbound else (partner,),
        recipients=recipients,
        size_bytes=int(pick.lognormvariate(10.3, 1.1)),
        status=DeliveryStatus.RECEIVED if inbound else DeliveryStatus.DELIVERED,
    )


def organization_facts(
    organization: Organization, days: list[date], seed: int
) -> Iterator[MessageFact]:
    """All facts of an organization over ``days``, made a day at a time."""
    number = 0
    for day, count in zip(days, day_counts(organization, days, seed), strict=True):
        yield from facts_of_day(organization, day, count, seed, number)
        number += count


async def load_organization(
    pool: asyncpg.Pool, organization: Organization, days: list[date], seed: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[int, int]:
    """Declare the organization and load its facts; (inserted, duplicates)."""
    async with pool.acquire() as connection:
        applied = await apply_organization(connection, parse_organization(organization.file))
        async with owner_transaction(connection, applied.organization_id):
            classifier = await load_classifier(connection, applied.organization_id)
    result = await load_facts(pool, applied.organization_id,
                              organization_facts(organization, days, seed),
                              classify=classifier.assign, batch_size=batch_size,
                              read_ahead=True)
    return result.inserted, result.duplicates


def days_ending(end: date, days: int) -> list[date]:
    return [end - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


async def generate(
    pool: asyncpg.Pool, *, organizations: int, facts: int, days: int, seed: int, end: date,
    prefix: str = "bench", batch_size: int = DEFAULT_BATCH_SIZE, quiet: bool = False,
) -> dict[str, Any]:
    """Load the whole generated load into the pool's database; what was loaded, and how fast."""
    calendar = days_ending(end, days)
    planned = plan(organizations, facts, seed, prefix)
    inserted = duplicates = 0
    started = time.perf_counter()
    for organization in planned:
        new, repeated = await load_organization(pool, organization, calendar, seed, batch_size)
        inserted += new
        duplicates += repeated
        if not quiet:
            elapsed = time.perf_counter() - started
            print(f"{organization.name}: {organization.facts} facts, "
                  f"{len(organization.routes) - 2} connectors; {inserted + duplicates} "
                  f"of {facts} in {elapsed:.0f} s", file=sys.stderr)
    seconds = time.perf_counter() - started
    return {
        "organizations": organizations, "facts": facts, "days": days,
        "first_day": calendar[0].isoformat(), "last_day": calendar[-1].isoformat(),
        "seed": seed, "prefix": prefix,
        "connectors": sum(len(o.routes) - 2 for o in planned),
        "inserted": inserted, "duplicates": duplicates, "seconds": round(seconds, 2),
        "facts_per_second": round(facts / seconds) if seconds else None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--organizations", type=_positive, default=200)
    parser.add_argument("--facts", type=_positive, default=10_000_000,
                        help="message facts in all, over all organizations")
    parser.add_argument("--days", type=_positive, default=365)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--end", type=date.fromisoformat, default=datetime.now(UTC).date(),
                        help="last UTC day, YYYY-MM-DD (default: today)")
    parser.add_argument("--prefix", default="bench", help="organization names start with it")
    parser.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE)
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def main() -> None:
    from mailflow.settings import get_settings
    from mailflow.store.db import open_database

    options = arguments()

    async def work() -> dict[str, Any]:
        async with open_database(get_settings()) as pool:
            return await generate(pool, organizations=options.organizations,
                                  facts=options.facts, days=options.days, seed=options.seed,
                                  end=options.end, prefix=options.prefix,
                                  batch_size=options.batch_size)

    print(json.dumps(asyncio.run(work())))


if __name__ == "__main__":
    main()
