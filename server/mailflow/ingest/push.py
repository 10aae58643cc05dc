"""Load a stream of records pushed over the network: decode, split, parse, store in batches.

The body of a push arrives in chunks and may be far larger than memory: it is decompressed
with a bounded output per step, split into lines of at most MAX_LINE_BYTES, parsed record by
record and stored a batch at a time, each batch committed with its rollups. What was committed
stays when the stream breaks; sending the same records again stores only what is missing.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from mailflow.domain import MessageFact
from mailflow.errors import MailflowError
from mailflow.ingest.canonical import (
    MAX_REJECTIONS_LISTED,
    RecordReader,
    RejectedRecord,
    Rejection,
    UnderBadHeader,
)
from mailflow.ingest.classify import load_classifier
from mailflow.ingest.pipeline import DEFAULT_BATCH_SIZE, load_facts
from mailflow.ingest.sources import LONG_LINE, MAX_LINE_LENGTH
from mailflow.store.isolation import organization_transaction

# A line of MAX_LINE_LENGTH characters is at most 4 bytes a character, and its CR.
MAX_LINE_BYTES = 4 * MAX_LINE_LENGTH + 1
DECOMPRESSED_STEP = 256 * 1024  # most bytes one compressed chunk may expand to at a time


class BrokenStreamError(MailflowError):
    """The pushed body could not be read to its end (bad compression, cut off)."""

    code = "BAD_REQUEST"


@dataclass
class PushResult:
    """What a push stored: new facts, facts already stored, and the records refused."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    # The last batch committed: when, and the time of its newest message fact.
    committed_at: datetime | None = None
    newest_fact_at: datetime | None = None

    def reject(self, rejection: Rejection) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_REJECTIONS_LISTED:
            self.rejections.append(rejection)


async def load_pushed_records(
    pool: asyncpg.Pool, organization_id: int, chunks: AsyncIterable[bytes], kind: str, *,
    result: PushResult, batch_size: int = DEFAULT_BATCH_SIZE,
) -> PushResult:
    """Store the records of ``chunks`` (already decompressed) in ``kind``, ``ndjson`` or ``csv``.

    ``result`` is filled as batches commit, so a caller that sees an exception still knows
    what was stored. Raises BrokenStreamError when the chunks end inside a compressed stream.
    """
    async with pool.acquire() as connection, organization_transaction(connection, organization_id):
        classifier = await load_classifier(connection, organization_id)

    reader = RecordReader(kind)
    batch: list[MessageFact] = []
    async for number, line in numbered_lines(chunks):
        try:
            fact = reader.read(number, LONG_LINE if line is None else line)
        except UnderBadHeader:
            result.rejected += 1  # the header's rejection says why; listed once
            continue
        except RejectedRecord as error:
            result.reject(Rejection(number, str(error)))
            continue
        if fact is not None:
            batch.append(fact)
        if len(batch) >= batch_size:
            await _store(pool, organization_id, batch, classifier.assign, result)
            batch = []
    if batch:
        await _store(pool, organization_id, batch, classifier.assign, result)
    return result


async def _store(
    pool: asyncpg.Pool, organization_id: int, batch: list[MessageFact],
    classify: Callable[[MessageFact], MessageFact], result: PushResult,
) -> None:
    stored = await load_facts(pool, organization_id, batch, classify=classify,
                              batch_size=len(batch))
    result.accepted += stored.inserted
    result.duplicates += stored.duplicates
    result.committed_at = datetime.now(UTC)
    result.newest_fact_at = max(fact.occurred_at for fact in batch)


async def numbered_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[int, str | None]]:
    """(line number, text) for each line of the chunks, as ``mailflow ingest`` reads a file of
    records (see mailflow.ingest.sources.read_log): a line ends at LF, which it keeps, and
    bytes that are not UTF-8 are read as lone surrogates for the reader to reject.
    Text is None for a line over MAX_LINE_LENGTH characters; one over MAX_LINE_BYTES is
    skipped without being held."""
    number = 0
    pending = bytearray()
    too_long = False
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            number += 1
            if too_long or len(pending) + end - start > MAX_LINE_BYTES:
                yield number, None
            else:
                pending += chunk[start:end]
                yield number, _text(pending, ended=True)
            pending.clear()
            too_long = False
            start = end + 1
        if not too_long:
            pending += chunk[start:]
            if len(pending) > MAX_LINE_BYTES:
                pending.clear()
                too_long = True
    if pending or too_long:
        yield number + 1, None if too_long else _text(pending, ended=False)


def _text(line: bytearray, *, ended: bool) -> str | None:
    """A line as a file's reader hands it on (its LF kept), or None when it is too long."""
    text = line.decode("utf-8", errors="surrogateescape")
    if len(text) - (ended and text.endswith("\r")) > MAX_LINE_LENGTH:
        return None
    return text + "\n" if ended else text


async def gunzipped(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The decompressed bytes of gzip ``chunks``, one or more gzip members in a row, never
    more than DECOMPRESSED_STEP at a time however far a chunk expands."""
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    in_member = False
    async for chunk in chunks:
        data = chunk
        while data or in_member:
            in_member = True
            try:
                output = decompressor.decompress(data, DECOMPRESSED_STEP)
            except zlib.error as error:
                raise BrokenStreamError(
                    f"the body is not valid gzip ({error}); send it with Content-Encoding: "
                    "gzip only when it is gzip-compressed"
                ) from None
            if output:
                yield output
            if decompressor.eof:
                data = decompressor.unused_data
                decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                in_member = bool(data)
            elif decompressor.unconsumed_tail or len(output) == DECOMPRESSED_STEP:
                data = decompressor.unconsumed_tail  # more output is waiting for room
            else:
                break  # the member goes on in the next chunk
    if in_member:
        raise BrokenStreamError(
            "the gzip body ends before its compressed stream does: it was cut off; "
            "send it again whole"
        )
