"""The stack's limit for the dashboard query: Starlette and asyncpg, mailflow's SQL and report
code, and no GraphQL.

    DATABASE_URL=postgresql://... python bench/stack_limit.py --port 8002

``POST /dashboard`` with ``{"organization": ID, "start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}``
answers the JSON mailflow answers to ``bench/queries.py``'s dashboard query: the
organization's connectors and their rollups read with the same two statements, the daily
series, TLS breakdowns and insights computed by the same functions. It runs no transaction,
checks no token and names no organization for row-level security: its login must be a
superuser or bypass row security, and it filters by organization_id in the query, as
mailflow's statements do anyway. One uvicorn process, as ``mailflow serve``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailflow.domain import Connector
from mailflow.reports.breakdown import tls_breakdown
from mailflow.reports.insights import Thresholds, connector_insights
from mailflow.reports.queries import DailyTotal, fetch_connector_daily_totals
from mailflow.reports.ranges import DateRange
from mailflow.reports.series import daily_columns
from mailflow.store.db import keep_session
from mailflow.store.organizations import load_connectors


def dashboard(
    connectors: Sequence[Connector], totals: Mapping[int, list[DailyTotal]], window: DateRange
) -> dict[str, Any]:
    """The dashboard's answer, shaped as mailflow's GraphQL answer to the same query."""
    ordered = sorted(connectors, key=lambda connector: (connector.name.casefold(), connector.name))
    return {"data": {
        "connectors": [
            _connector(connector, totals.get(connector.id, []), window) for connector in ordered
        ],
        "insights": [
            {"kind": insight.kind.value, "value": insight.value,
             "connector": {"name": connector.name}}
            for connector in ordered
            for insight in connector_insights(
                connector, totals.get(connector.id, []), window, Thresholds()
            )
        ],
    }}


def _connector(connector: Connector, totals: list[DailyTotal], window: DateRange) -> Any:
    breakdown = tls_breakdown(totals)
    columns = daily_columns(totals, window)
    return {
        "name": connector.name,
        "volumeSeries": {
            "dates": [day.isoformat() for day in columns.days],
            "messages": columns.messages,
            "byTls": [{"version": version.value, "messages": messages}
                      for version, messages in columns.messages_by_tls],
        },
        "tlsBreakdown": {
            "total": breakdown.total,
            "versions": [
                {"version": share.version.value, "messages": share.messages,
                 "percent": share.percent}
                for share in breakdown.shares
            ],
        },
    }


def create_app(dsn: str) -> Starlette:
    """The endpoint on a pool of ``dsn`` (10 connections, as mailflow's default)."""
    pools: list[asyncpg.Pool] = []

    async def answer(request: Request) -> Response:
        asked = json.loads(await request.body())
        organization_id = int(asked["organization"])
        window = DateRange(date.fromisoformat(asked["start"]), date.fromisoformat(asked["end"]))
        async with pools[0].acquire() as connection:
            connectors = await load_connectors(connection, organization_id)
            totals = await fetch_connector_daily_totals(
                connection, organization_id, [connector.id for connector in connectors], window
            )
        body = json.dumps(dashboard(connectors, totals, window), separators=(",", ":"))
        return Response(body, media_type="application/json")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10, reset=keep_session)
        assert pool is not None
        pools.append(pool)
        yield
        await pool.close()

    return Starlette(routes=[Route("/dashboard", answer, methods=["POST"])], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    uvicorn.run(create_app(os.environ["DATABASE_URL"]), host="127.0.0.1", port=arguments.port,
                log_level="warning", access_log=False, server_header=False)


if __name__ == "__main__":
    main()
