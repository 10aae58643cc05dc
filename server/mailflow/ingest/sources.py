"""Read log lines from files, gzip files and standard input.

A line is at most ``MAX_LINE_LENGTH`` characters long (in a mail server's log NULs not
counted; in records its line end not counted): a longer one is skipped without being held
in memory, so a file without newlines (``/dev/zero``, a log padded with NULs after a crash)
reads in constant memory.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import sys
import zlib
from collections.abc import Callable, Generator, Sequence
from datetime import UTC, datetime
from typing import IO, BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
STDIN = "-"
# Postfix's own lines are far shorter (syslog messages are cut at a few KiB).
MAX_LINE_LENGTH = 64 * 1024  # characters, not counting the newline and NULs
LINE_TOO_LONG = "line longer than 65536 characters"
# What read_log yields for a line of records too long to read: a line holds a newline only at
# its end, so no line of a file is this.
LONG_LINE = "\n\0"
_READ_SIZE = MAX_LINE_LENGTH + 1  # a line and its newline
_RECORD_READ_SIZE = MAX_LINE_LENGTH + 2  # a line of records, and its CR LF
# How near the length in a gzip trailer is to the bytes decompressed when a block ran into it.
_TRAILER_SLACK = 1 << 20
_SMALLEST_GZIP = 18  # a header and a trailer


class CorruptBlockError(EOFError):
    """A gzip file ended inside a compressed block, yet ends with its trailer: it is whole,
    and the block is corrupt (its stated length or codes run past the end of the data)."""


class _CountingReader(io.RawIOBase):
    """Passes reads through and reports how many compressed bytes were consumed."""

    def __init__(self, raw: BinaryIO, advance: Callable[[int], None]) -> None:
        self._raw = raw
        self._advance = advance

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self._advance(len(data))
        return len(data)


def _open_binary(name: str) -> BinaryIO:
    if name == STDIN:
        return sys.stdin.buffer
    return open(name, "rb")


def display_name(name: str) -> str:
    """How a file is named to people: '-' is standard input."""
    return "standard input" if name == STDIN else name


def read_log(
    name: str,
    *,
    on_problem: Callable[[str], None],
    advance: Callable[[int], None] | None = None,
    on_long_line: Callable[[], None] | None = None,
    records: bool = False,
) -> Generator[str, None, int]:
    """Lines of one file, gzip detected by its magic bytes, '-' stdin; returns how many.

    Bytes that are not UTF-8 are replaced rather than fatal: one bad byte in a
    log must not stop an ingest. Nor does a file that cannot be read to the end
    (truncated or corrupt gzip, permission denied, a directory): the lines
    before the problem are yielded, then ``on_problem`` gets a sentence naming
    the file and the problem, and the file ends. ``advance`` is told how many
    bytes were read.

    Newlines are universal (``\\r\\n`` and ``\\r`` end a line too, and become ``\\n``).
    NUL characters are dropped, and a line left empty by that at the end of the file is
    no line. A line longer than ``MAX_LINE_LENGTH`` is read past, not yielded: it counts
    among the lines returned and ``on_long_line`` is told of it.

    Lines of ``records`` are read as ``POST /ingest`` reads them, for the record reader to
    judge: a line ends at LF alone (a CR before it stays, a CR elsewhere is part of the
    line), NULs are kept, bytes that are not UTF-8 become lone surrogates (the reader's
    "not UTF-8"), and LONG_LINE stands in for a line too long, so that the lines after it
    keep their numbers.
    """
    try:
        raw = _open_binary(name)
    except OSError as error:
        on_problem(_problem(name, error, 0))
        return 0
    count = 0
    try:
        buffered = io.BufferedReader(_CountingReader(raw, advance or _ignore), 1 << 16)
        stream: IO[bytes] | gzip.GzipFile = buffered
        if buffered.peek(2)[:2] == GZIP_MAGIC:
            stream = gzip.GzipFile(fileobj=buffered)
        if records:
            readline = io.TextIOWrapper(
                stream, encoding="utf-8", errors="surrogateescape", newline="\n"
            ).readline
            while line := readline(_RECORD_READ_SIZE):  # bounded, as below
                count += 1
                yield _record_line(line, readline) if len(line) > MAX_LINE_LENGTH else line
            return count
        readline = io.TextIOWrapper(
            stream, encoding="utf-8", errors="replace", newline=None
        ).readline
        while line := readline(_READ_SIZE):  # bounded: a line never has to fit in memory
            if line[-1:] != "\n" or "\0" in line:
                whole = _rest_of_line(line, readline)
                if whole is None:
                    count += 1
                    if on_long_line is not None:
                        on_long_line()
                    continue
                if not whole:
                    continue
                line = whole
            count += 1
            yield line
        return count
    except (OSError, EOFError, zlib.error) as error:
        if isinstance(error, EOFError) and _ends_with_trailer(raw, stream):
            error = CorruptBlockError()
        on_problem(_problem(name, error, count))
        return count
    finally:
        if name != STDIN:
            raw.close()


def _record_line(start: str, readline: Callable[[int], str]) -> str:
    """The line of records begun by ``start``, or LONG_LINE for one too long, read to its end
    in pieces that are not kept."""
    if start[-1:] != "\n" and len(start) == _RECORD_READ_SIZE:  # the line goes on
        while (rest := readline(_RECORD_READ_SIZE)) and rest[-1:] != "\n":
            pass
        return LONG_LINE
    ending = 2 if start[-2:] == "\r\n" else 1 if start[-1:] == "\n" else 0
    return LONG_LINE if len(start) - ending > MAX_LINE_LENGTH else start


def _rest_of_line(start: str, readline: Callable[[int], str]) -> str | None:
    """The line begun by ``start``, without NULs; None when it is too long.

    A line too long is read to its end in pieces that are not kept, so memory stays
    bounded however long it is (``/dev/zero``, a crash's NUL padding).
    """
    line = start.replace("\0", "")
    while line[-1:] != "\n" and len(line) <= MAX_LINE_LENGTH:
        more = readline(_READ_SIZE - len(line))
        if not more:  # the end of the file
            return line
        line += more.replace("\0", "")
    if line[-1:] == "\n":
        return line
    while (rest := readline(_READ_SIZE)) and rest[-1:] != "\n":
        pass
    return None


def _ends_with_trailer(raw: BinaryIO, stream: IO[bytes] | gzip.GzipFile) -> bool:
    """Whether a gzip file that ended before its end-of-stream marker ends with a trailer.

    Python's gzip says the same (EOFError) for a file cut short and for a corrupt block that
    runs on to the end of the file. The last four bytes tell them apart: a whole file's give
    the length of its data (modulo 2**32), near what was decompressed before the end; a cut
    file's are compressed data, within _TRAILER_SLACK of it once in about 2,000 by chance.
    Of a file of several gzip members, only the last one's length is there: one cut short
    or corrupt is called truncated.
    """
    if not isinstance(stream, gzip.GzipFile):
        return False
    try:
        if not raw.seekable() or raw.seek(0, os.SEEK_END) < _SMALLEST_GZIP:
            return False
        raw.seek(-4, os.SEEK_END)
        length = int.from_bytes(raw.read(4), "little")
        decompressed = stream.tell()
    except (OSError, ValueError):
        return False
    gap = (decompressed - length) % (1 << 32)
    return min(gap, (1 << 32) - gap) <= _TRAILER_SLACK


def _problem(name: str, error: BaseException, lines: int) -> str:
    """``"mail.log.2.gz: the gzip stream is truncated after line 802; the lines ..."``."""
    if isinstance(error, CorruptBlockError):
        what = "the gzip data is corrupt (a compressed block runs on into the file's trailer)"
    elif isinstance(error, EOFError):
        what = "the gzip stream is truncated"
    elif isinstance(error, gzip.BadGzipFile | zlib.error):
        what = f"the gzip data is corrupt ({error})"
    elif isinstance(error, IsADirectoryError):
        what = "is a directory, not a log file"
    elif isinstance(error, PermissionError):
        what = "permission denied"
    elif isinstance(error, FileNotFoundError):
        what = "no such file"
    else:
        what = f"cannot be read ({getattr(error, 'strerror', None) or error})"
    if lines:
        return f"{display_name(name)}: {what} after line {lines}; the lines before it were loaded"
    return f"{display_name(name)}: {what}; nothing was loaded from it"


def _ignore(_: int) -> None:
    """Progress goes nowhere."""


def input_size(names: Sequence[str]) -> int | None:
    """Total bytes of the named regular files, or None when one is stdin."""
    if STDIN in names:
        return None
    return sum(status.st_size for _, status in _regular_files(names))


def newest_file(names: Sequence[str]) -> tuple[str, datetime] | None:
    """The file that changed last and when: the year guess for syslog; None for stdin only."""
    files = list(_regular_files(names))
    if not files:
        return None
    name, status = max(files, key=lambda file: file[1].st_mtime)
    try:
        return name, datetime.fromtimestamp(status.st_mtime, UTC)
    except (OverflowError, ValueError, OSError):  # beyond the years 1 to 9999: the nearer end
        return name, (datetime.max if status.st_mtime > 0 else datetime.min).replace(tzinfo=UTC)


def _regular_files(names: Sequence[str]) -> Generator[tuple[str, os.stat_result], None, None]:
    """The named files that are regular files, with their status; others are read later."""
    for name in names:
        if name == STDIN:
            continue
        try:
            status = os.stat(name)
        except OSError:
            continue
        if stat.S_ISREG(status.st_mode):
            yield name, status
