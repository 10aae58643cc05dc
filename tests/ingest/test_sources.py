"""Reading log files: plain and gzip, and files that cannot be read to the end."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Generator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailflow.ingest import sources
from mailflow.ingest.sources import MAX_LINE_LENGTH, input_size, newest_file, read_log

LINES = [f"Jan 27 10:00:00 mx1 postfix/qmgr[50]: Q{n:05d}: removed\n" for n in range(5000)]


def read(path: Path | str) -> tuple[list[str], int, list[str]]:
    """The lines read, the count returned, and the problems reported."""
    problems: list[str] = []
    lines: list[str] = []
    count = drain(read_log(str(path), on_problem=problems.append), lines)
    return lines, count, problems


def read_long(path: Path | str) -> tuple[list[str], int, int]:
    """The lines read, the count returned, and how many lines were too long."""
    long_lines = 0

    def too_long() -> None:
        nonlocal long_lines
        long_lines += 1

    lines: list[str] = []
    count = drain(read_log(str(path), on_problem=print, on_long_line=too_long), lines)
    return lines, count, long_lines


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


def test_a_gzip_file_with_bytes_flipped_in_its_body_is_called_corrupt_never_truncated(
    tmp_path: Path, log_gz: Path
) -> None:
    data = log_gz.read_bytes()
    corrupt = tmp_path / "flipped.gz"
    problems = set()
    for position in range(20, len(data) - 8, 53):
        flipped = bytearray(data)
        flipped[position:position + 4] = bytes(byte ^ 0xFF for byte in data[position:position + 4])
        corrupt.write_bytes(bytes(flipped))

        [problem] = read(corrupt)[2]
        problems.add(problem.partition(": ")[2].partition(" (")[0])
    assert problems == {"the gzip data is corrupt"}


def test_a_gzip_block_that_runs_past_the_end_of_a_whole_file_is_called_corrupt(
    tmp_path: Path
) -> None:
    data = "".join(LINES).encode()
    deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    body = deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH)
    # A last stored block that says 65,535 bytes follow, then 3 bytes and the trailer.
    body += b"\x01\xff\xff\x00\x00abc"
    trailer = zlib.crc32(data).to_bytes(4, "little") + len(data).to_bytes(4, "little")
    corrupt = tmp_path / "block.gz"
    corrupt.write_bytes(gzip.compress(b"")[:10] + body + trailer)

    lines, count, problems = read(corrupt)

    assert (lines, count) == (LINES, len(LINES))
    assert problems == [
        f"{corrupt}: the gzip data is corrupt (a compressed block runs on into the file's "
        f"trailer) after line {len(LINES)}; the lines before it were loaded"
    ]


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


# Lines too long, NUL bytes, line ends


@pytest.mark.parametrize("compress", [False, True])
def test_a_line_longer_than_the_limit_is_skipped_and_counted_and_the_next_one_read(
    tmp_path: Path, compress: bool
) -> None:
    longest = "y" * MAX_LINE_LENGTH + "\n"
    data = (LINES[0] + "x" * (50 * 2**20) + "\n" + LINES[1] + longest
            + "z" * (MAX_LINE_LENGTH + 1) + "\n" + LINES[2]).encode()
    path = tmp_path / "mail.log"
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)

    assert read_long(path) == ([LINES[0], LINES[1], longest, LINES[2]], 6, 2)


def test_a_file_of_one_endless_line_is_one_line_too_long(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    path.write_bytes(b"x" * (50 * 2**20))

    assert read_long(path) == ([], 1, 1)


def test_nul_padding_a_crash_left_is_dropped_however_long_and_the_line_after_it_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mail.log"
    path.write_bytes(
        LINES[0].encode() + b"\0" * (50 * 2**20) + LINES[1].encode()
        + b"\0" * 1000 + LINES[2][:20].encode() + b"\0" * 1000 + LINES[2][20:].encode()
        + b"\0" * (3 * MAX_LINE_LENGTH)
    )

    assert read_long(path) == (LINES[:3], 3, 0)


def test_line_ends_are_universal_and_the_last_line_may_lack_one(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    path.write_bytes(b"a\r\nb\rc\n\r\nd\re")

    assert read_long(path) == (["a\n", "b\n", "c\n", "\n", "d\n", "e"], 6, 0)


def test_bytes_that_are_not_utf8_are_replaced(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    path.write_bytes(b"caf\xe9 \xc3\xa9\n")

    assert read_long(path) == (["caf\ufffd \u00e9\n"], 1, 0)


def test_a_modification_time_beyond_the_calendar_is_taken_as_its_nearer_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def statuses(mtime: float) -> list[tuple[str, os.stat_result]]:
        return [("mail.log", os.stat_result((0o100644, 0, 0, 1, 0, 0, 10, 0, mtime, 0)))]

    monkeypatch.setattr(sources, "_regular_files", lambda _: statuses(1e15))
    assert newest_file(["mail.log"]) == ("mail.log", datetime.max.replace(tzinfo=UTC))
    monkeypatch.setattr(sources, "_regular_files", lambda _: statuses(-1e15))
    assert newest_file(["mail.log"]) == ("mail.log", datetime.min.replace(tzinfo=UTC))
