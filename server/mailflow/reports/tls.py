"""SMTP TLS report figures: sessions per policy domain and day, and the failure details.

Sessions are TLS sessions that other organizations' MTAs attempted to the organization's MX
hosts, as their reports count them; they are not messages and are never added to message
counts. A report is counted on the UTC day its date range starts, also when the range runs
into the next day. Failed sessions by result type add up the reports' failure details, which
reporters do not always make agree with their summary's failed-session count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import asyncpg

from mailflow.domain import TlsPolicyType
from mailflow.reports.errors import InvalidPolicyDomainError, InvalidResultTypeError
from mailflow.reports.ranges import DateRange
from mailflow.store.connection import Connection
from mailflow.store.sql import query

MAX_DOMAIN_LENGTH = 253


@dataclass(frozen=True, slots=True)
class TlsQuery:
    """The TLS reports starting on a day of ``window``, of one policy domain or all (None)."""

    window: DateRange
    policy_domain: str | None = None


@dataclass(frozen=True, slots=True)
class FailureKey:
    """Where a failure detail stands in the order reports list them: day, policy domain,
    report id, policy and failure; all None for "from the start"."""

    day: date | None
    policy_domain: str | None
    report_id: str | None
    policy_index: int | None
    failure_index: int | None


@dataclass(frozen=True, slots=True)
class TlsFailureQuery:
    """Failure details of a TlsQuery, of one result type or all (None); those after the
    failure keyed ``after`` and ``limit`` at most, when given."""

    tls_query: TlsQuery
    result_type: str | None = None
    after: FailureKey | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class SessionTotal:
    """The sessions of one policy domain in the reports that start on one UTC day."""

    day: date
    policy_domain: str
    reports: int
    successful_sessions: int
    failed_sessions: int


@dataclass(frozen=True, slots=True)
class ResultTypeTotal:
    """Failed sessions of one policy domain, UTC day and result type, from failure details."""

    day: date
    policy_domain: str
    result_type: str
    failed_sessions: int


@dataclass(frozen=True, slots=True)
class TlsSessionsDay:
    """One policy domain's sessions on one UTC day; result types in name order."""

    day: date
    reports: int
    successful_sessions: int
    failed_sessions: int
    failed_sessions_by_result_type: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class TlsDomainSessions:
    """One policy domain's sessions per UTC day of a range, zeros included."""

    policy_domain: str
    days: tuple[TlsSessionsDay, ...]

    @property
    def successful_sessions(self) -> int:
        return sum(day.successful_sessions for day in self.days)

    @property
    def failed_sessions(self) -> int:
        return sum(day.failed_sessions for day in self.days)


@dataclass(frozen=True, slots=True)
class TlsFailure:
    """One failure detail of a stored report, with the report and policy it belongs to."""

    day: date
    report_id: str
    policy_index: int
    failure_index: int
    reporting_organization: str
    contact_info: str | None
    policy_domain: str
    policy_type: TlsPolicyType
    result_type: str
    failed_sessions: int
    sending_mta_ip: str | None
    receiving_mx_hostname: str | None
    receiving_mx_helo: str | None
    receiving_ip: str | None
    additional_information: str | None
    failure_reason_code: str | None


def check_policy_domain(value: str) -> str:
    """``value`` as stored policy domains are written (lower case, no trailing dot)."""
    domain = value.strip().lower().rstrip(".")
    if (not domain or len(domain) > MAX_DOMAIN_LENGTH or not domain.isprintable()
            or any(c.isspace() for c in domain)):
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise InvalidPolicyDomainError(
            f"policyDomain {shown!r} is not a domain name; pass one such as \"example.com\", "
            "or omit it for every policy domain"
        )
    return domain


def check_result_type(value: str | None) -> str | None:
    """``value`` unless it holds a NUL, which PostgreSQL text, and so no stored report, can hold."""
    if value is not None and "\x00" in value:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise InvalidResultTypeError(
            f"resultType {shown!r} holds a NUL character, which no report can hold; pass a "
            'result type as reports write it, such as "certificate-expired", or omit it for all'
        )
    return value


def session_series(
    sessions: Iterable[SessionTotal],
    result_types: Iterable[ResultTypeTotal],
    tls_query: TlsQuery,
) -> list[TlsDomainSessions]:
    """Each policy domain with reports in the range (or the one asked for), in name order,
    with one day per day of the range, zeros included."""
    by_key = {(total.policy_domain, total.day): total for total in sessions}
    failures: defaultdict[tuple[str, date], dict[str, int]] = defaultdict(dict)
    for total in result_types:
        failures[(total.policy_domain, total.day)][total.result_type] = total.failed_sessions
    domains = {domain for domain, _ in by_key} | {domain for domain, _ in failures}
    if tls_query.policy_domain is not None:
        domains = {tls_query.policy_domain}
    return [
        TlsDomainSessions(domain, tuple(
            _day(day, by_key.get((domain, day)), failures.get((domain, day), {}))
            for day in tls_query.window
        ))
        for domain in sorted(domains)
    ]


def _day(day: date, total: SessionTotal | None, failures: dict[str, int]) -> TlsSessionsDay:
    return TlsSessionsDay(
        day=day,
        reports=total.reports if total else 0,
        successful_sessions=total.successful_sessions if total else 0,
        failed_sessions=total.failed_sessions if total else 0,
        failed_sessions_by_result_type=tuple(sorted(failures.items())),
    )


async def fetch_tls_sessions(
    connection: Connection, organization_id: int, tls_query: TlsQuery
) -> list[TlsDomainSessions]:
    """The organization's sessions per policy domain and day: two statements."""
    arguments = (organization_id, tls_query.window.start, tls_query.window.end,
                 tls_query.policy_domain)
    sessions = await connection.fetch(query("report_tls_daily_sessions"), *arguments)
    result_types = await connection.fetch(query("report_tls_daily_result_types"), *arguments)
    return session_series(
        [SessionTotal(row["day"], row["policy_domain"], row["reports"],
                      row["successful_sessions"], row["failed_sessions"]) for row in sessions],
        [ResultTypeTotal(row["day"], row["policy_domain"], row["result_type"],
                         row["failed_sessions"]) for row in result_types],
        tls_query,
    )


async def fetch_tls_failures(
    connection: Connection, organization_id: int, failure_query: TlsFailureQuery
) -> list[TlsFailure]:
    """The failure details, by day, policy domain, report id and their place in the report."""
    tls_query = failure_query.tls_query
    after = failure_query.after or FailureKey(None, None, None, None, None)
    rows = await connection.fetch(
        query("report_tls_failures"),
        organization_id, tls_query.window.start, tls_query.window.end,
        tls_query.policy_domain, failure_query.result_type,
        after.day, after.policy_domain, after.report_id, after.policy_index, after.failure_index,
        failure_query.limit,
    )
    return [_failure(row) for row in rows]


def _failure(row: asyncpg.Record) -> TlsFailure:
    return TlsFailure(
        day=row["day"],
        report_id=row["report_id"],
        policy_index=row["policy_index"],
        failure_index=row["failure_index"],
        reporting_organization=row["reporting_organization"],
        contact_info=row["contact_info"],
        policy_domain=row["policy_domain"],
        policy_type=TlsPolicyType(row["policy_type"]),
        result_type=row["result_type"],
        failed_sessions=row["failed_sessions"],
        sending_mta_ip=row["sending_mta_ip"],
        receiving_mx_hostname=row["receiving_mx_hostname"],
        receiving_mx_helo=row["receiving_mx_helo"],
        receiving_ip=row["receiving_ip"],
        additional_information=row["additional_information"],
        failure_reason_code=row["failure_reason_code"],
    )
