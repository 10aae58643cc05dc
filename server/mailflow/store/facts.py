"""Store message facts: idempotent, batched through COPY, partitioned by month."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date

from mailflow.domain import MessageFact
from mailflow.errors import MailflowError
from mailflow.store.connection import Connection
from mailflow.store.sql import query

PARTITION_LOCK = 0x6D66_7061  # "mfpa": one session at a time creates message_facts partitions

INCOMING_COLUMNS = (
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

FactRow = tuple[object, ...]

MAX_RECIPIENTS = 2**31 - 1  # recipients is an integer column
MAX_SIZE_BYTES = 2**40  # 1 TiB: no message is larger, and a day's sum stays within a bigint
MAX_SOURCE_KEY_BYTES = 1024  # far inside the 2704 bytes a primary key's index row may hold
_TEXT_FIELDS = ("source_key", "tls_cipher", "peer_host", "sender_domain")


class InvalidMessageFactError(MailflowError, ValueError):
    """A message fact holds a value that cannot be stored as given."""

    code = "INVALID_MESSAGE_FACT"


class NotInTransactionError(RuntimeError):
    """A store or refresh step was called outside the caller's transaction."""


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


@dataclass
class StoreResult:
    """What storing one batch of message facts changed.

    ``counts`` are the newly stored facts by daily rollup key, for ``add_to_rollups``.
    """

    inserted: int = 0
    duplicates: int = 0
    touched_days: set[date] = field(default_factory=set)
    counts: list[RollupCount] = field(default_factory=list, compare=False)


def require_transaction(connection: Connection, operation: str) -> None:
    """Raise unless ``connection`` is inside a transaction that ``operation`` can join."""
    if not connection.is_in_transaction():
        raise NotInTransactionError(
            f"{operation} must run inside a transaction: "
            "wrap the call in `async with connection.transaction():`"
        )


def months_of(facts: Iterable[MessageFact]) -> set[date]:
    """The first days of the UTC months the facts occurred in (timestamps must be aware)."""
    months = set()
    for fact in facts:
        at = fact.occurred_at
        if at.tzinfo is None:
            continue
        if at.tzinfo is not UTC:
            at = at.astimezone(UTC)
        months.add((at.year, at.month))
    return {date(year, month, 1) for year, month in months}


async def ensure_partitions(connection: Connection, months: Iterable[date]) -> None:
    """Create the missing message_facts partitions of ``months``, inside the caller's transaction.

    The partition lock is taken only when a partition is missing; creating one also locks
    message_facts until commit, so a caller may run this in a short transaction of its own first.
    """
    require_transaction(connection, "ensure_partitions")
    missing = await connection.fetch(query("facts_missing_partitions"), sorted(set(months)))
    if not missing:
        return

    await connection.execute(query("facts_lock_partitions"), PARTITION_LOCK)
    for row in missing:
        await connection.execute(query("facts_create_partition"), row["month"])


async def store_facts(
    connection: Connection, organization_id: int, facts: Sequence[MessageFact]
) -> StoreResult:
    """Insert the facts not stored yet, inside the caller's transaction.

    Facts already stored (same organization, source key and time), also twice in one
    batch, are counted as duplicates. ``touched_days`` are the UTC days of inserted facts.
    A value PostgreSQL would misread or reject (see :func:`fact_record`) raises
    InvalidMessageFactError (a ValueError) naming the fact's source key and the value,
    before anything of the batch is written.

    A fact names its connector only if the connector still exists when it is stored: one
    removed since the facts were classified leaves them "no connector". The connectors named
    are held (FOR KEY SHARE) until the caller's transaction ends, so a concurrent removal
    waits and then detaches these facts too (see ``organizations.remove_connectors``). Call
    it before ``add_to_rollups`` in the transaction, never after: waiting for a connector
    while holding the rollup lock could deadlock with that removal.
    """
    require_transaction(connection, "store_facts")
    records = [fact_record(organization_id, fact) for fact in facts]
    if not records:
        return StoreResult()

    await ensure_partitions(connection, months_of(facts))
    # Lock the named connectors in id order first, as apply does, so that an ingest and an
    # apply that removes or renames several connectors never wait for each other in a cycle;
    # the insert then keeps only connectors held here and never waits for a row lock itself.
    connector_ids = sorted({fact.connector_id for fact in facts if fact.connector_id is not None})
    if connector_ids:
        await connection.execute(query("facts_lock_connectors"), organization_id, connector_ids)
    await connection.execute(query("facts_create_incoming_table"))
    await connection.copy_records_to_table(
        "incoming_message_facts", records=records, columns=INCOMING_COLUMNS
    )
    rows = await connection.fetch(query("facts_insert_incoming"))
    await connection.execute(query("facts_drop_incoming_table"))

    counts = [RollupCount(*row) for row in rows]
    inserted = sum(count.messages for count in counts)
    return StoreResult(
        inserted=inserted,
        duplicates=len(records) - inserted,
        touched_days={count.day for count in counts},
        counts=counts,
    )


def fact_record(organization_id: int, fact: MessageFact) -> FactRow:
    """The fact as a row of ``INCOMING_COLUMNS``.

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
        list(fact.recipient_domains),
        fact.recipients,
        fact.size_bytes,
        fact.status._value_,
        list(fact.routes) if fact.routes else None,
    )


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
