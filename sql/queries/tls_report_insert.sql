-- Store report $2 of organization $1 unless it is stored already; returns its id when new.
INSERT INTO tls_reports (
    organization_id,
    report_id,
    reporting_organization,
    contact_info,
    start_at,
    end_at
)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING
RETURNING report_id
