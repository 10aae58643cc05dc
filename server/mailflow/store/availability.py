"""Which driver errors mean that the database cannot be reached, rather than a bug."""

from __future__ import annotations

import asyncpg

from mailflow.store.db import DatabaseUnavailableError


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
    return isinstance(error, (
        DatabaseUnavailableError,
        OSError,  # refused, reset, no socket file, timed out
        asyncpg.PostgresConnectionError,  # class 08: the connection broke
        asyncpg.OperatorInterventionError,  # class 57: shutting down, starting up
        asyncpg.TooManyConnectionsError,
    )) or (
        # A pooled connection whose server went away is refused by the driver itself.
        isinstance(error, asyncpg.InterfaceError) and str(error).endswith("connection is closed")
    )
