"""Which driver errors mean that the database cannot be reached, rather than a bug; and a pool
checkout that survives the driver's races when a connection is lost while it is out."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from mailflow.store.db import DatabaseUnavailableError

log = logging.getLogger("mailflow.db")

# asyncpg's own words when a connection is lost under a request. An idle pooled connection
# that received the server's farewell ("terminating connection") before its socket closed
# refuses the next statement; a connection closed while checked out is taken back by the
# pool before the request is done with it, so the request's next statement, and its return
# of the connection, are refused. The request holds its connection for its whole run, so
# these mean a lost connection, not a connection used after it was returned.
_LOST_CONNECTION_MESSAGES = (
    "connection is closed",
    "connection has been released back to the pool",
    "cannot switch to state",
    "called on a free connection holder",
)


def is_database_unavailable(error: BaseException | None) -> bool:
    """Whether ``error`` (or what caused it) says PostgreSQL is down, starting, stopping,
    full or out of reach, so that the same request can succeed once it is back."""
    while error is not None:
        if _unavailable(error):
            return True
        error = error.__cause__
    return False


def _unavailable(error: BaseException) -> bool:
    if isinstance(error, asyncpg.QueryCanceledError):
        return False  # a statement timeout: the server is there
    if isinstance(error, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return _lost_connection(error)
    return isinstance(error, (
        DatabaseUnavailableError,
        OSError,  # refused, reset, no socket file, timed out
        asyncpg.PostgresConnectionError,  # class 08: the connection broke
        asyncpg.OperatorInterventionError,  # class 57: shutting down, starting up
        asyncpg.TooManyConnectionsError,
    ))


def _lost_connection(error: Exception) -> bool:
    return any(message in str(error) for message in _LOST_CONNECTION_MESSAGES)


@contextlib.asynccontextmanager
async def pooled(pool: asyncpg.Pool) -> AsyncIterator[PoolConnectionProxy]:
    """A connection of ``pool`` for one request, like ``pool.acquire()``.

    When the connection was lost while checked out, the pool has already taken it back and
    returning it again fails inside asyncpg; that failure is no one's error and is dropped.
    """
    connection = await pool.acquire()
    try:
        yield connection
    finally:
        try:
            await pool.release(connection)
        except asyncpg.InternalClientError as error:
            if not _lost_connection(error):
                raise
            log.debug("a lost connection was already back in the pool: %s", error)
