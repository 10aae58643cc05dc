"""Insights: findings about a connector's TLS use over a window, against thresholds."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from mailflow.domain import Connector, TlsVersion
from mailflow.reports.errors import InvalidThresholdError
from mailflow.reports.queries import DailyTotal
from mailflow.reports.ranges import DateRange

DEFAULT_NO_TLS_THRESHOLD = 25.0
DEFAULT_TLS1_0_THRESHOLD = 50.0


class InsightKind(enum.Enum):
    """What an insight found."""

    NO_TLS_OVER_THRESHOLD = "NO_TLS_OVER_THRESHOLD"
    TLS1_0_OVER_THRESHOLD = "TLS1_0_OVER_THRESHOLD"


WATCHED_VERSIONS = {
    InsightKind.NO_TLS_OVER_THRESHOLD: TlsVersion.NONE,
    InsightKind.TLS1_0_OVER_THRESHOLD: TlsVersion.TLS1_0,
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The percent of a connector's messages above which each insight fires."""

    no_tls: float = DEFAULT_NO_TLS_THRESHOLD
    tls1_0: float = DEFAULT_TLS1_0_THRESHOLD

    def of(self, kind: InsightKind) -> float:
        """The threshold of ``kind``."""
        if kind is InsightKind.NO_TLS_OVER_THRESHOLD:
            return self.no_tls
        return self.tls1_0


@dataclass(frozen=True, slots=True)
class Insight:
    """A finding about ``connector`` over ``window``: ``value`` percent exceeded ``threshold``."""

    kind: InsightKind
    connector: Connector
    value: float
    threshold: float
    messages: int
    window: DateRange


def check_threshold(name: str, value: float) -> float:
    """``value`` when it is a percent from 0 to 100; otherwise InvalidThresholdError naming it."""
    if not 0 <= value <= 100:
        raise InvalidThresholdError(
            f"{name} {value} is not a percent; pass a number from 0 to 100"
        )
    return value


def connector_insights(
    connector: Connector,
    totals: Iterable[DailyTotal],
    window: DateRange,
    thresholds: Thresholds,
) -> list[Insight]:
    """The insights that fire for ``connector``: each watched share strictly above its threshold.

    Shares are compared exactly, as fractions, so a share equal to its threshold never fires.
    A connector without mail in the window has no insights.
    """
    messages = dict.fromkeys(TlsVersion, 0)
    for total in totals:
        messages[total.tls_version] += total.messages
    all_messages = sum(messages.values())
    if all_messages == 0:
        return []

    insights = []
    for kind, version in WATCHED_VERSIONS.items():
        share = Fraction(messages[version] * 100, all_messages)
        threshold = thresholds.of(kind)
        if share > Fraction(threshold):
            insights.append(
                Insight(kind, connector, float(share), threshold, all_messages, window)
            )
    return insights
