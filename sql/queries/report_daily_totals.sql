-- Mail of organization $1 per UTC day and TLS version from $2 to $3, kept by direction $4, connector $5 or no connector ($6).
SELECT
    day,
    tls_version,
    sum(messages)::bigint AS messages,
    sum(recipients)::bigint AS recipients,
    sum(bytes)::bigint AS bytes
FROM daily_rollups
WHERE organization_id = $1
    AND day BETWEEN $2::date AND $3::date
    AND ($4::text IS NULL OR direction = $4::text)
    AND ($5::bigint IS NULL OR connector_id = $5::bigint)
    AND (NOT $6::boolean OR connector_id IS NULL)
GROUP BY
    day,
    tls_version
