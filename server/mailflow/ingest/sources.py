"""Read log lines from files, gzip files and standard input."""

from __future__ import annotations

import gzip
import io
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
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


def read_lines(
    names: Sequence[str], advance: Callable[[int], None] | None = None
) -> Iterator[str]:
    """Lines of each named file in turn; gzip is detected by its magic bytes, '-' is stdin.

    Bytes that are not UTF-8 are replaced rather than fatal: one bad byte in a
    log must not stop an ingest. ``advance`` is told how many bytes were read.
    """
    for name in names:
        raw = _open_binary(name)
        try:
            buffered = io.BufferedReader(_CountingReader(raw, advance or _ignore), 1 << 16)
            stream: IO[bytes] | gzip.GzipFile = buffered
            if buffered.peek(2)[:2] == GZIP_MAGIC:
                stream = gzip.GzipFile(fileobj=buffered)
            yield from io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=None)
        finally:
            if name != STDIN:
                raw.close()


def _ignore(_: int) -> None:
    """Progress goes nowhere."""


def input_size(names: Sequence[str]) -> int | None:
    """Total bytes of the named files, or None when one is stdin."""
    if STDIN in names:
        return None
    return sum(Path(name).stat().st_size for name in names)


def newest_modification_time(names: Sequence[str]) -> datetime:
    """When the newest of the files last changed (now for stdin): the year guess for syslog."""
    times = [Path(name).stat().st_mtime for name in names if name != STDIN]
    if not times:
        return datetime.now(UTC)
    return datetime.fromtimestamp(max(times), UTC)
