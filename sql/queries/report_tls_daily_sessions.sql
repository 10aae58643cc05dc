-- Sessions of organization $1 per policy domain and UTC start day of their reports from $2 to $3, only domain $4 unless null.
SELECT
    reports.start_day AS day,
    policies.policy_domain,
    count(DISTINCT reports.report_id)::bigint AS reports,
    sum(policies.successful_sessions)::bigint AS successful_sessions,
    sum(policies.failed_sessions)::bigint AS failed_sessions
FROM tls_reports AS reports
JOIN tls_report_policies AS policies
    ON policies.organization_id = reports.organization_id
    AND policies.report_id = reports.report_id
WHERE reports.organization_id = $1
    AND reports.start_day BETWEEN $2::date AND $3::date
    AND ($4::text IS NULL OR policies.policy_domain = $4::text)
GROUP BY
    reports.start_day,
    policies.policy_domain
