"""Load files of records with several processes, each parsing and storing batches of its own.

Records stand alone, unlike the lines of a mail server's log, so a batch of record lines
parses without the lines before it. This process reads the files and cuts them into batches
of lines; worker processes parse, classify and store each batch in a transaction of their
own, on a connection of their own, as :func:`mailflow.ingest.pipeline.load_batch` does in one
process. Parsing then runs on every core while PostgreSQL stores. Each batch commits its
facts with their rollups, so an interrupted load keeps whole batches, and loading again
stores the rest.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime

import asyncpg

from mailflow.ingest.canonical import (
    BYTE_ORDER_MARK,
    MAX_REJECTIONS_LISTED,
    Rejection,
    parse_records,
)
from mailflow.ingest.classify import Classifier, load_classifier
from mailflow.ingest.pipeline import LoadResult, load_batch
from mailflow.ingest.report import IngestReport
from mailflow.ingest.sources import LONG_LINE, STDIN, display_name, input_size, read_log
from mailflow.store.db import DatabaseAddress
from mailflow.store.facts import StoreResult
from mailflow.store.isolation import owner_transaction

# Below this much input, starting the workers (about a second) costs more than they save.
PARALLEL_MIN_BYTES = 32 << 20
MAX_AUTOMATIC_WORKERS = 4
_PR_SET_PDEATHSIG = 1  # prctl(2): a signal for the process when its parent ends


def worker_count(requested: int, files: Sequence[str]) -> int:
    """How many worker processes load ``files``: ``requested``, or when it is 0, one per
    usable core (at most MAX_AUTOMATIC_WORKERS) for input large enough to gain from them.
    One means no worker: the records load in this process."""
    if requested > 0:
        return requested
    size = input_size(files)
    if STDIN in files or size is None or size < PARALLEL_MIN_BYTES:
        return 1
    return min(len(os.sched_getaffinity(0)), MAX_AUTOMATIC_WORKERS)


@dataclass(frozen=True)
class Chunk:
    """A batch of lines of one file (its place in the list, from 1), from line ``first_line``
    on; ``header`` is the file's CSV header line when the batch starts below it."""

    file: int
    first_line: int
    header: str | None
    lines: list[str]


@dataclass
class ChunkOutcome:
    """What a worker read in a chunk and stored of it."""

    file: int
    lines: int
    facts: int
    recognized_lines: int
    skipped: dict[str, int]
    first_fact_at: datetime | None
    last_fact_at: datetime | None
    rejections: list[tuple[int, str]]
    inserted: int
    duplicates: int
    touched_days: set[date] = field(default_factory=set)

    def stored(self) -> StoreResult:
        return StoreResult(self.inserted, self.duplicates, self.touched_days)


async def load_records_in_parallel(
    address: DatabaseAddress, organization_id: int, files: Sequence[str], kind: str,
    report: IngestReport, *, workers: int, batch_size: int,
    on_batch: Callable[[StoreResult], None], advance: Callable[[int], None],
) -> LoadResult:
    """Load record files (``kind`` ``ndjson`` or ``csv``) with ``workers`` processes, counting
    what they read in ``report`` as one process would, and ``on_batch`` each stored batch."""
    result = LoadResult()
    names = [display_name(name) for name in files]
    lines_of: collections.Counter[int] = collections.Counter()
    recognized_of: collections.Counter[int] = collections.Counter()

    def merge(outcome: ChunkOutcome) -> None:
        stored = outcome.stored()
        result.add(stored)
        on_batch(stored)
        _add_to_report(report, outcome, names[outcome.file - 1])
        recognized_of[outcome.file] += outcome.recognized_lines

    executor = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker, initargs=(address, organization_id, kind, os.getpid()),
    )
    pending: collections.deque[Future[ChunkOutcome]] = collections.deque()
    try:
        for number, chunk in enumerate(_chunks(files, kind, report, batch_size, advance)):
            lines_of[chunk.file] += len(chunk.lines)
            # The first submissions start the workers: they start ignoring Ctrl-C.
            with _ctrl_c_ignored() if number < workers else contextlib.nullcontext():
                pending.append(executor.submit(_store_chunk, chunk))
            if len(pending) > workers:  # a batch for each worker, and one read ahead
                merge(await _next_outcome(pending))
        while pending:
            merge(await _next_outcome(pending))
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        _count_begun(pending, merge)
        raise
    executor.shutdown()

    report.unrecognized_files.extend(
        names[file - 1] for file in sorted(lines_of) if not recognized_of[file]
    )
    return result


@contextlib.contextmanager
def _ctrl_c_ignored() -> Iterator[None]:
    """SIGINT ignored while worker processes are started: they inherit it so, and ignore
    Ctrl-C from their first instruction, not only once their initializer has run (until then
    an interruption printed each one's traceback). A Ctrl-C in these milliseconds is lost."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; a load there is not interrupted so
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


async def _next_outcome(pending: collections.deque[Future[ChunkOutcome]]) -> ChunkOutcome:
    """The outcome of the oldest batch, taken from ``pending`` once it is there: a batch
    awaited when the load is interrupted stays pending, to be counted by _count_begun."""
    outcome = await asyncio.wrap_future(pending[0])
    pending.popleft()
    return outcome


def _count_begun(
    pending: collections.deque[Future[ChunkOutcome]], merge: Callable[[ChunkOutcome], None]
) -> None:
    """Wait for the batches that workers have begun and count what they stored, after an
    interruption or an error: a worker commits its batch whatever happens here, so only then
    is what is said to be kept what is. Batches not begun were cancelled; a batch that failed
    stored nothing; an interruption while waiting (a second Ctrl-C) stops the wait."""
    for future in pending:
        if future.cancelled():
            continue
        try:
            outcome = future.result()
        except Exception:  # its transaction was rolled back, or its worker died
            continue
        merge(outcome)


def _chunks(
    files: Sequence[str], kind: str, report: IngestReport, size: int,
    advance: Callable[[int], None],
) -> Iterator[Chunk]:
    """The lines of each file in turn, in chunks of ``size``, LONG_LINE for each line too
    long to read; reading problems are noted in ``report`` here."""
    for file, name in enumerate(files, 1):
        report.current_file = display_name(name)
        report.files_started += 1
        header: str | None = None
        chunk = Chunk(file, 1, None, [])
        lines = read_log(name, on_problem=report.problems.append, advance=advance,
                         records=True)
        for number, line in enumerate(lines, 1):
            if kind == "csv" and header is None:
                text = line.removeprefix(BYTE_ORDER_MARK) if number == 1 else line
                if text.strip() and line != LONG_LINE:  # the first record line names the columns
                    header = text
            chunk.lines.append(line)
            if len(chunk.lines) == size:
                yield chunk
                chunk = Chunk(file, number + 1, header, [])
        if chunk.lines:
            yield chunk


def _add_to_report(report: IngestReport, outcome: ChunkOutcome, file_name: str) -> None:
    report.lines += outcome.lines
    report.facts += outcome.facts
    report.recognized_lines += outcome.recognized_lines
    report.skipped.update(outcome.skipped)
    if outcome.first_fact_at is not None and (
        report.first_fact_at is None or outcome.first_fact_at < report.first_fact_at
    ):
        report.first_fact_at = outcome.first_fact_at
    if outcome.last_fact_at is not None and (
        report.last_fact_at is None or outcome.last_fact_at > report.last_fact_at
    ):
        report.last_fact_at = outcome.last_fact_at
    for line, reason in outcome.rejections:
        if len(report.rejections) >= MAX_REJECTIONS_LISTED:
            break
        report.rejections.append(f"{file_name}, line {line}: {reason}")


# the worker processes


class _Worker:
    """A worker's connection and classifier, kept from one chunk to the next."""

    def __init__(self, address: DatabaseAddress, organization_id: int, kind: str) -> None:
        self.organization_id = organization_id
        self.kind = kind
        self.loop = asyncio.new_event_loop()
        self.connection: asyncpg.Connection = self.loop.run_until_complete(address.connect())
        self.classifier: Classifier = self.loop.run_until_complete(self._classifier())

    async def _classifier(self) -> Classifier:
        async with owner_transaction(self.connection, self.organization_id):
            return await load_classifier(self.connection, self.organization_id)

    def store(self, chunk: Chunk) -> ChunkOutcome:
        return self.loop.run_until_complete(self._store(chunk))

    async def _store(self, chunk: Chunk) -> ChunkOutcome:
        report = IngestReport()
        rejections: list[tuple[int, str]] = []

        def note(rejection: Rejection) -> None:
            if len(rejections) < MAX_REJECTIONS_LISTED:
                rejections.append((rejection.line, rejection.reason))

        # A record's time is checked against the window as it is read: within_window, which
        # every other parser's facts pass, would find nothing more to take out.
        facts = parse_records(chunk.lines, self.kind, report, note,
                              first_line=chunk.first_line, header=chunk.header)
        assign = self.classifier.assign
        stored = await load_batch(self.connection, self.organization_id,
                                  [assign(fact) for fact in facts])
        return ChunkOutcome(
            file=chunk.file, lines=report.lines, facts=report.facts,
            recognized_lines=report.recognized_lines, skipped=dict(report.skipped),
            first_fact_at=report.first_fact_at, last_fact_at=report.last_fact_at,
            rejections=rejections, inserted=stored.inserted, duplicates=stored.duplicates,
            touched_days=stored.touched_days,
        )


_worker: _Worker | None = None


def _start_worker(
    address: DatabaseAddress, organization_id: int, kind: str, parent: int
) -> None:
    """Make this worker process's connection; the process ends with ``parent``, the one that
    started it, and leaves interrupting (Ctrl-C reaches the whole process group) to it."""
    global _worker
    with contextlib.suppress(OSError, AttributeError):  # Linux only; elsewhere a best effort
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        # The parent ended while this process was starting, before it could be told to end
        # with it: nothing will send it work, nor end it (it holds its queue's other end).
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker = _Worker(address, organization_id, kind)
    # What the worker holds from now on lives for a batch, and reference counting frees it
    # when the batch ends: the collector runs once after each batch, not hundreds of times
    # within one, and never looks through the modules and connection it started with.
    gc.freeze()
    gc.disable()


def _store_chunk(chunk: Chunk) -> ChunkOutcome:
    assert _worker is not None, "a worker process stores chunks after _start_worker"
    try:
        return _worker.store(chunk)
    finally:
        gc.collect()
