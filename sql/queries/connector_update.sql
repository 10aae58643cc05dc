-- Replace the rules of connector $2 of organization $1 with the columns $3 to $12.
UPDATE connectors
SET
    name = $3,
    direction = $4,
    kind = $5,
    sender_domains = $6,
    recipient_domains = $7,
    client_ips = $8,
    smart_hosts = $9,
    tls_cert_names = $10,
    require_tls = $11,
    routes = $12,
    updated_at = now()
WHERE organization_id = $1
    AND id = $2
