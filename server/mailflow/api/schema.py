"""The GraphQL schema of the reports and of the organization's settings; ``str(schema)``
prints its SDL.

Query resolvers validate arguments, ask the request's loaders for rows, and derive every
answer from those rows synchronously; only the loaders read the database. Mutation resolvers
(admin tokens only) change the organization through the store's functions, which check values
by the organization file's rules; mutations run one after the other, never beside a read.
"""

from __future__ import annotations

import dataclasses
import datetime
import warnings
from collections.abc import AsyncIterator, Callable
from enum import Enum
from functools import cache
from typing import Annotated, Any, TypeVar, cast

import strawberry
from graphql import GraphQLError, lexicographic_sort_schema, print_schema
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext
from strawberry.utils.str_converters import to_camel_case

from mailflow import domain
from mailflow.api import live
from mailflow.api.auth import ForbiddenError
from mailflow.api.context import Info, SubscriptionContext, TransportError
from mailflow.api.errors import ErrorBoundary
from mailflow.api.execution import ExecutionContext as FastListsExecutionContext
from mailflow.api.ids import (
    CONNECTOR,
    TooManyIdsError,
    decode_global_id,
    encode_global_id,
    global_id_type,
    shown_id,
)
from mailflow.api.introspection import Introspection
from mailflow.api.limits import QueryLimits
from mailflow.api.metrics import OperationMetrics
from mailflow.api.pages import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    AfterArgument,
    FirstArgument,
    PageInfo,
    SortKey,
    bad_cursor,
    check_page_size,
    decode_cursor,
    following,
    page_of,
)
from mailflow.api.scalars import DATE_SCALAR, LONG_SCALAR, Long
from mailflow.reports import breakdown, series, tls
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
from mailflow.settings import Settings
from mailflow.store import organizations
from mailflow.store.tokens import TokenRole

Resolver = TypeVar("Resolver", bound=Callable[..., object])


def resolved_field(
    description: str, deprecation_reason: str | None = None
) -> Callable[[Resolver], Resolver]:
    """``strawberry.field(description=...)`` as a decorator that keeps the resolver's type.

    strawberry types that decorator as returning Any, which strict mypy refuses on a method.
    """
    return cast(
        Callable[[Resolver], Resolver],
        strawberry.field(description=description, deprecation_reason=deprecation_reason),
    )


def resolved_subscription(description: str) -> Callable[[Resolver], Resolver]:
    """``strawberry.subscription(description=...)``, typed as ``resolved_field`` is."""
    return cast(Callable[[Resolver], Resolver], strawberry.subscription(description=description))


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

describe_enum(
    domain.TlsPolicyType,
    "The policy an SMTP TLS report evaluated sessions against (RFC 8460).",
    {
        "STS": "An MTA-STS policy.",
        "TLSA": "A DANE TLSA record.",
        "NO_POLICY_FOUND": "Neither: the reporter found no policy for the domain.",
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


PolicyDomainArgument = Annotated[
    str | None,
    strawberry.argument(
        description=(
            "Only reports about this policy domain (case does not matter); every policy "
            "domain with reports in the range when omitted."
        )
    ),
]
ResultTypeArgument = Annotated[
    str | None,
    strawberry.argument(
        description=(
            "Only failures of this result type as the reporter wrote it, such as "
            "\"validation-failure\"; all when omitted."
        )
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


@strawberry.type(description="The messages of one TLS version per UTC day of a series' range.")
class TlsSeries:
    version: domain.TlsVersion = strawberry.field(description="The TLS version.")
    messages: list[Long] = strawberry.field(
        description="Messages that crossed with this version, one per day, in date order."
    )


@strawberry.type(
    description=(
        "Boundary mail per UTC day of a range as lists with one item per day, zeros included: "
        "the figures of a list of MailFlowPoint in far fewer values, for long ranges."
    )
)
class MailFlowSeries:
    dates: list[datetime.date] = strawberry.field(description="Every UTC day of the range.")
    messages: list[Long] = strawberry.field(description="Messages per day.")
    recipients: list[Long] = strawberry.field(description="Recipients per day.")
    bytes: list[Long] = strawberry.field(description="Bytes per day.")
    by_tls: list[TlsSeries] = strawberry.field(
        description="Messages per day of each TLS version: all six in enum order."
    )

    @classmethod
    def from_report(cls, columns: series.MailFlowColumns) -> MailFlowSeries:
        # Long is int itself: the columns' lists are the answer's lists.
        return cls(
            dates=columns.days,
            messages=cast(list[Long], columns.messages),
            recipients=cast(list[Long], columns.recipients),
            bytes=cast(list[Long], columns.bytes),
            by_tls=[TlsSeries(version=version, messages=cast(list[Long], counts))
                    for version, counts in columns.messages_by_tls],
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


@strawberry.interface(
    description=(
        "An object with a global id (Relay's object identification): node(id:) finds it "
        "again by that id alone."
    )
)
class Node:
    id: strawberry.ID = strawberry.field(description="Opaque global id, unique across types.")


NODE_TYPES = (CONNECTOR,)


# The key makes connectors federation entities when the schema is built for a gateway; the
# plain schema's SDL and introspection do not show it.
@strawberry.federation.type(
    keys=["id"],
    description=(
        "A named route across the organization's boundary. Inbound connectors match mail "
        "by sender domain, client IP range or client TLS certificate name; outbound ones "
        "by recipient domain or smart host; either by the name of the route the mail server "
        "took, which beats every other rule."
    ),
)
class Connector(Node):
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

    @resolved_field(
        description="Its mail per UTC day of the range as lists, one item per day: `volume` "
                    "in fewer values."
    )
    async def volume_series(
        self, info: Info, start: StartArgument = None, end: EndArgument = None
    ) -> MailFlowSeries:
        window = info.context.window(start, end)
        totals = await self._totals(info, window)
        return MailFlowSeries.from_report(series.daily_columns(totals, window))

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

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Connector:
        """The connector a federation gateway names by its id (an entity reference)."""
        return cls.from_domain(await _find_connector(info, id))


@strawberry.type(description="A connector on a page of connectors, with its cursor.")
class ConnectorEdge:
    cursor: str = strawberry.field(description="Where the connector stands, for `after`.")
    node: Connector = strawberry.field(description="The connector.")


@strawberry.type(description="A page of the organization's connectors, ordered by name.")
class ConnectorConnection:
    edges: list[ConnectorEdge] = strawberry.field(description="The connectors of the page.")
    page_info: PageInfo = strawberry.field(description="Where the page stands.")
    total_count: int = strawberry.field(
        description="All connectors the filter keeps, on every page."
    )


@strawberry.type(
    description="Failed TLS sessions of one result type, from the reports' failure details."
)
class TlsResultTypeSessions:
    result_type: str = strawberry.field(
        description="The result type as the reporter wrote it, such as \"validation-failure\"."
    )
    failed_sessions: Long = strawberry.field(
        description="Failed sessions the failure details of this result type count."
    )


@strawberry.type(
    description=(
        "The TLS sessions of one policy domain in the SMTP TLS reports whose date range "
        "starts on one UTC day. Sessions are connections other organizations' mail servers "
        "attempted to the domain's MX hosts, not messages."
    )
)
class TlsSessionsPoint:
    date: datetime.date = strawberry.field(
        description="The UTC day the reports' date ranges start on."
    )
    reports: Long = strawberry.field(description="Reports that counted sessions for the domain.")
    successful_sessions: Long = strawberry.field(
        description=(
            "Sessions that negotiated TLS as the policy requires, by the reports' summaries."
        )
    )
    failed_sessions: Long = strawberry.field(
        description="Sessions that failed, by the reports' summaries."
    )
    failed_sessions_by_result_type: list[TlsResultTypeSessions] = strawberry.field(
        description=(
            "Failed sessions per result type, in result type order, from the failure details; "
            "reporters do not always make these add up to `failedSessions`."
        )
    )

    @classmethod
    def from_report(cls, point: tls.TlsSessionsDay) -> TlsSessionsPoint:
        return cls(
            date=point.day,
            reports=Long(point.reports),
            successful_sessions=Long(point.successful_sessions),
            failed_sessions=Long(point.failed_sessions),
            failed_sessions_by_result_type=[
                TlsResultTypeSessions(result_type=result_type, failed_sessions=Long(sessions))
                for result_type, sessions in point.failed_sessions_by_result_type
            ],
        )


@strawberry.type(description="The TLS sessions reported for one policy domain over a range.")
class TlsPolicyDomainSessions:
    policy_domain: str = strawberry.field(
        description="The domain whose policy the sessions were evaluated against, in lower case."
    )
    successful_sessions: Long = strawberry.field(
        description="Successful sessions over the range."
    )
    failed_sessions: Long = strawberry.field(description="Failed sessions over the range.")
    days: list[TlsSessionsPoint] = strawberry.field(
        description="One point per UTC day of the range, zeros included."
    )

    @classmethod
    def from_report(cls, sessions: tls.TlsDomainSessions) -> TlsPolicyDomainSessions:
        return cls(
            policy_domain=sessions.policy_domain,
            successful_sessions=Long(sessions.successful_sessions),
            failed_sessions=Long(sessions.failed_sessions),
            days=[TlsSessionsPoint.from_report(day) for day in sessions.days],
        )


@strawberry.type(
    description=(
        "One failure detail of an SMTP TLS report: sessions that failed in the same way, "
        "as the reporter grouped them."
    )
)
class TlsFailure:
    date: datetime.date = strawberry.field(
        description="The UTC day the report's date range starts on."
    )
    report_id: str = strawberry.field(description="The id the reporter gave the report.")
    reporting_organization: str = strawberry.field(
        description="The organization that sent the report, as it names itself."
    )
    contact_info: str | None = strawberry.field(
        description="How to reach the reporter, as the report gives it."
    )
    policy_domain: str = strawberry.field(description="The policy domain, in lower case.")
    policy_type: domain.TlsPolicyType = strawberry.field(
        description="The policy the sessions were evaluated against."
    )
    result_type: str = strawberry.field(
        description="Why the sessions failed, such as \"certificate-expired\" (RFC 8460, 4.3)."
    )
    failed_sessions: Long = strawberry.field(description="Sessions that failed this way.")
    sending_mta_ip: str | None = strawberry.field(
        description="IP address of the reporter's mail server that attempted the sessions."
    )
    receiving_mx_hostname: str | None = strawberry.field(
        description="Host name of the MX host it connected to."
    )
    receiving_mx_helo: str | None = strawberry.field(
        description="The name the MX host greeted with (HELO or EHLO)."
    )
    receiving_ip: str | None = strawberry.field(description="IP address of the MX host.")
    additional_information: str | None = strawberry.field(
        description="A URI the reporter gives for more about the failure."
    )
    failure_reason_code: str | None = strawberry.field(
        description="The reporter's own text or code for the failure."
    )

    @classmethod
    def from_report(cls, failure: tls.TlsFailure) -> TlsFailure:
        return cls(
            date=failure.day,
            report_id=failure.report_id,
            reporting_organization=failure.reporting_organization,
            contact_info=failure.contact_info,
            policy_domain=failure.policy_domain,
            policy_type=failure.policy_type,
            result_type=failure.result_type,
            failed_sessions=Long(failure.failed_sessions),
            sending_mta_ip=failure.sending_mta_ip,
            receiving_mx_hostname=failure.receiving_mx_hostname,
            receiving_mx_helo=failure.receiving_mx_helo,
            receiving_ip=failure.receiving_ip,
            additional_information=failure.additional_information,
            failure_reason_code=failure.failure_reason_code,
        )


@strawberry.type(description="A failure detail on a page of them, with its cursor.")
class TlsFailureEdge:
    cursor: str = strawberry.field(description="Where the failure detail stands, for `after`.")
    node: TlsFailure = strawberry.field(description="The failure detail.")


@strawberry.type(
    description=(
        "A page of failure details, by day, policy domain, report id and their order in "
        "the report."
    )
)
class TlsFailureConnection:
    edges: list[TlsFailureEdge] = strawberry.field(
        description="The failure details of the page."
    )
    page_info: PageInfo = strawberry.field(description="Where the page stands.")


CONNECTORS_PAGE = "ConnectorConnection"
TLS_FAILURES_PAGE = "TlsFailureConnection"
CONNECTOR_CURSOR = (str, str, int)
TLS_FAILURE_CURSOR = (str, str, str, int, int)
MAX_NODES = MAX_PAGE_SIZE


@strawberry.type(
    description=(
        "Reports on the mail that crosses the boundary of the organization the request is "
        "authenticated for. Days are UTC calendar days; ranges include both ends."
    )
)
class Query:
    @resolved_field(
        description=(
            "The object with this global id, of any type that implements Node; null when "
            "the organization has none with it. BAD_ID when the id is not one this API "
            "hands out."
        )
    )
    async def node(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A global id.")],
    ) -> Node | None:
        return await _node(info, id)

    @resolved_field(
        description=(
            f"The objects with these global ids, in the order given ({MAX_NODES} at most); "
            "null for an id the organization has no object for."
        )
    )
    async def nodes(
        self,
        info: Info,
        ids: Annotated[list[strawberry.ID], strawberry.argument(description="Global ids.")],
    ) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise _too_many_ids(len(ids))
        return [await _node(info, global_id) for global_id in ids]

    @resolved_field(
        description=(
            "The organization's connectors, ordered by name, as a cursor connection: "
            f"`first` of them ({DEFAULT_PAGE_SIZE} unless given) after the cursor `after`."
        )
    )
    async def all_connectors(
        self,
        info: Info,
        direction: ConnectorDirectionArgument = None,
        first: FirstArgument = DEFAULT_PAGE_SIZE,
        after: AfterArgument = None,
    ) -> ConnectorConnection:
        check_page_size(first)
        after_key = None if after is None else decode_cursor(CONNECTORS_PAGE, after,
                                                             CONNECTOR_CURSOR)
        kept = [
            connector for connector in _by_name(await info.context.loaders.connectors())
            if direction is None or connector.direction is direction
        ]
        page = page_of(following(kept, _connector_key, after_key), _connector_key,
                       CONNECTORS_PAGE, first, after_given=after is not None)
        return ConnectorConnection(
            edges=[ConnectorEdge(cursor=cursor, node=Connector.from_domain(connector))
                   for cursor, connector in page.items],
            page_info=page.page_info(),
            total_count=len(kept),
        )

    @resolved_field(
        description="The organization's connectors, ordered by name.",
        deprecation_reason="Use allConnectors, a cursor connection of the same connectors.",
    )
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
        description=(
            "`mailFlow` as lists with one item per day of the range, zeros included: the "
            "same figures in fewer values, for long ranges."
        )
    )
    async def mail_flow_series(
        self,
        info: Info,
        start: StartArgument = None,
        end: EndArgument = None,
        direction: DirectionArgument = None,
        connector_id: ConnectorIdArgument = None,
        no_connector: NoConnectorArgument = None,
    ) -> MailFlowSeries:
        window = info.context.window(start, end)
        flow_filter = await _flow_filter(info, direction, connector_id, no_connector)
        totals = await info.context.loaders.flow_totals.load(FlowQuery(window, flow_filter))
        return MailFlowSeries.from_report(series.daily_columns(totals, window))

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
        found = await _all_insights(info, window, thresholds)
        return [Insight.from_report(insight) for insight in found]

    @resolved_field(
        description=(
            "TLS sessions from the SMTP TLS reports (RFC 8460) other organizations sent about "
            "mail to the organization, per policy domain (in name order) and UTC day. A report "
            "counts on the day its date range starts, also when the range runs into the next "
            "day. Sessions are not messages: these figures are never part of message counts."
        )
    )
    async def tls_sessions(
        self,
        info: Info,
        start: StartArgument = None,
        end: EndArgument = None,
        policy_domain: PolicyDomainArgument = None,
    ) -> list[TlsPolicyDomainSessions]:
        tls_query = _tls_query(info, start, end, policy_domain)
        sessions = await info.context.loaders.tls_sessions.load(tls_query)
        return [TlsPolicyDomainSessions.from_report(domain) for domain in sessions]

    @resolved_field(
        description=(
            "The failure details of the SMTP TLS reports whose date range starts in the range, "
            "by day, policy domain, report id and their order in the report, as a cursor "
            f"connection: `first` of them ({DEFAULT_PAGE_SIZE} unless given) after the cursor "
            "`after`."
        )
    )
    async def all_tls_failures(
        self,
        info: Info,
        start: StartArgument = None,
        end: EndArgument = None,
        policy_domain: PolicyDomainArgument = None,
        result_type: ResultTypeArgument = None,
        first: FirstArgument = DEFAULT_PAGE_SIZE,
        after: AfterArgument = None,
    ) -> TlsFailureConnection:
        tls_query = _tls_query(info, start, end, policy_domain)
        check_page_size(first)
        after_key = None if after is None else _failure_key(after)
        failures = await info.context.loaders.tls_failures.load(tls.TlsFailureQuery(
            tls_query, tls.check_result_type(result_type), after=after_key, limit=first + 1,
        ))
        page = page_of(failures, _failure_sort_key, TLS_FAILURES_PAGE, first,
                       after_given=after is not None)
        return TlsFailureConnection(
            edges=[TlsFailureEdge(cursor=cursor, node=TlsFailure.from_report(failure))
                   for cursor, failure in page.items],
            page_info=page.page_info(),
        )

    @resolved_field(
        description=(
            "The failure details of the SMTP TLS reports whose date range starts in the range, "
            "by day, policy domain, report id and their order in the report."
        ),
        deprecation_reason=(
            "Use allTlsFailures, a cursor connection of the same failure details: their "
            "number grows with the reports received."
        ),
    )
    async def tls_failures(
        self,
        info: Info,
        start: StartArgument = None,
        end: EndArgument = None,
        policy_domain: PolicyDomainArgument = None,
        result_type: ResultTypeArgument = None,
    ) -> list[TlsFailure]:
        tls_query = _tls_query(info, start, end, policy_domain)
        failures = await info.context.loaders.tls_failures.load(
            tls.TlsFailureQuery(tls_query, tls.check_result_type(result_type))
        )
        return [TlsFailure.from_report(failure) for failure in failures]

    @resolved_field(
        description=(
            "The organization's accepted domains, sorted: its own domains. `*.` entries stand "
            "for every subdomain."
        )
    )
    async def accepted_domains(self, info: Info) -> list[str]:
        return await info.context.loaders.accepted_domains()

    @resolved_field(
        description=(
            "The internal networks the organization declared, in CIDR notation, sorted (IPv4 "
            "first). Loopback, RFC 1918, link-local and IPv6 unique-local ranges are internal "
            "besides these, always: mail from and to them does not cross the boundary."
        )
    )
    async def internal_networks(self, info: Info) -> list[str]:
        return await info.context.loaders.internal_networks()


RULES_CHECKED = (
    "Values are checked by the rules of an organization file (`mailflow org apply`): the same "
    "values are accepted and refused, with the same messages (BAD_USER_INPUT, naming the value "
    "and what would be accepted)."
)
SENDER_DOMAINS_RULE = (
    "Inbound: sender domains it matches; `*.example.com` matches every subdomain of "
    "example.com, not example.com itself."
)
RECIPIENT_DOMAINS_RULE = "Outbound: recipient domains it matches; `*.` as for senderDomains."
CLIENT_IPS_RULE = (
    "Inbound: client IP ranges it matches, in CIDR notation; a single address is its /32 or /128."
)
SMART_HOSTS_RULE = "Outbound: smart hosts it matches, host names or IP addresses (no port)."
TLS_CERT_NAMES_RULE = (
    "Inbound: client TLS certificate names it matches; `*.` as for senderDomains."
)
ROUTES_RULE = (
    "Route names it matches besides its own name (an Exim router or transport, an Exchange "
    "connector), without regard to case; a route match beats every other rule."
)


@strawberry.input(
    description=(
        "A new connector. Inbound connectors need at least one of senderDomains, clientIps, "
        "tlsCertNames or routes; outbound ones one of recipientDomains, smartHosts or routes. "
        + RULES_CHECKED
    )
)
class CreateConnectorInput:
    name: str = strawberry.field(
        description="Its name, 1 to 200 characters, trimmed; unique in the organization "
                    "without regard to case."
    )
    direction: domain.Direction = strawberry.field(description="Which way its mail crosses.")
    kind: domain.ConnectorKind = strawberry.field(description="What sits on the far side.")
    sender_domains: list[str] = strawberry.field(
        default_factory=list, description=SENDER_DOMAINS_RULE)
    recipient_domains: list[str] = strawberry.field(
        default_factory=list, description=RECIPIENT_DOMAINS_RULE)
    client_ips: list[str] = strawberry.field(default_factory=list, description=CLIENT_IPS_RULE)
    smart_hosts: list[str] = strawberry.field(default_factory=list, description=SMART_HOSTS_RULE)
    tls_cert_names: list[str] = strawberry.field(
        default_factory=list, description=TLS_CERT_NAMES_RULE)
    require_tls: bool = strawberry.field(
        default=False, description="Whether the route requires TLS; false when omitted.")
    routes: list[str] = strawberry.field(default_factory=list, description=ROUTES_RULE)


@strawberry.input(
    description=(
        "Changes to a connector: a field omitted or null keeps its value, a list given replaces "
        "the whole list (an empty list clears it). The connector with the changes must still "
        "have a rule of its direction. " + RULES_CHECKED
    )
)
class UpdateConnectorInput:
    name: str | None = strawberry.field(
        default=None,
        description="A new name: the connector keeps its id and its mail; unique in the "
                    "organization without regard to case.",
    )
    direction: domain.Direction | None = strawberry.field(
        default=None, description="A new direction; its mail so far keeps its direction.")
    kind: domain.ConnectorKind | None = strawberry.field(default=None, description="A new kind.")
    sender_domains: list[str] | None = strawberry.field(
        default=None, description=SENDER_DOMAINS_RULE)
    recipient_domains: list[str] | None = strawberry.field(
        default=None, description=RECIPIENT_DOMAINS_RULE)
    client_ips: list[str] | None = strawberry.field(default=None, description=CLIENT_IPS_RULE)
    smart_hosts: list[str] | None = strawberry.field(default=None, description=SMART_HOSTS_RULE)
    tls_cert_names: list[str] | None = strawberry.field(
        default=None, description=TLS_CERT_NAMES_RULE)
    require_tls: bool | None = strawberry.field(
        default=None, description="Whether the route requires TLS.")
    routes: list[str] | None = strawberry.field(default=None, description=ROUTES_RULE)


@strawberry.type(description="What createConnector did.")
class CreateConnectorPayload:
    connector: Connector = strawberry.field(
        description="The new connector; its reports count mail ingested from now on."
    )


@strawberry.type(description="What updateConnector did.")
class UpdateConnectorPayload:
    connector: Connector = strawberry.field(
        description="The connector as it is now; changed rules apply to mail ingested from now "
                    "on (`mailflow reclassify` applies them to mail already loaded)."
    )


@strawberry.type(description="What deleteConnector did.")
class DeleteConnectorPayload:
    deleted_connector_id: strawberry.ID = strawberry.field(
        description="The id the deleted connector had; no connector has it any more."
    )
    name: str = strawberry.field(description="The name the deleted connector had.")


@strawberry.type(description="What addAcceptedDomains did.")
class AddAcceptedDomainsPayload:
    accepted_domains: list[str] = strawberry.field(
        description="All of the organization's accepted domains now, sorted."
    )
    added: list[str] = strawberry.field(
        description="The domains added, as stored (lower case, no trailing dot), sorted; "
                    "those the organization had already are not listed."
    )


@strawberry.type(description="What removeAcceptedDomains did.")
class RemoveAcceptedDomainsPayload:
    accepted_domains: list[str] = strawberry.field(
        description="All of the organization's accepted domains now, sorted."
    )
    removed: list[str] = strawberry.field(description="The domains removed, sorted.")


@strawberry.type(description="What addInternalNetworks did.")
class AddInternalNetworksPayload:
    internal_networks: list[str] = strawberry.field(
        description="All internal networks the organization declared now, sorted (IPv4 first)."
    )
    added: list[str] = strawberry.field(
        description="The ranges added, in CIDR notation, sorted; those declared already are "
                    "not listed."
    )


@strawberry.type(description="What removeInternalNetworks did.")
class RemoveInternalNetworksPayload:
    internal_networks: list[str] = strawberry.field(
        description="All internal networks the organization declared now, sorted (IPv4 first)."
    )
    removed: list[str] = strawberry.field(description="The ranges removed, sorted.")


ConnectorIdToChange = Annotated[
    strawberry.ID, strawberry.argument(description="The connector's id.")
]
DomainsArgument = Annotated[
    list[str],
    strawberry.argument(
        description="Domains such as \"example.com\", or \"*.example.com\" for its subdomains."
    ),
]
NetworksArgument = Annotated[
    list[str],
    strawberry.argument(
        description="IP ranges in CIDR notation, such as \"192.0.2.0/24\"; a single address "
                    "is its /32 or /128."
    ),
]


@strawberry.type(
    description=(
        "Changes to the organization the request is authenticated for: its connectors, "
        "accepted domains and internal networks. Every mutation needs a token with the admin "
        "role (the error FORBIDDEN otherwise, and nothing changes). Each mutation commits on "
        "its own, in the order the operation lists them; a refused one is null with an error, "
        "and the others still run. Changed rules apply to mail ingested afterwards: mail "
        "already loaded keeps its connector until `mailflow reclassify` runs over its days."
    )
)
class Mutation:
    @resolved_field(
        description="Create a connector; CONNECTOR_NAME_TAKEN when the organization has one "
                    "of that name (without regard to case)."
    )
    async def create_connector(
        self,
        info: Info,
        connector: Annotated[
            CreateConnectorInput,
            strawberry.argument(name="input", description="The new connector."),
        ],
    ) -> CreateConnectorPayload | None:
        _require_admin(info)
        config = organizations.connector_config(
            _file_values(connector), subject="input", spelling=to_camel_case)
        created = await organizations.create_connector(
            info.context.connection, info.context.organization_id, config)
        return CreateConnectorPayload(connector=Connector.from_domain(created))

    @resolved_field(
        description="Change a connector's name, direction, kind or rules; CONNECTOR_NOT_FOUND "
                    "when the organization has no connector with the id."
    )
    async def update_connector(
        self,
        info: Info,
        id: ConnectorIdToChange,
        changes: Annotated[
            UpdateConnectorInput,
            strawberry.argument(name="input", description="What to change."),
        ],
    ) -> UpdateConnectorPayload | None:
        _require_admin(info)
        updated = await organizations.update_connector(
            info.context.connection, info.context.organization_id,
            decode_global_id(CONNECTOR, id), _file_values(changes),
            subject="input", spelling=to_camel_case,
        )
        if updated is None:
            raise _no_connector(id)
        return UpdateConnectorPayload(connector=Connector.from_domain(updated))

    @resolved_field(
        description="Delete a connector, as removing it from an organization file does: its "
                    "mail so far counts under \"no connector\" from then on, in every report. "
                    "CONNECTOR_NOT_FOUND when the organization has no connector with the id."
    )
    async def delete_connector(
        self, info: Info, id: ConnectorIdToChange
    ) -> DeleteConnectorPayload | None:
        _require_admin(info)
        deleted = await organizations.delete_connector(
            info.context.connection, info.context.organization_id,
            decode_global_id(CONNECTOR, id))
        if deleted is None:
            raise _no_connector(id)
        return DeleteConnectorPayload(
            deleted_connector_id=strawberry.ID(encode_global_id(CONNECTOR, deleted.id)),
            name=deleted.name,
        )

    @resolved_field(
        description="Add accepted domains; domains the organization has already are kept. "
                    + RULES_CHECKED
    )
    async def add_accepted_domains(
        self, info: Info, domains: DomainsArgument
    ) -> AddAcceptedDomainsPayload | None:
        _require_admin(info)
        change = await organizations.add_accepted_domains(
            info.context.connection, info.context.organization_id, domains, subject="domains")
        return AddAcceptedDomainsPayload(
            accepted_domains=list(change.values), added=list(change.changed))

    @resolved_field(
        description="Remove accepted domains; ACCEPTED_DOMAIN_NOT_FOUND, and nothing removed, "
                    "when one of them is not an accepted domain of the organization."
    )
    async def remove_accepted_domains(
        self, info: Info, domains: DomainsArgument
    ) -> RemoveAcceptedDomainsPayload | None:
        _require_admin(info)
        change = await organizations.remove_accepted_domains(
            info.context.connection, info.context.organization_id, domains, subject="domains")
        return RemoveAcceptedDomainsPayload(
            accepted_domains=list(change.values), removed=list(change.changed))

    @resolved_field(
        description="Declare internal networks: mail from and to them does not cross the "
                    "boundary, for mail ingested afterwards. Ranges declared already are kept. "
                    + RULES_CHECKED
    )
    async def add_internal_networks(
        self, info: Info, networks: NetworksArgument
    ) -> AddInternalNetworksPayload | None:
        _require_admin(info)
        change = await organizations.add_internal_networks(
            info.context.connection, info.context.organization_id, networks, subject="networks")
        return AddInternalNetworksPayload(
            internal_networks=list(change.values), added=list(change.changed))

    @resolved_field(
        description="Remove declared internal networks; INTERNAL_NETWORK_NOT_FOUND, and "
                    "nothing removed, when one of them is not declared (the default private "
                    "and loopback ranges cannot be removed)."
    )
    async def remove_internal_networks(
        self, info: Info, networks: NetworksArgument
    ) -> RemoveInternalNetworksPayload | None:
        _require_admin(info)
        change = await organizations.remove_internal_networks(
            info.context.connection, info.context.organization_id, networks, subject="networks")
        return RemoveInternalNetworksPayload(
            internal_networks=list(change.values), removed=list(change.changed))


def _require_admin(info: Info) -> None:
    role = info.context.role
    if role is not TokenRole.ADMIN:
        raise ForbiddenError(
            f"{info.field_name} changes the organization and needs a token with the admin "
            f"role; this request has the {role.value} role, which reads reports. Create an "
            "admin token with 'mailflow token create --org NAME --role admin'"
        )


def _file_values(given: object) -> dict[str, object]:
    """The fields of an input that were given (not null), keyed as in an organization file."""
    values: dict[str, object] = {}
    for item in dataclasses.fields(given):  # type: ignore[arg-type]
        value = getattr(given, item.name)
        if value is not None:
            values[item.name] = value.value if isinstance(value, Enum) else value
    return values


def _tls_query(
    info: Info, start: datetime.date | None, end: datetime.date | None, policy_domain: str | None
) -> tls.TlsQuery:
    window = info.context.window(start, end)
    if policy_domain is None:
        return tls.TlsQuery(window)
    return tls.TlsQuery(window, tls.check_policy_domain(policy_domain))


def _by_name(connectors: list[domain.Connector]) -> list[domain.Connector]:
    return sorted(connectors, key=_connector_key)


def _connector_key(connector: domain.Connector) -> SortKey:
    return (connector.name.casefold(), connector.name, connector.id)


def _failure_sort_key(failure: tls.TlsFailure) -> SortKey:
    return (failure.day.isoformat(), failure.policy_domain, failure.report_id,
            failure.policy_index, failure.failure_index)


def _failure_key(cursor: str) -> tls.FailureKey:
    day, policy_domain, report_id, policy_index, failure_index = decode_cursor(
        TLS_FAILURES_PAGE, cursor, TLS_FAILURE_CURSOR)
    try:
        parsed_day = datetime.date.fromisoformat(str(day))
    except ValueError:
        raise bad_cursor(TLS_FAILURES_PAGE, cursor) from None
    return tls.FailureKey(parsed_day, str(policy_domain), str(report_id),
                          int(policy_index), int(failure_index))


async def _node(info: Info, global_id: str) -> Node | None:
    global_id_type(global_id, NODE_TYPES)
    connector_id = decode_global_id(CONNECTOR, global_id)
    for connector in await info.context.loaders.connectors():
        if connector.id == connector_id:
            return Connector.from_domain(connector)
    return None


def _too_many_ids(count: int) -> TooManyIdsError:
    return TooManyIdsError(
        f"nodes was given {count} ids; it takes {MAX_NODES} at most: ask in several requests"
    )


async def _find_connector(info: Info, global_id: str) -> domain.Connector:
    connector_id = decode_global_id(CONNECTOR, global_id)
    for connector in await info.context.loaders.connectors():
        if connector.id == connector_id:
            return connector
    raise _no_connector(global_id)


def _no_connector(global_id: str) -> ConnectorNotFoundError:
    return ConnectorNotFoundError(
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


async def _all_insights(
    info: Info, window: DateRange, thresholds: Thresholds
) -> list[ReportInsight]:
    """The insights that fire over ``window`` for every connector, ordered by connector name."""
    connectors = _by_name(await info.context.loaders.connectors())
    totals = await info.context.loaders.connector_totals.load_many(
        [ConnectorWindow(connector.id, window) for connector in connectors]
    )
    return [
        insight
        for connector, connector_totals in zip(connectors, totals, strict=True)
        for insight in connector_insights(connector, connector_totals, window, thresholds)
    ]


def _thresholds(no_tls: float, tls1_0: float) -> Thresholds:
    return Thresholds(
        no_tls=check_threshold("noTlsThreshold", no_tls),
        tls1_0=check_threshold("tls10Threshold", tls1_0),
    )


@strawberry.type(description="The days of a range whose boundary mail changed.")
class MailFlowUpdate:
    start: datetime.date = strawberry.field(description="First UTC day of the range, included.")
    end: datetime.date = strawberry.field(description="Last UTC day of the range, included.")
    points: list[MailFlowPoint] = strawberry.field(
        description=(
            "In the first update, every day of the range, zeros included; in later ones, the "
            "days whose figures changed, in date order."
        )
    )


@strawberry.type(description="The insights that fire over a range, after a change.")
class InsightsUpdate:
    start: datetime.date = strawberry.field(description="First UTC day of the range, included.")
    end: datetime.date = strawberry.field(description="Last UTC day of the range, included.")
    insights: list[Insight] = strawberry.field(
        description="Every insight that fires now, as `insights` answers, ordered by connector "
                    "name; empty when none fires any more."
    )


@strawberry.type(
    description=(
        "Live reports over WebSocket (graphql-transport-ws at /graphql): each subscription "
        "answers at once, then again whenever newly committed mail (an ingest, a "
        "reclassification, a connector removed) changes its answer. A range without `start` "
        "and `end` follows the current UTC day."
    )
)
class Subscription:
    @resolved_subscription(
        description="`mailFlow`, live: every day of the range first, then the days that change."
    )
    async def mail_flow_updates(
        self,
        info: Info,
        start: StartArgument = None,
        end: EndArgument = None,
        direction: DirectionArgument = None,
        connector_id: ConnectorIdArgument = None,
        no_connector: NoConnectorArgument = None,
    ) -> AsyncIterator[MailFlowUpdate]:
        context = _live(info)
        sent: dict[datetime.date, series.MailFlowPoint] = {}

        async def answer() -> MailFlowUpdate | None:
            window = context.window(start, end)
            flow_filter = await _flow_filter(info, direction, connector_id, no_connector)
            totals = await context.loaders.flow_totals.load(FlowQuery(window, flow_filter))
            points = series.daily_series(totals, window)
            fresh = [point for point in points if sent.get(point.day) != point]
            first = not sent
            sent.clear()
            sent.update((point.day, point) for point in points)
            if not fresh and not first:
                return None
            return MailFlowUpdate(start=window.start, end=window.end,
                                  points=[MailFlowPoint.from_report(point) for point in fresh])

        return live.updates(context, lambda: context.window(start, end), answer)

    @resolved_subscription(
        description="`insights`, live: the insights that fire first, then again when they change."
    )
    async def insights_updates(
        self,
        info: Info,
        start: StartArgument = None,
        end: EndArgument = None,
        no_tls_threshold: NoTlsThresholdArgument = DEFAULT_NO_TLS_THRESHOLD,
        tls1_0_threshold: Tls10ThresholdArgument = DEFAULT_TLS1_0_THRESHOLD,
    ) -> AsyncIterator[InsightsUpdate]:
        context = _live(info)
        thresholds = _thresholds(no_tls_threshold, tls1_0_threshold)
        sent: list[list[ReportInsight]] = []

        async def answer() -> InsightsUpdate | None:
            window = context.window(start, end)
            found = await _all_insights(info, window, thresholds)
            if sent and sent[-1] == found:
                return None
            sent[:] = [found]
            return InsightsUpdate(start=window.start, end=window.end,
                                  insights=[Insight.from_report(insight) for insight in found])

        return live.updates(context, lambda: context.window(start, end), answer)


def _live(info: Info) -> SubscriptionContext:
    """The context of a subscription; subscriptions are served over WebSocket alone."""
    context = info.context
    if not isinstance(context, SubscriptionContext):
        raise TransportError(live.SUBSCRIBE_OVER_WEBSOCKET)
    return context


class MailflowSchema(strawberry.Schema):
    """The strawberry schema, leaving error logging to the error boundary.

    Federation's key on Connector is left out: its directive and the scalar it takes are
    removed from the built schema, so that SDL and introspection show none of it.
    """

    def __init__(self, **options: Any) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Federation directive found", UserWarning)
            super().__init__(**options)
        built = self._schema
        built.directives = tuple(
            directive for directive in built.directives if directive.name != "key"
        )
        built.type_map.pop("_FieldSet", None)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log nothing here: ErrorBoundary logs unexpected errors with the request id."""

    def as_str(self) -> str:
        """The SDL as introspection shows it: federation's keys are not part of it."""
        return print_schema(lexicographic_sort_schema(self._schema))

    __str__ = as_str


class FederatedSchema(strawberry.federation.Schema):
    """The schema as an Apollo Federation 2 subgraph: connectors are entities keyed by id,
    and ``_service { sdl }`` and ``_entities`` answer a gateway."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log nothing here: ErrorBoundary logs unexpected errors with the request id."""


EXTENSIONS = [
    QueryLimits, ErrorBoundary, Introspection, live.SubscriptionsOverWebSocket, OperationMetrics,
]
CONFIG = StrawberryConfig(scalar_map={Long: LONG_SCALAR, datetime.date: DATE_SCALAR})

schema = MailflowSchema(query=Query, mutation=Mutation, subscription=Subscription,
                        extensions=EXTENSIONS, config=CONFIG,
                        execution_context_class=FastListsExecutionContext)


@cache
def federated_schema() -> FederatedSchema:
    """The schema of a federation subgraph, built once when a server asks for it."""
    return FederatedSchema(query=Query, mutation=Mutation, subscription=Subscription,
                           extensions=EXTENSIONS, config=CONFIG,
                           execution_context_class=FastListsExecutionContext)


def schema_for(settings: Settings) -> strawberry.Schema:
    """The schema a server with ``settings`` serves: a federation subgraph's when asked."""
    return federated_schema() if settings.federation else schema
