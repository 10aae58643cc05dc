"""The GraphQL schema of the reports; ``str(schema)`` prints its SDL.

Resolvers validate arguments, ask the request's loaders for rows, and derive every answer
from those rows synchronously; only the loaders touch the database.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from enum import Enum
from typing import Annotated, TypeVar, cast

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from mailflow import domain
from mailflow.api.context import Info
from mailflow.api.errors import ErrorBoundary
from mailflow.api.ids import CONNECTOR, decode_global_id, encode_global_id, shown_id
from mailflow.api.limits import QueryLimits
from mailflow.api.scalars import DATE_SCALAR, LONG_SCALAR, Long
from mailflow.reports import breakdown, series
from mailflow.reports.errors import ConflictingFiltersError, ConnectorNotFoundError
from mailflow.reports.insights import (
    DEFAULT_NO_TLS_THRESHOLD,
    DEFAULT_TLS1_0_THRESHOLD,
    InsightKind,
    Thresholds,
    check_threshold,
    connector_insights,
)
from mailflow.reports.insights import Insight as ReportInsight
from mailflow.reports.loaders import ConnectorWindow, FlowQuery
from mailflow.reports.queries import DailyTotal, FlowFilter
from mailflow.reports.ranges import DateRange

Resolver = TypeVar("Resolver", bound=Callable[..., object])


def resolved_field(description: str) -> Callable[[Resolver], Resolver]:
    """``strawberry.field(description=...)`` as a decorator that keeps the resolver's type.

    strawberry types that decorator as returning Any, which strict mypy refuses on a method.
    """
    return cast(Callable[[Resolver], Resolver], strawberry.field(description=description))


def describe_enum(cls: type[Enum], description: str, values: dict[str, str]) -> None:
    """Make ``cls`` a GraphQL enum with a description for it and for each of its values."""
    strawberry.enum(cls, description=description)
    for value in cls.__strawberry_definition__.values:  # type: ignore[attr-defined]
        value.description = values[value.name]


describe_enum(
    domain.Direction,
    "Which way mail crossed the organization's boundary.",
    {
        "INBOUND": "From outside into the organization.",
        "OUTBOUND": "From the organization to outside.",
    },
)
describe_enum(
    domain.TlsVersion,
    "The TLS version of the hop that crossed the boundary.",
    {
        "NONE": "No TLS: the message crossed in plaintext.",
        "TLS1_0": "TLS 1.0, outdated.",
        "TLS1_1": "TLS 1.1, outdated.",
        "TLS1_2": "TLS 1.2.",
        "TLS1_3": "TLS 1.3.",
        "UNKNOWN": "The log source did not say whether or how TLS was used.",
    },
)
describe_enum(
    domain.ConnectorKind,
    "What sits on the far side of a connector.",
    {
        "PARTNER": "Another organization's mail system.",
        "ON_PREMISES": "The organization's own mail servers outside this system.",
    },
)
describe_enum(
    InsightKind,
    "What an insight found about a connector.",
    {
        "NO_TLS_OVER_THRESHOLD": (
            "The share of the connector's messages sent without TLS is above the threshold."
        ),
        "TLS1_0_OVER_THRESHOLD": (
            "The share of the connector's messages sent with TLS 1.0 is above the threshold."
        ),
    },
)

StartArgument = Annotated[
    datetime.date | None,
    strawberry.argument(
        description=(
            "First UTC day of the range, included. Without it the range is 7 days "
            "ending at `end`, or the last 7 days ending today when `end` is omitted too."
        )
    ),
]
EndArgument = Annotated[
    datetime.date | None,
    strawberry.argument(
        description=(
            "Last UTC day of the range, included. Without it the range is 7 days "
            "starting at `start`, or ends today when `start` is omitted too. A range spans "
            "at most the server's longest allowed range (90 days unless configured)."
        )
    ),
]
ConnectorDirectionArgument = Annotated[
    domain.Direction | None,
    strawberry.argument(description="Only connectors of this direction; all when omitted."),
]
DirectionArgument = Annotated[
    domain.Direction | None,
    strawberry.argument(description="Only mail in this direction; both when omitted."),
]
ConnectorIdArgument = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="Only mail through the connector with this id."),
]
NoConnectorArgument = Annotated[
    bool | None,
    strawberry.argument(
        description=(
            "true: only mail that matched no connector; cannot be combined with "
            "`connectorId`. false or omitted: no restriction."
        )
    ),
]
NoTlsThresholdArgument = Annotated[
    float,
    strawberry.argument(
        description=(
            "Percent (0 to 100) of a connector's messages without TLS above which "
            "NO_TLS_OVER_THRESHOLD fires."
        )
    ),
]
Tls10ThresholdArgument = Annotated[
    float,
    strawberry.argument(
        name="tls10Threshold",
        description=(
            "Percent (0 to 100) of a connector's messages with TLS 1.0 above which "
            "TLS1_0_OVER_THRESHOLD fires."
        ),
    ),
]


@strawberry.type(description="The messages of one TLS version.")
class TlsCount:
    version: domain.TlsVersion = strawberry.field(description="The TLS version.")
    messages: Long = strawberry.field(description="Messages that crossed with this version.")


@strawberry.type(description="The boundary mail of one UTC day.")
class MailFlowPoint:
    date: datetime.date = strawberry.field(description="The UTC calendar day.")
    messages: Long = strawberry.field(description="Messages that crossed the boundary.")
    recipients: Long = strawberry.field(description="Recipients of those messages.")
    bytes: Long = strawberry.field(description="Size of those messages in bytes.")
    by_tls: list[TlsCount] = strawberry.field(
        description="Messages per TLS version: all six versions in enum order, zeros included."
    )

    @classmethod
    def from_report(cls, point: series.MailFlowPoint) -> MailFlowPoint:
        return cls(
            date=point.day,
            messages=Long(point.messages),
            recipients=Long(point.recipients),
            bytes=Long(point.bytes),
            by_tls=[
                TlsCount(version=version, messages=Long(messages))
                for version, messages in point.messages_by_tls
            ],
        )


@strawberry.type(description="The messages of one TLS version and their share of all messages.")
class TlsShare:
    version: domain.TlsVersion = strawberry.field(description="The TLS version.")
    messages: Long = strawberry.field(description="Messages that crossed with this version.")
    percent: float | None = strawberry.field(
        description=(
            "Percent of all messages, with one decimal place; the percents of a breakdown "
            "add up to exactly 100.0 (largest-remainder rounding). Null when there is no mail."
        )
    )


@strawberry.type(description="How many messages used each TLS version.")
class TlsBreakdown:
    total: Long = strawberry.field(description="All messages counted.")
    versions: list[TlsShare] = strawberry.field(
        description="One share per TLS version: all six in enum order, zeros included."
    )

    @classmethod
    def from_report(cls, report: breakdown.TlsBreakdown) -> TlsBreakdown:
        return cls(
            total=Long(report.total),
            versions=[
                TlsShare(version=share.version, messages=Long(share.messages),
                         percent=share.percent)
                for share in report.shares
            ],
        )


@strawberry.type(
    description=(
        "A finding about a connector over a window: the share of its messages that used a "
        "watched TLS version (none, or TLS 1.0) was above the threshold."
    )
)
class Insight:
    kind: InsightKind = strawberry.field(description="What was found.")
    connector: Connector = strawberry.field(description="The connector it was found on.")
    value: float = strawberry.field(
        description="The measured percent of the connector's messages, unrounded."
    )
    threshold: float = strawberry.field(description="The percent that the value exceeded.")
    messages: Long = strawberry.field(description="All messages of the connector in the window.")
    start: datetime.date = strawberry.field(description="First UTC day of the window, included.")
    end: datetime.date = strawberry.field(description="Last UTC day of the window, included.")

    @classmethod
    def from_report(cls, insight: ReportInsight) -> Insight:
        return cls(
            kind=insight.kind,
            connector=Connector.from_domain(insight.connector),
            value=insight.value,
            threshold=insight.threshold,
            messages=Long(insight.messages),
            start=insight.window.start,
            end=insight.window.end,
        )


@strawberry.type(
    description=(
        "A named route across the organization's boundary. Inbound connectors match mail "
        "by sender domain, client IP range or client TLS certificate name; outbound ones "
        "by recipient domain or smart host; either by the name of the route the mail server "
        "took, which beats every other rule."
    )
)
class Connector:
    source: strawberry.Private[domain.Connector]
    id: strawberry.ID = strawberry.field(
        description="Opaque global id: base64 of \"Connector:<number>\"."
    )
    name: str = strawberry.field(description="The connector's name, unique in the organization.")
    direction: domain.Direction = strawberry.field(description="Which way its mail crosses.")
    kind: domain.ConnectorKind = strawberry.field(description="What sits on the far side.")
    require_tls: bool = strawberry.field(description="Whether the route requires TLS.")
    sender_domains: list[str] = strawberry.field(
        description="Sender domains it matches (inbound); `*.` matches subdomains."
    )
    recipient_domains: list[str] = strawberry.field(
        description="Recipient domains it matches (outbound); `*.` matches subdomains."
    )
    client_ips: list[str] = strawberry.field(
        description="Client IP ranges in CIDR notation it matches (inbound)."
    )
    smart_hosts: list[str] = strawberry.field(
        description="Smart hosts it matches (outbound): host names or IP addresses."
    )
    tls_cert_names: list[str] = strawberry.field(
        description="Client TLS certificate names it matches (inbound)."
    )
    routes: list[str] = strawberry.field(
        description="Route names it matches besides its own name, as the mail server names "
                    "the route it took (an Exim router or transport); case-insensitive."
    )

    @classmethod
    def from_domain(cls, connector: domain.Connector) -> Connector:
        return cls(
            source=connector,
            id=strawberry.ID(encode_global_id(CONNECTOR, connector.id)),
            name=connector.name,
            direction=connector.direction,
            kind=connector.kind,
            require_tls=connector.require_tls,
            sender_domains=list(connector.sender_domains),
            recipient_domains=list(connector.recipient_domains),
            client_ips=list(connector.client_ips),
            smart_hosts=list(connector.smart_hosts),
            tls_cert_names=list(connector.tls_cert_names),
            routes=list(connector.routes),
        )

    @resolved_field(description="Its mail per UTC day of the range, zeros included.")
    async def volume(
        self, info: Info, start: StartArgument = None, end: EndArgument = None
    ) -> list[MailFlowPoint]:
        window = info.context.window(start, end)
        totals = await self._totals(info, window)
        return [MailFlowPoint.from_report(point) for point in series.daily_series(totals, window)]

    @resolved_field(description="Its messages per TLS version over the range.")
    async def tls_breakdown(
        self, info: Info, start: StartArgument = None, end: EndArgument = None
    ) -> TlsBreakdown:
        window = info.context.window(start, end)
        totals = await self._totals(info, window)
        return TlsBreakdown.from_report(breakdown.tls_breakdown(totals))

    @resolved_field(description="The insights that fire for it over the range.")
    async def insights(
        self,
        info: Info,
        start: StartArgument = None,
        end: EndArgument = None,
        no_tls_threshold: NoTlsThresholdArgument = DEFAULT_NO_TLS_THRESHOLD,
        tls1_0_threshold: Tls10ThresholdArgument = DEFAULT_TLS1_0_THRESHOLD,
    ) -> list[Insight]:
        window = info.context.window(start, end)
        thresholds = _thresholds(no_tls_threshold, tls1_0_threshold)
        totals = await self._totals(info, window)
        found = connector_insights(self.source, totals, window, thresholds)
        return [Insight.from_report(insight) for insight in found]

    async def _totals(self, info: Info, window: DateRange) -> list[DailyTotal]:
        key = ConnectorWindow(self.source.id, window)
        return await info.context.loaders.connector_totals.load(key)


@strawberry.type(
    description=(
        "Reports on the mail that crosses the boundary of the organization the request is "
        "authenticated for. Days are UTC calendar days; ranges include both ends."
    )
)
class Query:
    @resolved_field(description="The organization's connectors, ordered by name.")
    async def connectors(
        self, info: Info, direction: ConnectorDirectionArgument = None
    ) -> list[Connector]:
        connectors = await info.context.loaders.connectors()
        return [
            Connector.from_domain(connector)
            for connector in _by_name(connectors)
            if direction is None or connector.direction is direction
        ]

    @resolved_field(
        description="The connector with this id; the error CONNECTOR_NOT_FOUND when there is none."
    )
    async def connector(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The connector's id.")],
    ) -> Connector | None:
        return Connector.from_domain(await _find_connector(info, id))

    @resolved_field(
        description=(
            "All boundary mail per UTC day of the range, zeros included, optionally "
            "restricted by direction and route."
        )
    )
    async def mail_flow(
        self,
        info: Info,
        start: StartArgument = None,
        end: EndArgument = None,
        direction: DirectionArgument = None,
        connector_id: ConnectorIdArgument = None,
        no_connector: NoConnectorArgument = None,
    ) -> list[MailFlowPoint]:
        window = info.context.window(start, end)
        flow_filter = await _flow_filter(info, direction, connector_id, no_connector)
        totals = await info.context.loaders.flow_totals.load(FlowQuery(window, flow_filter))
        return [MailFlowPoint.from_report(point) for point in series.daily_series(totals, window)]

    @resolved_field(
        description="Boundary mail per TLS version over the range, optionally restricted."
    )
    async def tls_breakdown(
        self,
        info: Info,
        start: StartArgument = None,
        end: EndArgument = None,
        direction: DirectionArgument = None,
        connector_id: ConnectorIdArgument = None,
        no_connector: NoConnectorArgument = None,
    ) -> TlsBreakdown:
        window = info.context.window(start, end)
        flow_filter = await _flow_filter(info, direction, connector_id, no_connector)
        totals = await info.context.loaders.flow_totals.load(FlowQuery(window, flow_filter))
        return TlsBreakdown.from_report(breakdown.tls_breakdown(totals))

    @resolved_field(
        description=(
            "The insights that fire over the range, for every connector with mail in it, "
            "ordered by connector name."
        )
    )
    async def insights(
        self,
        info: Info,
        start: StartArgument = None,
        end: EndArgument = None,
        no_tls_threshold: NoTlsThresholdArgument = DEFAULT_NO_TLS_THRESHOLD,
        tls1_0_threshold: Tls10ThresholdArgument = DEFAULT_TLS1_0_THRESHOLD,
    ) -> list[Insight]:
        window = info.context.window(start, end)
        thresholds = _thresholds(no_tls_threshold, tls1_0_threshold)
        connectors = _by_name(await info.context.loaders.connectors())
        totals = await info.context.loaders.connector_totals.load_many(
            [ConnectorWindow(connector.id, window) for connector in connectors]
        )
        return [
            Insight.from_report(insight)
            for connector, connector_totals in zip(connectors, totals, strict=True)
            for insight in connector_insights(
                connector, connector_totals, window, thresholds
            )
        ]


def _by_name(connectors: list[domain.Connector]) -> list[domain.Connector]:
    return sorted(connectors, key=lambda connector: (connector.name.casefold(), connector.name))


async def _find_connector(info: Info, global_id: str) -> domain.Connector:
    connector_id = decode_global_id(CONNECTOR, global_id)
    for connector in await info.context.loaders.connectors():
        if connector.id == connector_id:
            return connector
    raise ConnectorNotFoundError(
        f"the organization has no connector with id {shown_id(global_id)}; "
        "list its connectors with the connectors field"
    )


async def _flow_filter(
    info: Info,
    direction: domain.Direction | None,
    connector_id: strawberry.ID | None,
    no_connector: bool | None,
) -> FlowFilter:
    if connector_id is not None and no_connector:
        raise ConflictingFiltersError(
            "connectorId and noConnector: true exclude each other: mail that matched no "
            "connector has no connector id; pass one of them"
        )
    if connector_id is None:
        return FlowFilter(direction=direction, no_connector=bool(no_connector))
    connector = await _find_connector(info, connector_id)
    return FlowFilter(direction=direction, connector_id=connector.id)


def _thresholds(no_tls: float, tls1_0: float) -> Thresholds:
    return Thresholds(
        no_tls=check_threshold("noTlsThreshold", no_tls),
        tls1_0=check_threshold("tls10Threshold", tls1_0),
    )


class MailflowSchema(strawberry.Schema):
    """The strawberry schema, leaving error logging to the error boundary."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log nothing here: ErrorBoundary logs unexpected errors with the request id."""


schema = MailflowSchema(
    query=Query,
    extensions=[QueryLimits, ErrorBoundary],
    config=StrawberryConfig(scalar_map={Long: LONG_SCALAR, datetime.date: DATE_SCALAR}),
)
