"""Fixtures for API tests: organizations, connectors and rollups seeded by SQL, and a client."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest

from mailflow.api.app import create_app
from mailflow.api.ids import CONNECTOR, encode_global_id
from mailflow.domain import ConnectorKind, Direction, TlsVersion
from mailflow.settings import Settings
from mailflow.store.tokens import TokenRole, create_token

_names = itertools.count()


@dataclass
class Seed:
    """Writes organizations, connectors, tokens and daily rollups straight into the database."""

    pool: asyncpg.Pool

    async def organization(self, name: str | None = None) -> int:
        organization_id: int = await self.pool.fetchval(
            "INSERT INTO organizations (name) VALUES ($1) RETURNING id",
            name or f"org-{next(_names)}",
        )
        return organization_id

    async def token(self, organization_id: int, role: TokenRole = TokenRole.VIEWER) -> str:
        async with self.pool.acquire() as connection:
            return await create_token(connection, organization_id, description="test", role=role)

    async def connector(
        self,
        organization_id: int,
        name: str,
        direction: Direction = Direction.INBOUND,
        kind: ConnectorKind = ConnectorKind.PARTNER,
        *,
        require_tls: bool = False,
    ) -> int:
        domains = [f"{name.lower()}.example"]
        connector_id: int = await self.pool.fetchval(
            """
            INSERT INTO connectors (
                organization_id, name, direction, kind, sender_domains, recipient_domains,
                require_tls
            )
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            RETURNING id
            """,
            organization_id, name, direction.value, kind.value,
            domains if direction is Direction.INBOUND else [],
            domains if direction is Direction.OUTBOUND else [],
            require_tls,
        )
        return connector_id

    async def rollup(
        self,
        organization_id: int,
        day: date,
        tls_version: TlsVersion,
        messages: int,
        *,
        direction: Direction = Direction.INBOUND,
        connector_id: int | None = None,
        recipients: int | None = None,
        size: int | None = None,
    ) -> None:
        await self.pool.execute(
            """
            INSERT INTO daily_rollups (
                organization_id, day, direction, connector_id, tls_version,
                messages, recipients, bytes
            )
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            """,
            organization_id, day, direction.value, connector_id, tls_version.value,
            messages, messages if recipients is None else recipients,
            messages * 1000 if size is None else size,
        )


@dataclass
class Api:
    """Posts GraphQL to the application in-process, as one organization's token holder."""

    client: httpx.AsyncClient
    token: str | None

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> httpx.Response:
        bearer = token or self.token
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        """The data of a query that must succeed."""
        body = (await self.post(query, variables)).json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    async def error(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The one error of a query that must fail."""
        response = await self.post(query, variables)
        assert response.status_code == 200
        errors = response.json()["errors"]
        assert len(errors) == 1, errors
        error: dict[str, Any] = errors[0]
        return error


def global_connector_id(connector_id: int) -> str:
    return encode_global_id(CONNECTOR, connector_id)


@pytest.fixture
def settings() -> Settings:
    # A test may send many requests with one token; the rate limit has tests of its own.
    return Settings(max_range_days=90, rate_limit="off")


@pytest.fixture
def seed(pool: asyncpg.Pool) -> Seed:
    return Seed(pool)


@pytest.fixture
async def organization_id(seed: Seed) -> int:
    """Organization A, whose token the ``api`` fixture holds."""
    return await seed.organization("org-a")


@pytest.fixture
async def client(
    service_pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """The application on a login that holds only the service role: a statement it sends
    outside a transaction of that role fails."""
    app = create_app(service_pool, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def api(client: httpx.AsyncClient, seed: Seed, organization_id: int) -> Api:
    return Api(client, await seed.token(organization_id))
