"""Compare the dashboard query on mailflow with PostGraphile and with the stack's limit, in
alternating rounds under the same load; report requests per second, p50 and p99 latency, and
the ratios.

    python bench/queries.py                              # 20 organizations, 5 rounds of 30 s
    python bench/queries.py --rounds 3 --seconds 20 --targets mailflow,limit
    DATABASE_URL=postgresql://... python bench/queries.py --no-load   # an already-loaded database

The dashboard query reads one organization's 30-day mail flow and TLS breakdown for every
connector, and its insights, with an organization and a 30-day window drawn at random for each
request. The targets, each one process on 127.0.0.1 reading the same database:

- ``mailflow``: ``mailflow serve`` as shipped (one uvicorn process, the response cache on);
- ``mailflow-uncached``: the same with ``MAILFLOW_RESPONSE_CACHE=false``;
- ``mailflow-points``: uncached too, asking ``volume`` (a point per day) where the others ask
  ``volumeSeries`` (a list per figure);
- ``postgraphile``: PostGraphile 4 with @graphile/pg-aggregates and
  postgraphile-plugin-connection-filter (installed with ``npm ci`` into bench/node_modules
  from bench/package-lock.json) on the same tables: the connectors, and the rollups grouped by
  connector, day and TLS version, which a front end turns into the same dashboard;
- ``limit``: ``bench/stack_limit.py``, Starlette and asyncpg running mailflow's SQL and report
  code without GraphQL.

mailflow authenticates a viewer token per organization and works under row-level security;
PostGraphile and the limit connect as the database's owner, which must be a superuser or bypass
row security, and filter by organization_id in their queries. Before timing, every target
answers the same sample of requests and the answers are checked equal (PostGraphile's turned
into the dashboard by mailflow's report functions, as a front end would).

Load comes from wrk (``--client wrk``, the default when it is installed: a Lua script draws
each request from all organization and window pairs) or from asyncio and httpx in this process
(``--client python``); ``--connections`` keep-alive connections, for ``--seconds`` per target
and round, after ``--warmup`` seconds on one connection that are not counted. Rounds rotate
the order of the targets. Without ``DATABASE_URL`` a PostgreSQL of its own is started in a
temporary directory (default, durable settings) and loaded through mailflow's ingest path.
The figures, with the load average before and after each measurement, are printed as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from mailflow.domain import (
    Connector,
    ConnectorKind,
    DeliveryStatus,
    Direction,
    MessageFact,
    TlsVersion,
)
from mailflow.ingest.classify import load_classifier
from mailflow.ingest.pipeline import load_facts
from mailflow.reports.queries import DailyTotal
from mailflow.reports.ranges import DateRange
from mailflow.store.db import create_pool
from mailflow.store.embedded import EmbeddedPostgres
from mailflow.store.isolation import owner_transaction
from mailflow.store.migrate import migrate
from mailflow.store.organizations import OrganizationConfig, apply_organization
from mailflow.store.tokens import TokenRole, create_token

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack_limit import dashboard

BENCH = Path(__file__).resolve().parent
MAILFLOW = str(Path(sys.executable).parent / "mailflow")
POSTGRAPHILE = BENCH / "node_modules" / ".bin" / "postgraphile"
TARGETS = ("mailflow", "mailflow-uncached", "mailflow-points", "postgraphile", "limit")
WINDOW_DAYS = 30
ORGANIZATION_PREFIX = "bench-"

DASHBOARD = """query Dashboard($start: Date!, $end: Date!) {
  connectors {
    name
    volumeSeries(start: $start, end: $end) { dates messages byTls { version messages } }
    tlsBreakdown(start: $start, end: $end) { total versions { version messages percent } }
  }
  insights(start: $start, end: $end) { kind value connector { name } }
}"""
# The same with a point per day, each with its own list of TLS versions.
DASHBOARD_POINTS = DASHBOARD.replace(
    "volumeSeries(start: $start, end: $end) { dates messages byTls { version messages } }",
    "volume(start: $start, end: $end) { date messages byTls { version messages } }",
)

POSTGRAPHILE_DASHBOARD = """query Dashboard($organization: BigInt!, $start: Date!, $end: Date!) {
  allConnectors(condition: {organizationId: $organization}) {
    nodes { id name direction kind }
  }
  allDailyRollups(filter: {
    organizationId: {equalTo: $organization}
    connectorId: {isNull: false}
    day: {greaterThanOrEqualTo: $start, lessThanOrEqualTo: $end}
  }) {
    groupedAggregates(groupBy: [CONNECTOR_ID, DAY, TLS_VERSION]) {
      keys
      sum { messages recipients bytes }
    }
  }
}"""

LOAD_AVERAGE = Path("/proc/loadavg")


@dataclass(frozen=True, slots=True)
class Organization:
    id: int
    token: str


@dataclass(frozen=True, slots=True)
class Ask:
    """One dashboard request: whose, and which window."""

    organization: Organization
    window: DateRange


@dataclass(frozen=True, slots=True)
class HttpRequest:
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class Target:
    name: str
    url: str
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def request(self, ask: Ask) -> HttpRequest:
        """The HTTP request that asks this target for ``ask``'s dashboard."""
        window = {"start": ask.window.start.isoformat(), "end": ask.window.end.isoformat()}
        json_type = {"Content-Type": "application/json"}
        if self.name.startswith("mailflow"):
            document = DASHBOARD_POINTS if self.name == "mailflow-points" else DASHBOARD
            return HttpRequest("/graphql", {**json_type,
                               "Authorization": f"Bearer {ask.organization.token}"},
                               json.dumps({"query": document, "variables": window}))
        if self.name == "postgraphile":
            variables = {"organization": str(ask.organization.id), **window}
            return HttpRequest("/graphql", json_type,
                               json.dumps({"query": POSTGRAPHILE_DASHBOARD,
                                           "variables": variables}))
        return HttpRequest("/dashboard", json_type,
                           json.dumps({"organization": ask.organization.id, **window}))


@dataclass
class Measurement:
    target: str
    round: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    load_average: tuple[float, float] = (0.0, 0.0)
    extra: dict[str, Any] = field(default_factory=dict)


# --- data -------------------------------------------------------------------------------------

def bench_facts(
    organization: int, connectors: int, days: Sequence[date], per_connector_day: int
) -> Iterator[MessageFact]:
    """Mail of one generated organization: each connector's partner sends or receives
    ``per_connector_day`` messages a day with a TLS mix of its own, and as many again match
    no connector."""
    rng = random.Random(f"bench-queries:{organization}")
    versions = list(TlsVersion)
    for connector in range(connectors + 1):
        weights = [rng.random() ** 2 for _ in versions]
        inbound = connector % 2 == 0
        partner = f"partner{connector}.example" if connector < connectors else "else.example"
        ours = f"org{organization}.example"
        for day in days:
            for number in range(per_connector_day):
                moment = datetime.combine(day, day_time(rng.randrange(24), rng.randrange(60)), UTC)
                yield MessageFact(
                    source_key=f"bench:{connector}:{day}:{number}",
                    occurred_at=moment,
                    direction=Direction.INBOUND if inbound else Direction.OUTBOUND,
                    tls_version=rng.choices(versions, weights)[0],
                    tls_cipher=None,
                    peer_host=f"mx.{partner}",
                    peer_ip=f"192.0.2.{connector + 1}",
                    sender_domain=partner if inbound else ours,
                    recipient_domains=(ours,) if inbound else (partner,),
                    recipients=1 + number % 3,
                    size_bytes=2_000 + number * 37,
                    status=DeliveryStatus.RECEIVED if inbound else DeliveryStatus.DELIVERED,
                )


def organization_config(organization: int, connectors: int) -> OrganizationConfig:
    return OrganizationConfig.model_validate({
        "organization": f"{ORGANIZATION_PREFIX}{organization}",
        "accepted_domains": [f"org{organization}.example"],
        "connectors": [
            {"name": f"Partner {number:02d}",
             "direction": "inbound" if number % 2 == 0 else "outbound",
             "kind": ConnectorKind.PARTNER.value.lower(),
             **({"sender_domains": [f"partner{number}.example"]} if number % 2 == 0
                else {"recipient_domains": [f"partner{number}.example"]})}
            for number in range(connectors)
        ],
    })


async def load_data(
    dsn: str, organizations: int, connectors: int, days: Sequence[date], per_connector_day: int
) -> int:
    """Create the generated organizations and load their mail; return the facts stored."""
    pool = await create_pool(dsn, min_size=1, max_size=2)
    stored = 0
    try:
        async with pool.acquire() as connection:
            await migrate(connection)
        for organization in range(organizations):
            async with pool.acquire() as connection:
                applied = await apply_organization(
                    connection, organization_config(organization, connectors))
                async with owner_transaction(connection, applied.organization_id):
                    classifier = await load_classifier(connection, applied.organization_id)
            facts = bench_facts(organization, connectors, days, per_connector_day)
            result = await load_facts(pool, applied.organization_id, facts,
                                      classify=classifier.assign)
            stored += result.inserted
    finally:
        await pool.close()
    return stored


async def organizations_and_days(dsn: str) -> tuple[list[Organization], DateRange]:
    """The generated organizations of the database, a new viewer token each, and the days
    their rollups span; SystemExit when the login would not see every organization's rows."""
    connection = await asyncpg.connect(dsn)
    try:
        passes = await connection.fetchval(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
        if not passes:
            raise SystemExit("PostGraphile and the limit read every organization's rollups: "
                             "connect as a superuser or a role with BYPASSRLS")
        rows = await connection.fetch(
            "SELECT id FROM organizations WHERE name LIKE $1 ORDER BY id",
            ORGANIZATION_PREFIX + "%")
        span = await connection.fetchrow(
            "SELECT min(day) AS first, max(day) AS last FROM daily_rollups "
            "WHERE organization_id = ANY($1::bigint[])", [row["id"] for row in rows])
        if not rows or span is None or span["first"] is None:
            raise SystemExit(f"no organization named {ORGANIZATION_PREFIX}* with rollups in "
                             "the database: run without --no-load to load them")
        organizations = [
            Organization(row["id"], await create_token(
                connection, row["id"], description="bench/queries.py", role=TokenRole.VIEWER))
            for row in rows
        ]
        return organizations, DateRange(span["first"], span["last"])
    finally:
        await connection.close()


def all_asks(organizations: Sequence[Organization], days: DateRange) -> list[Ask]:
    """Every organization with every 30-day window inside ``days``."""
    starts = (days.end - days.start).days - WINDOW_DAYS + 2
    if starts < 1:
        raise SystemExit(f"the rollups span {days.start} to {days.end}: fewer than "
                         f"{WINDOW_DAYS} days")
    return [
        Ask(organization, DateRange(days.start + timedelta(offset),
                                    days.start + timedelta(offset + WINDOW_DAYS - 1)))
        for organization in organizations for offset in range(starts)
    ]


# --- targets ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def node_url(dsn: str) -> str:
    """``dsn`` as node-postgres reads it: a Unix socket directory as the host, URL-encoded."""
    match = re.fullmatch(r"postgresql://([^@/]*)@/([^?]+)\?host=(/.+)", dsn)
    if match is None:
        return dsn
    user, database, directory = match.groups()
    return f"socket:{directory}?db={database}&user={user}"


def install_postgraphile() -> None:
    """``npm ci`` in bench/ when PostGraphile is not installed there yet."""
    if POSTGRAPHILE.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("PostGraphile needs Node.js and npm (Debian: apt-get install npm)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BENCH, check=True)


def command_of(name: str, port: int, dsn: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "DATABASE_URL": dsn}
    if name.startswith("mailflow"):
        env.update(MAILFLOW_RATE_LIMIT="off", MAILFLOW_LOG_LEVEL="WARNING",
                   MAILFLOW_RESPONSE_CACHE="true" if name == "mailflow" else "false")
        return [MAILFLOW, "serve", "--host", "127.0.0.1", "--port", str(port)], env
    if name == "postgraphile":
        env["NODE_ENV"] = "production"
        return [str(POSTGRAPHILE), "--connection", node_url(dsn), "--schema", "public",
                "--host", "127.0.0.1", "--port", str(port), "--disable-graphiql",
                "--disable-query-log", "--disable-default-mutations",
                "--append-plugins",
                "@graphile/pg-aggregates,postgraphile-plugin-connection-filter"], env
    return [sys.executable, str(BENCH / "stack_limit.py"), "--port", str(port)], env


@contextmanager
def started(names: Sequence[str], dsn: str, directory: Path) -> Iterator[list[Target]]:
    """The targets, each a process listening on 127.0.0.1, stopped at the end."""
    targets: list[Target] = []
    try:
        for name in names:
            port = free_port()
            command, env = command_of(name, port, dsn)
            log_path = directory / f"{name}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(command, env=env, cwd=BENCH, stdout=log,
                                           stderr=subprocess.STDOUT)
            target = Target(name, f"http://127.0.0.1:{port}", process, log_path)
            targets.append(target)
            wait_until_listening(target, port)
        yield targets
    finally:
        for target in targets:
            assert target.process is not None
            target.process.send_signal(signal.SIGTERM)
        for target in targets:
            assert target.process is not None
            try:
                target.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                target.process.kill()


def wait_until_listening(target: Target, port: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert target.process is not None
        assert target.log is not None
        if target.process.poll() is not None:
            raise SystemExit(f"{target.name} exited: {target.log.read_text()[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"{target.name} did not listen on port {port} within 120 s")


# --- answers ----------------------------------------------------------------------------------

def answer_of(target: Target, ask: Ask, client: httpx.Client) -> Any:
    """The dashboard ``target`` answers to ``ask``, as mailflow's GraphQL answer reads."""
    request = target.request(ask)
    response = client.post(target.url + request.path, content=request.body,
                           headers=request.headers, timeout=60)
    body = response.json()
    if response.status_code != 200 or "errors" in body:
        raise SystemExit(f"{target.name} failed for {ask}: {response.status_code} "
                         f"{response.text[:1000]}")
    if target.name == "postgraphile":
        return dashboard_of_postgraphile(body["data"], ask.window)
    if target.name == "mailflow-points":
        return flat(body)
    return body


def flat(answer: Any) -> Any:
    """An answer of the query with a point per day as the one with series reads."""
    for connector in answer["data"]["connectors"]:
        points = connector.pop("volume")
        versions = [count["version"] for count in points[0]["byTls"]] if points else []
        connector["volumeSeries"] = {
            "dates": [point["date"] for point in points],
            "messages": [point["messages"] for point in points],
            "byTls": [
                {"version": version,
                 "messages": [point["byTls"][index]["messages"] for point in points]}
                for index, version in enumerate(versions)
            ],
        }
    return answer


def dashboard_of_postgraphile(data: Any, window: DateRange) -> Any:
    """PostGraphile's connectors and grouped sums as the dashboard, by mailflow's functions."""
    connectors = [
        Connector(id=int(node["id"]), name=node["name"], direction=Direction(node["direction"]),
                  kind=ConnectorKind(node["kind"]))
        for node in data["allConnectors"]["nodes"]
    ]
    totals: dict[int, list[DailyTotal]] = {}
    for group in data["allDailyRollups"]["groupedAggregates"]:
        connector_id, day, tls_version = group["keys"]
        sums = group["sum"]
        totals.setdefault(int(connector_id), []).append(DailyTotal(
            date.fromisoformat(day[:10]), TlsVersion(tls_version), int(sums["messages"]),
            int(sums["recipients"]), int(sums["bytes"])))
    return dashboard(connectors, totals, window)


def check_answers(targets: Sequence[Target], asks: Sequence[Ask], sample: int) -> int:
    """Ask every target the same ``sample`` requests (each organization at least once when
    there are enough); SystemExit on the first answer that differs. Return the number checked."""
    rng = random.Random(1)
    by_organization: dict[int, list[Ask]] = {}
    for ask in asks:
        by_organization.setdefault(ask.organization.id, []).append(ask)
    chosen = [rng.choice(choices) for choices in by_organization.values()][:sample]
    chosen += rng.sample(asks, max(0, min(sample - len(chosen), len(asks))))
    with httpx.Client() as client:
        for ask in chosen:
            answers = {target.name: answer_of(target, ask, client) for target in targets}
            first_name, first = next(iter(answers.items()))
            for name, answer in answers.items():
                if answer != first:
                    raise SystemExit(f"{name} and {first_name} answer {ask} differently:\n"
                                     f"{json.dumps(answer)[:1500]}\n{json.dumps(first)[:1500]}")
            if not first["data"]["connectors"]:
                raise SystemExit(f"no connectors in the answer to {ask}")
    return len(chosen)


# --- load -------------------------------------------------------------------------------------

WRK_SCRIPT = """
local requests = {}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("number", threads)
end
function init(args)
  math.randomseed(os.time() * 100 + number)
  for index, item in ipairs(items) do
    requests[index] = wrk.format("POST", item[1], item[2], item[3])
  end
  assert(#requests == #items and #requests > 0, "no requests to send")
end
function request()
  return requests[math.random(#requests)]
end
"""


def wrk_script(target: Target, asks: Sequence[Ask]) -> str:
    """A wrk script that sends one of ``asks``, drawn at random, with each request."""
    def text(value: str) -> str:
        assert "]==]" not in value
        return f"[==[{value}]==]"

    host = target.url.removeprefix("http://")
    items = []
    for ask in asks:
        request = target.request(ask)
        headers = ", ".join(f"[ {text(name)} ] = {text(value)}"
                            for name, value in {"Host": host, **request.headers}.items())
        items.append(f"{{{text(request.path)}, {{{headers}}}, {text(request.body)}}}")
    return "items = {\n" + ",\n".join(items) + "\n}\n" + WRK_SCRIPT


def wrk_duration_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(target: Target, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    threads = min(2, connections)
    output = subprocess.run(
        ["wrk", "--latency", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s",
         "--timeout", "60s", "-s", str(script), target.url],
        capture_output=True, text=True, check=True,
    ).stdout
    requests = re.search(r"(\d+) requests in ([\d.]+)(\w+)", output)
    assert requests is not None, output
    errors = sum(int(count) for count in re.findall(r"(?:connect|read|write|timeout) (\d+)",
                                                   output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)\s*$", output, re.MULTILINE))
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if len(percentiles) < 2 or rate is None:
        raise SystemExit(f"wrk measured no latency of {target.name}: {output}")
    return {
        "requests": int(requests.group(1)),
        "errors": errors,
        "requests_per_second": float(rate.group(1)),
        "p50_ms": wrk_duration_ms(percentiles["50"]),
        "p99_ms": wrk_duration_ms(percentiles["99"]),
    }


async def python_load(
    target: Target, asks: Sequence[Ask], connections: int, seconds: float
) -> dict[str, Any]:
    """``connections`` clients (asyncio and httpx, a client each) that send a request drawn at
    random as soon as the last is answered, for ``seconds``."""
    requests = [target.request(ask) for ask in asks]
    latencies: list[float] = []
    errors = 0
    until = time.monotonic() + seconds

    async def client(number: int) -> None:
        nonlocal errors
        rng = random.Random(number)
        async with httpx.AsyncClient(base_url=target.url, timeout=60) as http:
            while time.monotonic() < until:
                request = rng.choice(requests)
                sent = time.monotonic()
                try:
                    response = await http.post(request.path, content=request.body,
                                               headers=request.headers)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.monotonic() - sent)
                errors += not ok

    started_at = time.monotonic()
    await asyncio.gather(*(client(number) for number in range(connections)))
    elapsed = time.monotonic() - started_at
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else 0.0,
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
                        2) if latencies else 0.0,
    }


def load_average() -> float:
    try:
        return float(LOAD_AVERAGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def measure(
    target: Target, asks: Sequence[Ask], *, client: str, connections: int, seconds: float,
    warmup: float, round_number: int, script: Path | None,
) -> Measurement:
    """One target under load for ``seconds``, after ``warmup`` seconds that are not counted."""
    def load(duration: float, connections: int) -> dict[str, Any]:
        if client == "wrk":
            assert script is not None
            return run_wrk(target, script, connections, duration)
        return asyncio.run(python_load(target, asks, connections, duration))

    # One connection warms up: requests left unanswered when it stops would hold the server
    # up at the start of the measurement.
    if warmup > 0:
        load(warmup, 1)
    before = load_average()
    figures = load(seconds, connections)
    return Measurement(target.name, round_number, figures["requests"], figures["errors"],
                       seconds, figures["requests_per_second"], figures["p50_ms"],
                       figures["p99_ms"], (before, load_average()))


# --- the comparison ---------------------------------------------------------------------------

def medians(measurements: Sequence[Measurement]) -> dict[str, dict[str, float]]:
    by_target: dict[str, list[Measurement]] = {}
    for measurement in measurements:
        by_target.setdefault(measurement.target, []).append(measurement)
    return {
        name: {
            "requests_per_second": round(statistics.median(
                m.requests_per_second for m in runs), 1),
            "p50_ms": round(statistics.median(m.p50_ms for m in runs), 2),
            "p99_ms": round(statistics.median(m.p99_ms for m in runs), 2),
            "errors": sum(m.errors for m in runs),
        }
        for name, runs in by_target.items()
    }


def ratios(summary: dict[str, dict[str, float]]) -> dict[str, Any]:
    """mailflow (with and without its response cache) against PostGraphile and the limit."""
    found: dict[str, Any] = {}
    for mailflow in ("mailflow", "mailflow-uncached", "mailflow-points"):
        if mailflow not in summary:
            continue
        ours = summary[mailflow]
        if "postgraphile" in summary:
            peer = summary["postgraphile"]
            rps = ours["requests_per_second"] / peer["requests_per_second"]
            found[f"{mailflow}/postgraphile"] = {
                "requests_per_second": round(rps, 2),
                "p99": round(ours["p99_ms"] / peer["p99_ms"], 2),
                "target_met": rps >= 1.0 and ours["p99_ms"] <= peer["p99_ms"],
            }
        if "limit" in summary:
            rps = ours["requests_per_second"] / summary["limit"]["requests_per_second"]
            found[f"{mailflow}/limit"] = {"requests_per_second": round(rps, 2),
                                          "target_met": rps >= 0.6}
    return found


@dataclass
class Options:
    names: Sequence[str]
    rounds: int = 5
    seconds: float = 30
    warmup: float = 3
    connections: int = 50
    client: str = "wrk"
    sample: int = 20


def compare(dsn: str, options: Options, directory: Path) -> dict[str, Any]:
    """Check the targets' answers, then measure them in alternating rounds."""
    organizations, days = asyncio.run(organizations_and_days(dsn))
    asks = all_asks(organizations, days)
    if "postgraphile" in options.names:
        install_postgraphile()
    measurements: list[Measurement] = []
    with started(options.names, dsn, directory) as targets:
        checked = check_answers(targets, asks, options.sample)
        scripts = {}
        if options.client == "wrk":
            for target in targets:
                scripts[target.name] = directory / f"{target.name}.lua"
                scripts[target.name].write_text(wrk_script(target, asks))
        for round_number in range(options.rounds):
            shift = round_number % len(targets)
            for target in targets[shift:] + targets[:shift]:
                measurements.append(measure(
                    target, asks, client=options.client, connections=options.connections,
                    seconds=options.seconds, warmup=options.warmup, round_number=round_number,
                    script=scripts.get(target.name)))
                print(json.dumps(measurements[-1].__dict__), file=sys.stderr, flush=True)
    summary = medians(measurements)
    return {
        "organizations": len(organizations),
        "days": [days.start.isoformat(), days.end.isoformat()],
        "requests_to_draw_from": len(asks),
        "answers_checked_equal": checked,
        "client": options.client,
        "connections": options.connections,
        "seconds": options.seconds,
        "rounds": options.rounds,
        "medians": summary,
        "ratios": ratios(summary),
        "measurements": [m.__dict__ for m in measurements],
    }


@contextmanager
def database(arguments: argparse.Namespace) -> Iterator[str]:
    """DATABASE_URL (loaded here unless --no-load), or a PostgreSQL of its own, loaded."""
    days = [date.today() - timedelta(days=offset) for offset in range(arguments.days - 1, -1, -1)]
    with ExitStack() as stack:
        dsn = os.environ.get("DATABASE_URL") or None
        if dsn is None:
            # PostgreSQL runs as the postgres user when this runs as root: a directory it reaches.
            postgres_dir = Path(tempfile.mkdtemp(prefix="mailflow-queries-pg-"))
            postgres_dir.chmod(0o755)
            stack.callback(shutil.rmtree, postgres_dir, ignore_errors=True)
            postgres = EmbeddedPostgres(postgres_dir)
            dsn = postgres.start()
            stack.callback(postgres.stop)
        if not arguments.no_load:
            started_at = time.monotonic()
            stored = asyncio.run(load_data(dsn, arguments.organizations, arguments.connectors,
                                           days, arguments.messages))
            print(json.dumps({"loaded_facts": stored,
                              "seconds": round(time.monotonic() - started_at, 1)}),
                  file=sys.stderr, flush=True)
        yield dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated, of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--client", choices=("wrk", "python"),
                        default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--organizations", type=int, default=20)
    parser.add_argument("--connectors", type=int, default=10)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--messages", type=int, default=10,
                        help="messages per connector and day (default 10)")
    parser.add_argument("--no-load", action="store_true",
                        help="use the organizations already in DATABASE_URL")
    arguments = parser.parse_args()
    names = [name.strip() for name in arguments.targets.split(",") if name.strip()]
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {', '.join(unknown)}: choose from {', '.join(TARGETS)}")
    options = Options(names, arguments.rounds, arguments.seconds, arguments.warmup,
                      arguments.connections, arguments.client)
    directory = Path(tempfile.mkdtemp(prefix="mailflow-queries-"))
    try:
        with database(arguments) as dsn:
            print(json.dumps(compare(dsn, options, directory), indent=1))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
