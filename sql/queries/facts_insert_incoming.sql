-- Move the copied batch into message_facts, skipping stored facts; count new facts per UTC day.
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
    FROM incoming_message_facts
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
