-- Count all message facts of organization $1 into daily rollups.
INSERT INTO daily_rollups (
    organization_id,
    day,
    direction,
    connector_id,
    tls_version,
    messages,
    recipients,
    bytes
)
SELECT
    organization_id,
    (occurred_at AT TIME ZONE 'UTC')::date AS day,
    direction,
    connector_id,
    tls_version,
    count(*),
    sum(recipients),
    sum(size_bytes)
FROM message_facts
WHERE organization_id = $1
GROUP BY
    organization_id,
    day,
    direction,
    connector_id,
    tls_version
