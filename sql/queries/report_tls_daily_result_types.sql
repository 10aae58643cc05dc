-- Failed sessions of organization $1 per policy domain, UTC start day and result type from $2 to $3, only domain $4 unless null.
SELECT
    reports.start_day AS day,
    policies.policy_domain,
    failures.result_type,
    sum(failures.failed_sessions)::bigint AS failed_sessions
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
GROUP BY
    reports.start_day,
    policies.policy_domain,
    failures.result_type
