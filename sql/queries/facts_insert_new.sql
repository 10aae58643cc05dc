-- Move the copied batch into message_facts when none of it can be stored already (see
-- facts_stored_between); a fact stored meanwhile by another ingest fails the insert on the
-- primary key, and the caller merges instead. In key order, as the merge inserts, so that two
-- ingests of the same facts wait for each other rather than deadlock.
-- A fact keeps its connector only while the connector exists; the caller holds the connectors
-- (FOR KEY SHARE) until commit, so one removed since classification leaves them "no connector".
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
