"""The mailflow command: clear one-line errors, tokens, organizations, migrations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from mailflow.store.tokens import authenticate

MAILFLOW = str(Path(sys.executable).parent / "mailflow")


def run(
    env: dict[str, str], *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAILFLOW, *args], env={**os.environ, **env}, input=stdin, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("MAILFLOW_MAX_RANGE_DAYS", "abc", "MAILFLOW_MAX_RANGE_DAYS: 'abc'"),
        ("MAILFLOW_MAX_RANGE_DAYS", "0", "greater than or equal to 1"),
        ("MAILFLOW_LOG_LEVEL", "bogus", "'bogus' is not a log level"),
        ("MAILFLOW_POOL_MIN_SIZE", "50", "is larger than MAILFLOW_POOL_MAX_SIZE"),
        ("DATABASE_URL", "mysql://user:secret@db/x", "'mysql://user:***@db/x' is not a Post"),
    ],
)
def test_a_bad_setting_is_named_in_one_line_without_a_traceback(
    variable: str, value: str, named: str,
) -> None:
    result = run({variable: value}, "migrate")
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert "secret" not in result.stderr


def test_an_unreachable_database_is_named_without_its_password() -> None:
    result = run({"DATABASE_URL": "postgresql://me:secret@127.0.0.1:1/mail"}, "migrate")
    assert result.returncode == 2
    assert "cannot connect to the database at postgresql://me:***@127.0.0.1:1/mail" in result.stderr
    assert "secret" not in result.stderr


def test_migrate_reports_what_it_applied(database_url: str) -> None:
    result = run({"DATABASE_URL": database_url}, "migrate")
    assert result.returncode == 0, result.stderr
    assert "0 migration(s) applied now" in result.stderr


def test_the_demo_organization_name_is_reserved(database_url: str, tmp_path: Path) -> None:
    file = tmp_path / "demo.yaml"
    file.write_text("organization: Demo\n")
    env = {"DATABASE_URL": database_url}
    applied = run(env, "org", "apply", str(file))
    ingested = run(env, "ingest", "postfix", "--org", "demo", "-", stdin="")
    pusher = run(env, "token", "create", "--org", "DEMO", "--role", "ingest")
    for result in (applied, ingested, pusher):
        assert result.returncode == 2
        assert "reserved for the demo" in result.stderr
        assert not result.stdout


def test_organization_names_ignore_case(database_url: str, tmp_path: Path) -> None:
    file = tmp_path / "acme.yaml"
    file.write_text("organization: acme\n")
    env = {"DATABASE_URL": database_url}
    assert run(env, "org", "apply", str(file)).returncode == 0
    token = run(env, "token", "create", "--org", "ACME")
    assert token.returncode == 0, token.stderr


def test_a_directory_given_as_a_log_file_is_named_as_one(database_url: str, tmp_path: Path) -> None:
    result = run({"DATABASE_URL": database_url}, "ingest", "postfix", "--org", "acme",
                 str(tmp_path))
    assert result.returncode == 2
    assert f"{tmp_path}: is a directory" in result.stderr


async def test_a_revoked_token_no_longer_authenticates(database_url: str, tmp_path: Path) -> None:
    file = tmp_path / "acme.yaml"
    file.write_text("organization: acme\n")
    env = {"DATABASE_URL": database_url}
    assert run(env, "org", "apply", str(file)).returncode == 0
    token = run(env, "token", "create", "--org", "acme", "--description", "dashboard").stdout
    token = token.strip()

    listing = run(env, "token", "list", "--org", "acme")
    assert listing.returncode == 0, listing.stderr
    assert token not in listing.stdout
    rows = [line.split("\t") for line in listing.stdout.splitlines()[1:]]
    assert [(row[0], row[-1]) for row in rows] == [("1", "dashboard")]

    connection = await asyncpg.connect(database_url)
    try:
        assert await authenticate(connection, token) is not None
        assert run(env, "token", "revoke", "1", "--org", "acme").returncode == 0
        assert await authenticate(connection, token) is None
    finally:
        await connection.close()
    again = run(env, "token", "revoke", "1", "--org", "acme")
    assert again.returncode == 2
    assert "has no active token 1" in again.stderr


def test_a_token_for_a_missing_organization_is_refused(database_url: str) -> None:
    result = run({"DATABASE_URL": database_url}, "token", "create", "--org", "nobody")
    assert result.returncode == 2
    assert "organization 'nobody' does not exist" in result.stderr
    assert result.stdout == ""


async def test_a_token_is_created_with_the_role_asked_for_and_listed_with_it(
    database_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "acme.yaml"
    file.write_text("organization: acme\n")
    env = {"DATABASE_URL": database_url}
    assert run(env, "org", "apply", str(file)).returncode == 0

    assert run(env, "token", "create", "--org", "acme").returncode == 0
    assert run(env, "token", "create", "--org", "acme", "--role", "ingest").returncode == 0
    refused = run(env, "token", "create", "--org", "acme", "--role", "owner")

    listing = run(env, "token", "list", "--org", "acme")
    assert [line.split("\t")[:2] for line in listing.stdout.splitlines()] == [
        ["id", "role"], ["1", "viewer"], ["2", "ingest"]]
    assert refused.returncode == 2
    assert "'--role'" in refused.stderr
    assert "'owner'" in refused.stderr


def test_a_settings_file_that_is_not_utf8_is_named_in_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"MAILFLOW_LOG_LEVEL=INFO\n\x00\xff\n")

    result = run({}, "token", "list", "--org", "acme", cwd=tmp_path)

    assert result.returncode == 2
    assert "the .env file is not UTF-8 text" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_port_in_the_settings_file_stops_the_command(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MAILFLOW_PORT=99999\n")

    result = run({}, "serve", cwd=tmp_path)

    assert result.returncode == 2
    assert "MAILFLOW_PORT: '99999'" in result.stderr


@pytest.mark.parametrize("token", ["99999999999999999999", "1.0", " 3", "0", "\uff13", "-1"])
def test_a_token_id_that_is_not_plainly_an_id_is_refused_by_the_command_line(token: str) -> None:
    result = run({}, "token", "revoke", "--org", "acme", "--", token)

    assert result.returncode == 2
    assert f"{token!r} is not a token id" in result.stderr
    assert "database" not in result.stderr


@pytest.mark.parametrize(("error", "lost"), [
    (asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is "
                            "closed"), True),
    (asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
     True),
    (asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator "
                                           "command"), True),
    (asyncpg.exceptions.InsufficientPrivilegeError("permission denied for table x"), False),
])
def test_a_database_lost_mid_command_is_said_so_with_what_to_do(
    error: Exception, lost: bool
) -> None:
    from mailflow.cli import _database_failure

    said = _database_failure(error)

    assert str(error) in said
    if lost:
        assert said.startswith("the connection to the database was lost (")
        assert said.endswith("when the database is back, run the same command again")
    else:
        assert said == f"the database failed: {error}"
