"""`mailflow ingest tlsrpt`: what the user reads, the exit status, and what is stored."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

MAILFLOW = str(Path(sys.executable).parent / "mailflow")
FIXTURES = Path(__file__).parent / "ingest" / "fixtures" / "tlsrpt"


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "MAILFLOW_LOG_LEVEL": "warning"}


def ingest(env: dict[str, str], *files: str, stdin: bytes | None = None
           ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [MAILFLOW, "ingest", "tlsrpt", "--org", "acme", *files], env=env, input=stdin,
        capture_output=True, check=False, timeout=300,
    )
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(), result.stderr.decode())


async def stored_reports(database_url: str) -> list[str]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT report_id FROM tls_reports ORDER BY report_id")
        return [row["report_id"] for row in rows]
    finally:
        await connection.close()


async def test_a_bad_file_is_named_with_its_field_and_the_others_still_load(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"organization-name": "x", "date-range": {}, "report-id": "r1"}')
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")

    result = ingest(env, str(bad), str(FIXTURES / "rfc_spelling.json"), str(broken))

    assert result.returncode == 1
    assert "acme: read 3 files, found 1 TLS report: 1 new, 0 already loaded" in result.stderr
    assert "error: 2 reports not loaded:" in result.stderr
    assert (f"{bad}: date-range.start-datetime: missing; expected an RFC 3339 date-time"
            in result.stderr)
    assert f"{broken}: not JSON (" in result.stderr
    assert await stored_reports(database_url) == [
        "2025-03-01T00:00:00Z_example.com@sender.example.net"]


async def test_loading_the_same_reports_again_counts_them_as_already_loaded(
    env: dict[str, str], database_url: str
) -> None:
    files = [str(FIXTURES / "rfc_spelling.json"), str(FIXTURES / "pattern_spelling.json")]
    assert ingest(env, *files).returncode == 0

    again = ingest(env, *files)

    assert again.returncode == 0, again.stderr
    assert "found 2 TLS reports: 0 new, 2 already loaded" in again.stderr
    assert len(await stored_reports(database_url)) == 2


async def test_a_gzip_report_is_read_from_standard_input(
    env: dict[str, str], database_url: str
) -> None:
    packed = gzip.compress((FIXTURES / "pattern_spelling.json").read_bytes())

    result = ingest(env, "-", stdin=packed)

    assert result.returncode == 0, result.stderr
    assert await stored_reports(database_url) == ["other-sender-0001"]


def test_a_missing_file_stops_the_command_before_anything_runs(tmp_path: Path) -> None:
    result = ingest(dict(os.environ), str(tmp_path / "absent.json"))

    assert result.returncode == 2
    assert f"{tmp_path / 'absent.json'}: no such file" in result.stderr
