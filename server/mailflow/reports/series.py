"""Mail flow as a time series: one point per UTC day of a range, zeros included."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from mailflow.domain import TlsVersion
from mailflow.reports.queries import DailyTotal
from mailflow.reports.ranges import DateRange


@dataclass(frozen=True, slots=True)
class MailFlowPoint:
    """The boundary mail of one UTC day, and its messages per TLS version in enum order."""

    day: date
    messages: int
    recipients: int
    bytes: int
    messages_by_tls: tuple[tuple[TlsVersion, int], ...]


def daily_series(totals: Iterable[DailyTotal], window: DateRange) -> list[MailFlowPoint]:
    """One point per day of ``window``; days without mail are zeros, totals outside are ignored."""
    by_day: dict[date, list[DailyTotal]] = {day: [] for day in window}
    for total in totals:
        if total.day in by_day:
            by_day[total.day].append(total)
    return [_point(day, day_totals) for day, day_totals in by_day.items()]


def _point(day: date, totals: list[DailyTotal]) -> MailFlowPoint:
    by_tls = dict.fromkeys(TlsVersion, 0)
    for total in totals:
        by_tls[total.tls_version] += total.messages
    return MailFlowPoint(
        day=day,
        messages=sum(total.messages for total in totals),
        recipients=sum(total.recipients for total in totals),
        bytes=sum(total.bytes for total in totals),
        messages_by_tls=tuple(by_tls.items()),
    )


@dataclass(frozen=True, slots=True)
class MailFlowColumns:
    """The same series as lists with one item per day of the range: the days, their figures,
    and each TLS version's messages, in enum order."""

    days: list[date]
    messages: list[int]
    recipients: list[int]
    bytes: list[int]
    messages_by_tls: tuple[tuple[TlsVersion, list[int]], ...]


def daily_columns(totals: Iterable[DailyTotal], window: DateRange) -> MailFlowColumns:
    """:func:`daily_series` as columns, summed in one pass over ``totals``."""
    days = list(window)
    index = {day: position for position, day in enumerate(days)}
    messages, recipients, size = [0] * len(days), [0] * len(days), [0] * len(days)
    by_tls = {version: [0] * len(days) for version in TlsVersion}
    for total in totals:
        position = index.get(total.day)
        if position is None:
            continue
        messages[position] += total.messages
        recipients[position] += total.recipients
        size[position] += total.bytes
        by_tls[total.tls_version][position] += total.messages
    return MailFlowColumns(days, messages, recipients, size, tuple(by_tls.items()))
