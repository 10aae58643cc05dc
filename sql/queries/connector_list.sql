-- The connectors of organization $1, ordered by name.
SELECT
    id,
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
FROM connectors
WHERE organization_id = $1
ORDER BY name
