"""Fixtures shared by every test: a real PostgreSQL, one fresh database per test."""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType

import asyncpg
import pytest

from mailflow.compiled import stale_warning
from mailflow.store.embedded import EmbeddedPostgres
from mailflow.store.isolation import SERVICE_ROLE
from mailflow.store.migrate import migrate

REPO = Path(__file__).resolve().parents[1]
REALDATA = (REPO.parent / "shared" / "realdata").resolve()
TEMPLATE = "mailflow_template"
# A login with no privileges of its own that may switch to the service role: an application on
# it fails loudly on any statement that does not run in a transaction of the service role.
SERVICE_LOGIN = "mailflow_test_service"
_database_numbers = itertools.count()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test old compiled modules in place of the source under test."""
    warning = stale_warning()
    if warning is not None:
        raise pytest.UsageError(warning)


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server for the whole run, in a temporary directory."""
    data_dir = Path(tempfile.mkdtemp(prefix="mailflow-test-pg-"))
    data_dir.chmod(0o755)
    os.environ.setdefault("MAILFLOW_EMBEDDED_FAST", "1")
    server = EmbeddedPostgres(data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def template_database(postgres: EmbeddedPostgres) -> str:
    """A migrated database that each test's database is copied from."""
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        await admin.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await admin.close()
    connection = await asyncpg.connect(postgres.dsn(TEMPLATE))
    try:
        await migrate(connection)
        await connection.execute(
            f"CREATE ROLE {SERVICE_LOGIN} LOGIN NOINHERIT IN ROLE {SERVICE_ROLE}"
        )
    finally:
        await connection.close()
    return TEMPLATE


@pytest.fixture
async def database_url(postgres: EmbeddedPostgres, template_database: str) -> AsyncIterator[str]:
    """The DSN of a fresh, migrated database that is dropped after the test."""
    name = f"mailflow_test_{os.getpid()}_{next(_database_numbers)}"
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
        yield postgres.dsn(name)
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool on the test's database, as the superuser that owns it."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def service_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test's database as SERVICE_LOGIN, which holds no privilege itself."""
    pool = await asyncpg.create_pool(as_user(database_url, SERVICE_LOGIN), min_size=1, max_size=4)
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


def as_user(dsn: str, user: str) -> str:
    """The DSN of an embedded test database (``postgresql://postgres@/...``) for ``user``."""
    return dsn.replace("postgresql://postgres@", f"postgresql://{user}@", 1)


def realdata(*parts: str) -> Path:
    """A file under ../shared/realdata, or skip the test when it is absent."""
    path = REALDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent "
                    "(it lives in ../shared/realdata beside the repository)")
    return path


def load_script(path: Path) -> ModuleType:
    """A Python file that is not part of a package, such as a benchmark, as a module."""
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
