"""Hear which organizations' daily rollups changed, and tell the subscribers of each.

Every statement that changes daily rollups notifies the channel ``mailflow_rollups`` with the
organization and the days it touched (migration 0015); PostgreSQL delivers the notification
when the transaction commits. ``RollupChanges`` holds the one connection of the process that
LISTENs on it, outside the pool: a LISTEN lasts as long as its session, which a pooler in
transaction mode does not keep, so that connection must reach PostgreSQL directly. Each
notification goes to the subscribers of its organization alone.

When the connection drops, it is opened again; since notifications sent meanwhile are lost,
every subscriber is then told that any day may have changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import asyncpg

from mailflow.settings import redact
from mailflow.store.db import SERVER_APPLICATION

log = logging.getLogger("mailflow.live")

CHANNEL = "mailflow_rollups"


@dataclass(frozen=True, slots=True)
class RollupChange:
    """The daily rollups of ``organization_id`` changed on ``days``; any day when None."""

    organization_id: int
    days: frozenset[date] | None


def parse_change(payload: str) -> RollupChange:
    """The change a notification's payload describes; ValueError when it describes none."""
    try:
        message = json.loads(payload)
        organization_id = message["organization_id"]
        days = message["days"]
        if not isinstance(organization_id, int) or isinstance(organization_id, bool):
            raise TypeError(organization_id)
        if days is None:
            return RollupChange(organization_id, None)
        return RollupChange(organization_id, frozenset(date.fromisoformat(day) for day in days))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"not a rollup change: {payload[:200]!r}; expected "
            '{"organization_id": <id>, "days": ["YYYY-MM-DD", ...] or null}'
        ) from error


@dataclass(eq=False)
class Subscriber:
    """What one subscriber has not yet taken: the days changed since, or any day (None)."""

    organization_id: int
    _days: set[date] | None = field(default_factory=set)
    _pending: asyncio.Event = field(default_factory=asyncio.Event)

    def tell(self, days: frozenset[date] | None) -> None:
        if days is None or self._days is None:
            self._days = None
        else:
            self._days |= days
        self._pending.set()

    async def changed_days(self) -> set[date] | None:
        """Wait for a change; the days changed since the last call, or None for any day."""
        await self._pending.wait()
        self._pending.clear()
        days, self._days = self._days, set()
        return days


class RollupChanges:
    """The process's LISTEN connection on ``dsn`` and its subscribers, by organization.

    Use it as ``async with RollupChanges(dsn) as changes:``; the connection is opened in the
    background, and opened again ``retry_seconds`` after it drops. It is checked every
    ``check_seconds``, so a connection that died without a word is noticed too.
    """

    def __init__(
        self, dsn: str, *, check_seconds: float = 10.0, retry_seconds: float = 1.0
    ) -> None:
        self.dsn = dsn
        self.check_seconds = check_seconds
        self.retry_seconds = retry_seconds
        self.listening = asyncio.Event()
        self.backend_pid: int | None = None  # the listening session's, while it listens
        self._subscribers: dict[int, set[Subscriber]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RollupChanges:
        self._task = asyncio.create_task(self._keep_listening(), name="mailflow listen")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def subscribe(self, organization_id: int) -> Iterator[Subscriber]:
        """A subscriber to the changes of ``organization_id``'s rollups, while in the block."""
        subscriber = Subscriber(organization_id)
        self._subscribers.setdefault(organization_id, set()).add(subscriber)
        try:
            yield subscriber
        finally:
            subscribers = self._subscribers[organization_id]
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[organization_id]

    def subscribers(self) -> int:
        """How many subscribers there are now, of every organization."""
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    def publish(self, change: RollupChange) -> None:
        """Tell the subscribers of the change's organization, and no others."""
        for subscriber in self._subscribers.get(change.organization_id, ()):
            subscriber.tell(change.days)

    async def _keep_listening(self) -> None:
        reconnected = False
        while True:
            try:
                await self._listen(reconnected)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning(
                    "live updates paused: the LISTEN connection to %s failed (%s); retrying "
                    "in %s s. It needs a direct connection to PostgreSQL "
                    "(MAILFLOW_LISTEN_URL), not one through a pooler in transaction mode",
                    redact(self.dsn), error, self.retry_seconds,
                )
            self.listening.clear()
            self.backend_pid = None
            reconnected = True
            await asyncio.sleep(self.retry_seconds)

    async def _listen(self, reconnected: bool) -> None:
        """Listen until the connection drops; raise what dropped it."""
        # The server's own session: an embedded database is not left running for it.
        connection = await asyncpg.connect(
            self.dsn, server_settings={"application_name": SERVER_APPLICATION}
        )
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        try:
            await connection.add_listener(CHANNEL, self._notified)
            self.backend_pid = connection.get_server_pid()
            self.listening.set()
            if reconnected:
                log.info("live updates resumed: listening for rollup changes again")
                self._tell_everyone()
            while not connection.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self.check_seconds)
                await connection.execute("SELECT 1", timeout=self.check_seconds)
        finally:
            connection.terminate()

    def _notified(self, connection: object, pid: int, channel: str, payload: object) -> None:
        try:
            change = parse_change(str(payload))
        except ValueError as error:
            log.warning("ignored a notification on %s: %s", CHANNEL, error)
            return
        self.publish(change)

    def _tell_everyone(self) -> None:
        """Notifications sent while the connection was down are lost: any day may have changed."""
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                subscriber.tell(None)
