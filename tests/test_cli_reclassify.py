"""mailflow reclassify: the stored mail of a range of days, classified by today's rules."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from .test_cli import run

# Twelve messages on 2021-01-27 and 28: on each day four from fabrikam and two from contoso.
RECORDS = "\n".join(json.dumps({
    "source_key": f"r-{number}",
    "occurred_at": f"2021-01-{27 + number % 2}T10:{number:02d}:00Z",
    "direction": "INBOUND",
    "sender_domain": "contoso.example" if number % 3 == 1 else "fabrikam.example",
}) for number in range(12)) + "\n"


def organization_file(path: Path, sender_domain: str) -> Path:
    path.write_text(
        "organization: acme\nconnectors:\n"
        f"  - {{name: Partner, direction: inbound, kind: partner,"
        f" sender_domains: [{sender_domain}]}}\n")
    return path


async def partner_messages(database_url: str) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT day::text, sum(messages) FROM daily_rollups WHERE connector_id IS NOT NULL"
            " GROUP BY day ORDER BY day")
    finally:
        await connection.close()
    return {row[0]: row[1] for row in rows}


async def test_reclassify_moves_mail_of_the_days_given_to_the_current_rules(
    database_url: str, tmp_path: Path,
) -> None:
    env = {"DATABASE_URL": database_url}
    records = tmp_path / "mail.ndjson"
    records.write_text(RECORDS)
    assert run(env, "org", "apply", str(organization_file(tmp_path / "a.yaml",
                                                           "fabrikam.example"))).returncode == 0
    assert run(env, "ingest", "ndjson", "--org", "acme", str(records)).returncode == 0
    assert await partner_messages(database_url) == {"2021-01-27": 4, "2021-01-28": 4}
    assert run(env, "org", "apply", str(organization_file(tmp_path / "a.yaml",
                                                           "contoso.example"))).returncode == 0

    first = run(env, "reclassify", "--org", "ACME", "--from", "2021-01-28", "--to", "2021-01-28",
                "--batch-size", "4")
    again = run(env, "reclassify", "--org", "acme", "--from", "2021-01-28", "--to", "2021-01-28")

    assert first.returncode == 0, first.stderr
    assert first.stderr.strip() == (
        "organization ACME, 2021-01-28 to 2021-01-28 (UTC): 6 message facts classified again, "
        "6 given another connector; the rollups of 1 day changed")
    assert again.returncode == 0, again.stderr
    assert "6 message facts classified again, 0 given another connector; the rollups of 0 days" \
        in again.stderr
    assert await partner_messages(database_url) == {"2021-01-27": 4, "2021-01-28": 2}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--from", "2021-02-30", "--to", "2021-03-01"],
         "--from '2021-02-30' is not a date (day is out of range for month); give a UTC day "
         "such as 2021-01-27"),
        (["--from", "2021-01-01", "--to", "20210102"],
         "--to '20210102' is not written YYYY-MM-DD; give a UTC day such as 2021-01-27"),
        (["--from", "2021-02-01", "--to", "2021-01-31"],
         "--to 2021-01-31 is before --from 2021-02-01; give the first day with --from and the "
         "last with --to"),
    ],
)
def test_bad_dates_are_refused_with_a_message_naming_them(
    database_url: str, arguments: list[str], message: str,
) -> None:
    result = run({"DATABASE_URL": database_url}, "reclassify", "--org", "acme", *arguments)

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_organization_is_refused(database_url: str) -> None:
    result = run({"DATABASE_URL": database_url}, "reclassify", "--org", "nobody",
                 "--from", "2021-01-01", "--to", "2021-01-31")

    assert result.returncode == 2
    assert "organization 'nobody' does not exist" in result.stderr


@pytest.mark.parametrize(("first", "last"), [("0001-01-01", "0001-01-02"),
                                            ("2021-01-01", "9999-12-31")])
def test_the_first_and_last_days_of_the_calendar_are_days_like_any_other(
    database_url: str, tmp_path: Path, first: str, last: str,
) -> None:
    organization_file = tmp_path / "acme.yaml"
    organization_file.write_text("organization: acme\n")
    applied = run({"DATABASE_URL": database_url}, "org", "apply", str(organization_file))
    assert applied.returncode == 0, applied.stderr

    result = run({"DATABASE_URL": database_url}, "reclassify", "--org", "acme",
                 "--from", first, "--to", last)

    assert result.returncode == 0, result.stderr
    assert f"organization acme, {first} to {last} (UTC): 0 message facts" in result.stderr
