"""Reading log files: plain and gzip, and files that cannot be read to the end."""

from __future__ import annotations

import gzip
import os
from collections.abc import Generator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailflow.ingest.sources import input_size, newest_file, read_log

LINES = [f"Jan 27 10:00:00 mx1 postfix/qmgr[50]: Q{n:05d}: removed\n" for n in range(5000)]


def read(path: Path | str) -> tuple[list[str], int, list[str]]:
    """The lines read, the count returned, and the problems reported."""
    problems: list[str] = []
    lines: list[str] = []
    count = drain(read_log(str(path), on_problem=problems.append), lines)
    return lines, count, problems


def drain(reader: Generator[str, None, int], lines: list[str]) -> int:
    while True:
        try:
            lines.append(next(reader))
        except StopIteration as end:
            count: int = end.value
            return count


@pytest.fixture
def log_gz(tmp_path: Path) -> Path:
    path = tmp_path / "mail.log.2.gz"
    path.write_bytes(gzip.compress("".join(LINES).encode()))
    return path


def test_plain_and_gzip_files_give_the_same_lines_and_count(tmp_path: Path, log_gz: Path) -> None:
    plain = tmp_path / "mail.log"
    plain.write_text("".join(LINES))

    assert read(plain) == read(log_gz) == (LINES, len(LINES), [])


def test_a_truncated_gzip_gives_the_lines_before_the_cut_and_names_file_and_problem(
    tmp_path: Path, log_gz: Path
) -> None:
    truncated = tmp_path / "cut.gz"
    truncated.write_bytes(log_gz.read_bytes()[: log_gz.stat().st_size // 2])

    lines, count, problems = read(truncated)

    assert 0 < count < len(LINES)
    assert lines == LINES[:count]
    assert problems == [
        f"{truncated}: the gzip stream is truncated after line {count}; "
        "the lines before it were loaded"
    ]


def test_a_gzip_file_with_only_its_header_says_nothing_was_loaded(
    tmp_path: Path, log_gz: Path
) -> None:
    header = tmp_path / "header.gz"
    header.write_bytes(log_gz.read_bytes()[:10])

    assert read(header) == (
        [], 0, [f"{header}: the gzip stream is truncated; nothing was loaded from it"]
    )


def test_a_gzip_file_failing_its_checksum_is_called_corrupt_after_its_lines(
    tmp_path: Path, log_gz: Path
) -> None:
    data = bytearray(log_gz.read_bytes())
    data[-6] ^= 0xFF  # in the CRC-32 of the trailer
    corrupt = tmp_path / "crc.gz"
    corrupt.write_bytes(bytes(data))

    lines, count, [problem] = read(corrupt)

    assert (lines, count) == (LINES, len(LINES))
    assert problem.startswith(f"{corrupt}: the gzip data is corrupt (CRC check failed")
    assert problem.endswith(f"after line {len(LINES)}; the lines before it were loaded")


def test_a_directory_or_a_missing_file_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    assert read(tmp_path) == (
        [], 0, [f"{tmp_path}: is a directory, not a log file; nothing was loaded from it"]
    )
    assert read(tmp_path / "gone.log")[2] == [
        f"{tmp_path / 'gone.log'}: no such file; nothing was loaded from it"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_without_read_permission_is_a_problem(tmp_path: Path) -> None:
    locked = tmp_path / "mail.log"
    locked.write_text("".join(LINES))
    locked.chmod(0)

    assert read(locked)[2] == [f"{locked}: permission denied; nothing was loaded from it"]


def test_progress_is_told_the_bytes_read_from_disk(log_gz: Path) -> None:
    advanced: list[int] = []

    drain(read_log(str(log_gz), on_problem=print, advance=advanced.append), [])

    assert sum(advanced) == log_gz.stat().st_size


def test_size_and_newest_file_count_only_regular_files(tmp_path: Path, log_gz: Path) -> None:
    older = tmp_path / "mail.log.3"
    older.write_text("x" * 10)
    os.utime(older, (0, datetime(2021, 1, 1, tzinfo=UTC).timestamp()))
    os.utime(log_gz, (0, datetime(2021, 2, 1, tzinfo=UTC).timestamp()))
    names = [str(older), str(log_gz), str(tmp_path), str(tmp_path / "gone")]

    assert input_size(names) == 10 + log_gz.stat().st_size
    assert input_size([*names, "-"]) is None
    assert newest_file(names) == (str(log_gz), datetime(2021, 2, 1, tzinfo=UTC))
    assert newest_file(["-", str(tmp_path)]) is None
