"""Read log lines from files, gzip files and standard input."""

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
) -> Generator[str, None, int]:
    """Lines of one file, gzip detected by its magic bytes, '-' stdin; returns how many.

    Bytes that are not UTF-8 are replaced rather than fatal: one bad byte in a
    log must not stop an ingest. Nor does a file that cannot be read to the end
    (truncated or corrupt gzip, permission denied, a directory): the lines
    before the problem are yielded, then ``on_problem`` gets a sentence naming
    the file and the problem, and the file ends. ``advance`` is told how many
    bytes were read.
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
        for line in io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=None):
            count += 1
            yield line
        return count
    except (OSError, EOFError, zlib.error) as error:
        on_problem(_problem(name, error, count))
        return count
    finally:
        if name != STDIN:
            raw.close()


def _problem(name: str, error: BaseException, lines: int) -> str:
    """``"mail.log.2.gz: the gzip stream is truncated after line 802; the lines ..."``."""
    if isinstance(error, EOFError):
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
    return name, datetime.fromtimestamp(status.st_mtime, UTC)


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
