-- Failure details of organization $1 from reports starting on UTC days $2 to $3, only domain $4 and result type $5 unless null;
-- after the failure keyed ($6 day, $7 domain, $8 report id, $9 policy, $10 failure) unless null, $11 at most (all when null).
SELECT
    reports.start_day AS day,
    reports.report_id,
    reports.reporting_organization,
    reports.contact_info,
    reports.start_at,
    reports.end_at,
    policies.policy_domain,
    policies.policy_type,
    failures.result_type,
    host(failures.sending_mta_ip) AS sending_mta_ip,
    failures.receiving_mx_hostname,
    failures.receiving_mx_helo,
    host(failures.receiving_ip) AS receiving_ip,
    failures.policy_index,
    failures.failure_index,
    failures.failed_sessions,
    failures.additional_information,
    failures.failure_reason_code
FROM tls_reports AS reports
JOIN tls_report_policies AS policies
    ON policies.organization_id = reports.organization_id
    AND policies.report_id = reports.report_id
JOIN tls_report_failures AS failures
    ON failures.organization_id = policies.organization_id
    AND failures.report_id = policies.report_id
    AND failures.policy_index = policies.policy_index
WHERE reports.organization_id = $1
    AND reports.start_day BETWEEN $2::date AND $3::date
    AND ($4::text IS NULL OR policies.policy_domain = $4::text)
    AND ($5::text IS NULL OR failures.result_type = $5::text)
    AND (
        $6::date IS NULL
        OR (
            reports.start_day,
            policies.policy_domain,
            reports.report_id,
            failures.policy_index,
            failures.failure_index
        ) > ($6::date, $7::text, $8::text, $9::integer, $10::integer)
    )
ORDER BY
    reports.start_day,
    policies.policy_domain,
    reports.report_id,
    failures.policy_index,
    failures.failure_index
LIMIT $11::integer
