-- Move the copied batch into message_facts, skipping stored facts; count new facts per UTC day.
-- A fact keeps its connector only while the connector exists, and holds it (FOR KEY SHARE) until
-- commit: one removed since the facts were classified leaves them "no connector".
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
        status
    )
    SELECT
        organization_id,
        occurred_at,
        source_key,
        direction,
        (
            SELECT connectors.id
            FROM connectors
            WHERE connectors.organization_id = incoming.organization_id
                AND connectors.id = incoming.connector_id
            FOR KEY SHARE
        ),
        tls_version,
        tls_cipher,
        peer_host,
        peer_ip,
        sender_domain,
        recipient_domains,
        recipients,
        size_bytes,
        status
    FROM incoming_message_facts AS incoming
    ORDER BY
        source_key,
        occurred_at
    ON CONFLICT DO NOTHING
    RETURNING occurred_at
)
SELECT
    (occurred_at AT TIME ZONE 'UTC')::date AS day,
    count(*) AS inserted
FROM inserted_facts
GROUP BY day
