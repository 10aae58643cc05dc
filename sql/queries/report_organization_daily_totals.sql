-- All mail of organization $1 per UTC day and TLS version from $2 to $3, of direction $4 (NULL: both).
SELECT
    day,
    tls_version,
    sum(messages)::bigint AS messages,
    sum(recipients)::bigint AS recipients,
    sum(bytes)::bigint AS bytes
FROM daily_organization_rollups
WHERE organization_id = $1
    AND day BETWEEN $2::date AND $3::date
    AND ($4::text IS NULL OR direction = $4::text)
GROUP BY
    day,
    tls_version
