-- Create a connector of organization $1 with the columns $2 to $11; return its id.
INSERT INTO connectors (
    organization_id,
    name,
    direction,
    kind,
    sender_domains,
    recipient_domains,
    client_ips,
    smart_hosts,
    tls_cert_names,
    require_tls,
    routes
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING id
