"""Connections to PostgreSQL: the pool, and where the database comes from."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from mailflow.errors import MailflowError
from mailflow.settings import Settings, redact
from mailflow.store.connection import Connection
from mailflow.store.embedded import EmbeddedPostgres
from mailflow.store.isolation import check_service_role, service_transaction
from mailflow.store.migrate import Migration, migrate, unapplied_migrations
from mailflow.store.sql import query

log = logging.getLogger("mailflow.db")

Pool = asyncpg.Pool

SERVER_APPLICATION = "mailflow serve"  # application_name of the server's sessions
# asyncpg's own default. Off (0), it names no statement: behind a pooler in transaction mode,
# the next transaction may run in a session that never prepared it.
STATEMENT_CACHE_SIZE = 100


async def keep_session(connection: asyncpg.Connection) -> None:
    """Hand a released connection back to the pool as it is.

    mailflow leaves nothing in a session (no session ``SET``, ``LISTEN``, held cursor or
    session-level advisory lock: each request's settings end with its transaction), so
    asyncpg's default reset (``pg_advisory_unlock_all()``, ``CLOSE ALL``, ``UNLISTEN *``,
    ``RESET ALL``) would cost a round trip per request for nothing. The pool still rolls back
    a transaction left open before it calls this.
    """


class DatabaseUnavailableError(MailflowError):
    """The database could not be reached or refused mailflow."""

    code = "DATABASE_UNAVAILABLE"


@dataclass(frozen=True)
class DatabaseAddress:
    """Where a pool connects and how, for another process to open connections like its own."""

    dsn: str
    options: dict[str, Any] = field(default_factory=dict)

    async def connect(self) -> asyncpg.Connection:
        """One connection as the pool's; DatabaseUnavailableError says why when it cannot."""
        try:
            return await asyncpg.connect(self.dsn, **self.options)
        except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise DatabaseUnavailableError(
                f"cannot connect to the database at {redact(self.dsn)}: {error}"
            ) from error


# The pools open_database has open, by id(): each entry goes before its pool is closed.
_addresses: dict[int, DatabaseAddress] = {}


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, **options: Any) -> Pool:
    """An asyncpg pool on ``dsn``; DatabaseUnavailableError says why when it cannot connect."""
    try:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, **options)
    except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise DatabaseUnavailableError(
            f"cannot connect to the database at {redact(dsn)}: {error}"
        ) from error
    assert pool is not None
    return pool


def database_address(pool: Pool) -> DatabaseAddress | None:
    """Where a pool of :func:`open_database` connects; None for a pool made elsewhere."""
    return _addresses.get(id(pool))


@contextlib.asynccontextmanager
async def open_database(
    settings: Settings, *, run_migrations: bool = True, server: bool = False
) -> AsyncIterator[Pool]:
    """A migrated pool on DATABASE_URL, or on an embedded server started (and stopped) here.

    ``server`` marks the long-running API process, which owns the embedded database.
    """
    async with open_database_at(settings, run_migrations=run_migrations,
                                server=server) as (pool, _):
        yield pool


@contextlib.asynccontextmanager
async def open_database_at(
    settings: Settings, *, run_migrations: bool = True, server: bool = False
) -> AsyncIterator[tuple[Pool, str]]:
    """``open_database``'s pool, and the URL it connects to."""
    embedded = None
    dsn = settings.database_url
    if dsn is None:
        embedded = EmbeddedPostgres(settings.data_dir, owner=server)
        dsn = embedded.start()
    try:
        options: dict[str, Any] = {
            "statement_cache_size": (STATEMENT_CACHE_SIZE if settings.database_statement_cache
                                     else 0),
            "server_settings": {"application_name": SERVER_APPLICATION if server else "mailflow"},
        }
        pool = await create_pool(dsn, min_size=settings.pool_min_size,
                                 max_size=settings.pool_max_size, reset=keep_session,
                                 **options)
        _addresses[id(pool)] = DatabaseAddress(dsn, options)
        try:
            if run_migrations:
                async with pool.acquire() as connection:
                    await migrate_or_explain(connection)
                    await check_service_role(connection)
            yield pool, dsn
        finally:
            if embedded is not None and server:
                embedded.others_connected = await _other_sessions(pool)
            del _addresses[id(pool)]
            await pool.close()
    finally:
        if embedded is not None:
            embedded.stop()


async def _schema_is_current(connection: Connection) -> bool:
    """Whether every migration is applied, asked as the service role."""
    try:
        async with service_transaction(connection):
            return not await unapplied_migrations(connection)
    except (asyncpg.InsufficientPrivilegeError, asyncpg.UndefinedTableError):
        return False


async def _other_sessions(pool: Pool) -> int:
    """Sessions of other commands (an ingest, a follower) on the embedded database, or 0."""
    try:
        async with pool.acquire(timeout=5) as connection:
            count: int = await connection.fetchval(query("embedded_other_sessions"),
                                                   SERVER_APPLICATION)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return 0
    return count


async def migrate_or_explain(connection: Connection) -> list[Migration]:
    """Apply pending migrations; a role without the right to create tables or roles is told
    what to grant, unless there is nothing to apply (a login that only holds the service role
    runs the server on a database migrated by its owner)."""
    try:
        return await migrate(connection)
    except asyncpg.InsufficientPrivilegeError as error:
        if error.hint:  # a migration's own refusal, which says what to run
            raise DatabaseUnavailableError(f"{error.args[0]}: {error.hint}") from error
        if await _schema_is_current(connection):
            log.info("the database role may not migrate, and need not: every migration is "
                     "applied")
            return []
        raise DatabaseUnavailableError(
            f"the database role may not create mailflow's tables ({error}): make it the owner "
            "of the database, or GRANT CREATE ON SCHEMA public TO it"
        ) from error
