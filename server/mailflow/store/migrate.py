"""Apply the ordered plain-SQL migrations in ``sql/migrations``.

A small runner rather than a migration tool: the maintained tools that take
plain SQL files (yoyo, dbmate, sqitch) bring their own driver or binary, while
mailflow talks to PostgreSQL through asyncpg alone. Each file runs in its own
transaction, under an advisory lock that keeps two servers starting at once from racing.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from mailflow.store.connection import Connection
from mailflow.store.sql import sql_dir

log = logging.getLogger("mailflow.migrate")

MIGRATION_LOCK = 0x6D61696C666C6F77  # "mailflow"
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database's migrations disagree with the files."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """The migration files in version order."""
    folder = folder or sql_dir() / "migrations"
    migrations = []
    for path in sorted(folder.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [migration.version for migration in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version in {folder}")
    return migrations


async def pending_migrations(connection: Connection) -> list[Migration]:
    """Migrations not yet applied; raises when an applied file has changed since."""
    await connection.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version integer PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    return await unapplied_migrations(connection)


async def unapplied_migrations(connection: Connection) -> list[Migration]:
    """Migrations that schema_migrations does not list; raises when an applied file has
    changed since. Reads the table only, so a role that may not migrate can ask too."""
    applied = {
        row["version"]: row["checksum"]
        for row in await connection.fetch("SELECT version, checksum FROM schema_migrations")
    }
    pending = []
    for migration in load_migrations():
        checksum = applied.get(migration.version)
        if checksum is None:
            pending.append(migration)
        elif checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} was changed after it was "
                "applied: restore the file and add a new migration instead"
            )
    return pending


async def migrate(connection: Connection) -> list[Migration]:
    """Apply pending migrations, one transaction each; return those applied.

    Each transaction takes the migration lock until it ends, and only then reads what is
    pending: a lock held by the session would stay behind a pooler in transaction mode, in
    whichever server session took it.
    """
    applied: list[Migration] = []
    while True:
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            pending = await pending_migrations(connection)
            if not pending:
                return applied
            migration = pending[0]
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version, migration.name, migration.checksum,
            )
        log.info("applied migration %04d_%s", migration.version, migration.name)
        applied.append(migration)
