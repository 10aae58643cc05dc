"""Store SMTP TLS reports with their policies and failure details, once per report id."""

from __future__ import annotations

from mailflow.domain import TlsReport
from mailflow.store.connection import Connection
from mailflow.store.facts import require_transaction
from mailflow.store.sql import query


async def store_tls_report(connection: Connection, organization_id: int, report: TlsReport) -> bool:
    """Store ``report`` inside the caller's transaction; False when its id was stored already.

    A report id seen again for the same organization is a duplicate and changes nothing,
    even when the report's content differs: reporters resend a report under its old id.
    """
    require_transaction(connection, "store_tls_report")
    inserted = await connection.fetchval(
        query("tls_report_insert"),
        organization_id, report.report_id, report.reporting_organization,
        report.contact_info, report.start, report.end,
    )
    if inserted is None:
        return False

    await connection.executemany(query("tls_report_insert_policy"), [
        (organization_id, report.report_id, index, policy.policy_type.value,
         policy.policy_domain, list(policy.policy_strings), list(policy.mx_host_patterns),
         policy.successful_sessions, policy.failed_sessions)
        for index, policy in enumerate(report.policies)
    ])
    await connection.executemany(query("tls_report_insert_failure"), [
        (organization_id, report.report_id, policy_index, failure_index, failure.result_type,
         failure.sending_mta_ip, failure.receiving_mx_hostname, failure.receiving_mx_helo,
         failure.receiving_ip, failure.failed_sessions, failure.additional_information,
         failure.failure_reason_code)
        for policy_index, policy in enumerate(report.policies)
        for failure_index, failure in enumerate(policy.failure_details)
    ])
    return True
