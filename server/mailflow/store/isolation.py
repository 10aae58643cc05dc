"""Row-level security: each transaction on an organization's rows names that organization.

Every table an organization owns lets a transaction see and write the rows of the organization
it names (``mailflow.organization_id``, set for the transaction alone) and no others; one that
names none sees nothing. The service works as ``mailflow_app``, a role that cannot pass by
row security, switched to for one transaction at a time (``SET LOCAL ROLE``). Both settings
end with the transaction, so a pooled connection (asyncpg's, or PgBouncer's in transaction
mode) carries nothing over to the next request.

- ``organization_transaction``: what a request does on one organization's rows.
- ``service_transaction`` and then ``enter_organization``: a request that must first learn its
  organization (authenticating a token) inside the transaction.
- ``owner_transaction``: the CLI's own work on one organization, as the role it logged in
  with (the tables' owner), still bound to that organization's rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from mailflow.errors import MailflowError
from mailflow.store.connection import Connection
from mailflow.store.facts import require_transaction
from mailflow.store.sql import query

SERVICE_ROLE = "mailflow_app"


class ServiceRoleError(MailflowError):
    """The service role is missing, would bypass row security, or cannot be switched to."""

    code = "DATABASE_UNAVAILABLE"


class OrganizationConflictError(RuntimeError):
    """A transaction that names one organization was asked to name another."""


@contextlib.asynccontextmanager
async def organization_transaction(
    connection: Connection, organization_id: int
) -> AsyncIterator[None]:
    """A transaction as the service role on the rows of ``organization_id`` alone."""
    async with connection.transaction():
        await connection.execute(query("isolation_organization"), SERVICE_ROLE,
                                 str(organization_id))
        yield


@contextlib.asynccontextmanager
async def service_transaction(connection: Connection) -> AsyncIterator[None]:
    """A transaction as the service role that sees no organization's rows until
    ``enter_organization`` names one; tokens can be authenticated in it."""
    async with connection.transaction():
        await connection.execute(query("isolation_service_role"), SERVICE_ROLE)
        yield


@contextlib.asynccontextmanager
async def owner_transaction(connection: Connection, organization_id: int) -> AsyncIterator[None]:
    """A transaction as the connection's own role (for the CLI, the tables' owner) on the rows
    of ``organization_id``. A superuser owner sees every row anyway; any other owner is held
    to the organization named, like the service."""
    async with connection.transaction():
        await enter_organization(connection, organization_id)
        yield


async def enter_organization(connection: Connection, organization_id: int) -> None:
    """Name ``organization_id`` for the rest of the caller's transaction.

    Raises OrganizationConflictError when the transaction already names another organization.
    """
    require_transaction(connection, "enter_organization")
    named = await connection.fetchval(query("isolation_enter_organization"),
                                      str(organization_id))
    if named is None:
        raise OrganizationConflictError(
            f"this transaction already works on another organization than {organization_id}; "
            "open a new transaction for each organization"
        )


async def check_service_role(connection: Connection) -> None:
    """Raise ServiceRoleError unless the service role exists, is held to row security, and the
    connection's role may switch to it."""
    row = await connection.fetchrow(query("isolation_check_service_role"), SERVICE_ROLE)
    assert row is not None
    login, bypasses = row["login"], row["bypasses_row_security"]
    if bypasses is None:
        raise ServiceRoleError(
            f"the database has no role {SERVICE_ROLE}: run 'mailflow migrate', which creates it "
            f"(or, as a superuser, CREATE ROLE {SERVICE_ROLE} NOLOGIN first)"
        )
    if bypasses:
        raise ServiceRoleError(
            f"the role {SERVICE_ROLE} bypasses row-level security, so organizations would not "
            f"be kept apart: ALTER ROLE {SERVICE_ROLE} NOSUPERUSER NOBYPASSRLS"
        )
    try:
        async with service_transaction(connection):
            pass
    except asyncpg.InsufficientPrivilegeError:
        raise ServiceRoleError(
            f"the database role {login} may not switch to {SERVICE_ROLE}: as a superuser, "
            f"GRANT {SERVICE_ROLE} TO {login}"
        ) from None
