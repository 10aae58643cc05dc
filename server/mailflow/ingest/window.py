"""The window of plausible message times: facts outside it are never stored.

A time stamp from before EARLIEST or more than FUTURE_ALLOWANCE after now is a corrupt log
or a wrong clock, not mail: storing it would make a partition for its month (one per absurd
year) and, at the edges of the calendar, times that cannot be converted to UTC days at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from mailflow.domain import MessageFact

if TYPE_CHECKING:  # the report spans only plausible times, so it imports this module
    from mailflow.ingest.report import IngestReport

EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
FUTURE_ALLOWANCE = timedelta(days=7)  # clocks that run ahead, time zones set wrong
TIMESTAMP_OUT_OF_RANGE = "timestamp out of range"  # the kind the parsers count, too


def latest(now: datetime | None = None) -> datetime:
    """The latest plausible time: FUTURE_ALLOWANCE after ``now`` (default: the clock)."""
    return (now or datetime.now(UTC)) + FUTURE_ALLOWANCE


def in_window(moment: datetime, now: datetime | None = None) -> bool:
    """Whether an aware ``moment`` lies from EARLIEST to :func:`latest`, both included."""
    if now is None:
        return EARLIEST <= moment <= _latest_now()
    return EARLIEST <= moment <= latest(now)


_latest_cache: tuple[float, datetime] = (-1.0, EARLIEST)


def _latest_now() -> datetime:
    """:func:`latest` of the clock, read at most once a second: it is asked once a fact."""
    global _latest_cache
    checked, bound = _latest_cache
    tick = time.monotonic()
    if tick - checked >= 1.0:
        bound = latest()
        _latest_cache = (tick, bound)
    return bound


def accepted_range(now: datetime | None = None) -> str:
    """The window in words, for a rejection: ``"from 1990-01-01T00:00:00Z to ..."``."""
    end = latest(now).replace(microsecond=0)
    return (f"from {EARLIEST:%Y-%m-%dT%H:%M:%SZ} to {FUTURE_ALLOWANCE.days} days after now "
            f"({end:%Y-%m-%dT%H:%M:%SZ})")


def within_window(facts: Iterable[MessageFact], report: IngestReport) -> Iterator[MessageFact]:
    """The facts whose time is plausible; each other one is taken back out of ``report.facts``
    and counted as TIMESTAMP_OUT_OF_RANGE. Every parser's facts pass here before storing.

    A naive time is let through for the store to refuse by name: it is a parser's bug.
    """
    for fact in facts:
        if fact.occurred_at.utcoffset() is None or in_window(fact.occurred_at):
            yield fact
        else:
            report.facts -= 1
            report.skip(TIMESTAMP_OUT_OF_RANGE)
