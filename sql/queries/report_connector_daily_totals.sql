-- Mail of organization $1 through each of connectors $2 per UTC day and TLS version from $3 to $4.
SELECT
    connector_id,
    day,
    tls_version,
    sum(messages)::bigint AS messages,
    sum(recipients)::bigint AS recipients,
    sum(bytes)::bigint AS bytes
FROM daily_rollups
WHERE organization_id = $1
    AND connector_id = ANY($2::bigint[])
    AND day BETWEEN $3::date AND $4::date
GROUP BY
    connector_id,
    day,
    tls_version
