"""Hold many concurrent clients on a mailflow server, then restart PostgreSQL under them; report
requests, errors, requests per second, latency percentiles, and what the clients saw of the
outage.

    python bench/load.py                                   # 200 clients, two runs of 300 s
    python bench/load.py --clients 20 --seconds 30 --outage-seconds 3
    python bench/load.py --url http://127.0.0.1:8000 --token "$TOKEN"   # steady run only

By default the script starts a PostgreSQL of its own in a temporary directory (the system's
binaries, as the embedded database does) and ``mailflow serve --demo`` on it, on 127.0.0.1,
with the default settings, and creates one viewer token of the demo organization per client.
Each client sends the README's dashboard query in a loop over its own keep-alive connection
(asyncio and httpx, one process, an httpx client per connection). An answer is an error
unless it is HTTP 200 without GraphQL errors; after an error a client pauses 0.1 s, not the
Retry-After, so that the time until answers return is seen to a tenth of a second.

The steady run holds the clients for ``--seconds``. The outage run does the same, and at half
time stops PostgreSQL (``pg_ctl stop -m fast``: sessions are ended at once), keeps it down
for ``--outage-seconds`` and starts it again; it reports the answers by status during the
outage and how long after PostgreSQL accepted connections again the first 200 (to a request
sent after that), and the last 503, came. The server is never restarted. Only loopback
addresses are used. The figures, with the CPU seconds of the client and the server process,
are printed as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from mailflow.store.embedded import EmbeddedPostgres
from mailflow.store.tokens import TokenRole, create_token

MAILFLOW = str(Path(sys.executable).parent / "mailflow")
DASHBOARD = """
query Dashboard {
  mailFlow(direction: INBOUND) { date messages byTls { version messages } }
  tlsBreakdown { total versions { version messages percent } }
  insights { kind value threshold connector { name } }
  connectors { name direction kind tlsBreakdown { total } }
}
"""
PAUSE_AFTER_ERROR = 0.1
REQUEST_TIMEOUT = 120.0  # the machine may be shared: slow answers are measured, not errors
RECOVERY_TARGET_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: when it was sent and answered (monotonic seconds), and how."""

    sent: float
    done: float
    status: int  # 0: no HTTP answer
    code: str  # extensions.code of the first error, the exception's name, or ""


@dataclass
class Server:
    """Where the clients send their queries, and the PostgreSQL the script may restart."""

    url: str
    tokens: list[str]
    postgres: EmbeddedPostgres | None = None
    log_path: Path | None = None
    pid: int | None = None  # the server process, for its CPU time


def process_cpu_seconds(pid: int | None, *, children: bool = False) -> float | None:
    """User and system CPU seconds of process ``pid`` so far (with ``children``, also of its
    children, live and exited), from /proc; None if unknown."""
    if pid is None:
        return None
    fields = _stat(pid)
    if fields is None:
        return None
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
        for entry in Path("/proc").iterdir():
            child = _stat(int(entry.name)) if entry.name.isdigit() else None
            if child is not None and int(child[1]) == pid:
                ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def postmaster_pid(postgres: EmbeddedPostgres | None) -> int | None:
    if postgres is None:
        return None
    try:
        return int((postgres.cluster_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def client(http: httpx.AsyncClient, token: str, until: float,
                 samples: list[Sample]) -> None:
    """Send the dashboard query until ``until``, one request at a time."""
    headers = {"Authorization": f"Bearer {token}"}
    while (sent := time.monotonic()) < until:
        try:
            response = await http.post("/graphql", json={"query": DASHBOARD}, headers=headers)
            status, code = response.status_code, _code(response)
        except httpx.HTTPError as error:
            status, code = 0, type(error).__name__
        samples.append(Sample(sent, time.monotonic(), status, code))
        if status != 200 or code:
            await asyncio.sleep(PAUSE_AFTER_ERROR)


def _code(response: httpx.Response) -> str:
    """The code of the answer's first error, "" for an answer without errors."""
    if response.status_code == 200 and b'"errors"' not in response.content:
        return ""
    try:
        errors = response.json().get("errors") or [{}]
        return str(errors[0].get("extensions", {}).get("code", "NO_CODE"))
    except (ValueError, AttributeError):
        return "NOT_JSON"


async def hold(server: Server, clients: int, seconds: float,
               outage_seconds: float | None = None) -> dict[str, Any]:
    """Run ``clients`` clients for ``seconds``; restart PostgreSQL at half time if asked."""
    samples: list[Sample] = []
    # A client of its own per simulated client: httpx's pool of one connection each, since a
    # pool shared by hundreds of connections costs the client more CPU than the requests.
    https = [httpx.AsyncClient(base_url=server.url, timeout=REQUEST_TIMEOUT,
                               limits=httpx.Limits(max_connections=1))
             for _ in range(clients)]
    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu_before = process_cpu_seconds(server.pid)
    postmaster = postmaster_pid(server.postgres)
    postgres_cpu_before = process_cpu_seconds(postmaster, children=True)
    started = time.monotonic()
    until = started + seconds
    restart = None
    if outage_seconds is not None:
        assert server.postgres is not None, "an outage needs the script's own PostgreSQL"
        restart = asyncio.create_task(
            restart_postgres(server.postgres, started + seconds / 2, outage_seconds))
    try:
        await asyncio.gather(*(
            client(http, server.tokens[number % len(server.tokens)], until, samples)
            for number, http in enumerate(https)
        ))
    finally:
        for http in https:
            await http.aclose()
    elapsed = time.monotonic() - started
    times = await restart if restart else None
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    figures = summary(samples, elapsed, clients)
    figures["load_average_before_after"] = [round(load_before[0], 2),
                                            round(os.getloadavg()[0], 2)]
    figures["client_cpu_seconds"] = round(
        cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 1)
    server_cpu_after = process_cpu_seconds(server.pid)
    if server_cpu_before is not None and server_cpu_after is not None:
        figures["server_cpu_seconds"] = round(server_cpu_after - server_cpu_before, 1)
    # Across a restart the postmaster is another process, and the first one's count is gone.
    postgres_cpu_after = process_cpu_seconds(postmaster, children=True)
    if postgres_cpu_before is not None and postgres_cpu_after is not None \
            and postmaster == postmaster_pid(server.postgres):
        figures["postgres_cpu_seconds"] = round(postgres_cpu_after - postgres_cpu_before, 1)
    if times is not None:
        figures["outage"] = outage(samples, *times)
    return figures


async def restart_postgres(postgres: EmbeddedPostgres, at: float,
                           down_seconds: float) -> tuple[float, float, float]:
    """Stop PostgreSQL at ``at``, start it ``down_seconds`` after it stopped; the three times."""
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    stopping = time.monotonic()
    await asyncio.to_thread(postgres.stop)
    stopped = time.monotonic()
    await asyncio.sleep(down_seconds)
    await asyncio.to_thread(postgres.start)
    return stopping, stopped, time.monotonic()


def summary(samples: list[Sample], elapsed: float, clients: int) -> dict[str, Any]:
    """Requests, errors by status and code, requests per second and latency percentiles."""
    latencies = sorted(sample.done - sample.sent for sample in samples)
    percentiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    errors = Counter(f"{s.status} {s.code}".strip() for s in samples if s.status != 200 or s.code)
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(samples),
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
        "requests_per_second": round(len(samples) / elapsed, 1),
        "latency_ms": {
            "p50": _ms(percentiles[49]),
            "p99": _ms(percentiles[98]),
            "max": _ms(latencies[-1]) if latencies else None,
        },
    }


def outage(samples: list[Sample], stopping: float, stopped: float,
           back: float) -> dict[str, Any]:
    """What the clients saw from the stop of PostgreSQL until answers were 200 again.

    ``back`` is when PostgreSQL accepted connections again (``pg_ctl start -w`` returned).
    Recovered means a request sent after ``back`` was answered 200, and the last 503 came,
    within RECOVERY_TARGET_SECONDS of it.
    """
    during = [s for s in samples if stopping <= s.done <= back]
    after = [s for s in samples if s.done > back]
    first_ok = min((s.done for s in after if s.sent >= back and s.status == 200 and not s.code),
                   default=None)
    last_unavailable = max((s.done for s in after if s.status == 503), default=back)
    unexpected = Counter(
        f"{s.status} {s.code}".strip() for s in samples
        if (s.status != 200 or s.code) and (s.status, s.code) != (503, "DATABASE_UNAVAILABLE")
    )
    return {
        "stop_seconds": round(stopped - stopping, 2),
        "down_seconds": round(back - stopped, 2),
        "answers_during_outage": dict(Counter(str(s.status) for s in during)),
        "unavailable_503": sum(
            1 for s in samples if (s.status, s.code) == (503, "DATABASE_UNAVAILABLE")),
        "other_errors": dict(unexpected),
        "first_200_after_seconds": None if first_ok is None else round(first_ok - back, 2),
        "last_503_after_seconds": round(last_unavailable - back, 2),
        "recovered_within_target": first_ok is not None
        and max(first_ok, last_unavailable) - back <= RECOVERY_TARGET_SECONDS,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


@contextmanager
def started_server(clients: int, directory: Path, rate_limit: str | None) -> Iterator[Server]:
    """A private PostgreSQL and ``mailflow serve --demo`` on it, with a token per client."""
    # PostgreSQL runs as the postgres user when this runs as root: a directory it can reach.
    postgres_dir = Path(tempfile.mkdtemp(prefix="mailflow-load-pg-"))
    postgres_dir.chmod(0o755)
    postgres = EmbeddedPostgres(postgres_dir)
    log_path = directory / "server.log"
    server = None
    try:
        dsn = postgres.start()
        env = {**os.environ, "DATABASE_URL": dsn, "MAILFLOW_LOG_LEVEL": "WARNING"}
        if rate_limit is not None:
            env["MAILFLOW_RATE_LIMIT"] = rate_limit
        port = free_port()
        with open(log_path, "wb") as log:
            server = subprocess.Popen([MAILFLOW, "serve", "--demo", "--port", str(port)],
                                      env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, server, log_path)
        tokens = asyncio.run(demo_tokens(dsn, clients))
        yield Server(url, tokens, postgres, log_path, server.pid)
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
        postgres.stop()
        shutil.rmtree(postgres_dir, ignore_errors=True)


async def demo_tokens(dsn: str, count: int) -> list[str]:
    """``count`` new viewer tokens of the demo organization."""
    connection = await asyncpg.connect(dsn)
    try:
        organization_id = await connection.fetchval(
            "SELECT id FROM organizations WHERE name = 'demo'")
        return [
            await create_token(connection, organization_id, description=f"load client {number}",
                               role=TokenRole.VIEWER)
            for number in range(count)
        ]
    finally:
        await connection.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_serving(url: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 300  # the demo's month of traffic is loaded first
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {log_path.read_text()[-2000:]}")
        try:
            httpx.get(url + "/graphql", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer at {url}")


def server_log_counts(log_path: Path | None) -> dict[str, int]:
    """Lines of the server's log by level; ERROR records (bugs) are copied to stderr."""
    if log_path is None:
        return {}
    lines = log_path.read_text(errors="replace").splitlines()
    levels: Counter[str] = Counter()
    shown = 0
    for number, line in enumerate(lines):
        words = line.split(" ")
        if line[:2] != "20" or len(words) < 3:
            continue
        levels[words[2]] += 1
        if words[2] == "ERROR" and shown < 5:
            shown += 1
            print("\n".join(lines[number:number + 60]), file=sys.stderr)
    return dict(levels)


def run(clients: int, seconds: float, outage_seconds: float, data_dir: Path,
        rate_limit: str | None = None) -> dict[str, Any]:
    """Both runs on a server started here: steady, then with PostgreSQL restarted midway.

    ``rate_limit`` is the server's MAILFLOW_RATE_LIMIT; None keeps its default.
    """
    with started_server(clients, data_dir, rate_limit) as server:
        steady = asyncio.run(hold(server, clients, seconds))
        restarted = asyncio.run(hold(server, clients, seconds, outage_seconds))
        logged = server_log_counts(server.log_path)
    return {"steady": steady, "outage_run": restarted, "server_log_lines": logged}


def loopback(url: str) -> str:
    host = urlsplit(url).hostname or ""
    try:
        is_loopback = host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback:
        raise SystemExit(f"{url} is not a loopback address: the load stays on this machine")
    return url.rstrip("/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--outage-seconds", type=float, default=5)
    parser.add_argument("--rate-limit", help="MAILFLOW_RATE_LIMIT of the server started here "
                        "(default: the server's default)")
    parser.add_argument("--url", help="a running server (loopback) for the steady run only")
    parser.add_argument("--token", action="append", default=[],
                        help="a viewer token for --url (repeat for more)")
    arguments = parser.parse_args()
    if arguments.url:
        if not arguments.token:
            raise SystemExit("--url needs at least one --token")
        server = Server(loopback(arguments.url), arguments.token)
        print(json.dumps({"steady": asyncio.run(hold(server, arguments.clients,
                                                     arguments.seconds))}))
        return
    directory = Path(tempfile.mkdtemp(prefix="mailflow-load-"))
    try:
        print(json.dumps(run(arguments.clients, arguments.seconds, arguments.outage_seconds,
                             directory, arguments.rate_limit)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
