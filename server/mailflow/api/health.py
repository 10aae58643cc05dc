"""Health checks for a load balancer or an orchestrator: /healthz and /readyz."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailflow.store.availability import is_database_unavailable, pooled
from mailflow.store.isolation import service_transaction
from mailflow.store.migrate import MigrationError, unapplied_migrations

log = logging.getLogger("mailflow.api")

# Longer than this, and the database counts as unreachable: a probe must answer in time.
READY_TIMEOUT_SECONDS = 3.0


async def healthz(request: Request) -> Response:
    """200 while the process serves requests; it does not look at the database."""
    return JSONResponse({"status": "ok"})


class Readiness:
    """/readyz: 200 when the database answers and every migration is applied, else 503."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def handle(self, request: Request) -> Response:
        reason = await self.problem()
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)

    async def problem(self) -> str | None:
        """Why the server cannot answer reports now, or None when it can."""
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                return await self._migrations_problem()
        except TimeoutError:
            return f"the database did not answer within {READY_TIMEOUT_SECONDS:g} s"
        except MigrationError as error:
            return str(error)
        except Exception as error:
            if not is_database_unavailable(error):
                raise
            log.debug("readiness: the database is unavailable: %s", type(error).__name__)
            return f"the database is unavailable ({type(error).__name__})"

    async def _migrations_problem(self) -> str | None:
        async with pooled(self.pool) as connection, service_transaction(connection):
            pending = await unapplied_migrations(connection)
        if not pending:
            return None
        names = ", ".join(f"{migration.version:04d}_{migration.name}" for migration in pending)
        return f"{len(pending)} migration(s) not applied ({names}): run 'mailflow migrate'"
