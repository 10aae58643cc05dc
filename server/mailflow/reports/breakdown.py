"""TLS breakdowns: how many messages used each TLS version, and what share of the total."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailflow.domain import TlsVersion
from mailflow.reports.percentages import one_decimal_percents
from mailflow.reports.queries import DailyTotal


@dataclass(frozen=True, slots=True)
class TlsShare:
    """The messages of one TLS version and their percent of all messages (None without mail)."""

    version: TlsVersion
    messages: int
    percent: float | None


@dataclass(frozen=True, slots=True)
class TlsBreakdown:
    """All messages, and one share per TLS version in enum order; the percents add up to 100.0."""

    total: int
    shares: tuple[TlsShare, ...]


def tls_breakdown(totals: Iterable[DailyTotal]) -> TlsBreakdown:
    """The breakdown of ``totals`` over every TLS version, zeros included."""
    messages = dict.fromkeys(TlsVersion, 0)
    for total in totals:
        messages[total.tls_version] += total.messages

    percents = one_decimal_percents(list(messages.values()))
    shares = tuple(
        TlsShare(version, count, percent)
        for (version, count), percent in zip(messages.items(), percents, strict=True)
    )
    return TlsBreakdown(total=sum(messages.values()), shares=shares)
