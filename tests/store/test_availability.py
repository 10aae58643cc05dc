from __future__ import annotations

import asyncpg
import pytest

from mailflow.store.availability import is_database_unavailable
from mailflow.store.db import DatabaseUnavailableError


def _caused_by(cause: BaseException) -> Exception:
    error = RuntimeError("while reading the rollups")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(111, "Connection refused"),
    FileNotFoundError(2, "No such file or directory"),
    TimeoutError(),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.InterfaceError("connection is closed"),
    asyncpg.InterfaceError(
        "cannot call Connection.fetch(): connection has been released back to the pool"),
    asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    asyncpg.InternalClientError(
        "PoolConnectionHolder.release() called on a free connection holder"),
    DatabaseUnavailableError("cannot connect to the database"),
    _caused_by(asyncpg.AdminShutdownError("terminating connection")),
], ids=lambda error: type(error).__name__)
def test_errors_of_a_database_out_of_reach_are_unavailability(error: BaseException) -> None:
    assert is_database_unavailable(error)


@pytest.mark.parametrize("error", [
    asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.UndefinedTableError('relation "daily_rollups" does not exist'),
    asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
    asyncpg.InternalClientError("unexpected error while performing authentication"),
    ValueError("a bug"),
    None,
], ids=lambda error: type(error).__name__)
def test_errors_of_a_database_that_answers_are_not(error: BaseException | None) -> None:
    assert not is_database_unavailable(error)
