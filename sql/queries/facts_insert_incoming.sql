-- Move the copied batch into message_facts, skipping stored facts; count the new facts by the
-- keys of their daily rollups: UTC day, direction, connector and TLS version.
-- A fact keeps its connector only while the connector exists; the caller holds the connectors
-- (FOR KEY SHARE) until commit, so one removed since classification leaves them "no connector".
WITH inserted_facts AS (
    INSERT INTO message_facts (
        organization_id,
        occurred_at,
        source_key,
        direction,
        connector_id,
        tls_version,
        tls_cipher,
        peer_host,
        peer_ip,
        sender_domain,
        recipient_domains,
        recipients,
        size_bytes,
        status,
        routes
    )
    SELECT
        incoming.organization_id,
        incoming.occurred_at,
        incoming.source_key,
        incoming.direction,
        connectors.id,
        incoming.tls_version,
        incoming.tls_cipher,
        incoming.peer_host,
        incoming.peer_ip::inet,
        incoming.sender_domain,
        incoming.recipient_domains::text[],
        incoming.recipients,
        incoming.size_bytes,
        incoming.status,
        incoming.routes::text[]
    FROM incoming_message_facts AS incoming
    LEFT JOIN connectors
        ON connectors.organization_id = incoming.organization_id
        AND connectors.id = incoming.connector_id
    ORDER BY
        incoming.occurred_at,
        incoming.source_key
    ON CONFLICT DO NOTHING
    RETURNING
        occurred_at,
        direction,
        connector_id,
        tls_version,
        recipients,
        size_bytes
)
SELECT
    (occurred_at AT TIME ZONE 'UTC')::date AS day,
    direction,
    connector_id,
    tls_version,
    count(*) AS messages,
    sum(recipients)::bigint AS recipients,
    sum(size_bytes)::bigint AS bytes
FROM inserted_facts
GROUP BY
    day,
    direction,
    connector_id,
    tls_version
