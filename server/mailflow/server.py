"""Run the API under uvicorn, with the database started before and stopped after it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from mailflow.api.app import create_app
from mailflow.errors import MailflowError
from mailflow.rollups.changes import RollupChanges
from mailflow.settings import Settings
from mailflow.store.db import open_database_at

log = logging.getLogger("mailflow.server")


class UsageError(MailflowError):
    """The server cannot be started as asked."""

    code = "BAD_USAGE"


class _Server(uvicorn.Server):
    """uvicorn that shuts down on SIGINT and SIGTERM without re-raising the signal.

    uvicorn re-raises a caught signal once it has stopped; for SIGTERM that kills
    the process before the embedded PostgreSQL is stopped. Here the signal only
    asks for a graceful stop, and ``run_server`` then stops the database.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


async def serve(settings: Settings, *, host: str, port: int, demo: bool) -> None:
    """Open the database, load the demo if asked, and serve until a signal arrives."""
    async with (
        open_database_at(settings, server=True) as (pool, database_url),
        RollupChanges(listen_url(settings, database_url)) as changes,
    ):
        demo_organization_id = None
        if demo:
            from mailflow.demo import load_demo

            organization_id = await load_demo(pool)
            if settings.database_url is None:
                demo_organization_id = organization_id
                log.info("the demo organization is open without a token on this embedded database")
            else:
                log.info("demo loaded; create a token with 'mailflow token create --org demo'")
        app = create_app(pool, settings, demo_organization_id=demo_organization_id,
                         changes=changes)
        config = uvicorn.Config(app, host=host, port=port, log_config=None,
                                proxy_headers=True, server_header=False)
        await _Server(config).serve()


def listen_url(settings: Settings, database_url: str) -> str:
    """Where live updates LISTEN: MAILFLOW_LISTEN_URL, else the database's own URL."""
    if settings.listen_url is not None:
        return settings.listen_url
    if not settings.database_statement_cache:
        log.warning("MAILFLOW_DATABASE_STATEMENT_CACHE is off, as behind a pooler in "
                    "transaction mode, which cannot keep the LISTEN of live updates: set "
                    "MAILFLOW_LISTEN_URL to a direct connection to PostgreSQL, or "
                    "subscriptions will hear of no change")
    return database_url


def check_listen_address(host: str, port: int) -> None:
    """Refuse, before the database starts, an address this machine cannot listen on."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UsageError(
            f"cannot listen on {host!r} (--host or MAILFLOW_HOST): {error}; use an address "
            "of this machine such as 127.0.0.1, ::1 or 0.0.0.0"
        ) from None
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                raise UsageError(
                    f"cannot listen on {host}:{port} (--host/--port or MAILFLOW_HOST/"
                    f"MAILFLOW_PORT): {error.strerror}"
                ) from None
            return


def run_server(settings: Settings, *, host: str, port: int, demo: bool) -> None:
    """Serve until SIGINT or SIGTERM, then stop everything this process started."""
    asyncio.run(serve(settings, host=host, port=port, demo=demo))
    log.info("mailflow stopped")
