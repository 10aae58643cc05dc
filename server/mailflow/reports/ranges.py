"""Report ranges: inclusive runs of UTC calendar days, their defaults and their limits."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from mailflow.reports.errors import InvalidDateRangeError, RangeTooLongError

DEFAULT_DAYS = 7


@dataclass(frozen=True, slots=True)
class DateRange:
    """The UTC calendar days from ``start`` to ``end``, both included."""

    start: date
    end: date

    @property
    def days(self) -> int:
        """How many days the range holds."""
        return (self.end - self.start).days + 1

    def __iter__(self) -> Iterator[date]:
        for offset in range(self.days):
            yield self.start + timedelta(days=offset)

    def __str__(self) -> str:
        return f"{self.start} to {self.end}"


def utc_today() -> date:
    """Today's date in UTC, the calendar that reports count days in."""
    return datetime.now(UTC).date()


def resolve_range(
    start: date | None, end: date | None, *, today: date, max_days: int
) -> DateRange:
    """The range a report covers, with missing ends filled in; raises when it cannot be served.

    Without ``start`` and ``end`` the range is the last 7 days, ending today. With only one
    of them the range is still 7 days long: ``end`` is 6 days after ``start``, or ``start``
    6 days before ``end``. Where the longest allowed range is shorter than 7 days, that
    length replaces 7.
    """
    span = timedelta(days=min(DEFAULT_DAYS, max_days) - 1)
    if start is None and end is None:
        end = today
    if start is None:
        assert end is not None
        start = _shifted(end, -span, "end")
    if end is None:
        end = _shifted(start, span, "start")

    window = DateRange(start, end)
    check_range(window, max_days=max_days)
    return window


def check_range(window: DateRange, *, max_days: int) -> None:
    """Raise unless ``window`` runs forward and spans at most ``max_days`` days."""
    if window.end < window.start:
        raise InvalidDateRangeError(
            f"end {window.end} is before start {window.start}; "
            f"pass an end on or after {window.start}"
        )
    if window.days > max_days:
        latest_end = window.start + timedelta(days=max_days - 1)
        raise RangeTooLongError(
            f"the range {window} spans {window.days} days, but the longest allowed range is "
            f"{max_days} days; with start {window.start} pass an end on or before {latest_end}"
        )


def _shifted(day: date, offset: timedelta, name: str) -> date:
    try:
        return day + offset
    except OverflowError:
        raise InvalidDateRangeError(
            f"{name} {day} leaves no room for a {abs(offset.days) + 1}-day range; "
            "pass both start and end"
        ) from None
