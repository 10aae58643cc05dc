"""Connections to PostgreSQL: the pool, and where the database comes from."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from mailflow.settings import Settings
from mailflow.store.embedded import EmbeddedPostgres
from mailflow.store.migrate import migrate

log = logging.getLogger("mailflow.db")

Pool = asyncpg.Pool


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, **options: Any) -> Pool:
    """An asyncpg pool on ``dsn``."""
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, **options)
    assert pool is not None
    return pool


@contextlib.asynccontextmanager
async def open_database(settings: Settings, *, run_migrations: bool = True) -> AsyncIterator[Pool]:
    """A migrated pool on DATABASE_URL, or on an embedded server started (and stopped) here."""
    embedded = None
    dsn = settings.database_url
    if dsn is None:
        embedded = EmbeddedPostgres(settings.data_dir)
        dsn = embedded.start()
    try:
        pool = await create_pool(dsn, min_size=settings.pool_min_size,
                                 max_size=settings.pool_max_size)
        try:
            if run_migrations:
                async with pool.acquire() as connection:
                    await migrate(connection)
            yield pool
        finally:
            await pool.close()
    finally:
        if embedded is not None:
            embedded.stop()
