"""What the resolvers of one GraphQL request share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import strawberry

from mailflow.reports.loaders import ReportLoaders
from mailflow.reports.ranges import DateRange, resolve_range
from mailflow.settings import Settings
from mailflow.store.connection import Connection
from mailflow.store.tokens import TokenRole


@dataclass
class RequestContext:
    """One request: whose organization it reads and with which role, its id in logs, its
    connection (mutations write through it; reads go through the loaders) and its today."""

    organization_id: int
    role: TokenRole
    request_id: str
    settings: Settings
    connection: Connection
    loaders: ReportLoaders
    today: date

    def window(self, start: date | None, end: date | None) -> DateRange:
        """The report range for the ``start`` and ``end`` arguments, defaults filled in."""
        return resolve_range(start, end, today=self.today, max_days=self.settings.max_range_days)


Info = strawberry.Info[RequestContext, None]
