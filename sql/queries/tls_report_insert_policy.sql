-- Store policy $3 (its place in the report) of report $2 of organization $1.
INSERT INTO tls_report_policies (
    organization_id,
    report_id,
    policy_index,
    policy_type,
    policy_domain,
    policy_strings,
    mx_host_patterns,
    successful_sessions,
    failed_sessions
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
