"""Run an ingest from the command line: read, parse, classify, store, refresh, summarise.

Every log format goes through :func:`ingest_files` with its own :class:`LogParser`: a
function from the lines of the files (read as one stream) to message facts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import islice
from typing import Protocol

import asyncpg
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from mailflow.domain import MessageFact
from mailflow.ingest.canonical import MAX_REJECTIONS_LISTED, REJECTED, record_parser
from mailflow.ingest.classify import load_boundary_policy, load_classifier
from mailflow.ingest.exchange import parse_exchange
from mailflow.ingest.exim import parse_exim
from mailflow.ingest.network import BoundaryPolicy
from mailflow.ingest.parallel import load_records_in_parallel
from mailflow.ingest.pipeline import DEFAULT_BATCH_SIZE, LoadResult, load_facts
from mailflow.ingest.postfix import parse_postfix
from mailflow.ingest.report import IngestReport, plural
from mailflow.ingest.sources import (
    LINE_TOO_LONG,
    STDIN,
    display_name,
    input_size,
    newest_file,
    read_log,
)
from mailflow.ingest.window import within_window
from mailflow.store.db import database_address
from mailflow.store.isolation import owner_transaction
from mailflow.store.organizations import ensure_organization

log = logging.getLogger("mailflow.ingest")

SHOWN_REJECTIONS = 20
GUESS_LINES = 20  # lines of a file of another format read to name the command for it


class LogParser(Protocol):
    """Turns the lines of a log into message facts, counting what it reads in ``report``.

    ``reference_time`` is the modification time of the newest file (None for stdin), for
    formats whose time stamps leave something out, such as the year.
    """

    def __call__(
        self, lines: Iterable[str], *, policy: BoundaryPolicy,
        reference_time: datetime | None, report: IngestReport,
    ) -> Iterator[MessageFact]: ...


@dataclass(frozen=True)
class LogFormat:
    """A log format that ``mailflow ingest`` reads: its name for people and its parser;
    ``records`` names mailflow's own record format (whose lines parse alone), if it is one."""

    name: str
    parse: LogParser
    records: str | None = None


def postfix_format(year: int | None) -> LogFormat:
    """Postfix syslog lines; ``year`` is that of the first line when time stamps carry none."""
    return LogFormat("Postfix", partial(parse_postfix, year=year))


def exim_format() -> LogFormat:
    """Exim main log lines, whose time stamps carry the year."""
    return LogFormat("Exim", parse_exim)


def exchange_format() -> LogFormat:
    """Exchange Server message tracking logs (CSV under #Fields: header lines)."""
    return LogFormat("Exchange message tracking", parse_exchange)


def records_format(kind: str) -> LogFormat:
    """mailflow's own records, ``ndjson`` or ``csv`` (see mailflow.ingest.canonical)."""
    return LogFormat(kind.upper(), record_parser(kind), records=kind)


async def ingest_postfix_files(
    pool: asyncpg.Pool, organization: str, files: Sequence[str], *,
    year: int | None, progress: bool, batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[IngestReport, LoadResult]:
    """Load Postfix log files for an organization: :func:`ingest_files` in the Postfix format."""
    return await ingest_files(pool, organization, files, postfix_format(year),
                              progress=progress, batch_size=batch_size)


async def ingest_files(
    pool: asyncpg.Pool, organization: str, files: Sequence[str], log_format: LogFormat, *,
    progress: bool, batch_size: int = DEFAULT_BATCH_SIZE, workers: int = 1,
    shown_rejections: int = SHOWN_REJECTIONS,
) -> tuple[IngestReport, LoadResult]:
    """Load log files (read as one stream, in the order given) for an organization.

    Files of records load with ``workers`` processes when that is more than one and the
    pool was made by mailflow.store.db (see mailflow.ingest.parallel).

    A file that cannot be read to the end ends there: its problem is listed in
    ``report.problems`` (the caller should exit non-zero) and the next file is read.
    On KeyboardInterrupt, cancellation or an error, what was committed is kept and said
    so on stderr, and the exception goes on.
    """
    async with pool.acquire() as connection:
        organization_id = await ensure_organization(connection, organization)
        async with owner_transaction(connection, organization_id):
            classifier = await load_classifier(connection, organization_id)
            policy = await load_boundary_policy(connection, organization_id)

    report = IngestReport()
    newest = newest_file(files)
    committed = LoadResult()
    bar = Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TimeRemainingColumn(), disable=not progress, transient=True,
    )
    try:
        with bar:
            task = bar.add_task("ingesting", total=input_size(files))
            advance = partial(bar.advance, task)
            address = database_address(pool)
            if workers > 1 and log_format.records and address is not None:
                result = await load_records_in_parallel(
                    address, organization_id, files, log_format.records, report,
                    workers=workers, batch_size=batch_size, on_batch=committed.add,
                    advance=advance,
                )
            else:
                lines = _read_files(files, report, advance=advance,
                                    records=log_format.records is not None)
                facts = within_window(log_format.parse(
                    lines, policy=policy, reference_time=newest[1] if newest else None,
                    report=report,
                ), report)
                result = await load_facts(pool, organization_id, facts,
                                          classify=classifier.assign, batch_size=batch_size,
                                          on_batch=committed.add, read_ahead=True)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(_stopped("interrupted", committed), file=sys.stderr)
        raise
    except Exception:
        print(_stopped("stopped by an error", committed), file=sys.stderr)
        raise

    log.info(
        "ingest finished",
        extra={"organization_id": organization_id, "lines": report.lines,
               "facts": report.facts, "inserted": result.inserted,
               "duplicates": result.duplicates, "problems": len(report.problems)},
    )
    print(summary(organization, log_format, report, result, year_from=newest,
                  shown_rejections=shown_rejections), file=sys.stderr)
    return report, result


def _read_files(
    files: Sequence[str], report: IngestReport, advance: Callable[[int], None], *,
    records: bool = False,
) -> Iterator[str]:
    """The lines of each file in turn, noting reading problems and files of no known log.

    A line too long to read is counted here: the parser never sees it, unless it reads
    ``records``, which it rejects by line number (it gets LONG_LINE for each).
    """
    def long_line() -> None:
        report.lines += 1
        report.skip(LINE_TOO_LONG)

    for name in files:
        report.current_file = display_name(name)
        report.files_started += 1
        recognized = report.recognized_lines
        lines = yield from read_log(
            name, on_problem=report.problems.append, advance=advance,
            on_long_line=None if records else long_line, records=records,
        )
        # The parser has read the file's last line before asking for the next one.
        if lines and report.recognized_lines == recognized:
            report.unrecognized_files.append(display_name(name))


def summary(
    organization: str, log_format: LogFormat, report: IngestReport, result: LoadResult, *,
    year_from: tuple[str, datetime] | None, shown_rejections: int = SHOWN_REJECTIONS,
) -> str:
    """What an ingest read and stored, and what went wrong, for people (printed on stderr)."""
    lines = [
        f"{organization}: read {plural(report.lines, 'line')}, "
        f"found {plural(report.facts, 'message fact')}"
        f"{_span(report)}: {result.inserted} new, {result.duplicates} already loaded; "
        f"rollups refreshed for {len(result.touched_days)} day(s)",
    ]
    if report.skipped or report.stored_as_zero:
        lines.append(report.summary())
    if report.assumed_year is not None:
        lines.append(_assumed_year(report.assumed_year, year_from))
    lines.extend(_unrecognized(name, log_format) for name in report.unrecognized_files)
    if report.rejections:
        rejected = report.skipped[REJECTED]
        lines.append(f"{plural(rejected, 'record')} rejected:")
        listed = report.rejections[:shown_rejections]
        lines.extend(f"  {rejection}" for rejection in listed)
        if rejected > len(listed):
            more = (f" (--rejections N lists up to {MAX_REJECTIONS_LISTED:,})"
                    if len(listed) < min(rejected, MAX_REJECTIONS_LISTED) else "")
            lines.append(f"  ... and {rejected - len(listed)} more{more}")
    if report.problems:
        lines.append(f"error: {len(report.problems)} file(s) could not be read to the end:")
        lines.extend(f"  {problem}" for problem in report.problems)
    return "\n".join(lines)


def _unrecognized(name: str, log_format: LogFormat) -> str:
    """The warning for a file with lines but none of ``log_format``, naming the command
    that reads it when its first lines are of another format mailflow knows."""
    warning = f"warning: no {log_format.name} log lines found in {name}: "
    command = guess_command(name, log_format)
    if command is None:
        return warning + f"is this {_article(log_format.name)} {log_format.name} log?"
    other = _COMMANDS[command]()
    kind = f"{other.name} records" if other.records else f"{_article(other.name)} {other.name} log"
    return warning + f"it looks like {kind}: load it with `mailflow ingest {command}`"


def guess_command(name: str, log_format: LogFormat) -> str | None:
    """The ``mailflow ingest`` command of another format whose parser recognizes a line among
    the first GUESS_LINES of a file (blank lines left out: records allow them); None when
    none does, or for what is no regular file: standard input or a pipe cannot be read
    again, and opening a named pipe would wait for a writer."""
    if name == display_name(STDIN) or not os.path.isfile(name):
        return None
    reader = read_log(name, on_problem=_ignore)
    sample = [line for line in islice(reader, GUESS_LINES) if not line.isspace()]
    reader.close()
    for command, make_format in _COMMANDS.items():
        other = make_format()
        if other.name == log_format.name:
            continue
        report = IngestReport()
        for _ in other.parse(sample, policy=BoundaryPolicy(), reference_time=None,
                             report=report):
            pass
        if report.recognized_lines:
            return command
    return None


_COMMANDS: dict[str, Callable[[], LogFormat]] = {  # tried in this order
    "postfix": partial(postfix_format, None),
    "exim": exim_format,
    "exchange": exchange_format,
    "ndjson": partial(records_format, "ndjson"),
    "csv": partial(records_format, "csv"),
}


def _article(name: str) -> str:
    return "an" if name[:1] in "AEIOU" else "a"


def _ignore(_: str) -> None:
    """A problem reading a file again for a guess: the ingest has reported it already."""


def _span(report: IngestReport) -> str:
    """``" from 2021-01-27 to 2021-01-28 (UTC)"``, or nothing without facts."""
    if report.first_fact_at is None or report.last_fact_at is None:
        return ""
    first, last = report.first_fact_at.date(), report.last_fact_at.date()
    if first == last:
        return f" on {first} (UTC)"
    return f" from {first} to {last} (UTC)"


def _assumed_year(year: int, year_from: tuple[str, datetime] | None) -> str:
    if year_from is None:
        source = "the current date (standard input has no modification time)"
    else:
        name, modified = year_from
        source = f"the modification time of {name} ({modified:%Y-%m-%d})"
    return (f"note: the log's time stamps carry no year: its first line was taken to be from "
            f"{year}, going by {source}; if that is wrong, give --year")


def _stopped(why: str, committed: LoadResult) -> str:
    loaded = committed.inserted + committed.duplicates
    return (f"{why}: {loaded} facts loaded so far are kept; run the same command again "
            f"to finish (loading is idempotent)")
