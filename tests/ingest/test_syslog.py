"""Syslog line headers and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailflow.ingest.syslog import (
    SyslogClock,
    TimestampOutOfRangeError,
    program_and_pid,
    split_syslog_line,
)


def test_a_classic_line_splits_into_timestamp_host_tag_and_message() -> None:
    line = "Jan 27 06:50:01 mx1 postfix/smtpd[25160]: connect from mx.example.net[203.0.113.5]\n"

    assert split_syslog_line(line) == (
        "Jan 27 06:50:01", "mx1", "postfix/smtpd[25160]",
        "connect from mx.example.net[203.0.113.5]",
    )


def test_a_space_padded_day_keeps_the_classic_timestamp_whole() -> None:
    header = split_syslog_line("Jan  5 00:00:01 mx1 postfix/qmgr[50]: 0A1B2C3D4E: removed")

    assert header is not None
    assert header[0] == "Jan  5 00:00:01"
    assert header[3] == "0A1B2C3D4E: removed"


def test_an_iso_line_keeps_its_whole_timestamp() -> None:
    header = split_syslog_line(
        "2021-01-27T06:50:01.123456+00:00 mx1 postfix/submission/smtpd[123]: 0A1B2C3D4E: client=a"
    )

    assert header == (
        "2021-01-27T06:50:01.123456+00:00", "mx1", "postfix/submission/smtpd[123]",
        "0A1B2C3D4E: client=a",
    )


def test_an_rfc5424_line_is_read_as_the_same_header() -> None:
    plain = split_syslog_line("<22>1 2021-01-27T06:50:01Z mx1 postfix/smtpd 123 - - hello: world")
    structured = split_syslog_line(
        '<22>1 2021-01-27T06:50:01Z mx1 postfix/smtpd 123 ID7 [a b="c"][d e="f"] hello: world'
    )

    assert plain == ("2021-01-27T06:50:01Z", "mx1", "postfix/smtpd[123]", "hello: world")
    assert structured == plain


def test_a_bare_priority_before_a_classic_line_is_dropped() -> None:
    header = split_syslog_line("<22>Jan 27 06:50:01 mx1 postfix/qmgr[50]: 0A1B2C3D4E: removed")

    assert header == ("Jan 27 06:50:01", "mx1", "postfix/qmgr[50]", "0A1B2C3D4E: removed")


@pytest.mark.parametrize("line", ["", "\n", "garbage", "Jan 27 06:50:01 mx1 no tag here"])
def test_a_line_without_a_header_is_none(line: str) -> None:
    assert split_syslog_line(line) is None


def test_the_tag_splits_into_program_and_pid() -> None:
    assert program_and_pid("postfix/sender-cleanup/cleanup[27805]") == (
        "postfix/sender-cleanup/cleanup", "27805",
    )
    assert program_and_pid("dovecot") == ("dovecot", "")


def test_a_classic_timestamp_is_utc_in_the_given_year() -> None:
    clock = SyslogClock(year=2021, reference_time=None)

    assert clock.parse("Jan 27 06:50:01") == datetime(2021, 1, 27, 6, 50, 1, tzinfo=UTC)


def test_the_year_turns_when_december_is_followed_by_january() -> None:
    clock = SyslogClock(year=2020, reference_time=None)
    stamps = ["Dec 31 23:59:59", "Jan  1 00:00:01", "Feb  3 10:00:00"]

    years = [clock.parse(stamp).year for stamp in stamps]

    assert years == [2020, 2021, 2021]


def test_a_slightly_late_line_does_not_turn_the_year() -> None:
    clock = SyslogClock(year=2021, reference_time=None)

    clock.parse("Feb  1 00:00:01")
    late = clock.parse("Jan 31 23:59:59")

    assert late == datetime(2021, 1, 31, 23, 59, 59, tzinfo=UTC)
    assert clock.parse("Feb  1 00:00:02").year == 2021


def test_a_december_line_after_the_turn_belongs_to_the_year_before() -> None:
    clock = SyslogClock(year=2020, reference_time=None)

    clock.parse("Dec 31 23:59:59")
    clock.parse("Jan  1 00:00:01")

    assert clock.parse("Dec 31 23:59:58").year == 2020
    assert clock.parse("Jan  1 00:00:02").year == 2021


def test_observing_lines_that_are_not_parsed_still_turns_the_year() -> None:
    clock = SyslogClock(year=2020, reference_time=None)

    clock.observe("Dec 31 23:59:59")
    clock.observe("Jan  1 00:00:01")

    assert clock.parse("Jan  1 00:00:02").year == 2021


def test_without_a_year_the_reference_time_gives_it() -> None:
    clock = SyslogClock(year=None, reference_time=datetime(2021, 1, 29, 8, 0, tzinfo=UTC))

    assert clock.parse("Jan 27 06:50:01").year == 2021


def test_a_timestamp_more_than_a_day_after_the_reference_time_is_from_the_year_before() -> None:
    clock = SyslogClock(year=None, reference_time=datetime(2021, 1, 2, 0, 0, tzinfo=UTC))

    assert clock.parse("Dec 31 23:59:59") == datetime(2020, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert clock.parse("Jan  1 00:00:01") == datetime(2021, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_a_timestamp_within_a_day_after_the_reference_time_keeps_its_year() -> None:
    clock = SyslogClock(year=None, reference_time=datetime(2021, 1, 27, 0, 0, tzinfo=UTC))

    assert clock.parse("Jan 27 23:00:00").year == 2021


def test_iso_timestamps_are_converted_to_utc() -> None:
    clock = SyslogClock(year=1999, reference_time=None)

    assert clock.parse("2021-01-27T00:30:02.5+01:00") == datetime(
        2021, 1, 26, 23, 30, 2, 500000, tzinfo=UTC
    )
    assert clock.parse("2021-01-27T23:59:59.999Z") == datetime(
        2021, 1, 27, 23, 59, 59, 999000, tzinfo=UTC
    )
    assert clock.parse("2021-01-27T06:50:01") == datetime(2021, 1, 27, 6, 50, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stamp", "complaint"),
    [
        ("Jxn 27 06:50:01", "unknown month"),
        ("Jan 27 06:5x:01", "invalid literal"),
        ("Jan 32 06:50:01", "day is out of range"),
        ("Jan 27 6:50:01", "not like 'Jan 27 06:50:01'"),
        ("2021-13-01T00:00:00Z", "month must be in 1..12"),
        ("0001-01-01T00:30:00+01:00", "outside the years 1 to 9999 in UTC"),
        ("9999-12-31T23:30:00-01:00", "outside the years 1 to 9999 in UTC"),
    ],
)
def test_an_unreadable_timestamp_is_a_value_error(stamp: str, complaint: str) -> None:
    clock = SyslogClock(year=2021, reference_time=None)

    with pytest.raises(ValueError, match=complaint):
        clock.parse(stamp)


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"]
)
def test_an_iso_timestamp_outside_the_years_in_utc_is_out_of_range(stamp: str) -> None:
    with pytest.raises(TimestampOutOfRangeError):
        SyslogClock(year=2021, reference_time=None).parse(stamp)


def test_classic_timestamps_turning_past_the_year_9999_are_out_of_range() -> None:
    clock = SyslogClock(year=9999, reference_time=None)

    assert clock.parse("Dec 31 23:59:59") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    with pytest.raises(TimestampOutOfRangeError, match="year 10000"):
        clock.parse("Jan  1 00:00:00")


def test_a_december_line_before_the_year_1_is_out_of_range() -> None:
    clock = SyslogClock(year=1, reference_time=None)

    assert clock.parse("Jan  1 00:00:00") == datetime.min.replace(tzinfo=UTC)
    with pytest.raises(TimestampOutOfRangeError, match="year 0"):
        clock.parse("Dec 31 23:59:59")


@pytest.mark.parametrize(
    ("reference", "year"),
    [(datetime.max.replace(tzinfo=UTC), 9999), (datetime.min.replace(tzinfo=UTC), 0)],
)
def test_a_reference_time_at_the_ends_of_the_calendar_does_not_overflow(
    reference: datetime, year: int
) -> None:
    clock = SyslogClock(year=None, reference_time=reference)

    if year:
        assert clock.parse("Dec 31 23:59:59").year == year
    else:
        with pytest.raises(TimestampOutOfRangeError):
            clock.parse("Dec 31 23:59:59")  # more than a day after the reference: the year 0


def test_an_empty_timestamp_is_not_read_as_the_first_instant() -> None:
    with pytest.raises(ValueError, match="unknown month"):
        SyslogClock(year=2021, reference_time=None).parse("")


def test_the_year_inferred_for_the_first_classic_timestamp_is_known_as_assumed() -> None:
    inferred = SyslogClock(year=None, reference_time=datetime(2021, 1, 2, tzinfo=UTC))
    given = SyslogClock(year=2019, reference_time=datetime(2021, 1, 2, tzinfo=UTC))

    assert inferred.assumed_year is None
    inferred.parse("Dec 31 23:59:59")
    inferred.parse("Jan  1 00:00:01")
    given.parse("Dec 31 23:59:59")

    assert (inferred.assumed_year, given.assumed_year) == (2020, None)
