"""Browser front ends on the origins the settings allow may call the API; others may not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx

from mailflow.api.app import create_app
from mailflow.settings import Settings

PORTAL = "https://portal.example.com"


def client(pool: asyncpg.Pool, settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(pool, settings))
    return httpx.AsyncClient(transport=transport, base_url="http://mailflow.test")


async def preflight(http: httpx.AsyncClient, origin: str) -> httpx.Response:
    return await http.options("/graphql", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })


async def test_an_allowed_origin_passes_the_preflight_and_reads_answers(
    pool: asyncpg.Pool,
) -> None:
    settings = Settings(cors_origins=f"{PORTAL}, http://localhost:3000")  # type: ignore[arg-type]
    async with client(pool, settings) as http:
        answer = await preflight(http, PORTAL)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == PORTAL
        assert "authorization" in answer.headers["access-control-allow-headers"].lower()

        refused = await http.post("/graphql", json={"query": "{ __typename }"},
                                  headers={"Origin": PORTAL})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == PORTAL


async def test_other_origins_and_the_default_get_no_cross_origin_headers(
    pool: asyncpg.Pool,
) -> None:
    allowed = Settings(cors_origins=PORTAL)  # type: ignore[arg-type]
    async with client(pool, allowed) as http:
        answer = await preflight(http, "https://evil.example")
        assert "access-control-allow-origin" not in answer.headers
    async with client(pool, Settings()) as http:
        answer = await preflight(http, PORTAL)
        assert "access-control-allow-origin" not in answer.headers


def test_a_malformed_origin_setting_is_named() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mailflow"), "migrate"],
        env={**os.environ, "MAILFLOW_CORS_ORIGINS": "portal.example.com"},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "'portal.example.com' is not an origin" in result.stderr
