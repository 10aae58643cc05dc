-- Store failure detail $4 of policy $3 of report $2 of organization $1.
INSERT INTO tls_report_failures (
    organization_id,
    report_id,
    policy_index,
    failure_index,
    result_type,
    sending_mta_ip,
    receiving_mx_hostname,
    receiving_mx_helo,
    receiving_ip,
    failed_sessions,
    additional_information,
    failure_reason_code
)
VALUES ($1, $2, $3, $4, $5, $6::inet, $7, $8, $9::inet, $10, $11, $12)
