"""tlsSessions and tlsFailures over stored SMTP TLS reports: days, attribution, filters, scope."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from mailflow.domain import TlsPolicy, TlsPolicyType, TlsReport
from mailflow.ingest.tlsrpt import parse_report, read_report_file
from mailflow.store.tls_reports import store_tls_report

from .conftest import Api, Seed

FIXTURES = Path(__file__).parents[1] / "ingest" / "fixtures" / "tlsrpt"

SESSIONS = """
query Sessions($domain: String) {
  tlsSessions(start: "2025-03-01", end: "2025-03-04", policyDomain: $domain) {
    policyDomain successfulSessions failedSessions
    days {
      date reports successfulSessions failedSessions
      failedSessionsByResultType { resultType failedSessions }
    }
  }
}
"""

FAILURES = """
query Failures($resultType: String) {
  tlsFailures(start: "2025-03-01", end: "2025-03-04", resultType: $resultType) {
    date reportId reportingOrganization contactInfo policyDomain policyType resultType
    failedSessions sendingMtaIp receivingMxHostname receivingMxHelo receivingIp
    additionalInformation failureReasonCode
  }
}
"""


def fixture_report(name: str) -> TlsReport:
    [document] = read_report_file(str(FIXTURES / name))
    return parse_report(document)


# From 12:00 UTC on 3 March to 12:00 UTC on 4 March: counted on 3 March only.
OVERNIGHT = TlsReport(
    report_id="overnight-1", reporting_organization="Night Sender", contact_info=None,
    start=datetime(2025, 3, 3, 12, tzinfo=UTC), end=datetime(2025, 3, 4, 12, tzinfo=UTC),
    policies=(TlsPolicy(TlsPolicyType.STS, "example.com", successful_sessions=30,
                        failed_sessions=0),),
)


async def store(pool: asyncpg.Pool, organization_id: int, *reports: TlsReport) -> None:
    async with pool.acquire() as connection, connection.transaction():
        for report in reports:
            await store_tls_report(connection, organization_id, report)


@pytest.fixture
async def reports(pool: asyncpg.Pool, seed: Seed, organization_id: int) -> None:
    """Organization A's three reports; organization B's one on the same domain and day."""
    await store(pool, organization_id, fixture_report("rfc_spelling.json"),
                fixture_report("pattern_spelling.json"), OVERNIGHT)
    other = await seed.organization("org-b")
    await store(pool, other, replace(OVERNIGHT, start=datetime(2025, 3, 1, tzinfo=UTC)))


def day(date: str, reports: int = 0, successful: int = 0, failed: int = 0,
        **by_type: int) -> dict[str, object]:
    return {
        "date": date, "reports": reports, "successfulSessions": successful,
        "failedSessions": failed,
        "failedSessionsByResultType": [
            {"resultType": result_type.replace("_", "-"), "failedSessions": sessions}
            for result_type, sessions in by_type.items()
        ],
    }


@pytest.mark.usefixtures("reports")
async def test_sessions_come_per_policy_domain_and_utc_day_of_the_report_start(api: Api) -> None:
    data = await api.data(SESSIONS)

    assert data["tlsSessions"] == [
        {
            "policyDomain": "example.com", "successfulSessions": 150, "failedSessions": 7,
            "days": [
                day("2025-03-01", 1, 120, 5, certificate_expired=4, starttls_not_supported=1),
                # 22:00 on 1 March at -05:00 is 03:00 on 2 March in UTC.
                day("2025-03-02", 1, 0, 2, tlsa_invalid=2),
                # The overnight report counts on the day its range starts, never twice.
                day("2025-03-03", 1, 30, 0),
                day("2025-03-04"),
            ],
        },
        {
            "policyDomain": "example.org", "successfulSessions": 7, "failedSessions": 0,
            "days": [day("2025-03-01", 1, 7, 0), day("2025-03-02"), day("2025-03-03"),
                     day("2025-03-04")],
        },
    ]


@pytest.mark.usefixtures("reports")
async def test_a_policy_domain_is_matched_without_regard_to_case_and_a_trailing_dot(
    api: Api,
) -> None:
    data = await api.data(SESSIONS, {"domain": "EXAMPLE.org."})

    assert [(domain["policyDomain"], domain["successfulSessions"])
            for domain in data["tlsSessions"]] == [("example.org", 7)]


@pytest.mark.usefixtures("reports")
async def test_a_policy_domain_without_reports_has_a_day_of_zeros_for_every_day(api: Api) -> None:
    data = await api.data(SESSIONS, {"domain": "example.net"})

    [domain] = data["tlsSessions"]
    assert domain["policyDomain"] == "example.net"
    assert domain["days"] == [day(f"2025-03-0{n}") for n in range(1, 5)]


async def test_an_organization_without_reports_gets_no_policy_domains(api: Api) -> None:
    assert (await api.data(SESSIONS))["tlsSessions"] == []


@pytest.mark.usefixtures("reports")
async def test_another_organizations_reports_are_never_counted(
    api: Api, seed: Seed, organization_id: int
) -> None:
    other = await seed.organization("org-c")
    other_api = Api(api.client, await seed.token(other))

    assert (await other_api.data(SESSIONS))["tlsSessions"] == []
    first_day = (await api.data(SESSIONS, {"domain": "example.com"}))["tlsSessions"][0]["days"][0]
    assert first_day["successfulSessions"] == 120  # not 150 with organization B's 30


@pytest.mark.usefixtures("reports")
async def test_failure_details_come_in_day_domain_and_report_order(api: Api) -> None:
    failures = (await api.data(FAILURES))["tlsFailures"]

    assert [(f["date"], f["reportId"], f["resultType"], f["failedSessions"]) for f in failures] == [
        ("2025-03-01", "2025-03-01T00:00:00Z_example.com@sender.example.net",
         "certificate-expired", 4),
        ("2025-03-01", "2025-03-01T00:00:00Z_example.com@sender.example.net",
         "starttls-not-supported", 1),
        ("2025-03-02", "other-sender-0001", "tlsa-invalid", 2),
    ]
    assert failures[0] == {
        "date": "2025-03-01",
        "reportId": "2025-03-01T00:00:00Z_example.com@sender.example.net",
        "reportingOrganization": "Sender Example Ltd",
        "contactInfo": "tlsrpt@sender.example.net",
        "policyDomain": "example.com",
        "policyType": "STS",
        "resultType": "certificate-expired",
        "failedSessions": 4,
        "sendingMtaIp": "192.0.2.10",
        "receivingMxHostname": "mx1.mail.example.com",
        "receivingMxHelo": "mx1.mail.example.com",
        "receivingIp": "198.51.100.25",
        "additionalInformation": "https://sender.example.net/tlsrpt/details/1",
        "failureReasonCode": "X509_V_ERR_CERT_HAS_EXPIRED",
    }
    assert failures[1]["sendingMtaIp"] == "2001:db8::10"
    assert failures[2]["policyType"] == "TLSA"


@pytest.mark.usefixtures("reports")
async def test_failure_details_can_be_kept_to_one_result_type(api: Api) -> None:
    failures = (await api.data(FAILURES, {"resultType": "tlsa-invalid"}))["tlsFailures"]

    assert [f["reportId"] for f in failures] == ["other-sender-0001"]


async def test_a_result_type_with_a_nul_character_is_refused_with_a_code(api: Api) -> None:
    error = await api.error(FAILURES, {"resultType": "tlsa-\x00invalid"})

    assert error["extensions"]["code"] == "INVALID_RESULT_TYPE"
    assert error["message"] == (
        "resultType 'tlsa-\\x00invalid' holds a NUL character, which no report can hold; pass "
        "a result type as reports write it, such as \"certificate-expired\", or omit it for all"
    )


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        ('policyDomain: "two words"', "INVALID_POLICY_DOMAIN",
         "policyDomain 'two words' is not a domain name"),
        ('policyDomain: ""', "INVALID_POLICY_DOMAIN", "policyDomain '' is not a domain name"),
        ('policyDomain: "a\\u0000b.example"', "INVALID_POLICY_DOMAIN",
         "policyDomain 'a\\x00b.example' is not a domain name"),
        ('start: "2025-03-04", end: "2025-03-01"', "INVALID_DATE_RANGE",
         "end 2025-03-01 is before start 2025-03-04"),
        ('start: "2025-01-01", end: "2025-12-31"', "RANGE_TOO_LONG",
         "spans 365 days, but the longest allowed range is 90 days"),
    ],
)
@pytest.mark.parametrize("field", ["tlsSessions", "tlsFailures"])
async def test_bad_arguments_are_refused_with_a_code(
    api: Api, field: str, arguments: str, code: str, message: str
) -> None:
    error = await api.error(f"{{ {field}({arguments}) {{ policyDomain }} }}")

    assert error["extensions"]["code"] == code
    assert message in error["message"]
