"""A file of records given to `mailflow ingest` and the same bytes pushed to `POST /ingest`
are read alike: the same lines, the same rejections with the same reasons, the same facts."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailflow.domain import MessageFact
from mailflow.ingest.canonical import RecordReader, RejectedRecord
from mailflow.ingest.push import numbered_lines
from mailflow.ingest.sources import LONG_LINE, MAX_LINE_LENGTH, read_log

RECORD = {"source_key": "k{n}", "occurred_at": "2026-03-01T10:00:00Z", "direction": "INBOUND",
          "sender_domain": "fabrikam.example", "tls_cipher": "TLS_AES_256_GCM_SHA384"}
CSV_HEADER = b"source_key,occurred_at,direction,sender_domain,tls_cipher\n"


def ndjson_line(n: int, **fields: str) -> bytes:
    return json.dumps({**RECORD, "source_key": f"k{n}", **fields}).encode()


def csv_line(n: int, sender: bytes = b"fabrikam.example", cipher: bytes = b"TLS_AES") -> bytes:
    return b"k%d,2026-03-01T10:00:00Z,INBOUND,%s,%s" % (n, sender, cipher)


Outcome = list[tuple[int, str]]


def read(kind: str, lines: list[tuple[int, str | None]]) -> Outcome:
    """What the record reader makes of each numbered line: a fact's key, or the rejection."""
    reader, outcome = RecordReader(kind), []
    for number, line in lines:
        try:
            fact: MessageFact | None = reader.read(number, LONG_LINE if line is None else line)
        except RejectedRecord as error:
            outcome.append((number, f"rejected: {error}"))
            continue
        if fact is not None:
            outcome.append((number, f"fact {fact.source_key} {fact.sender_domain} "
                                    f"{fact.tls_cipher}"))
    return outcome


def read_as_file(kind: str, body: bytes, tmp_path: Path) -> Outcome:
    path = tmp_path / f"records.{kind}.gz"
    path.write_bytes(gzip.compress(body))
    problems: list[str] = []
    lines = list(enumerate(read_log(str(path), on_problem=problems.append, records=True), 1))
    assert problems == []
    return read(kind, list(lines))


def read_as_push(kind: str, body: bytes) -> Outcome:
    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 7):  # lines cut across chunks
            yield body[start:start + 7]

    async def collect() -> list[tuple[int, str | None]]:
        return [line async for line in numbered_lines(pieces())]

    return read(kind, asyncio.run(collect()))


NDJSON_BODIES = {
    "a NUL inside a string": ndjson_line(1) + b"\n" + ndjson_line(2, tls_cipher="abc\0def")
    .replace(b"\\u0000", b"\0") + b"\n" + ndjson_line(3) + b"\n",
    "a NUL after the object": ndjson_line(1) + b"\0\n" + ndjson_line(2) + b"\n",
    "a line of NULs": ndjson_line(1) + b"\n\0\0\0\n" + ndjson_line(2) + b"\n",
    "a byte that is not UTF-8": ndjson_line(1, tls_cipher="TLS_\udcffAES").replace(
        b"\\udcff", b"\xff") + b"\n" + ndjson_line(2) + b"\n",
    "a lone CR": ndjson_line(1) + b"\r" + ndjson_line(2) + b"\n" + ndjson_line(3) + b"\n",
    "CR LF line ends": ndjson_line(1) + b"\r\n" + ndjson_line(2) + b"\r\n\r\n",
    "a line as long as allowed with CR LF": ndjson_line(1).ljust(MAX_LINE_LENGTH) + b"\r\n"
    + ndjson_line(2) + b"\n",
    "a line one character too long": ndjson_line(1).ljust(MAX_LINE_LENGTH + 1) + b"\n"
    + ndjson_line(2) + b"\n",
    "a last line without its newline": ndjson_line(1) + b"\n" + ndjson_line(2),
}
CSV_BODIES = {
    "a NUL in a field": CSV_HEADER + csv_line(1, sender=b"fabrik\0am.example") + b"\n"
    + csv_line(2) + b"\n",
    "a lone CR in a field": CSV_HEADER + csv_line(1, cipher=b"a\rb") + b"\n" + csv_line(2)
    + b"\n",
    "a byte that is not UTF-8": CSV_HEADER + csv_line(1, cipher=b"TLS_\xc3") + b"\n"
    + csv_line(2) + b"\n",
    "CR LF line ends": CSV_HEADER.replace(b"\n", b"\r\n") + csv_line(1) + b"\r\n"
    + csv_line(2) + b"\r\n",
    "a stray CR before CR LF": CSV_HEADER + csv_line(1) + b"\r\r\n" + csv_line(2) + b"\n",
    "a last line ended by CR": CSV_HEADER + csv_line(1) + b"\n" + csv_line(2) + b"\r",
}


@pytest.mark.parametrize(("kind", "body"), [
    *(pytest.param("ndjson", body, id=f"ndjson, {name}") for name, body in NDJSON_BODIES.items()),
    *(pytest.param("csv", body, id=f"csv, {name}") for name, body in CSV_BODIES.items()),
])
def test_a_file_of_records_and_the_same_bytes_pushed_are_read_alike(
    kind: str, body: bytes, tmp_path: Path
) -> None:
    assert read_as_file(kind, body, tmp_path) == read_as_push(kind, body)


def test_a_record_is_never_changed_to_be_read_it_is_rejected_naming_why(
    tmp_path: Path
) -> None:
    outcomes = {name: read_as_file("ndjson", body, tmp_path)
                for name, body in NDJSON_BODIES.items()}
    outcomes |= {f"csv, {name}": read_as_file("csv", body, tmp_path)
                 for name, body in CSV_BODIES.items()}

    def rejection(name: str, line: int) -> str:
        reasons = [reason for number, reason in outcomes[name] if number == line]
        assert len(reasons) == 1, outcomes[name]
        assert reasons[0].startswith("rejected: "), outcomes[name]
        return reasons[0]

    assert rejection("a NUL inside a string", 2).startswith("rejected: not JSON")
    assert rejection("a NUL after the object", 1).startswith("rejected: not JSON")
    assert rejection("a line of NULs", 2).startswith("rejected: not JSON")
    bad_byte_at = ndjson_line(1, tls_cipher="TLS_").index(b'"TLS_') + 6  # from 1, after "TLS_
    assert rejection("a byte that is not UTF-8", 1) == (
        f"rejected: the line is not UTF-8 text: byte 0xFF at character {bad_byte_at}; write "
        "records in UTF-8")
    assert rejection("a lone CR", 1).startswith("rejected: not JSON")
    assert rejection("a line one character too long", 1) == (
        f"rejected: the line is longer than {MAX_LINE_LENGTH} characters")
    assert "holds NUL" in rejection("csv, a NUL in a field", 2)
    assert rejection("csv, a lone CR in a field", 2) == (
        "rejected: the record holds a carriage return (CR) outside quotes; a record is one "
        "line, ended by LF or CR LF")
    assert "not UTF-8 text: byte 0xC3" in rejection("csv, a byte that is not UTF-8", 2)
    stray_cr = rejection("csv, a lone CR in a field", 2)
    assert rejection("csv, a stray CR before CR LF", 2) == stray_cr
    assert rejection("csv, a last line ended by CR", 3) == stray_cr
    assert [reason for _, reason in outcomes["CR LF line ends"]] == [
        "fact k1 fabrikam.example TLS_AES_256_GCM_SHA384",
        "fact k2 fabrikam.example TLS_AES_256_GCM_SHA384",
    ]
    assert outcomes["a line as long as allowed with CR LF"][0][1].startswith("fact k1")
