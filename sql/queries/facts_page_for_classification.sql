-- The message facts of organization $1 after (time $2, source key $3) and before time $4, in
-- (time, source key) order, at most $5: each with what classification reads and its connector.
SELECT
    source_key,
    occurred_at,
    direction,
    connector_id,
    tls_version,
    tls_cipher,
    peer_host,
    host(peer_ip) AS peer_ip,
    sender_domain,
    recipient_domains,
    recipients,
    size_bytes,
    status,
    routes
FROM message_facts
WHERE organization_id = $1
    AND occurred_at >= $2
    AND (occurred_at, source_key) > ($2, $3)
    AND occurred_at < $4
ORDER BY
    occurred_at,
    source_key
LIMIT $5
