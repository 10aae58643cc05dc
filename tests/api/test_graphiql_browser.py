"""A real browser opens /graphql, runs the example operations in GraphiQL and sees the answers.

Chromium is driven over the DevTools protocol with the ``websockets`` package that uvicorn
already brings. Set MAILFLOW_SKIP_BROWSER=1 to skip the browser test where Chromium is absent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp
from websockets.asyncio.client import ClientConnection, connect

from mailflow.api.app import create_app
from mailflow.api.graphiql import OPERATION_ORDER, example_operations
from mailflow.domain import Direction, TlsVersion
from mailflow.reports.ranges import utc_today
from mailflow.settings import Settings

from .conftest import Seed

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "test-artifacts" / "graphiql.png"  # the connector report's answer
INSIGHTS_SCREENSHOT = REPO / "test-artifacts" / "graphiql-insights.png"
CHROMIUM = Path("/usr/bin/chromium")
QUIET_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTH, HEIGHT = 1400, 900
QUERY_EDITOR = "document.querySelector('.graphiql-query-editor .CodeMirror')"
HEADERS_EDITOR = (
    "document.querySelector('.graphiql-editor-tool[aria-label=Headers] "
    ".graphiql-editor:not(.hidden) .CodeMirror')"
)
RESPONSE_EDITOR = "document.querySelector('.graphiql-response .CodeMirror')"
TAB_TITLES = (
    "[...document.querySelectorAll('.graphiql-tab .graphiql-tab-button')]"
    ".map(tab => tab.textContent.trim())"
)

needs_browser = pytest.mark.skipif(
    os.environ.get("MAILFLOW_SKIP_BROWSER") == "1",
    reason="MAILFLOW_SKIP_BROWSER=1 switches the browser tests off",
)


class DevToolsError(Exception):
    """Chromium refused a DevTools command."""


class Page:
    """One Chromium tab, driven over the DevTools protocol, with what it loaded and logged."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.session_id: str | None = None
        self.requests: list[str] = []
        self.problems: list[str] = []
        self._ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def open(self) -> None:
        """Attach to a new blank tab of the size the screenshot will have."""
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        self.session_id = attached["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            await self.send(f"{domain}.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False,
        )

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params}
        if self.session_id is not None:
            message["sessionId"] = self.session_id
        answer = asyncio.get_running_loop().create_future()
        self._answers[message["id"]] = answer
        await self.connection.send(json.dumps(message))
        return await asyncio.wait_for(answer, timeout=30)

    async def listen(self) -> None:
        """Route answers to their commands and keep the events the test checks."""
        async for raw in self.connection:
            message = json.loads(raw)
            answer = self._answers.pop(message.get("id", 0), None)
            if answer is None:
                self._record(message.get("method", ""), message.get("params", {}))
            elif "error" in message:
                answer.set_exception(DevToolsError(message["error"].get("message")))
            else:
                answer.set_result(message.get("result", {}))

    def _record(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.problems.append(details.get("exception", {}).get("description", details["text"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.problems.append(params["entry"]["text"])
        elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
            self.problems.append(" ".join(str(arg.get("value")) for arg in params["args"]))

    async def evaluate(self, expression: str) -> Any:
        reply = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise DevToolsError(f"{expression!r} threw: {reply['exceptionDetails']['text']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, seconds: float = 30) -> Any:
        """The first truthy value of ``expression``, polled until ``seconds`` have passed."""
        async with asyncio.timeout(seconds):
            while True:
                if value := await self.evaluate(expression):
                    return value
                await asyncio.sleep(0.1)

    async def click(self, selector: str) -> None:
        """Press and release the mouse over the middle of the element, as a person would."""
        box = await self.wait_for(
            f"(() => {{ const box = document.querySelector({json.dumps(selector)})"
            "?.getBoundingClientRect(); return box && [box.x + box.width / 2, "
            "box.y + box.height / 2]; })()"
        )
        x, y = box
        await self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def screenshot(self) -> bytes:
        shot = await self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1; yields its base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    serve = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not serve.done(), "uvicorn stopped before it started serving"
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serve
        listener.close()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Page]:
    """A headless Chromium in a fresh profile that calls nowhere on its own; yields a tab."""
    require_chromium()
    profile = Path(tempfile.mkdtemp(prefix="mailflow-chromium-"))
    log = profile / "chromium.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            CHROMIUM, *QUIET_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "about:blank",
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )
    try:
        address = await _devtools_address(profile, process)
        async with connect(address, max_size=None) as connection:
            page = Page(connection)
            listening = asyncio.create_task(page.listen())
            try:
                await page.open()
                yield page
            finally:
                listening.cancel()
    except BaseException:
        print(log.read_text(errors="replace")[-4000:])
        raise
    finally:
        await _stop(process)
        shutil.rmtree(profile, ignore_errors=True)


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is absent: install it with 'apt-get install chromium', "
            "or set MAILFLOW_SKIP_BROWSER=1 to skip the browser tests"
        )


async def _devtools_address(profile: Path, process: asyncio.subprocess.Process) -> str:
    """Chromium writes its DevTools port and browser path to the profile once it listens."""
    async with asyncio.timeout(30):
        while True:
            if lines := _lines(profile / "DevToolsActivePort"):
                port, path = lines[:2]
                return f"ws://127.0.0.1:{port}{path}"
            assert process.returncode is None, f"chromium exited with {process.returncode}"
            await asyncio.sleep(0.05)


def _lines(path: Path) -> list[str]:
    """The file's lines once it holds two, the way Chromium writes DevToolsActivePort."""
    lines = path.read_text().splitlines() if path.exists() else []
    return lines if len(lines) >= 2 else []


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout=10)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def app_with_graphiql(pool: asyncpg.Pool, settings: Settings) -> ASGIApp:
    """The API as create_app builds it."""
    return create_app(pool, settings)


async def seed_harbor_relay(seed: Seed) -> str:
    """Yesterday's mail over one inbound route, 50 of 150 messages without TLS; a token."""
    organization_id = await seed.organization()
    connector_id = await seed.connector(organization_id, "Harbor Relay")
    yesterday = utc_today() - timedelta(days=1)
    for version, messages in ((TlsVersion.TLS1_3, 100), (TlsVersion.NONE, 50)):
        await seed.rollup(
            organization_id, yesterday, version, messages,
            direction=Direction.INBOUND, connector_id=connector_id,
        )
    return await seed.token(organization_id)


def save(png: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


def png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n"), "the screenshot is not a PNG"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


async def test_the_page_names_only_assets_that_the_server_serves(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    transport = httpx.ASGITransport(app=app_with_graphiql(pool, settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        served = [(await client.get(asset)).status_code for asset in assets if asset != "data:,"]

    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert all(asset.startswith(("/static/graphiql/", "data:")) for asset in assets), assets
    assert len(served) == 4
    assert served == [200] * 4


@needs_browser
async def test_graphiql_opens_the_example_operations_and_runs_them_with_a_token(
    pool: asyncpg.Pool, settings: Settings, seed: Seed
) -> None:
    token = await seed_harbor_relay(seed)

    async with serving(app_with_graphiql(pool, settings)) as base_url, chromium() as page:
        await page.send("Page.navigate", url=f"{base_url}/graphql")
        query = await page.wait_for(f"{QUERY_EDITOR}?.CodeMirror.getValue()")
        headers = await page.wait_for(f"{HEADERS_EDITOR}?.CodeMirror.getValue()")
        tabs = await page.evaluate(TAB_TITLES)
        await page.click("#mailflow-token")
        await page.send("Input.insertText", text=token)
        await page.click(".graphiql-execute-button")
        report = await page.wait_for(answer_holding("Harbor Relay"))
        await page.wait_for("document.fonts.ready.then(() => true)")
        png = await page.screenshot()
        save(png, SCREENSHOT)

        await page.click(".graphiql-tab:nth-child(4) .graphiql-tab-button")
        insights_query = await page.wait_for(
            f"{QUERY_EDITOR}?.CodeMirror.getValue().startsWith('# Insights')"
            f" && {QUERY_EDITOR}.CodeMirror.getValue()"
        )
        await page.click(".graphiql-execute-button")
        insights = await page.wait_for(answer_holding("NO_TLS_OVER_THRESHOLD"))
        save(await page.screenshot(), INSIGHTS_SCREENSHOT)

    assert query == example_operations()[0]
    assert insights_query == example_operations()[3]
    assert tabs == list(OPERATION_ORDER)
    assert headers == "{}"
    connectors = json.loads(report)["data"]["allConnectors"]
    assert connectors["totalCount"] == 1
    node = connectors["edges"][0]["node"]
    assert (node["name"], node["direction"], node["kind"]) == ("Harbor Relay", "INBOUND", "PARTNER")
    assert sum(point["messages"] for point in node["volume"]) == 150
    assert [(insight["kind"], insight["messages"], insight["connector"]["name"])
            for insight in json.loads(insights)["data"]["insights"]] == [
        ("NO_TLS_OVER_THRESHOLD", 150, "Harbor Relay")
    ]
    assert all(url.startswith((base_url, "data:")) for url in page.requests), page.requests
    assert page.problems == []
    assert png_size(png) == (WIDTH, HEIGHT)
    assert len(png) > 40_000, "the screenshot is too small to show GraphiQL with an answer"


def answer_holding(text: str) -> str:
    """An expression for the response pane's text once it holds ``text``."""
    return (f"{RESPONSE_EDITOR}?.CodeMirror.getValue().includes({json.dumps(text)})"
            f" && {RESPONSE_EDITOR}.CodeMirror.getValue()")
