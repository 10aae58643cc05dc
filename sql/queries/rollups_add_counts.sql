-- Add the counts of newly stored facts to the daily rollups of organization $1, one row per
-- (day, direction, connector, TLS version) of the arrays $2..$5, in key order.
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
    $1,
    counts.day,
    counts.direction,
    counts.connector_id,
    counts.tls_version,
    counts.messages,
    counts.recipients,
    counts.bytes
FROM unnest(
    $2::date[],
    $3::text[],
    $4::bigint[],
    $5::text[],
    $6::bigint[],
    $7::bigint[],
    $8::bigint[]
) AS counts (day, direction, connector_id, tls_version, messages, recipients, bytes)
ORDER BY
    counts.day,
    counts.direction,
    counts.connector_id,
    counts.tls_version
ON CONFLICT ON CONSTRAINT daily_rollups_key DO UPDATE SET
    messages = daily_rollups.messages + EXCLUDED.messages,
    recipients = daily_rollups.recipients + EXCLUDED.recipients,
    bytes = daily_rollups.bytes + EXCLUDED.bytes
