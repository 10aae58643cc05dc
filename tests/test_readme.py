"""The README's commands work as written: set up, run, test."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent


def quick_start_commands() -> list[str]:
    """The three one-line shell blocks after 'Set up, run, test'."""
    section = README.split("Set up, run, test", 1)[1]
    return re.findall(r"```sh\n(.+?)\n```", section)[:3]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_http(
    url: str, process: subprocess.Popen[str], seconds: float = 90, log: IO[str] | None = None
) -> None:
    """Wait until ``url`` answers; the server's stderr (or ``log``) says why if it exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.communicate()[1]
            if log is not None:
                log.seek(0)
                output = log.read()
            raise AssertionError(f"server exited early: {output[-3000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"server did not answer at {url} within {seconds}s")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, _, test_command = quick_start_commands()
    ci_lines = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci_lines[-1] == test_command


def test_the_setup_command_installs_the_project_with_its_test_tools() -> None:
    setup, _, _ = quick_start_commands()
    assert "pip install -e '.[test]'" in setup
    assert (BIN / "mailflow").exists(), "the mailflow command is installed by the set-up step"


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mailflow-readme-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def test_the_run_command_serves_the_demo_on_an_embedded_database_and_stops_it(
    embedded_data_dir: Path,
) -> None:
    _, run, _ = quick_start_commands()
    assert run == "mailflow serve --demo"
    port = free_port()
    env = {**os.environ, "MAILFLOW_DATA_DIR": str(embedded_data_dir),
           "MAILFLOW_PORT": str(port), "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen(f"exec {run}", shell=True, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/graphql"
        wait_for_http(url, server, seconds=180)
        page = httpx.get(url, headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert "graphiql" in page.text.lower()

        answer = httpx.post(url, json={"query": "{ mailFlow { date messages } "
                                                "insights { kind connector { name } } }"})
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        assert len(data["mailFlow"]) == 7
        assert all(point["messages"] > 0 for point in data["mailFlow"])
        kinds = {(i["connector"]["name"], i["kind"]) for i in data["insights"]}
        assert ("Fabrikam partner (inbound)", "NO_TLS_OVER_THRESHOLD") in kinds
        assert ("Fabrikam partner (inbound)", "TLS1_0_OVER_THRESHOLD") in kinds
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr[-3000:]
    assert not (embedded_data_dir / "pgdata" / "postmaster.pid").exists(), (
        "the embedded PostgreSQL is still running after SIGTERM"
    )


def test_the_demo_is_loaded_once_and_a_restart_adds_nothing(embedded_data_dir: Path) -> None:
    env = {**os.environ, "MAILFLOW_DATA_DIR": str(embedded_data_dir)}
    env.pop("DATABASE_URL", None)
    totals = []
    for _ in range(2):
        port = free_port()
        server = subprocess.Popen(
            [str(BIN / "mailflow"), "serve", "--demo", "--port", str(port)],
            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            url = f"http://127.0.0.1:{port}/graphql"
            wait_for_http(url, server, seconds=180)
            # Today grows with the clock; the days before it must not change.
            yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
            query = {"query": f'{{ tlsBreakdown(end: "{yesterday}") {{ total }} }}'}
            totals.append(httpx.post(url, json=query).json()["data"]["tlsBreakdown"]["total"])
        finally:
            server.send_signal(signal.SIGINT)
            server.communicate(timeout=60)
        assert server.returncode == 0
    assert totals[0] > 0
    assert totals[0] == totals[1]
