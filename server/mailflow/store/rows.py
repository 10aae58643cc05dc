"""Message facts as rows of message_facts: checked, and counted for their rollups.

Everything here is pure and runs once per fact, so mypyc compiles it with the parsers.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from mailflow.domain import MessageFact
from mailflow.errors import InvalidMessageFactError

COLUMNS = (
    "organization_id",
    "occurred_at",
    "source_key",
    "direction",
    "connector_id",
    "tls_version",
    "tls_cipher",
    "peer_host",
    "peer_ip",
    "sender_domain",
    "recipient_domains",
    "recipients",
    "size_bytes",
    "status",
    "routes",
)

# recipient_domains and routes are array literals ('{"a","b"}'), cast on the merge: encoding
# lists for COPY costs the client more than writing them out.
FactRow = tuple[
    int, datetime, str, str, int | None, str, str | None, str | None, str | None, str | None,
    str, int, int, str, str | None,
]

MAX_RECIPIENTS = 2**31 - 1  # recipients is an integer column
MAX_SIZE_BYTES = 2**40  # 1 TiB: no message is larger, and a day's sum stays within a bigint
MAX_SOURCE_KEY_BYTES = 1024  # far inside the 2704 bytes a primary key's index row may hold
_TEXT_FIELDS = ("source_key", "tls_cipher", "peer_host", "sender_domain")


@dataclass(frozen=True, slots=True)
class RollupCount:
    """Newly stored facts of one daily rollup key: what its rollup row grows by."""

    day: date
    direction: str
    connector_id: int | None
    tls_version: str
    messages: int
    recipients: int
    bytes: int


def fact_record(organization_id: int, fact: MessageFact) -> FactRow:
    """The fact as a row of ``COLUMNS``.

    Raises InvalidMessageFactError (a ValueError) for values PostgreSQL would misread (naive
    timestamps) or reject in the middle of a COPY: malformed peer IPs, counts outside their
    columns' ranges, NUL characters in text, and source keys too long to index.
    """
    if fact.occurred_at.tzinfo is None or fact.occurred_at.utcoffset() is None:
        raise InvalidMessageFactError(
            f"message fact {fact.source_key!r} has a naive occurred_at "
            f"({fact.occurred_at.isoformat()}): give it a time zone, for example tzinfo=UTC"
        )
    _check_count(fact, "recipients", fact.recipients, MAX_RECIPIENTS)
    _check_count(fact, "size_bytes", fact.size_bytes, MAX_SIZE_BYTES)
    if "\x00" in _text_of(fact) or len(fact.source_key) * 4 > MAX_SOURCE_KEY_BYTES:
        _check_text(fact)  # the slow check, which names the field
    if fact.peer_ip is not None and not _is_ip_address(fact.peer_ip):
        raise InvalidMessageFactError(
            f"message fact {fact.source_key!r} has peer_ip {fact.peer_ip!r}, "
            "which is not an IPv4 or IPv6 address"
        )
    # _value_ rather than .value: the property costs more than the rest of the row.
    return (
        organization_id,
        fact.occurred_at,
        fact.source_key,
        fact.direction._value_,
        fact.connector_id,
        fact.tls_version._value_,
        fact.tls_cipher,
        fact.peer_host,
        fact.peer_ip,
        fact.sender_domain,
        array_literal(fact.recipient_domains),
        fact.recipients,
        fact.size_bytes,
        fact.status._value_,
        array_literal(fact.routes) if fact.routes else None,
    )


def array_literal(values: Sequence[str]) -> str:
    """PostgreSQL's text form of a text[] holding ``values``: each element quoted, with its
    quotes and backslashes escaped (quoted, "NULL" and "" are text like any other)."""
    if len(values) == 1:
        value = values[0]
        if '"' not in value and "\\" not in value:
            return '{"' + value + '"}'  # the common case: one name needing no escape
    return "{" + ",".join(['"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for value in values]) + "}"


def months_of(facts: Iterable[MessageFact]) -> set[date]:
    """The first days of the UTC months the facts occurred in (timestamps must be aware)."""
    months: set[int] = set()
    last = -1  # facts come mostly in time order: most share the month of the one before
    for fact in facts:
        at = fact.occurred_at
        if at.tzinfo is None:
            continue
        if at.tzinfo is not UTC:
            at = at.astimezone(UTC)
        month = at.year * 12 + at.month - 1
        if month != last:
            months.add(month)
            last = month
    return {date(month // 12, month % 12 + 1, 1) for month in months}


def time_span(rows: Sequence[FactRow]) -> tuple[datetime, datetime]:
    """The earliest and the latest time of the rows (at least one)."""
    earliest = latest = rows[0][1]
    for row in rows:
        at = row[1]
        if at < earliest:
            earliest = at
        elif at > latest:
            latest = at
    return earliest, latest


def has_repeats(rows: Sequence[FactRow]) -> bool:
    """Whether a key (source key and time) comes twice among the rows."""
    if len({row[2] for row in rows}) == len(rows):  # no source key twice: no key twice
        return False
    return len({(row[2], row[1]) for row in rows}) < len(rows)


def rollup_counts(rows: Iterable[FactRow], connectors: set[int]) -> list[RollupCount]:
    """What the rows add to their daily rollups (UTC day, direction, connector, TLS version),
    by key in key order, with connectors not among ``connectors`` counted as no connector."""
    totals: dict[tuple[date, str, int, str], list[int]] = {}
    for row in rows:
        at = row[1]
        if at.tzinfo is not UTC:
            at = at.astimezone(UTC)
        connector_id = row[4]
        key = (at.date(), row[3], connector_id if connector_id in connectors else -1, row[5])
        total = totals.get(key)
        if total is None:
            totals[key] = [1, row[11], row[12]]
        else:
            total[0] += 1
            total[1] += row[11]
            total[2] += row[12]
    return [
        RollupCount(day, direction, None if connector_id < 0 else connector_id, tls_version,
                    *total)
        for (day, direction, connector_id, tls_version), total in sorted(totals.items())
    ]


def _text_of(fact: MessageFact) -> str:
    """Every text value of the fact in one string, to look for NUL characters at once."""
    return "".join((fact.source_key, fact.tls_cipher or "", fact.peer_host or "",
                    fact.sender_domain or "", *fact.recipient_domains, *fact.routes))


@functools.lru_cache(maxsize=1 << 14)  # peers repeat; parsing each anew was costly
def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _check_count(fact: MessageFact, name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise InvalidMessageFactError(
            f"message fact {fact.source_key!r} has {name} {value}, "
            f"outside the range 0 to {maximum} that can be stored"
        )


def _check_text(fact: MessageFact) -> None:
    for name in _TEXT_FIELDS:
        value = getattr(fact, name)
        if value is not None and "\x00" in value:
            raise InvalidMessageFactError(
                f"message fact {fact.source_key!r} has {name} {value!r}, "
                "with a NUL character, which PostgreSQL text cannot hold"
            )
    for kind, values in (("recipient domain", fact.recipient_domains), ("route", fact.routes)):
        for value in values:
            if "\x00" in value:
                raise InvalidMessageFactError(
                    f"message fact {fact.source_key!r} has {kind} {value!r}, "
                    "with a NUL character, which PostgreSQL text cannot hold"
                )
    size = len(fact.source_key.encode())
    if size > MAX_SOURCE_KEY_BYTES:
        raise InvalidMessageFactError(
            f"message fact {fact.source_key[:80]!r}... has a source key of {size} bytes, "
            f"more than the {MAX_SOURCE_KEY_BYTES} that can be indexed"
        )
