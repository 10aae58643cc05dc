from __future__ import annotations

from datetime import date

import pytest

from mailflow.domain import Connector, ConnectorKind, Direction, TlsVersion
from mailflow.reports.breakdown import tls_breakdown
from mailflow.reports.errors import InvalidThresholdError
from mailflow.reports.insights import InsightKind, Thresholds, check_threshold, connector_insights
from mailflow.reports.queries import DailyTotal
from mailflow.reports.ranges import DateRange
from mailflow.reports.series import daily_series

WINDOW = DateRange(date(2025, 1, 1), date(2025, 1, 3))
PARTNER = Connector(1, "Partner", Direction.INBOUND, ConnectorKind.PARTNER)


def total(day: int, version: TlsVersion, messages: int) -> DailyTotal:
    return DailyTotal(date(2025, 1, day), version, messages, messages * 2, messages * 100)


def test_the_series_has_one_point_per_day_with_zeros_and_every_tls_version() -> None:
    points = daily_series([total(2, TlsVersion.TLS1_3, 5), total(2, TlsVersion.NONE, 1)], WINDOW)

    assert [point.day for point in points] == [date(2025, 1, d) for d in (1, 2, 3)]
    assert [point.messages for point in points] == [0, 6, 0]
    assert points[1].recipients == 12
    assert points[1].bytes == 600
    assert [version for version, _ in points[0].messages_by_tls] == list(TlsVersion)
    assert dict(points[1].messages_by_tls)[TlsVersion.TLS1_3] == 5


def test_totals_outside_the_window_are_left_out_of_the_series() -> None:
    points = daily_series([total(9, TlsVersion.TLS1_2, 5)], WINDOW)
    assert sum(point.messages for point in points) == 0


def test_a_breakdown_lists_every_version_in_enum_order_with_percents_of_the_total() -> None:
    report = tls_breakdown([total(1, TlsVersion.TLS1_2, 2), total(2, TlsVersion.TLS1_2, 1)])
    assert report.total == 3
    assert [share.version for share in report.shares] == list(TlsVersion)
    assert [share.percent for share in report.shares] == [0.0, 0.0, 0.0, 100.0, 0.0, 0.0]


def test_a_breakdown_without_mail_has_null_percents() -> None:
    report = tls_breakdown([])
    assert report.total == 0
    assert all(share.percent is None for share in report.shares)


def test_an_insight_fires_only_strictly_above_its_threshold() -> None:
    at_threshold = [total(1, TlsVersion.NONE, 1), total(1, TlsVersion.TLS1_2, 3)]  # 25% no TLS
    assert connector_insights(PARTNER, at_threshold, WINDOW, Thresholds()) == []

    above = [*at_threshold, total(2, TlsVersion.NONE, 1)]  # 2 of 5: 40%
    (insight,) = connector_insights(PARTNER, above, WINDOW, Thresholds())
    assert insight.kind is InsightKind.NO_TLS_OVER_THRESHOLD
    assert insight.value == 40.0
    assert insight.threshold == 25.0
    assert insight.messages == 5
    assert insight.window == WINDOW


def test_a_share_a_hair_above_its_threshold_fires() -> None:
    # 1 of 3 is 33.33…%; as a float threshold 33.333333333333336 is above it, 33.3333 below.
    totals = [total(1, TlsVersion.TLS1_0, 1), total(1, TlsVersion.TLS1_3, 2)]
    assert connector_insights(PARTNER, totals, WINDOW, Thresholds(tls1_0=100 / 3)) == []
    fired = connector_insights(PARTNER, totals, WINDOW, Thresholds(tls1_0=33.3333))
    assert [insight.kind for insight in fired] == [InsightKind.TLS1_0_OVER_THRESHOLD]


def test_a_connector_without_mail_has_no_insights() -> None:
    assert connector_insights(PARTNER, [], WINDOW, Thresholds(no_tls=0, tls1_0=0)) == []


@pytest.mark.parametrize("value", [-0.1, 100.5, float("nan"), float("inf")])
def test_thresholds_outside_zero_to_a_hundred_are_refused(value: float) -> None:
    with pytest.raises(InvalidThresholdError, match=r"noTlsThreshold .* is not a percent"):
        check_threshold("noTlsThreshold", value)
