"""Ingest speed and memory: a generated Postfix log parsed, and stored, by mailflow and read by
pflogsumm; generated NDJSON records stored; peak memory at two input sizes.

    python bench/ingest.py speed --size-mb 400 --records 1000000 --rounds 3
    python bench/ingest.py memory --size-mb 200 --size-mb 2000

``speed`` runs, in each round, mailflow's parse only, pflogsumm on the same file, mailflow's
parse and store, and the NDJSON store, one after the other, and prints each run and then the
medians: other work on the machine slows some runs, the medians less. ``memory`` parses (and,
with ``--store``, also stores) logs of each size and prints the peak memory of each.

Every run is a child process started afresh: its peak memory is its peak resident set, the
VmHWM that it reads from /proc at its end (for pflogsumm, ru_maxrss from wait4, which also
counts the pages of this script before the child's exec: an upper bound), and its time is
taken inside it around the work alone, without the start of Python. Stores go through the
normal ingest path (``ingest_files``: read, parse, classify, COPY, rollup refresh, one
transaction a batch) into an organization of their own, on an embedded PostgreSQL under a
temporary directory, or on DATABASE_URL when it is set. pflogsumm is timed as a whole command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from postfix_log import ORGANIZATION_DOMAIN, START, YEAR, PostfixLog

MAILFLOW = str(Path(sys.executable).parent / "mailflow")
ORGANIZATION = f"""\
organization: {{name}}
accepted_domains: [{ORGANIZATION_DOMAIN}]
connectors:
  - name: Partners 0-9
    direction: inbound
    kind: partner
    sender_domains: [{", ".join(f"partner{n}.example.net" for n in range(10))}]
  - name: Partners 0-9 (outbound)
    direction: outbound
    kind: partner
    recipient_domains: [{", ".join(f"partner{n}.example.net" for n in range(10))}]
"""
_TLS = ["TLS1_2"] * 55 + ["TLS1_3"] * 35 + ["NONE"] * 8 + ["TLS1_0"] * 2


# inputs


def write_postfix_log(path: Path, size_bytes: int, seed: int) -> dict[str, int]:
    """Write a generated log of about ``size_bytes``; what it holds."""
    log = PostfixLog(seed)
    with path.open("w", encoding="utf-8", buffering=1 << 20) as file:
        file.writelines(log.lines(size_bytes))
    generated = log.generated
    return {"lines": generated.lines, "bytes": generated.bytes, "messages": generated.messages,
            "inbound_facts": generated.inbound_facts,
            "outbound_facts": generated.outbound_facts, "facts": generated.facts}


def records(count: int, seed: int) -> Iterator[str]:
    """NDJSON lines of ``count`` records in mailflow's format, over 30 days."""
    pick = random.Random(seed)
    step = timedelta(seconds=30 * 86_400 / max(count, 1))
    for number in range(count):
        inbound = pick.random() < 0.55
        partner = f"partner{pick.randrange(300)}.example.net"
        record = {
            "source_key": f"mx1/bench-{seed}-{number}",
            "occurred_at": (START + number * step).isoformat(),
            "direction": "INBOUND" if inbound else "OUTBOUND",
            "tls_version": pick.choice(_TLS),
            "tls_cipher": "TLS_AES_256_GCM_SHA384",
            "peer_host": f"mx.{partner}",
            "peer_ip": f"198.51.100.{pick.randrange(1, 255)}",
            "sender_domain": partner if inbound else ORGANIZATION_DOMAIN,
            "recipient_domains": [ORGANIZATION_DOMAIN if inbound else partner],
            "recipients": pick.choice((1, 1, 1, 2, 3)),
            "size_bytes": pick.randrange(800, 400_000),
        }
        yield json.dumps(record, separators=(",", ":")) + "\n"


def write_records(path: Path, count: int, seed: int) -> dict[str, int]:
    with path.open("w", encoding="utf-8", buffering=1 << 20) as file:
        file.writelines(records(count, seed))
    return {"lines": count, "bytes": path.stat().st_size, "facts": count}


# the children: each measures one run and prints its figures as JSON


def child_parse(path: str) -> dict[str, Any]:
    """Read and parse only, as an ingest does before it stores."""
    from mailflow.ingest.network import BoundaryPolicy
    from mailflow.ingest.postfix import parse_postfix
    from mailflow.ingest.report import IngestReport
    from mailflow.ingest.sources import read_log

    report = IngestReport()
    problems: list[str] = []
    started = time.perf_counter()
    lines = read_log(path, on_problem=problems.append)
    facts = sum(1 for _ in parse_postfix(lines, policy=BoundaryPolicy(), year=YEAR,
                                         reference_time=None, report=report))
    seconds = time.perf_counter() - started
    return {"lines": report.lines, "facts": facts, "skipped": sum(report.skipped.values()),
            "problems": len(problems), "seconds": seconds}


def child_store(path: str, kind: str, organization: str, batch_size: int,
                workers: int) -> dict[str, Any]:
    """Read, parse and store through the normal ingest path, records with ``workers``
    processes as ``mailflow ingest`` takes them (0: as many as it chooses)."""
    import resource

    from mailflow.ingest.parallel import worker_count
    from mailflow.ingest.pipeline import DEFAULT_BATCH_SIZE
    from mailflow.ingest.run import ingest_files, postfix_format, records_format
    from mailflow.settings import get_settings
    from mailflow.store.db import open_database

    log_format = postfix_format(YEAR) if kind == "postfix" else records_format("ndjson")
    processes = worker_count(workers, [path]) if kind == "ndjson" else 1

    async def work() -> dict[str, Any]:
        async with open_database(get_settings()) as pool:
            started = time.perf_counter()
            report, result = await ingest_files(pool, organization, [path], log_format,
                                                progress=False,
                                                batch_size=batch_size or DEFAULT_BATCH_SIZE,
                                                workers=processes)
            seconds = time.perf_counter() - started
            async with pool.acquire() as connection:
                stored = await connection.fetchval(
                    "SELECT count(*) FROM message_facts AS f JOIN organizations AS o "
                    "ON o.id = f.organization_id WHERE o.name = $1", organization)
                rolled = await connection.fetchval(
                    "SELECT coalesce(sum(r.messages), 0) FROM daily_rollups AS r "
                    "JOIN organizations AS o ON o.id = r.organization_id "
                    "WHERE o.name = $1", organization)
        return {"lines": report.lines, "facts": report.facts, "inserted": result.inserted,
                "duplicates": result.duplicates, "stored": stored, "rolled_up": int(rolled),
                "skipped": sum(report.skipped.values()), "seconds": seconds}

    figures = asyncio.run(work())
    if processes > 1:
        # The workers have ended; the largest of them, once for each: an upper bound.
        largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB
        figures.update(workers=processes, workers_rss_mib=round(processes * largest, 1))
    return figures


def run_child(env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run this script as a child; its figures with its peak resident set in MiB."""
    command = [sys.executable, __file__, "_child", *args]
    figures, _ = _measured(command, env)
    result: dict[str, Any] = json.loads(figures)
    return result


def peak_rss_mib() -> float:
    """This process's VmHWM: unlike ru_maxrss, it starts afresh at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc: peak memory needs Linux")


def run_pflogsumm(path: Path, lines: int) -> dict[str, Any]:
    started = time.perf_counter()
    _, peak = _measured(["pflogsumm", str(path)], os.environ.copy())
    seconds = time.perf_counter() - started
    return {"lines": lines, "seconds": seconds, "peak_rss_mib": peak}


def _measured(command: list[str], env: dict[str, str]) -> tuple[str, float]:
    """The command's standard output and its peak resident set in MiB; fails on failure."""
    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(command, env=env, stdout=output, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        errors.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({child.returncode}): "
                             f"{errors.read().decode()[-3000:]}")
        return output.read().decode(), round(usage.ru_maxrss / 1024, 1)  # KiB on Linux


# the benchmark


class Database:
    """DATABASE_URL when set, else an embedded PostgreSQL in a temporary directory."""

    def __init__(self, directory: Path) -> None:
        self.env = {**os.environ, "MAILFLOW_LOG_LEVEL": "WARNING"}
        self._embedded: Any = None
        if not os.environ.get("DATABASE_URL"):
            from mailflow.store.embedded import EmbeddedPostgres

            data_dir = directory / "data"
            data_dir.mkdir(mode=0o755)
            self._embedded = EmbeddedPostgres(data_dir)
            self.env["DATABASE_URL"] = self._embedded.start()
        self._organizations = 0

    def organization(self) -> str:
        """A new organization with the benchmark's connectors."""
        self._organizations += 1
        name = f"bench{self._organizations}"
        spec = Path(tempfile.mkstemp(suffix=".yaml")[1])
        try:
            spec.write_text(ORGANIZATION.format(name=name))
            done = subprocess.run([MAILFLOW, "org", "apply", str(spec)], env=self.env,
                                  capture_output=True, text=True, check=False)
        finally:
            spec.unlink()
        if done.returncode != 0:
            raise SystemExit(f"mailflow org apply failed: {done.stderr[-2000:]}")
        return name

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()


def speed(directory: Path, size_mb: float, count: int, rounds: int, seed: int,
          batch_size: int, workers: int, pflogsumm: bool,
          database: Database) -> dict[str, Any]:
    """Alternating runs on one log and one record file; every run and the medians."""
    log_path, records_path = directory / "mail.log", directory / "records.ndjson"
    generated = write_postfix_log(log_path, int(size_mb * 1_000_000), seed)
    written = write_records(records_path, count, seed) if count else None
    runs: dict[str, list[dict[str, Any]]] = {"parse": [], "pflogsumm": [], "store": [],
                                              "ndjson_store": []}
    for _ in range(rounds):
        runs["parse"].append(run_child(database.env, "parse", str(log_path)))
        if pflogsumm:
            runs["pflogsumm"].append(run_pflogsumm(log_path, generated["lines"]))
        runs["store"].append(run_child(database.env, "store", str(log_path), "postfix",
                                       database.organization(), str(batch_size), "1"))
        if written:
            runs["ndjson_store"].append(run_child(database.env, "store", str(records_path),
                                                  "ndjson", database.organization(),
                                                  str(batch_size), str(workers)))
    return {"generated": generated, "records": written, "runs": runs,
            "medians": medians(runs)}


def medians(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Median lines/s and facts/s of each kind of run, and the largest peak memory."""
    summary: dict[str, dict[str, float]] = {}
    for kind, measured in runs.items():
        if not measured:
            continue
        seconds = statistics.median(run["seconds"] for run in measured)
        figures = {"seconds": round(seconds, 2),
                   "lines_per_second": round(measured[0]["lines"] / seconds),
                   "peak_rss_mib": max(run["peak_rss_mib"] for run in measured)}
        if "facts" in measured[0]:
            figures["facts_per_second"] = round(measured[0]["facts"] / seconds)
        summary[kind] = figures
    if "parse" in summary and "pflogsumm" in summary:
        summary["parse"]["times_pflogsumm"] = round(
            summary["parse"]["lines_per_second"] / summary["pflogsumm"]["lines_per_second"], 2)
    return summary


def memory(directory: Path, sizes_mb: list[float], seed: int, store: bool, batch_size: int,
           database: Database | None) -> list[dict[str, Any]]:
    """Peak memory of a parse (and a store) at each input size, one log at a time on disk."""
    measured = []
    for size_mb in sizes_mb:
        log_path = directory / f"mail-{size_mb:g}MB.log"
        generated = write_postfix_log(log_path, int(size_mb * 1_000_000), seed)
        figures: dict[str, Any] = {"size_mb": size_mb, "generated": generated,
                                   "parse": run_child(os.environ.copy(), "parse", str(log_path))}
        if store and database is not None:
            figures["store"] = run_child(database.env, "store", str(log_path), "postfix",
                                         database.organization(), str(batch_size), "1")
        log_path.unlink()
        measured.append(figures)
    return measured


def main() -> None:
    if sys.argv[1:2] == ["_child"]:
        kind, *args = sys.argv[2:]
        if kind == "parse":
            figures = child_parse(*args)
        else:
            figures = child_store(args[0], args[1], args[2], int(args[3]), int(args[4]))
        peak = peak_rss_mib() + figures.get("workers_rss_mib", 0)
        print(json.dumps({**figures, "peak_rss_mib": round(peak, 1)}))
        return

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    speed_parser = commands.add_parser("speed", help="parse, pflogsumm, store, NDJSON store")
    speed_parser.add_argument("--size-mb", type=float, default=400,
                              help="size of the generated Postfix log")
    speed_parser.add_argument("--records", type=int, default=1_000_000,
                              help="NDJSON records to store (0: none)")
    speed_parser.add_argument("--rounds", type=int, default=3)
    speed_parser.add_argument("--workers", type=int, default=0,
                              help="processes storing the records (default: mailflow's choice)")
    memory_parser = commands.add_parser("memory", help="peak memory at several input sizes")
    memory_parser.add_argument("--size-mb", type=float, action="append",
                               help="a size of generated log (repeat; default 200 and 2000)")
    memory_parser.add_argument("--store", action="store_true", help="store too, not only parse")
    for sub in (speed_parser, memory_parser):
        sub.add_argument("--seed", type=int, default=1)
        sub.add_argument("--batch-size", type=int, default=0,
                         help="facts per transaction (default: mailflow's)")
    arguments = parser.parse_args()

    pflogsumm = shutil.which("pflogsumm") is not None
    if arguments.command == "speed" and not pflogsumm:
        print("pflogsumm is not installed (Debian: apt-get install pflogsumm): "
              "its runs are left out", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-") as name:
        directory = Path(name)
        directory.chmod(0o755)
        database = None
        if arguments.command == "speed" or arguments.store:
            database = Database(directory)
        try:
            if arguments.command == "speed":
                assert database is not None
                result: Any = speed(directory, arguments.size_mb, arguments.records,
                                    arguments.rounds, arguments.seed, arguments.batch_size,
                                    arguments.workers, pflogsumm, database)
            else:
                result = memory(directory, arguments.size_mb or [200, 2000], arguments.seed,
                                arguments.store, arguments.batch_size, database)
        finally:
            if database is not None:
                database.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
