"""Follow a Postfix log as it grows: through rotations, and from where a previous run stopped.

The resume rule: the position saved is the byte after the last line read, and with it, in the
same transaction as the facts those lines completed, the parser's state after that line (its
open messages, sessions and TLS handshakes, and the calendar). A message whose lines straddle
a restart is in that state, so no line it needs lies before the saved byte, however long it
stays open. Re-reading from an older line instead would not do: a deferred message stays
open for days, so the oldest line it needs may sit in a file rotated away long since. Should
a saved state be unreadable (a parser of another version), the next run starts afresh at the
saved byte and says that messages open at the stop may be counted without their first lines.

A file is known by its device and inode, and by a hash of its first bytes:

- rename rotation: when the path names another file, the old one is read to its end once a
  poll found nothing new in it (the last line too when it has no newline), then the new one
  from its first byte; a run that starts after a rotation finds the old file by its inode in
  the same directory (``mail.log.1``) and finishes it first;
- copytruncate: a file shorter than the position, or whose first bytes changed, is read again
  from its first byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import BinaryIO

import asyncpg

from mailflow.domain import MessageFact
from mailflow.errors import MailflowError, ParserStateError
from mailflow.ingest.classify import CurrentClassifier, load_boundary_policy
from mailflow.ingest.network import BoundaryPolicy
from mailflow.ingest.pipeline import LoadResult, load_batch
from mailflow.ingest.postfix import PostfixParser
from mailflow.ingest.report import IngestReport, plural
from mailflow.ingest.run import postfix_format, summary
from mailflow.ingest.sources import GZIP_MAGIC, LINE_TOO_LONG, MAX_LINE_LENGTH
from mailflow.ingest.window import within_window
from mailflow.store.isolation import owner_transaction
from mailflow.store.organizations import ensure_organization
from mailflow.store.positions import FollowPosition, find_position, save_position

log = logging.getLogger("mailflow.ingest")

DEFAULT_FOLLOW_BATCH = 1_000  # facts: a batch closes at this many, or after BATCH_SECONDS
BATCH_SECONDS = 1.0
POLL_SECONDS = 0.25  # a stat and a read at the end of the file: cheaper than a watcher
FINGERPRINT_BYTES = 1024
_READ_BYTES = 1 << 16
_LONGEST_LINE_BYTES = 4 * MAX_LINE_LENGTH + 2  # MAX_LINE_LENGTH characters of UTF-8


class CannotFollowError(MailflowError):
    """A file that cannot be followed, such as standard input or a gzip file."""

    code = "CANNOT_FOLLOW"


class TailedFile:
    """One open file, read in complete lines from a byte offset."""

    def __init__(self, path: str, file: BinaryIO) -> None:
        self.path = path
        self._file = file
        status = os.fstat(file.fileno())
        self.identity = (status.st_dev, status.st_ino)
        self.offset = 0  # the byte after the last line handed out
        self._buffer = bytearray()  # read, not yet a complete line
        self._skipped = 0  # bytes of a line too long, read past so far
        self._head = b""  # the first bytes, to notice copytruncate

    @classmethod
    def open(cls, path: str) -> TailedFile:
        """The file at ``path``, read from its first byte; plain text only."""
        try:
            file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        except OSError as error:
            raise CannotFollowError(
                f"cannot follow {path}: {error.strerror or error}") from None
        tailed = cls(path, file)
        if os.pread(file.fileno(), 2, 0) == GZIP_MAGIC:
            tailed.close()
            raise CannotFollowError(f"cannot follow {path}: it is gzip-compressed; "
                                    "follow the plain log that is being written")
        return tailed

    def close(self) -> None:
        self._file.close()

    def seek(self, offset: int) -> None:
        """Read on from ``offset`` (the start of a line), forgetting any partial line."""
        self._file.seek(offset)
        self.offset = offset
        self._buffer.clear()
        self._skipped = 0
        self._head = self._read_head()

    def matches(self, position: FollowPosition) -> bool:
        """Whether this is the file of ``position``, not truncated nor replaced since."""
        if os.fstat(self._file.fileno()).st_size < position.offset:
            return False
        head = os.pread(self._file.fileno(), position.fingerprint_bytes, 0)
        return (len(head) == position.fingerprint_bytes
                and hashlib.sha256(head).digest() == position.fingerprint)

    def lines(self, *, to_the_end: bool = False) -> Iterator[str | None]:
        """Each complete line available now, None for one too long; ``offset`` follows.

        ``to_the_end`` takes an unfinished last line too, for a file no one writes anymore.
        """
        while chunk := self._file.read(_READ_BYTES):
            self._buffer += chunk
            yield from self._complete_lines()
        if to_the_end and self._buffer:
            rest = bytes(self._buffer)
            self._buffer.clear()
            yield from self._line(rest)

    def _complete_lines(self) -> Iterator[str | None]:
        start = 0
        while (newline := self._buffer.find(b"\n", start)) >= 0:
            data = bytes(self._buffer[start : newline + 1])
            start = newline + 1
            if self._skipped:  # the end of a line too long, already handed out as None
                self.offset += self._skipped + len(data)
                self._skipped = 0
                continue
            yield from self._line(data)
        del self._buffer[:start]
        if len(self._buffer) > _LONGEST_LINE_BYTES or (self._skipped and self._buffer):
            if not self._skipped:
                yield None
            self._skipped += len(self._buffer)  # not kept: memory stays bounded
            self._buffer.clear()

    def _line(self, data: bytes) -> Iterator[str | None]:
        self.offset += len(data)
        if len(self._head) < FINGERPRINT_BYTES:
            self._head = self._read_head()
        text = data.decode("utf-8", errors="replace").replace("\0", "")
        if len(text.rstrip("\r\n")) > MAX_LINE_LENGTH:
            yield None
        elif text:
            yield text

    def _read_head(self) -> bytes:
        return os.pread(self._file.fileno(), min(self.offset, FINGERPRINT_BYTES), 0)

    def rotated(self) -> bool:
        """Whether the path names another file now (a new file after a rename rotation)."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return False  # renamed, the new file not created yet: keep reading the old one
        return (status.st_dev, status.st_ino) != self.identity

    def truncated(self) -> bool:
        """Whether the file is shorter than what was read, or begins with other bytes."""
        size = os.fstat(self._file.fileno()).st_size
        return size < self.offset or self._read_head() != self._head

    def position(self, parser_state: dict[str, object]) -> FollowPosition:
        """Where reading stands, with the parser's state after the last line read."""
        return FollowPosition(
            device=self.identity[0], inode=self.identity[1], offset=self.offset,
            fingerprint=hashlib.sha256(self._head).digest(), fingerprint_bytes=len(self._head),
            parser_state=parser_state,
        )


@dataclass
class _Follower:
    """Reads one followed path line by line and commits facts with the position they end at."""

    pool: asyncpg.Pool
    organization_id: int
    path: str
    file: TailedFile
    parser: PostfixParser
    classifier: CurrentClassifier
    report: IngestReport
    batch_size: int
    committed: LoadResult
    pending: list[MessageFact]
    batch_started: float | None = None  # when the first line of the open batch was read

    async def run(self, stop: asyncio.Event) -> None:
        """Read until ``stop`` is set, then commit what was read."""
        while not stop.is_set():
            quiet = not await self._read(stop)
            if stop.is_set():
                break
            if self.file.truncated():
                _warn(f"{self.path} was truncated (copytruncate): reading it from the start")
                self.file.seek(0)
                self._started()
                continue
            # The writer may go on in the old file until it reopens the path: wait for a poll
            # without new lines in it, then read it to the end and take the new file.
            if quiet and self.file.rotated():
                await self._read(stop, to_the_end=True)
                self._switch()
                continue
            if self._batch_age() >= BATCH_SECONDS:
                await self.commit()
            await _wait(stop, POLL_SECONDS)
        await self.commit()

    async def _read(self, stop: asyncio.Event, *, to_the_end: bool = False) -> int:
        """Feed the lines there are now to the parser, committing full batches; how many."""
        count = 0
        for line in self.file.lines(to_the_end=to_the_end):
            count += 1
            self._started()
            if line is None:
                self.report.lines += 1
                self.report.skip(LINE_TOO_LONG)
            else:
                facts = within_window(self.parser.feed(line), self.report)
                self.pending.extend(self.classifier.assign(fact) for fact in facts)
            if len(self.pending) >= self.batch_size or self._batch_age() >= BATCH_SECONDS:
                await self.commit()
            if stop.is_set():
                break
        return count

    def _switch(self) -> None:
        """Go on with the new file at the path, from its first byte."""
        try:
            new = TailedFile.open(self.path)
        except CannotFollowError:
            return  # replaced again in between, or unreadable for now: try at the next poll
        log.info("the followed file was rotated: reading the new one from the start",
                 extra={"path": self.path, "offset": self.file.offset})
        self.file.close()
        self.file = new
        self._started()

    def _started(self) -> None:
        if self.batch_started is None:
            self.batch_started = time.monotonic()

    def _batch_age(self) -> float:
        return 0.0 if self.batch_started is None else time.monotonic() - self.batch_started

    async def commit(self) -> None:
        """Store the facts read and the position after them, in one transaction."""
        if self.batch_started is None:
            return
        position = self.file.position(self.parser.state())
        async with self.pool.acquire() as connection:
            # Connectors changed while the batch was read (by `org apply` or the API): the
            # facts not stored yet take the rules as they are now.
            async with owner_transaction(connection, self.organization_id):
                changed = await self.classifier.refresh(connection)
            if changed:
                self.pending = [self.classifier.assign(fact) for fact in self.pending]
            stored = await load_batch(
                connection, self.organization_id, self.pending,
                then=partial(save_position, organization_id=self.organization_id,
                             path=self.path, position=position),
            )
        self.committed.add(stored)
        log.debug("committed a batch and the position after it",
                  extra={"organization_id": self.organization_id, "offset": position.offset,
                         "inserted": stored.inserted, "duplicates": stored.duplicates})
        self.pending = []
        self.batch_started = None


async def follow_postfix_file(
    pool: asyncpg.Pool, organization: str, path: str, *, year: int | None,
    batch_size: int = DEFAULT_FOLLOW_BATCH, stop: asyncio.Event | None = None,
) -> tuple[IngestReport, LoadResult]:
    """Follow a Postfix log for an organization until ``stop`` is set, or SIGINT or SIGTERM.

    Starts where the last run on this path stopped (see the module's resume rule); commits a
    batch at ``batch_size`` facts or after about a second, and what was read when stopped.
    """
    if path == "-":
        raise CannotFollowError("standard input cannot be followed: name the log file")
    path = _absolute(path)
    async with pool.acquire() as connection:
        organization_id = await ensure_organization(connection, organization)
        async with owner_transaction(connection, organization_id):
            classifier = CurrentClassifier(organization_id)
            await classifier.refresh(connection)
            policy = await load_boundary_policy(connection, organization_id)
            saved = await find_position(connection, organization_id, path)

    report = IngestReport(current_file=path, files_started=1)
    modified = datetime.fromtimestamp(os.stat(path).st_mtime, UTC)
    parser = _parser(policy, year, modified, report, saved)
    follower = _Follower(pool, organization_id, path, _resume(path, saved), parser,
                         classifier, report, batch_size, LoadResult(), [])
    log.info("following a log", extra={"organization_id": organization_id, "path": path,
                                        "offset": follower.file.offset,
                                        "open_messages": parser.open_messages})
    stop = stop or asyncio.Event()
    try:
        with _stopping_on_signals(stop):
            await follower.run(stop)
    finally:
        follower.file.close()

    print(summary(organization, postfix_format(year), report, follower.committed,
                  year_from=(path, modified)), file=sys.stderr)
    print(f"stopped following {path} at byte {follower.file.offset}; "
          f"{plural(parser.open_messages, 'message')} still open are kept for the next run",
          file=sys.stderr)
    return report, follower.committed


def _absolute(path: str) -> str:
    """The path as the key of its position: the same file named from another directory."""
    return os.path.abspath(path)


def _parser(policy: BoundaryPolicy, year: int | None, modified: datetime,
            report: IngestReport, saved: FollowPosition | None) -> PostfixParser:
    """A parser that goes on from the saved state, or a new one."""
    if saved is not None:
        try:
            return PostfixParser(policy=policy, year=year, reference_time=modified,
                                 report=report, state=saved.parser_state)
        except ParserStateError as error:
            _warn(f"{error}: starting afresh at byte {saved.offset}; messages open at the last "
                  "stop may be counted without their first lines")
    return PostfixParser(policy=policy, year=year, reference_time=modified, report=report)


def _resume(path: str, saved: FollowPosition | None) -> TailedFile:
    """The file to read first and where: the saved one at its position, else ``path`` at 0."""
    current = TailedFile.open(path)
    if saved is None:
        return current
    if current.identity == (saved.device, saved.inode):
        if current.matches(saved):
            current.seek(saved.offset)
        else:
            _warn(f"{path} was truncated or replaced since the last run: reading it from the "
                  f"start; lines it held after byte {saved.offset} are not read: load its copy, "
                  "if any, with 'mailflow ingest postfix' (nothing is counted twice)")
        return current
    rotated = _rotated_file(path, saved)
    if rotated is not None:
        current.close()
        rotated.seek(saved.offset)
        return rotated
    _warn(f"{path} was rotated since the last run and the file it was is no longer in "
          f"{os.path.dirname(path)} under any name: lines written to it after byte "
          f"{saved.offset} were not read; reading {path} from the start (load the rotated file "
          "with 'mailflow ingest postfix' to add them: nothing is counted twice)")
    return current


def _rotated_file(path: str, saved: FollowPosition) -> TailedFile | None:
    """The file of ``saved`` under its new name beside ``path`` (``mail.log.1``), if any."""
    with os.scandir(os.path.dirname(path)) as entries:
        for entry in entries:
            if entry.inode() != saved.inode or not entry.is_file():
                continue
            try:
                candidate = TailedFile.open(entry.path)
            except CannotFollowError:
                continue
            if candidate.identity == (saved.device, saved.inode) and candidate.matches(saved):
                candidate.path = path  # followed under the path's name: it was that file
                return candidate
            candidate.close()
    return None


@contextmanager
def _stopping_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT and SIGTERM while inside."""
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    try:
        yield
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)
