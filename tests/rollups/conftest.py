"""Fixtures for fact and rollup tests: organizations, connectors, facts, rollups both ways."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion

NewOrganization = Callable[[], Awaitable[int]]
NewConnector = Callable[[int, Direction], Awaitable[int]]
MakeFact = Callable[..., MessageFact]
RollupRows = Callable[[], Awaitable[set[tuple[object, ...]]]]

_names = itertools.count()

# What daily_rollups must hold: the facts counted directly, with no help from the code under test.
EXPECTED_ROLLUPS = """
SELECT
    organization_id,
    (occurred_at AT TIME ZONE 'UTC')::date AS day,
    direction,
    connector_id,
    tls_version,
    count(*) AS messages,
    sum(recipients) AS recipients,
    sum(size_bytes) AS bytes
FROM message_facts
GROUP BY 1, 2, 3, 4, 5
"""

STORED_ROLLUPS = """
SELECT
    organization_id,
    day,
    direction,
    connector_id,
    tls_version,
    messages,
    recipients,
    bytes
FROM daily_rollups
"""


def fact(
    source_key: str,
    occurred_at: datetime | str,
    *,
    direction: Direction = Direction.INBOUND,
    tls_version: TlsVersion = TlsVersion.TLS1_2,
    connector_id: int | None = None,
    recipients: int = 1,
    size_bytes: int = 1_000,
) -> MessageFact:
    """A message fact with plausible defaults; a string time is ISO 8601 in UTC."""
    if isinstance(occurred_at, str):
        occurred_at = datetime.fromisoformat(occurred_at).replace(tzinfo=UTC)
    return MessageFact(
        source_key=source_key,
        occurred_at=occurred_at,
        direction=direction,
        tls_version=tls_version,
        tls_cipher="TLS_AES_256_GCM_SHA384" if tls_version is TlsVersion.TLS1_3 else None,
        peer_host="mx.example.net",
        peer_ip="192.0.2.25",
        sender_domain="example.net",
        recipient_domains=("example.org",),
        recipients=recipients,
        size_bytes=size_bytes,
        status=DeliveryStatus.RECEIVED,
        connector_id=connector_id,
    )


@pytest.fixture
def make_fact() -> MakeFact:
    """Builds a message fact: ``make_fact("key", "2026-01-31T23:59:59", connector_id=3)``."""
    return fact


@pytest.fixture
def expected_rollups(pool: asyncpg.Pool) -> RollupRows:
    """Reads the daily rollups of all organizations as a GROUP BY over message_facts says."""
    return lambda: _rows(pool, EXPECTED_ROLLUPS)


@pytest.fixture
def stored_rollups(pool: asyncpg.Pool) -> RollupRows:
    """Reads the rows of daily_rollups of all organizations."""
    return lambda: _rows(pool, STORED_ROLLUPS)


async def _rows(pool: asyncpg.Pool, sql: str) -> set[tuple[object, ...]]:
    rows = await pool.fetch(sql)
    as_tuples = {tuple(row.values()) for row in rows}
    assert len(as_tuples) == len(rows), "rollup rows must be unique"
    return as_tuples


@pytest.fixture
def new_organization(pool: asyncpg.Pool) -> NewOrganization:
    """Creates an organization with a fresh name and returns its id."""

    async def create() -> int:
        organization_id: int = await pool.fetchval(
            "INSERT INTO organizations (name) VALUES ($1) RETURNING id", f"org-{next(_names)}"
        )
        return organization_id

    return create


@pytest.fixture
def new_connector(pool: asyncpg.Pool) -> NewConnector:
    """Creates a partner connector of an organization and returns its id."""

    async def create(organization_id: int, direction: Direction) -> int:
        connector_id: int = await pool.fetchval(
            "INSERT INTO connectors (organization_id, name, direction, kind) "
            "VALUES ($1, $2, $3, 'PARTNER') RETURNING id",
            organization_id, f"connector-{next(_names)}", direction.value,
        )
        return connector_id

    return create
