"""Report versions: a number per organization that grows whenever data its reports read changes.

Triggers (migration 0013) count every change of an organization's daily rollups, connectors,
accepted domains, internal networks and TLS reports in the transaction that makes it, so an
answer stored under a version is the answer for as long as the version stays.
"""

from __future__ import annotations

from mailflow.store.connection import Connection
from mailflow.store.sql import query


async def report_version(connection: Connection, organization_id: int) -> int:
    """The organization's report version as the caller's transaction sees it (0: no change yet)."""
    version: int = await connection.fetchval(query("report_version"), organization_id)
    return version
