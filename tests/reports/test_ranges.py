from __future__ import annotations

from datetime import date

import pytest

from mailflow.reports.errors import InvalidDateRangeError, RangeTooLongError
from mailflow.reports.ranges import DateRange, resolve_range

TODAY = date(2025, 3, 15)


def test_without_start_and_end_the_range_is_the_last_seven_days_ending_today() -> None:
    window = resolve_range(None, None, today=TODAY, max_days=90)
    assert window == DateRange(date(2025, 3, 9), TODAY)
    assert window.days == 7


def test_with_only_a_start_the_range_runs_seven_days_from_it() -> None:
    window = resolve_range(date(2025, 1, 1), None, today=TODAY, max_days=90)
    assert window == DateRange(date(2025, 1, 1), date(2025, 1, 7))


def test_with_only_an_end_the_range_runs_seven_days_up_to_it() -> None:
    window = resolve_range(None, date(2025, 1, 7), today=TODAY, max_days=90)
    assert window == DateRange(date(2025, 1, 1), date(2025, 1, 7))


def test_the_default_range_shrinks_to_the_longest_allowed_range() -> None:
    assert resolve_range(None, None, today=TODAY, max_days=3).days == 3


def test_a_single_day_is_a_range() -> None:
    window = resolve_range(TODAY, TODAY, today=TODAY, max_days=1)
    assert list(window) == [TODAY]


def test_an_end_before_the_start_names_both_dates() -> None:
    with pytest.raises(InvalidDateRangeError) as raised:
        resolve_range(date(2025, 1, 5), date(2025, 1, 1), today=TODAY, max_days=90)
    assert raised.value.code == "INVALID_DATE_RANGE"
    assert str(raised.value) == (
        "end 2025-01-01 is before start 2025-01-05; pass an end on or after 2025-01-05"
    )


def test_the_longest_allowed_range_is_accepted_and_one_day_more_is_refused() -> None:
    assert resolve_range(date(2025, 1, 1), date(2025, 3, 31), today=TODAY, max_days=90).days == 90
    with pytest.raises(RangeTooLongError) as raised:
        resolve_range(date(2025, 1, 1), date(2025, 4, 1), today=TODAY, max_days=90)
    assert raised.value.code == "RANGE_TOO_LONG"
    message = str(raised.value)
    assert "2025-01-01 to 2025-04-01 spans 91 days" in message
    assert "longest allowed range is 90 days" in message
    assert "on or before 2025-03-31" in message


def test_a_range_that_would_leave_the_calendar_is_refused() -> None:
    with pytest.raises(InvalidDateRangeError, match="pass both start and end"):
        resolve_range(None, date.min, today=TODAY, max_days=90)
