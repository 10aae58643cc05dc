"""The ``mailflow`` command: migrate, declare organizations, ingest logs, classify them again,
mint tokens, serve."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import asyncpg
import typer
from pydantic import ValidationError

from mailflow.compiled import stale_warning
from mailflow.errors import MailflowError
from mailflow.ingest.pipeline import DEFAULT_BATCH_SIZE
from mailflow.settings import Settings, describe_errors, get_settings
from mailflow.store.embedded import EmbeddedPostgresError
from mailflow.store.migrate import MigrationError
from mailflow.store.tokens import TokenRole

T = TypeVar("T")

app = typer.Typer(
    name="mailflow",
    help="GraphQL reports on the mail that crosses your organization's boundary.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
org_app = typer.Typer(help="Declare organizations: accepted domains, networks, connectors.",
                      no_args_is_help=True)
token_app = typer.Typer(help="API tokens that scope requests to one organization, with a role.",
                        no_args_is_help=True)
ingest_app = typer.Typer(help="Load mail server logs into message facts and daily rollups.",
                         no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(token_app, name="token")
partitions_app = typer.Typer(help="Message fact partitions and retention, for a scheduler.",
                             no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
app.add_typer(partitions_app, name="partitions")

log = logging.getLogger("mailflow.cli")


class UsageError(MailflowError):
    """A command was asked for something it cannot do."""

    code = "BAD_USAGE"


DEMO_ORGANIZATION = "demo"


def _refuse_demo_name(organization: str) -> None:
    """The demo organization belongs to 'serve --demo', which rewrites it at every start."""
    if organization.lower() == DEMO_ORGANIZATION:
        typer.echo(
            f"mailflow: error: the organization name {organization!r} is reserved for the demo "
            "that 'mailflow serve --demo' loads (and rewrites); choose another name",
            err=True,
        )
        raise typer.Exit(2)


async def _organization_id(connection: Any, organization: str) -> int:
    from mailflow.store.organizations import find_organization

    organization_id = await find_organization(connection, organization)
    if organization_id is None:
        raise UsageError(
            f"organization {organization!r} does not exist: declare it with "
            "'mailflow org apply FILE' or load mail with 'mailflow ingest ... --org'"
        )
    return organization_id


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine; turn the errors a user can act on into one line and exit 2."""
    try:
        return asyncio.run(main())
    except (MailflowError, MigrationError, EmbeddedPostgresError, OSError) as error:
        typer.echo(f"mailflow: error: {error}", err=True)
        raise typer.Exit(2) from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        # The database went away or refused a statement mid-command, e.g. its server stopped.
        typer.echo(f"mailflow: error: {_database_failure(error)}", err=True)
        raise typer.Exit(1) from None


def _database_failure(error: Exception) -> str:
    """What a database error mid-command means, for people; the driver's words after it."""
    if isinstance(error, asyncpg.InterfaceError | asyncpg.ConnectionDoesNotExistError) or (
        isinstance(error, asyncpg.PostgresError)
        and getattr(error, "sqlstate", "") in ("57P01", "57P02", "57P03")  # shut down
    ):
        return (f"the connection to the database was lost ({error}); what was committed "
                "is kept: when the database is back, run the same command again")
    return f"the database failed: {error}"


def _configure_logging(settings: Settings) -> None:
    from mailflow.logs import configure_logging

    configure_logging(settings.log_level.upper(), settings.log_format, sys.stderr)


@app.callback()
def _main() -> None:
    try:
        settings = get_settings()
    except ValidationError as error:
        typer.echo(f"mailflow: error in the settings: {describe_errors(error)}", err=True)
        raise typer.Exit(2) from None
    except UnicodeDecodeError as error:
        typer.echo(f"mailflow: error in the settings: the .env file is not UTF-8 text "
                   f"({error.reason} at byte {error.start}); write it as UTF-8", err=True)
        raise typer.Exit(2) from None
    _configure_logging(settings)


async def _with_database(work: Callable[[Any], Awaitable[T]]) -> T:
    from mailflow.store.db import open_database

    async with open_database(get_settings()) as pool:
        return await work(pool)


@app.command()
def migrate() -> None:
    """Apply pending database migrations (the server also does this at start)."""
    from mailflow.store.db import migrate_or_explain, open_database

    async def work() -> None:
        async with (
            open_database(get_settings(), run_migrations=False) as pool,
            pool.acquire() as connection,
        ):
            applied = await migrate_or_explain(connection)
        typer.echo(f"database is current: {len(applied)} migration(s) applied now", err=True)

    _run(work)


@org_app.command("apply")
def org_apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="Organization file (YAML).")],
) -> None:
    """Create or update an organization so it matches FILE; idempotent."""
    from mailflow.store.organizations import apply_organization, load_organization_file

    try:
        config = load_organization_file(file)
    except MailflowError as error:
        typer.echo(f"mailflow: error: {error}", err=True)
        raise typer.Exit(2) from None
    _refuse_demo_name(config.organization)

    async def work(pool: Any) -> None:
        async with pool.acquire() as connection:
            result = await apply_organization(connection, config)
        typer.echo(
            f"organization {config.organization}: created {len(result.created)}, "
            f"updated {len(result.updated)}, unchanged {len(result.unchanged)}, "
            f"removed {len(result.removed)} connector(s)",
            err=True,
        )

    _run(lambda: _with_database(work))


@token_app.command("create")
def token_create(
    org: Annotated[str, typer.Option("--org", help="Organization the token belongs to.")],
    role: Annotated[TokenRole, typer.Option(
        help="viewer reads reports; admin also manages the organization; "
             "ingest only pushes message facts to POST /ingest.")] = TokenRole.VIEWER,
    description: Annotated[str, typer.Option(help="What the token is for.")] = "",
    expires_in_days: Annotated[int | None, typer.Option(
        min=1, max=36500, help="Days until the token expires; never by default.")] = None,
) -> None:
    """Print a new API token alone on stdout; only its hash is stored."""
    from mailflow.store.isolation import owner_transaction
    from mailflow.store.organizations import check_organization_name
    from mailflow.store.tokens import create_token

    try:
        check_organization_name(org)
    except MailflowError as error:
        typer.echo(f"mailflow: error: {error}", err=True)
        raise typer.Exit(2) from None
    if role is TokenRole.INGEST:
        _refuse_demo_name(org)  # the demo's traffic is generated, like 'ingest' refuses it
    expires_at = None
    if expires_in_days is not None:
        expires_at = datetime.now(UTC) + timedelta(days=expires_in_days)

    async def work(pool: Any) -> str:
        async with pool.acquire() as connection:
            organization_id = await _organization_id(connection, org)
            async with owner_transaction(connection, organization_id):
                token: str = await create_token(connection, organization_id,
                                                description=description, expires_at=expires_at,
                                                role=role)
            return token

    typer.echo(_run(lambda: _with_database(work)))


@token_app.command("list")
def token_list(
    org: Annotated[str, typer.Option("--org", help="Organization whose tokens to list.")],
) -> None:
    """List an organization's tokens (never the tokens themselves: only their ids)."""
    from mailflow.store.isolation import owner_transaction
    from mailflow.store.tokens import list_tokens

    async def work(pool: Any) -> None:
        async with pool.acquire() as connection:
            organization_id = await _organization_id(connection, org)
            async with owner_transaction(connection, organization_id):
                tokens = await list_tokens(connection, organization_id)
        typer.echo("id\trole\tcreated\texpires\trevoked\tlast used\tdescription")
        for token in tokens:
            cells = (token.created_at, token.expires_at, token.revoked_at, token.last_used_at)
            when = "\t".join(cell.isoformat(timespec="seconds") if cell else "-" for cell in cells)
            typer.echo(f"{token.id}\t{token.role.value}\t{when}\t{token.description}")

    _run(lambda: _with_database(work))


@token_app.command("revoke")
def token_revoke(
    token: Annotated[str, typer.Argument(metavar="TOKEN_ID",
                                         help="Token id, as 'token list' shows it.")],
    org: Annotated[str, typer.Option("--org", help="Organization the token belongs to.")],
) -> None:
    """Revoke a token: requests that carry it get 401 from now on."""
    from mailflow.store.isolation import owner_transaction
    from mailflow.store.tokens import revoke_token

    # Digits only: revoking cannot be undone, so '1.0' or ' 3' must not be read as an id.
    if not (token.isascii() and token.isdigit()) or not 1 <= int(token) <= 2**63 - 1:
        _usage_error(f"{token!r} is not a token id; give the number 'mailflow token list' "
                     "shows, such as 3")
    token_id = int(token)

    async def work(pool: Any) -> None:
        async with pool.acquire() as connection:
            organization_id = await _organization_id(connection, org)
            async with owner_transaction(connection, organization_id):
                revoked = await revoke_token(connection, organization_id, token_id)
            if not revoked:
                raise UsageError(
                    f"organization {org!r} has no active token {token_id}: "
                    "'mailflow token list' shows its tokens"
                )
        typer.echo(f"token {token_id} revoked", err=True)

    _run(lambda: _with_database(work))


FilesArgument = Annotated[list[str], typer.Argument(
    help="Log files, plain or gzip, in time order; '-' reads stdin.")]
OrgOption = Annotated[str, typer.Option(
    "--org", help="Organization the mail belongs to; created when it does not exist.")]
# Advanced, hidden: message facts per transaction (the crash-safety test uses small batches).
BatchSizeOption = Annotated[int, typer.Option(
    "--batch-size", min=1, max=1_000_000, hidden=True,
    help="Message facts stored per transaction.")]


@ingest_app.command("postfix")
def ingest_postfix(
    files: FilesArgument,
    org: OrgOption,
    year: Annotated[int | None, typer.Option(
        min=1970, max=9998,
        help="Year of the first line for syslog time stamps without one; "
             "default: from the files' modification time.")] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", help="Keep reading one FILE as it grows, through log rotation, until "
                         "SIGINT or SIGTERM; a later run resumes where this one stopped.")] = False,
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
) -> None:
    """Load Postfix logs: one fact per message crossing the boundary, rollups refreshed."""
    from mailflow.ingest.run import postfix_format

    if follow:
        _follow(org, files, year)
    else:
        _ingest(org, files, postfix_format(year), batch_size)


def _follow(org: str, files: list[str], year: int | None) -> None:
    """Follow one growing Postfix log into ``org`` until stopped by a signal."""
    from mailflow.ingest.follow import follow_postfix_file

    _refuse_demo_name(org)
    if len(files) != 1:
        typer.echo(f"mailflow: error: --follow reads one file, not {len(files)} "
                   f"({' '.join(files)}): run one 'ingest postfix --follow' per file", err=True)
        raise typer.Exit(2)
    if files[0] == "-":
        typer.echo("mailflow: error: standard input cannot be followed: give the log file's "
                   "name, or leave out --follow to read standard input once", err=True)
        raise typer.Exit(2)
    _check_files(files)

    async def work(pool: Any) -> None:
        await follow_postfix_file(pool, org, files[0], year=year)

    _run(lambda: _with_database(work))


@ingest_app.command("exim")
def ingest_exim(
    files: FilesArgument, org: OrgOption, batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
) -> None:
    """Load Exim main logs: one fact per message crossing the boundary, rollups refreshed."""
    from mailflow.ingest.run import exim_format

    _ingest(org, files, exim_format(), batch_size)


@ingest_app.command("exchange")
def ingest_exchange(
    files: FilesArgument, org: OrgOption, batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
) -> None:
    """Load Exchange Server message tracking logs: boundary mail by connector, rollups refreshed."""
    from mailflow.ingest.run import exchange_format

    _ingest(org, files, exchange_format(), batch_size)


RejectionsOption = Annotated[int, typer.Option(
    "--rejections", min=0, max=1000,
    help="Rejected records the summary lists, by file and line (the rest are counted).")]
WorkersOption = Annotated[int, typer.Option(
    "--workers", min=0, max=64,
    help="Processes that parse and store records; 0: one per core for inputs of 32 MiB or more, "
         "else none beside this one.")]


@ingest_app.command("ndjson")
def ingest_ndjson(
    files: FilesArgument, org: OrgOption, workers: WorkersOption = 0,
    rejections: RejectionsOption = 20, batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
) -> None:
    """Load message facts in mailflow's record format as newline-delimited JSON."""
    from mailflow.ingest.run import records_format

    _ingest(org, files, records_format("ndjson"), batch_size, workers=workers,
            rejections=rejections)


@ingest_app.command("csv")
def ingest_csv(
    files: FilesArgument, org: OrgOption, workers: WorkersOption = 0,
    rejections: RejectionsOption = 20, batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
) -> None:
    """Load message facts in mailflow's record format as CSV, a header line first."""
    from mailflow.ingest.run import records_format

    _ingest(org, files, records_format("csv"), batch_size, workers=workers,
            rejections=rejections)


@ingest_app.command("tlsrpt")
def ingest_tlsrpt(
    files: Annotated[list[str], typer.Argument(
        help="SMTP TLS reports: JSON, gzip JSON, or the emails they came in; '-' reads stdin.")],
    org: Annotated[str, typer.Option(
        "--org", help="Organization the reports are about; created when it does not exist.")],
) -> None:
    """Load SMTP TLS reports (RFC 8460): sessions per policy domain, and their failures."""
    from mailflow.ingest.tlsrpt import ingest_tls_report_files, tls_ingest_summary

    _refuse_demo_name(org)
    _check_files(files)

    async def work(pool: Any) -> bool:
        result = await ingest_tls_report_files(pool, org, files)
        typer.echo(tls_ingest_summary(org, result), err=True)
        return bool(result.rejections)

    if _run(lambda: _with_database(work)):
        raise typer.Exit(1)  # the summary has named the files that were not loaded


def _ingest(
    org: str, files: list[str], log_format: Any, batch_size: int, *, workers: int = 1,
    rejections: int = 20,
) -> None:
    """Load ``files`` in ``log_format`` (a mailflow.ingest.run.LogFormat) into ``org``."""
    from mailflow.ingest.parallel import worker_count
    from mailflow.ingest.run import ingest_files

    _refuse_demo_name(org)
    _check_files(files)
    processes = worker_count(workers, files)

    async def work(pool: Any) -> bool:
        _stop_on_terminate()
        report, _ = await ingest_files(pool, org, files, log_format,
                                       progress=sys.stdout.isatty(), batch_size=batch_size,
                                       workers=processes, shown_rejections=rejections)
        return bool(report.problems or report.rejections or report.unrecognized_files)

    try:
        failed = _run(lambda: _with_database(work))
    except asyncio.CancelledError:  # by SIGTERM, after saying what was kept
        raise typer.Exit(128 + signal.SIGTERM) from None
    if failed:
        # the summary has listed unreadable files, rejected records or files of another kind
        raise typer.Exit(1)


def _stop_on_terminate() -> None:
    """Let SIGTERM (a service manager's stop, ``kill``) stop the running command as Ctrl-C
    does: what was committed is counted and said, and nothing is left running."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def _check_files(files: list[str]) -> None:
    """Exit 2 naming the first file that does not exist or is a directory ('-' is stdin)."""
    for name in files:
        path = Path(name)
        if name != "-" and (path.is_dir() or not path.exists()):
            problem = "is a directory" if path.is_dir() else "no such file"
            typer.echo(f"mailflow: error: {name}: {problem}", err=True)
            raise typer.Exit(2)


DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@app.command()
def reclassify(
    org: Annotated[str, typer.Option("--org", help="Organization whose mail to classify again.")],
    first: Annotated[str, typer.Option(
        "--from", metavar="DATE", help="First UTC day, YYYY-MM-DD, included.")],
    last: Annotated[str, typer.Option(
        "--to", metavar="DATE", help="Last UTC day, YYYY-MM-DD, included.")],
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", min=1, max=1_000_000, hidden=True,
        help="Message facts classified per transaction.")] = None,
) -> None:
    """Give the stored mail of a range of UTC days the connectors today's rules choose, and
    rebuild those days' rollups to match; running it again changes nothing."""
    from mailflow.ingest.reclassify import DEFAULT_BATCH_SIZE
    from mailflow.ingest.reclassify import reclassify as reclassify_range
    from mailflow.ingest.report import plural

    start, end = _utc_day("--from", first), _utc_day("--to", last)
    if end < start:
        _usage_error(f"--to {end} is before --from {start}; give the first day with --from "
                     "and the last with --to (the same day for one day)")

    async def work(pool: Any) -> None:
        async with pool.acquire() as connection:
            organization_id = await _organization_id(connection, org)
        result = await reclassify_range(pool, organization_id, start, end,
                                        batch_size=batch_size or DEFAULT_BATCH_SIZE)
        typer.echo(
            f"organization {org}, {start} to {end} (UTC): {plural(result.facts, 'message fact')} "
            f"classified again, {result.moved} given another connector; the rollups of "
            f"{plural(len(result.days_changed), 'day')} changed",
            err=True,
        )

    _run(lambda: _with_database(work))


def _utc_day(option: str, text: str) -> date:
    """The day an option names as YYYY-MM-DD; exit 2 with a message naming it otherwise."""
    try:
        if DAY.match(text):
            return date.fromisoformat(text)
        problem = "is not written YYYY-MM-DD"
    except ValueError as error:
        problem = f"is not a date ({error})"
    _usage_error(f"{option} {text[:40]!r} {problem}; give a UTC day such as 2021-01-27")


def _usage_error(message: str) -> NoReturn:
    typer.echo(f"mailflow: error: {message}", err=True)
    raise typer.Exit(2)


@partitions_app.command("maintain")
def partitions_maintain(
    months_ahead: Annotated[int, typer.Option(
        min=0, max=120, help="Months after this one whose fact partitions to create.")] = 3,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only list what would be created, dropped and removed.")] = False,
) -> None:
    """Create fact partitions ahead, drop those older than MAILFLOW_FACT_RETENTION_DAYS, and
    remove rollups older than MAILFLOW_ROLLUP_RETENTION_DAYS; running it again changes nothing."""
    from mailflow.rollups.retention import maintain
    from mailflow.store.partitions import partition_name

    settings = get_settings()

    async def work(pool: Any) -> None:
        async with pool.acquire() as connection:
            result = await maintain(
                connection, today=datetime.now(UTC).date(), months_ahead=months_ahead,
                fact_retention_days=settings.fact_retention_days,
                rollup_retention_days=settings.rollup_retention_days, dry_run=dry_run)
        would = "would " if dry_run else ""
        typer.echo(f"keeping facts since {result.keep_facts_since} and rollups since "
                   f"{result.keep_rollups_since} (UTC)")
        for month in result.created:
            typer.echo(f"{would}create {partition_name(month)}")
        for month in result.dropped:
            typer.echo(f"{would}drop {partition_name(month)} (facts of {month:%Y-%m})")
        for organization, rows in sorted(result.rollups_removed.items()):
            typer.echo(f"{would}remove {rows} rollup row(s) of organization {organization}")
        if not (result.created or result.dropped or result.rollups_removed):
            typer.echo("nothing to do")

    _run(lambda: _with_database(work))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(
        help="Address to listen on (default: MAILFLOW_HOST, else 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(
        min=1, max=65535,
        help="Port to listen on (default: MAILFLOW_PORT, else 8000).")] = None,
    demo: Annotated[bool, typer.Option(
        "--demo", help="Load the demo organization; on the embedded database it is "
                       "readable without a token.")] = False,
) -> None:
    """Serve the GraphQL API (GraphiQL in a browser at /graphql)."""
    from mailflow.server import check_listen_address, run_server

    settings = get_settings()
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    try:
        check_listen_address(host, port)
        run_server(settings, host=host, port=port, demo=demo)
    except (MailflowError, MigrationError, EmbeddedPostgresError, OSError) as error:
        typer.echo(f"mailflow: error: {error}", err=True)
        raise typer.Exit(2) from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        # The database went away or refused a statement mid-command, e.g. its server stopped.
        typer.echo(f"mailflow: error: the database failed: {error}", err=True)
        raise typer.Exit(1) from None


@app.command("export-schema")
def export_schema() -> None:
    """Print the GraphQL schema (SDL)."""
    from mailflow.api.schema import schema

    typer.echo(str(schema))


def main() -> None:
    """Console entry point."""
    warning = stale_warning()
    if warning is not None:
        print(f"mailflow: warning: {warning}", file=sys.stderr)
    app()
