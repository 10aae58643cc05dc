"""Push N generated records to a real `mailflow serve` as one gzip NDJSON body; report the
answer, the records per second and the server process's peak memory.

    python bench/push.py --records 1000000

The server runs on its embedded PostgreSQL under a temporary data directory (or on
DATABASE_URL when set); the organization and its ingest token are created with the CLI
first. The body is generated and compressed while it is sent, so the client holds only a
chunk at a time. Peak memory is the server process's VmHWM (peak resident set) from /proc,
which counts the Python process that parses and stores, not PostgreSQL's own processes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

MAILFLOW = str(Path(sys.executable).parent / "mailflow")
DOMAINS = [f"partner{number}.example" for number in range(200)]
TLS = ["TLS1_2"] * 60 + ["TLS1_3"] * 30 + ["NONE"] * 8 + ["TLS1_0"] * 2


def records(count: int, seed: int) -> Iterator[bytes]:
    """NDJSON lines of ``count`` message facts over 30 days, deterministic for ``seed``."""
    pick = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for number in range(count):
        inbound = pick.random() < 0.55
        domains = pick.sample(DOMAINS, pick.choice((1, 1, 1, 2, 3)))
        record = {
            "source_key": f"bench-{seed}-{number}",
            "occurred_at": (start + timedelta(seconds=number * 2_592_000 // count)).isoformat(),
            "direction": "INBOUND" if inbound else "OUTBOUND",
            "tls_version": pick.choice(TLS),
            "peer_ip": f"198.51.100.{pick.randrange(1, 255)}",
            "sender_domain": domains[0] if inbound else "acme.example",
            "recipient_domains": ["acme.example"] if inbound else domains,
            "recipients": len(domains),
            "size_bytes": pick.randrange(800, 200_000),
        }
        yield json.dumps(record, separators=(",", ":")).encode() + b"\n"


def gzip_body(lines: Iterator[bytes], chunk_bytes: int = 256 * 1024) -> Iterator[bytes]:
    """The lines gzip-compressed, in chunks, without holding the whole body."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    pending = bytearray()
    for line in lines:
        pending += line
        if len(pending) >= chunk_bytes:
            if compressed := compressor.compress(bytes(pending)):
                yield compressed
            pending.clear()
    yield compressor.compress(bytes(pending)) + compressor.flush()


def mailflow(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([MAILFLOW, *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"mailflow {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc: peak memory needs Linux")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_serving(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server exited before it answered")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer at {url}")


def run(count: int, seed: int, data_dir: Path) -> dict[str, float]:
    """Push ``count`` records to a fresh server; the figures measured."""
    env = {**os.environ, "MAILFLOW_DATA_DIR": str(data_dir), "MAILFLOW_LOG_LEVEL": "WARNING"}
    (data_dir / "org.yaml").write_text("organization: bench\naccepted_domains: [acme.example]\n")
    mailflow(env, "org", "apply", str(data_dir / "org.yaml"))
    token = mailflow(env, "token", "create", "--org", "bench", "--role", "ingest").strip()

    port = free_port()
    server = subprocess.Popen([MAILFLOW, "serve", "--port", str(port)], env=env)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/graphql", server)
        started = time.perf_counter()
        response = httpx.post(
            f"http://127.0.0.1:{port}/ingest", content=gzip_body(records(count, seed)),
            headers={"Authorization": f"Bearer {token}", "Content-Encoding": "gzip",
                     "Content-Type": "application/x-ndjson"},
            timeout=None,
        )
        seconds = time.perf_counter() - started
        peak = peak_rss_mib(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    response.raise_for_status()
    answer = response.json()
    return {"records": count, "accepted": answer["accepted"],
            "duplicates": answer["duplicates"], "rejected": answer["rejected"],
            "seconds": round(seconds, 2), "records_per_second": round(count / seconds),
            "server_peak_rss_mib": round(peak, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-") as directory:
        print(json.dumps(run(arguments.records, arguments.seed, Path(directory))))


if __name__ == "__main__":
    main()
