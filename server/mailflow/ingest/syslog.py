"""Syslog line headers and timestamps, for parsers of MTA logs that travel through syslog.

Three line shapes are read::

    Jan 27 06:50:01 mail postfix/smtpd[25160]: message            (classic, BSD)
    2021-01-27T06:50:01.123456+01:00 mail postfix/smtpd[25160]: message   (rsyslog, ISO 8601)
    <22>1 2021-01-27T06:50:01Z mail postfix/smtpd 25160 - - message      (RFC 5424)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, UTC, datetime, timedelta

MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
CLASSIC_STAMP_LENGTH = 15  # "Jan 27 06:50:01"
_FUTURE_TOLERANCE = timedelta(days=1)


class TimestampOutOfRangeError(ValueError):
    """A timestamp that reads, but as an instant outside the years 1 to 9999 in UTC."""


def split_syslog_line(line: str) -> tuple[str, str, str, str] | None:
    """Split a line into ``(timestamp, host, tag, message)``, or None if it has no header.

    The tag is the program with its pid as logged, e.g. ``"postfix/smtpd[25160]"``
    (see :func:`program_and_pid`); the message has no trailing newline. Only the
    shape is checked here: :meth:`SyslogClock.parse` reads the timestamp.
    """
    if line[:1] == "<":
        return _split_rfc5424(line)
    if line[:1].isdigit():
        stamp_end = line.find(" ")
        if stamp_end < 0:
            return None
    else:
        stamp_end = CLASSIC_STAMP_LENGTH
        if line[stamp_end : stamp_end + 1] != " ":
            return None
    host_end = line.find(" ", stamp_end + 1)
    tag_end = line.find(": ", host_end + 1)
    if host_end < 0 or tag_end < 0:
        return None
    message = line[tag_end + 2 :]
    if message[-1:] == "\n":
        message = message.rstrip("\r\n")
    return line[:stamp_end], line[stamp_end + 1 : host_end], line[host_end + 1 : tag_end], message


def _split_rfc5424(line: str) -> tuple[str, str, str, str] | None:
    """RFC 5424 (``<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG``), or a bare ``<PRI>``."""
    pri_end = line.find(">")
    if not 1 < pri_end < 5:
        return None
    body = line[pri_end + 1 :]
    version, _, rest = body.partition(" ")
    if not (version.isdigit() and len(version) <= 2):
        return split_syslog_line(body)
    fields = rest.rstrip("\r\n").split(" ", 5)
    if len(fields) < 6:
        return None
    stamp, host, app, procid, _, data = fields
    if data.startswith("-"):
        message = data[2:]
    else:
        sd_end = data.find("] ")
        while sd_end >= 0 and data[sd_end + 2 : sd_end + 3] == "[":
            sd_end = data.find("] ", sd_end + 2)
        message = data[sd_end + 2 :] if sd_end >= 0 else ""
    tag = app if procid == "-" else f"{app}[{procid}]"
    return stamp, host, tag, message.removeprefix("\ufeff")


def program_and_pid(tag: str) -> tuple[str, str]:
    """``"postfix/smtpd[25160]"`` -> ``("postfix/smtpd", "25160")``; pid ``""`` when absent."""
    bracket = tag.find("[")
    if bracket < 0:
        return tag, ""
    return tag[:bracket], tag[bracket + 1 : -1]


@dataclass(frozen=True, slots=True)
class ClockState:
    """Where a :class:`SyslogClock` stands in the calendar, to carry it over to a later run."""

    year: int | None
    assumed_year: int | None
    reference: datetime
    month: int
    month_name: str


class SyslogClock:
    """Reads syslog timestamps as timezone-aware UTC datetimes.

    ISO 8601 timestamps carry their own year and offset and are converted to
    UTC (one without an offset is taken as UTC). Classic timestamps carry
    neither year nor zone: they are taken as UTC, and their year is inferred.
    ``year`` is the year of the first classic timestamp; without it, the first
    one belongs to the year of ``reference_time`` (when the log was last
    written, now if None) unless that would put it more than a day after
    ``reference_time``, then to the year before. After the first line the
    year follows the stream: a month more than six months before the latest
    one seen starts a new year (December -> January), and a line whose month
    is more than six months after it is a late line from the year before.

    Call :meth:`observe` with every line's timestamp, in order, so the year
    turns even where lines are not otherwise read; :meth:`parse` reads one.
    """

    def __init__(self, *, year: int | None, reference_time: datetime | None) -> None:
        self._year = year
        self._assumed_year: int | None = None
        self._reference = (reference_time or datetime.now(UTC)).astimezone(UTC)
        self._month = 0
        self._month_name = ""
        self._last_stamp: str | None = None
        self._last_value = datetime.min.replace(tzinfo=UTC)

    @classmethod
    def restored(cls, state: ClockState) -> SyslogClock:
        """A clock that goes on from where ``state`` was taken."""
        clock = cls(year=state.year, reference_time=state.reference)
        clock._assumed_year = state.assumed_year
        clock._month = state.month
        clock._month_name = state.month_name
        return clock

    def state(self) -> ClockState:
        """Where the clock stands now, for :meth:`restored`."""
        return ClockState(self._year, self._assumed_year, self._reference, self._month,
                          self._month_name)

    @property
    def assumed_year(self) -> int | None:
        """The year inferred for the first classic timestamp; None if given or none seen yet."""
        return self._assumed_year

    @property
    def month_name(self) -> str:
        """The latest month seen ("Jan"): a line of it cannot turn the year."""
        return self._month_name

    def observe(self, stamp: str) -> None:
        """Follow the calendar through one line's timestamp; cheap, never raises."""
        name = stamp[:3]
        if name == self._month_name:
            return
        month = MONTHS.get(name)
        if month is None:
            return
        if not self._month:
            self._start(stamp, month)
        elif month < self._month - 6:
            self._year = (self._year or 0) + 1
        elif month > self._month + 6 or month < self._month:
            return
        self._month = month
        self._month_name = name

    def parse(self, stamp: str) -> datetime:
        """The instant of a timestamp; ``ValueError`` when it cannot be read.

        :class:`TimestampOutOfRangeError` (a ValueError) when it reads but falls outside
        the years 1 to 9999 in UTC, e.g. a classic one after the year turned past 9999.
        """
        if stamp == self._last_stamp:
            return self._last_value
        value = _parse_iso(stamp) if stamp[:1].isdigit() else self._parse_classic(stamp)
        self._last_stamp = stamp
        self._last_value = value
        return value

    def _start(self, stamp: str, month: int) -> None:
        if self._year is not None:
            return
        year = self._reference.year
        try:
            first = _classic(stamp, year, month)
        except ValueError:
            first = datetime(year, month, 1, tzinfo=UTC)
        if first - self._reference > _FUTURE_TOLERANCE:  # a sum could pass the year 9999
            year -= 1
        self._year = self._assumed_year = year

    def _parse_classic(self, stamp: str) -> datetime:
        month = MONTHS.get(stamp[:3])
        if month is None:
            raise ValueError(f"unknown month in syslog timestamp {stamp!r}")
        self.observe(stamp)
        assert self._year is not None  # set by the first observe
        year = self._year - 1 if month > self._month + 6 else self._year
        return _classic(stamp, year, month)


def _classic(stamp: str, year: int, month: int) -> datetime:
    """``"Jan 27 06:50:01"`` (day may be space-padded) in the given year, as UTC."""
    if len(stamp) != CLASSIC_STAMP_LENGTH or stamp[3] != " " or stamp[6] != " " \
            or stamp[9] != ":" or stamp[12] != ":":
        raise ValueError(f"syslog timestamp {stamp!r} is not like 'Jan 27 06:50:01'")
    if not MINYEAR <= year <= MAXYEAR:
        raise TimestampOutOfRangeError(
            f"syslog timestamp {stamp!r} falls in the year {year}, outside the years 1 to 9999"
        )
    return datetime(
        year, month, int(stamp[4:6]), int(stamp[7:9]), int(stamp[10:12]), int(stamp[13:15]),
        tzinfo=UTC,
    )


def _parse_iso(stamp: str) -> datetime:
    value = datetime.fromisoformat(stamp)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise TimestampOutOfRangeError(
            f"syslog timestamp {stamp!r} is outside the years 1 to 9999 in UTC"
        ) from None
